--[[ Taking ready tasks of one queue for a worker: a part of claim.lua, prepended by scripts.py
  to the scripts that say `-- uses: ..., _take`. Needs _lib and _admit.

  Priorities 9..0 within a queue, FIFO within a level; due scheduled tasks are promoted first
  (claims that name their queues: a due retry is claimable in the same call; a group's claims
  leave it to the masters, who promote from their agenda on time).
]]
local MAX_BURY = 1000   -- malformed entries buried (or limited tasks set aside) per call

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

-- A claim in progress: what it took so far (st.claimed: flat queue name, id, token, body,
-- failures per task; st.n tasks) and its limits.
local function new_take(worker, max_tasks, promote_limit, now, tally)
  return {worker = worker, mine = worker .. '|', started = '|' .. now, now = now,
          max_tasks = max_tasks, promote_limit = promote_limit, tally = tally,
          claimed = {}, n = 0, buried = 0, set_aside = 0}
end

-- Has the claim room for more (tasks, and burials or set-asides)?
local function room(st)
  return st.n < st.max_tasks and st.buried + st.set_aside < MAX_BURY
end

-- Claim from q until the claim is full, q is empty or the burial cap is reached. Returns
-- 'paused', 'drained' (no ready task left), 'left' (ready tasks left), or an error reply to
-- end the script with (a corrupt tasks hash).
local function take_from(st, q)
  local is_paused, limits = flow_of(q)
  if is_paused then return 'paused' end
  local queue, now, tally = q.name, st.now, st.tally
  if st.promote_limit > 0 then promote(q, queue, now, st.promote_limit) end
  local leased_now, held_now = {}, {}   -- types of concurrency limits: leased / held here
  local drained = false
  -- Malformed entries do not count against max_tasks: pop on until enough good tasks (or the
  -- queue is empty), but bury (or set aside) at most MAX_BURY per call so one call stays short.
  while room(st) do
    local want = st.max_tasks - st.n
    local ids, from = pop(q, want)
    if #ids < want then drained = true end
    if #ids == 0 then break end
    local bodies = redis.pcall('HMGET', q.tasks, unpack(ids))
    if bodies.err then
      unpop(from)
      return redis.error_reply(bodies.err)
    end
    local good, runs, by_type = {}, {}, {}   -- (by_type: starts, tallied once per type)
    local base = rcall('INCR', q.seq) .. '.'
    local claimed = st.claimed
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
        st.buried = st.buried + 1
      elseif verdict ~= 'run' then
        st.set_aside = st.set_aside + 1
        tally.add(q, ttype, 'throttled')
      else
        local token = base .. int(i)
        good[#good + 1] = id
        runs[#runs + 1] = id
        runs[#runs + 1] = st.mine .. token .. st.started .. (lease and '|c' or '')
        local c = #claimed
        claimed[c + 1] = queue
        claimed[c + 2] = id
        claimed[c + 3] = token
        claimed[c + 4] = body
        claimed[c + 5] = 0   -- failures, filled in below
        by_type[ttype] = (by_type[ttype] or 0) + 1
      end
    end
    for ttype, c in pairs(by_type) do tally.add(q, ttype, 'started', c) end
    if #good > 0 then
      rcall('RPUSH', proc_key(q, st.worker), unpack(good))
      rcall('HSET', q.run, unpack(runs))
      -- failed attempts so far: usually there are none in the whole queue (one O(1) call)
      if rcall('HLEN', q.fails) > 0 then
        local fails = rcall('HMGET', q.fails, unpack(good))
        local first = #claimed - 5 * #good
        for i = 1, #good do
          if fails[i] then claimed[first + 5 * i] = tonumber(fails[i]) or 0 end
        end
      end
      st.n = st.n + #good
    end
    if drained then break end
  end
  -- Tasks held by this call while leases are free (a claim takes only a share, see admit):
  -- back to the front of the queue for the other workers.
  for ttype, lim in pairs(held_now) do refill(q, queue, ttype, tonumber(lim.c)) end
  if drained and not next(held_now) then return 'drained' end   -- (nothing pushed back)
  if rcall('EXISTS', unpack(q.ready)) == 0 then return 'drained' end
  return 'left'
end
