-- uses: _lib
--[[ claim: settle finished tasks, then claim the next ones, for one worker, in one round trip.

  KEYS: nq queue blocks (28 each), then the worker's processing list of each queue (nq),
        then one result key per ack
  ARGV: worker, nq, max_tasks, promote_limit, result_ttl_ms, n_acks, n_stats,
        holds_nothing ('1': after the acks, the worker holds no claimed task),
        nq x queue name,
        n_acks x (queue index, id, token, type, flags, result record JSON): flags '0', '1'
        (it had failed attempts), '2' (a workflow member), '3' (both)
        n_stats x (queue index, stats field, increment)
  Returns: {claimed, stale, next_due, strays}
    claimed: flat list of (queue index, id, token, body, failures) per claimed task
    stale:   ids whose ack was refused because this worker no longer holds that claim
    next_due: ms until the earliest scheduled task of these queues when nothing was
              claimed (-1: none), else -1
    strays:  tasks found in the worker's lists although it holds nothing (a claim whose
             reply never reached it, e.g. delivered late after a network cut): put back at
             the front of their queues, no attempt counted

  Ack is fenced: it applies only if the task's claim in `run` is still this worker's with
  this token, so a worker that stalled while its task was requeued cannot ack it away.
  Queues are served in the order given, priorities 9..0 within a queue, FIFO within a level.
  Due scheduled tasks are promoted first, so a due retry is claimable within this call.
  This is the worker's hot path: a batch costs a fixed number of Redis calls plus one SET
  per ack.
]]
local worker = ARGV[1]
local nq = tonumber(ARGV[2])
local max_tasks = tonumber(ARGV[3])
local promote_limit = tonumber(ARGV[4])
local result_ttl = tonumber(ARGV[5])
local result_px = ARGV[5]   -- (as given: a string, see int())
local n_acks = tonumber(ARGV[6])
local n_stats = tonumber(ARGV[7])
local holds_nothing = ARGV[8] == '1'
local MAX_BURY = 1000
local DONE_KEEP = 1000   -- ids in each queue's list of recently finished tasks (+100)
local names, Q, P = {}, {}, {}
for i = 1, nq do
  names[i] = ARGV[8 + i]
  Q[i] = qkeys(1 + (i - 1) * QBLOCK)
  P[i] = KEYS[nq * QBLOCK + i]
end

local counts = {}   -- counts[qi][type .. ':' .. event] = n, flushed as one HINCRBY each
for qi = 1, nq do counts[qi] = {} end
local fields = {}   -- type -> event -> 'type:event' (built once per call, not per task)
local function tally(qi, ttype, event, n)
  local by_event = fields[ttype]
  if not by_event then
    by_event = {}
    fields[ttype] = by_event
  end
  local f = by_event[event]
  if not f then
    f = ttype .. ':' .. event
    by_event[event] = f
  end
  local c = counts[qi]
  c[f] = (c[f] or 0) + (n or 1)
end

-- settle ------------------------------------------------------------------------------
-- Acks are grouped by queue so each group costs a fixed number of calls plus one SET each.
-- Per ack only ARGV positions are kept (no table per ack: this runs for every task).
local a = 9 + nq
local rkey0 = nq * QBLOCK + nq   -- KEYS[rkey0 + k] is the result key of the k-th ack
local stale = {}
local groups = {}
for k = 1, n_acks do
  local qi = tonumber(ARGV[a])
  local g = groups[qi]
  if not g then
    g = {ids = {}, at = {}}
    groups[qi] = g
  end
  local n = #g.ids + 1
  g.ids[n] = ARGV[a + 1]
  g.at[n] = k   -- ARGV of this ack: a = 9 + nq + (k - 1) * 6
  a = a + 6
end
local ack0 = 9 + nq - 6
for qi, g in pairs(groups) do
  local q = Q[qi]
  local claims = rcall('HMGET', q.run, unpack(g.ids))
  local ok, ok_at, failed, leases, members = {}, {}, {}, {}, {}
  local mine = worker .. '|'
  for i, id in ipairs(g.ids) do
    local claim = claims[i]
    local at = ack0 + g.at[i] * 6
    -- the claim is "worker|token|started": this worker's, with this token
    local prefix = mine .. ARGV[at + 2] .. '|'
    if claim and string.sub(claim, 1, #prefix) == prefix then
      ok[#ok + 1] = id
      ok_at[#ok_at + 1] = g.at[i]
      local flags = ARGV[at + 4]
      if flags == '1' or flags == '3' then failed[#failed + 1] = id end
      if flags == '2' or flags == '3' then members[#members + 1] = #ok end
      if leased(claim) then leases[#leases + 1] = ARGV[at + 3] end
    else
      stale[#stale + 1] = id
    end
  end
  if #ok > 0 then
    rcall('HDEL', q.run, unpack(ok))
    rcall('HDEL', q.tasks, unpack(ok))
    if #leases > 0 then   -- concurrency leases of the finished tasks, back to their types
      local limits = {}
      for _, ttype in ipairs(leases) do
        if limits[ttype] == nil then limits[ttype] = concurrency_of(q, ttype) or false end
        release(q, names[qi], ttype, limits[ttype] or nil)
      end
    end
    local records = {}   -- ack index -> record, where the record changes
    if #failed > 0 then
      -- a success after failures keeps its earlier attempts' errors in its result record
      -- (spliced in as "h": the handler's result is not re-encoded)
      local errs = rcall('HMGET', q.errors, unpack(failed))
      local by_id = {}
      for i, id in ipairs(failed) do by_id[id] = errs[i] end
      for i, id in ipairs(ok) do
        local err = by_id[id]
        local record = ARGV[ack0 + ok_at[i] * 6 + 5]
        if err and string.sub(record, -1) == '}' then
          local fine, e = pcall(cjson.decode, err)
          if fine and type(e) == 'table' then
            local h = type(e.history) == 'table' and e.history or {}
            h[#h + 1] = {kind = e.kind, message = e.message, at = e.at, worker = e.worker}
            records[i] = string.sub(record, 1, -2) .. ',"h":' .. cjson.encode(h) .. '}'
          end
        end
      end
      rcall('HDEL', q.errors, unpack(failed))
      for i = 1, #failed do failed[#failed + 1] = failed[i] .. ':k' end   -- workers it killed
      rcall('HDEL', q.fails, unpack(failed))
    end
    -- acks arrive in claim order, so they are usually the head of the processing list
    local head = rcall('LRANGE', P[qi], '0', int(#ok - 1))
    local in_order = #head == #ok
    for i = 1, #ok do
      if head[i] ~= ok[i] then in_order = false break end
    end
    if in_order then
      rcall('LTRIM', P[qi], int(#ok), '-1')
    else
      for _, id in ipairs(ok) do rcall('LREM', P[qi], 1, id) end
    end
    -- the recently finished, newest first, for the dashboard (bookkeeping: a corrupt key
    -- must not fail the claim half-way)
    local kept = redis.pcall('LPUSH', q.done, unpack(ok))
    if type(kept) == 'number' and kept > DONE_KEEP + 100 then   -- trimmed now and then
      redis.pcall('LTRIM', q.done, '0', int(DONE_KEEP - 1))
    end
    -- clients waiting for a result (client.wait): usually none, then one O(1) call
    local waiting = {}
    if rcall('HLEN', q.waiters) > 0 then waiting = rcall('HMGET', q.waiters, unpack(ok)) end
    local by_type = {}   -- type -> acks (counted here, tallied once per type)
    for i, id in ipairs(ok) do
      local k = ok_at[i]
      local at = ack0 + k * 6
      if result_ttl > 0 then
        rcall('SET', KEYS[rkey0 + k], records[i] or ARGV[at + 5], 'PX', result_px)
      end
      if waiting[i] then notify(q, id, 'succeeded') end
      local ttype = ARGV[at + 3]
      by_type[ttype] = (by_type[ttype] or 0) + 1
    end
    for ttype, c in pairs(by_type) do tally(qi, ttype, 'succeeded', c) end
    -- workflow members (the worker says which): their downstream members hear of the
    -- result in this same call, so no crash can lose or double that step
    if #members > 0 then
      local t = now_ms()
      for _, i in ipairs(members) do
        node_done(q, names[qi], ok[i], 'ok', node_value(names[qi], ok[i],
                  records[i] or ARGV[ack0 + ok_at[i] * 6 + 5]), t)
      end
    end
  end
end
for _ = 1, n_stats do
  rcall('HINCRBY', Q[tonumber(ARGV[a])].stats, ARGV[a + 1], ARGV[a + 2])
  a = a + 3
end

local function flush()
  for qi = 1, nq do
    for f, c in pairs(counts[qi]) do rcall('HINCRBY', Q[qi].stats, f, int(c)) end
  end
end

-- A worker that holds nothing has empty lists once its acks are settled: anything left there
-- was claimed in its name by a call whose reply it never got. Put it back (unless another
-- worker's claim owns it now), or it would sit "running" on a live worker for ever.
local strays = 0
if holds_nothing then
  for qi = 1, nq do
    local left = rcall('LRANGE', P[qi], 0, -1)
    if #left > 0 then
      local q = Q[qi]
      local prefix = worker .. '|'
      for i = #left, 1, -1 do
        local id = left[i]
        local claim = rcall('HGET', q.run, id)
        if not claim or string.sub(claim, 1, #prefix) == prefix then
          rcall('HDEL', q.run, id)
          local body = rcall('HGET', q.tasks, id)
          local ttype, prio = nil, nil
          if body then ttype, prio = header(body, names[qi]) end
          if ttype and leased(claim) then
            release(q, names[qi], ttype, concurrency_of(q, ttype))
          end
          if prio then
            rcall('LPUSH', ready_key(q, prio), id)
            strays = strays + 1
          else
            bury_malformed(q, id, now_ms(), 'no readable task body for a claimed id')
          end
        end
      end
      rcall('DEL', P[qi])
    end
  end
end

if max_tasks <= 0 then
  flush()
  return {{}, stale, -1, strays}
end

-- flow control --------------------------------------------------------------------------
-- The rate bucket of a limited task: its type, or type:key for a per-key limit, the key being
-- the producer's "k" header field (a rate_key function, evaluated at enqueue) or else the
-- payload field the limit names.
local function bucket(ttype, lim, body)
  if not lim.k then return ttype end
  local h = string.match(body, '^{(.-)"p":')
  local key = h and string.match(h, '"k":"([^"]*)"')
  if not key and lim.k ~= '()' then   -- ('()': a rate_key function, see shared/limits.py)
    local ok, doc = pcall(cjson.decode, body)
    local v = ok and type(doc) == 'table' and type(doc.p) == 'table' and doc.p[lim.k]
    if type(v) == 'number' then
      key = string.format('%.17g', v)
    elseif type(v) == 'string' then
      key = v
    end
  end
  if not key then return ttype end
  return ttype .. ':' .. key
end

-- GCRA: a start is allowed while the theoretical arrival time (TAT) is within the burst
-- tolerance of now; it moves TAT one interval on. Returns true, or false and the opening (ms).
-- The tolerance has a quarter of an interval (at most 20 ms) on top of the burst's: a start
-- that was a little late (promotion and claim take a millisecond or two) must not push the
-- next one out of its slot. Over any window of W ms this allows at most
-- burst + floor(W / interval) starts (W a whole number of intervals; the quarter is taken
-- back by the window's own edge).
local function rate_ok(q, b, lim, now)
  local interval = tonumber(lim.i)
  local tolerance = interval * ((tonumber(lim.b) or 1) - 1) + math.min(interval / 4, 20)
  local tat = tonumber(rcall('HGET', q.flow, 'tat:' .. b)) or now
  if tat < now then tat = now end
  if tat - now > tolerance then return false, tat - tolerance end
  rcall('HSET', q.flow, 'tat:' .. b, string.format('%.3f', tat + interval))
  return true
end

-- Over its rate: into the schedule, due when its slot opens. A first deferral joins the end
-- of its bucket's line: deferrals of a bucket are spaced one interval apart ("next:" is the
-- first free slot), so they come back one per slot rather than all at the first opening. A
-- deferred task ("dfr:ID" marks it) that is still early when it comes back (its slot was
-- taken by a late start) keeps its place: it goes back to the exact opening.
local function defer(q, b, lim, id, opening, again)
  local at = opening
  if not again then
    at = tonumber(rcall('HGET', q.flow, 'next:' .. b)) or 0
    if at < opening then at = opening end
    rcall('HSET', q.flow, 'next:' .. b, string.format('%.3f', at + tonumber(lim.i)),
          'dfr:' .. id, '1')
  end
  local due = math.ceil(at)
  local first = rcall('ZRANGE', q.sched, 0, 0, 'WITHSCORES')
  rcall('ZADD', q.sched, due, id)
  if not first[2] or due < tonumber(first[2]) then schedule_moved(q.wake, q.soon) end
end

-- A limited task met at claim time: 'run' (true: it holds a concurrency lease), 'held' (no
-- lease free: it waits in the held set for one) or 'deferred' (over its rate). A claim takes
-- at most an eighth of a type's leases (at least one), so small limits spread over the
-- fleet's workers instead of one worker prefetching them all.
local function admit(q, ttype, lim, id, body, now, leased_now)
  local c = tonumber(lim.c)
  if c then
    local taken = false
    if (leased_now[ttype] or 0) < math.max(1, math.floor(c / 8)) then
      taken = rcall('HINCRBY', q.flow, 'run:' .. ttype, 1) <= c
      if not taken then rcall('HINCRBY', q.flow, 'run:' .. ttype, -1) end
    end
    if not taken then
      rcall('ZADD', q.held, 0, ttype .. '\0' .. id)
      return 'held', false
    end
  end
  if lim.i then
    local b = bucket(ttype, lim, body)
    local ok, opening = rate_ok(q, b, lim, now)
    local again = rcall('HEXISTS', q.flow, 'dfr:' .. id) == 1
    if not ok then
      if c then rcall('HINCRBY', q.flow, 'run:' .. ttype, -1) end
      defer(q, b, lim, id, opening, again)
      return 'deferred', false
    end
    if again then rcall('HDEL', q.flow, 'dfr:' .. id) end
  end
  if c then leased_now[ttype] = (leased_now[ttype] or 0) + 1 end
  return 'run', c ~= nil
end

-- claim -------------------------------------------------------------------------------
-- Pop up to `want` ids from the highest non-empty priority levels of q, in order. Also
-- returns where each batch came from, so a failure right after can put them back.
local function pop(q, want)
  local ids, from = {}, {}
  if HAS_LMPOP then
    while #ids < want do
      local got = rcall('LMPOP', '10', q.ready[1], q.ready[2], q.ready[3], q.ready[4],
                        q.ready[5], q.ready[6], q.ready[7], q.ready[8], q.ready[9],
                        q.ready[10], 'LEFT', 'COUNT', int(want - #ids))
      if not got then break end
      from[#from + 1] = got
      for _, id in ipairs(got[2]) do ids[#ids + 1] = id end
    end
  else
    for lvl = 1, 10 do
      local got = rcall('LPOP', q.ready[lvl], int(want - #ids))   -- LPOP with a count: 6.2+
      if got then
        from[#from + 1] = {q.ready[lvl], got}
        for _, id in ipairs(got) do ids[#ids + 1] = id end
        if #ids >= want then break end
      end
    end
  end
  return ids, from
end

-- A corrupt key met right after a pop (the tasks hash of the wrong type): push the ids back
-- where they were, in order, so the error loses nothing (Redis does not roll a script back).
local function unpop(from)
  for b = #from, 1, -1 do
    local key, ids = from[b][1], from[b][2]
    for i = #ids, 1, -1 do rcall('LPUSH', key, ids[i]) end
  end
end

local now = now_ms()
local mine, started = worker .. '|', '|' .. now
local claimed = {}
local n = 0
local buried = 0      -- malformed entries moved to the dead letters by this call
local set_aside = 0   -- limited tasks deferred or held by this call
local left = false    -- a ready list this call did not drain (another worker may take it)
local paused = {}
-- Claim from queue qi until the batch is full, the queue is empty or the burial cap is
-- reached; returns an error reply to end the script with (a corrupt tasks hash).
local function claim_from(qi)
  local q = Q[qi]
  local queue = names[qi]
  local is_paused, limits = flow_of(q)
  paused[qi] = is_paused
  local leased_now, held_now = {}, {}   -- types of concurrency limits: leased / held here
  if not is_paused then
    promote(q, queue, now, promote_limit)
    -- Malformed entries do not count against max_tasks: pop on until enough good tasks (or
    -- the queue is empty), but bury (or set aside) at most MAX_BURY per call so one call
    -- stays short.
    while n < max_tasks and buried + set_aside < MAX_BURY do
      local ids, from = pop(q, max_tasks - n)
      if #ids == 0 then break end
      local bodies = redis.pcall('HMGET', q.tasks, unpack(ids))
      if bodies.err then
        unpop(from)
        return redis.error_reply(bodies.err)
      end
      local good, runs, by_type = {}, {}, {}   -- (by_type: starts, tallied once per type)
      local base = rcall('INCR', q.seq) .. '.'
      for i, id in ipairs(ids) do
        local body = bodies[i]
        local ttype = body and body_type(body, queue)
        local verdict, lease = 'run', false
        if ttype and limits and limits[ttype] then
          verdict, lease = admit(q, ttype, limits[ttype], id, body, now, leased_now)
          if verdict == 'held' then held_now[ttype] = limits[ttype] end
        end
        if not ttype then
          bury_malformed(q, id, now, body and 'unreadable task body' or 'no task body for this id')
          buried = buried + 1
        elseif verdict ~= 'run' then
          set_aside = set_aside + 1
          tally(qi, ttype, 'throttled')
        else
          local token = base .. int(i)
          good[#good + 1] = id
          runs[#runs + 1] = id
          runs[#runs + 1] = mine .. token .. started .. (lease and '|c' or '')
          local c = #claimed
          claimed[c + 1] = qi
          claimed[c + 2] = id
          claimed[c + 3] = token
          claimed[c + 4] = body
          claimed[c + 5] = 0   -- failures, filled in below
          by_type[ttype] = (by_type[ttype] or 0) + 1
        end
      end
      for ttype, c in pairs(by_type) do tally(qi, ttype, 'started', c) end
      if #good > 0 then
        rcall('RPUSH', P[qi], unpack(good))
        rcall('HSET', q.run, unpack(runs))
        -- failed attempts so far: usually there are none in the whole queue (one O(1) call)
        if rcall('HLEN', q.fails) > 0 then
          local fails = rcall('HMGET', q.fails, unpack(good))
          local first = #claimed - 5 * #good
          for i = 1, #good do
            if fails[i] then claimed[first + 5 * i] = tonumber(fails[i]) or 0 end
          end
        end
        n = n + #good
      end
    end
    -- Tasks held by this call while leases are free (a claim takes only a share, see admit):
    -- back to the front of the queue for the other workers.
    for ttype, lim in pairs(held_now) do refill(q, queue, ttype, tonumber(lim.c)) end
    -- A worker may have been woken by this queue's token while claiming from an earlier
    -- queue, or took only part of what is ready: leave a token so another worker wakes.
    if (n >= max_tasks or buried + set_aside >= MAX_BURY)
        and rcall('EXISTS', unpack(q.ready)) > 0 then
      wake(q)
      left = true
    end
  end
end

for qi = 1, nq do
  if n < max_tasks then
    local err = claim_from(qi)
    if err then return err end
  elseif rcall('EXISTS', unpack(Q[qi].ready)) > 0
      and rcall('HGET', Q[qi].flow, 'paused') ~= '1' then
    -- Full before this queue: only leave a token where work is ready (another worker may
    -- take it). No flow state or promotion: the claim that starts here (claims rotate
    -- their first queue) or the master's promoter promotes.
    wake(Q[qi])
    left = true
  end
end

flush()
-- Work left behind (a burial cap reached): the caller claims again at once (next_due 0).
if n > 0 or left then return {claimed, stale, (n == 0 and left) and 0 or -1, strays} end
-- Nothing to claim anywhere: tokens left in the wake lists are stale, and the caller will
-- block on them until the earliest scheduled task is due.
local due = -1
for qi = 1, nq do
  rcall('DEL', Q[qi].wake)
  local d = paused[qi] and -1 or next_due(Q[qi], now)   -- (paused: the master promotes)
  if d >= 0 and (due < 0 or d < due) then due = d end
end
return {claimed, stale, due, strays}
