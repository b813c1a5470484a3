-- uses: _lib, _admit, _take, _settle
--[[ claim: settle a worker's finished tasks, then claim its next ones, in one round trip.

  Which queues it claims from:
  - mode 'q': the queues named in ARGV, in that order; KEYS: their blocks (QBLOCK keys each).
    On a Redis Cluster each claim names one queue (one slot); tq.testing and broker.fetch name
    several on a standalone Redis.
  - mode 'g': the queues of the worker's consumer group that hold ready work, picked from the
    group's ready index (shared/store/groups.py): lowest pass first (weighted: a queue's pass
    grows by its stride, 5040 / weight, each time a claim takes from it) or lowest rank
    (strict: the order of the patterns). KEYS: the group's ready index and wake list. Only on
    a standalone Redis (the queues' keys are named here, from the namespace), so a claim
    costs with the queues that hold work, not with the queues the worker consumes.
  ARGV (the A_* offsets below): worker, namespace, mode, group id ('g'), max_tasks,
        promote_limit, result_ttl_ms, n_acks, n_stats, holds_nothing ('1': once its acks are
        settled the worker holds no claimed task), nq, then nq queue names ('q': the queues;
        'g': queues this worker set aside as broken), then n_acks acks (_settle's ACK_*
        fields: queue, id, token, type, flags, result record), then n_stats stats (queue,
        stats field, increment). (The head, up to the group id, is the same on every claim
        of a worker: broker packs it once.)
  Returns: {claimed, stale, next_due, strays, gone}
    claimed:  flat (queue, id, token, body, failures) per claimed task
    stale:    ids whose ack the fence refused (this worker no longer holds that claim)
    next_due: with nothing claimed, ms until the earliest scheduled task of the named queues
              ('q'; -1: none); 0: work was left behind (claim again at once); else -1
    strays:   tasks found in the worker's lists although it holds nothing (a claim whose reply
              never reached it, e.g. after a network cut): put back at the front of their
              queues, no attempt counted
    gone:     'q': the named queues found without ready work (drained or paused)
  This is the worker's hot path: a batch costs a fixed number of calls plus one SET per ack.
]]
local A_WORKER, A_NS, A_MODE, A_GROUP, A_MAX, A_PROMOTE = 1, 2, 3, 4, 5, 6
local A_TTL, A_NACKS, A_NSTATS, A_HOLDS, A_NQ, A_QUEUES = 7, 8, 9, 10, 11, 12
local STRIDE = '5040'      -- a weight-1 queue's stride (groups.py: 5040 / weight)
local MAX_VISITS = 64      -- queues one group claim looks at, at most

local worker, ns, group_mode = ARGV[A_WORKER], ARGV[A_NS], ARGV[A_MODE] == 'g'
local max_tasks = tonumber(ARGV[A_MAX])
local result_px = ARGV[A_TTL]   -- (as given: a string, see int())
local result_ttl = tonumber(result_px)
local n_acks, n_stats = tonumber(ARGV[A_NACKS]), tonumber(ARGV[A_NSTATS])
local holds_nothing = ARGV[A_HOLDS] == '1'
local nq = tonumber(ARGV[A_NQ])
local procs = ns .. ':procs:' .. worker   -- queues where this worker claimed (standalone)

local names, by_name = {}, {}
for i = 1, nq do
  names[i] = ARGV[A_QUEUES + i - 1]
  if not group_mode then by_name[names[i]] = qkeys(1 + (i - 1) * QBLOCK) end
end
local function queue_of(name)
  local q = by_name[name]
  if not q then   -- (mode 'q' names every queue it acks: broker.py checks)
    q = qkeys_of(ns, name, ns .. ':groups')
    by_name[name] = q
  end
  return q
end

-- settle ------------------------------------------------------------------------------
local tally = tallies()
local stale, a = settle(worker, A_QUEUES + nq, n_acks, queue_of, result_ttl, result_px, tally)
for _ = 1, n_stats do
  rcall('HINCRBY', queue_of(ARGV[a]).stats, ARGV[a + 1], ARGV[a + 2])
  a = a + 3
end

-- A worker that holds nothing has empty lists once its acks are settled: anything left there
-- was claimed in its name by a call whose reply it never got. Put it back (unless another
-- worker's claim owns it now), or it would sit "running" on a live worker for ever.
local strays = 0
if holds_nothing then
  local held = group_mode and rcall('SMEMBERS', procs) or names
  for _, name in ipairs(held) do
    local q = queue_of(name)
    local proc = proc_key(q, worker)
    local left = rcall('LRANGE', proc, 0, -1)
    if #left > 0 then
      local prefix = worker .. '|'
      local back = false
      for i = #left, 1, -1 do
        local id = left[i]
        local claim = rcall('HGET', q.run, id)
        if not claim or string.sub(claim, 1, #prefix) == prefix then
          rcall('HDEL', q.run, id)
          local body = rcall('HGET', q.tasks, id)
          local ttype, prio = nil, nil
          if body then ttype, prio = header(body, name) end
          if ttype and leased(claim) then
            release(q, name, ttype, concurrency_of(q, ttype))
          end
          if prio then
            rcall('LPUSH', ready_key(q, prio), id)
            strays = strays + 1
            back = true
          else
            bury_malformed(q, id, now_ms(), 'no readable task body for a claimed id')
          end
        end
      end
      rcall('DEL', proc)
      if back then wake(q) end
    end
  end
end

if max_tasks <= 0 then
  tally.flush()
  return reply_with_signals({{}, stale, -1, strays, {}})
end

-- claim -------------------------------------------------------------------------------
local now = now_ms()
local st = new_take(worker, max_tasks, tonumber(ARGV[A_PROMOTE]), now, tally)

if not group_mode then
  local gone, left = {}, false
  for _, name in ipairs(names) do
    local q = by_name[name]
    if room(st) then
      local before = st.n
      local got = take_from(st, q)
      if type(got) == 'table' then return got end   -- an error reply
      if st.n > before and q.direct then rcall('SADD', procs, name) end
      if got == 'left' then
        -- a worker may have been woken by this queue's token while claiming from an earlier
        -- queue, or took only part of it: leave a token so another worker wakes (the queue
        -- stays in the ready indexes: nothing here takes it out)
        wake_queue(q)
        left = true
      else
        gone[#gone + 1] = name
      end
    elseif rcall('EXISTS', unpack(q.ready)) > 0 and rcall('HGET', q.flow, 'paused') ~= '1' then
      -- Full before this queue: only leave a token where work is ready. No flow state or
      -- promotion: the claim that starts here, or a master, promotes.
      wake_queue(q)
      left = true
    end
  end
  tally.flush()
  if st.n > 0 or left then
    return reply_with_signals({st.claimed, stale, (st.n == 0 and left) and 0 or -1, strays,
                               gone})
  end
  -- Nothing to claim anywhere: tokens left in the wake lists are stale, and the caller will
  -- block on them until the earliest scheduled task is due.
  local due = -1
  for _, name in ipairs(names) do
    local q = by_name[name]
    rcall('DEL', q.wake)
    local paused = rcall('HGET', q.flow, 'paused') == '1'
    local d = paused and -1 or next_due(q, now)   -- (paused: the masters promote)
    if d >= 0 and (due < 0 or d < due) then due = d end
  end
  return reply_with_signals({st.claimed, stale, due, strays, gone})
end

-- mode 'g': the queues in line in the group's ready index
local index, group_wake = KEYS[1], KEYS[2]
local spec = rcall('HGET', ns .. ':groups', ARGV[A_GROUP]) or 'W'
local weighted = string.byte(spec, 1) ~= 83   -- 'S': strict
local excluded, n_excluded = {}, 0
for _, name in ipairs(names) do
  excluded[name] = true
  n_excluded = n_excluded + 1
end
local seen, visits, more = {}, 0, false
while room(st) do
  if visits >= MAX_VISITS then
    more = true
    break
  end
  local name = nil
  for _, c in ipairs(rcall('ZRANGE', index, 0, int(visits + n_excluded))) do
    if not seen[c] and not excluded[c] then
      name = c
      break
    end
  end
  if not name then break end
  seen[name] = true
  visits = visits + 1
  local q = queue_of(name)
  if rcall('EXISTS', q.prefix .. 'broken') == 1 then
    rcall('ZREM', index, name)   -- set aside until its repair puts it in line again
  else
    local before = st.n
    local fine, got = pcall(take_from, st, q)
    if not fine or type(got) == 'table' then
      -- a corrupt key (or a refusal): the error names the queue, so the worker can look at
      -- its keys and set it aside (an error code stays first: refusals are told apart)
      tally.flush()
      local err = type(got) == 'table' and (got.err or '?') or tostring(got)
      return redis.error_reply(err .. ' (TQQUEUE ' .. name .. ')')
    end
    if st.n > before then rcall('SADD', procs, name) end
    if got == 'left' then
      if weighted then
        local _, stride = indexes().match_rank(ns .. ':', ARGV[A_GROUP], spec, name)
        rcall('ZINCRBY', index, stride or STRIDE, name)
      end
    else
      rcall('ZREM', index, name)   -- drained or paused: back in line with its next ready task
    end
  end
end
tally.flush()
if rcall('ZCARD', index) > n_excluded then
  -- work left in line (another queue, or part of this one): wake another idle worker
  if rcall('LLEN', group_wake) == 0 then rcall('RPUSH', group_wake, '1') end
  if st.n == 0 then more = true end
elseif st.n == 0 then
  rcall('DEL', group_wake)   -- nothing in line: a token left there is stale
end
return {st.claimed, stale, (st.n == 0 and more) and 0 or -1, strays, {}}   -- (standalone only)
