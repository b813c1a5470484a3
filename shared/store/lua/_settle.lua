--[[ Settling a worker's finished tasks (acks) inside claim.lua: a part, prepended by scripts.py
  to the scripts that say `-- uses: ..., _settle`. Needs _lib.

  An ack applies only if the task's claim in `run` is still this worker's with this token
  (fenced), so a worker that stalled while its task was requeued cannot ack it away.
]]
-- An ack in ARGV: six fields from its first one, `at`.
local ACK_QUEUE, ACK_ID, ACK_TOKEN, ACK_TYPE, ACK_FLAGS, ACK_RECORD, ACK_SIZE = 0, 1, 2, 3, 4, 5, 6
local DONE_KEEP = 1000   -- ids in each queue's list of recently finished tasks (+100)

-- Counters of the call, flushed once: counts[q][type .. ':' .. event] = n.
local function tallies()
  local counts, fields = {}, {}
  local t = {}
  function t.add(q, ttype, event, n)
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
    local c = counts[q]
    if not c then
      c = {}
      counts[q] = c
    end
    c[f] = (c[f] or 0) + (n or 1)
  end
  function t.flush()
    for q, c in pairs(counts) do
      for f, n in pairs(c) do rcall('HINCRBY', q.stats, f, int(n)) end
    end
  end
  return t
end

-- Settle the acks of one queue: `ats` are their first ARGV positions, in claim order.
-- Returns the ids whose ack the fence refused.
local function settle_queue(q, worker, ats, result_ttl, result_px, tally, stale)
  local ids = {}
  for i, at in ipairs(ats) do ids[i] = ARGV[at + ACK_ID] end
  local claims = rcall('HMGET', q.run, unpack(ids))
  local ok, ok_at, failed, leases, members = {}, {}, {}, {}, {}
  local mine = worker .. '|'
  for i, id in ipairs(ids) do
    local claim = claims[i]
    local at = ats[i]
    -- the claim is "worker|token|started": this worker's, with this token
    local prefix = mine .. ARGV[at + ACK_TOKEN] .. '|'
    if claim and string.sub(claim, 1, #prefix) == prefix then
      ok[#ok + 1] = id
      ok_at[#ok_at + 1] = at
      local flags = ARGV[at + ACK_FLAGS]
      if flags == '1' or flags == '3' then failed[#failed + 1] = id end
      if flags == '2' or flags == '3' then members[#members + 1] = #ok end
      if leased(claim) then leases[#leases + 1] = ARGV[at + ACK_TYPE] end
    else
      stale[#stale + 1] = id
    end
  end
  if #ok == 0 then return end
  rcall('HDEL', q.run, unpack(ok))
  rcall('HDEL', q.tasks, unpack(ok))
  if #leases > 0 then   -- concurrency leases of the finished tasks, back to their types
    local limits = {}
    for _, ttype in ipairs(leases) do
      if limits[ttype] == nil then limits[ttype] = concurrency_of(q, ttype) or false end
      release(q, q.name, ttype, limits[ttype] or nil)
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
      local record = ARGV[ok_at[i] + ACK_RECORD]
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
  local proc = proc_key(q, worker)
  local head = rcall('LRANGE', proc, '0', int(#ok - 1))
  local in_order = #head == #ok
  for i = 1, #ok do
    if head[i] ~= ok[i] then in_order = false break end
  end
  if in_order then
    rcall('LTRIM', proc, int(#ok), '-1')
  else
    for _, id in ipairs(ok) do rcall('LREM', proc, 1, id) end
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
    local at = ok_at[i]
    if result_ttl > 0 then
      rcall('SET', result_key(q, id), records[i] or ARGV[at + ACK_RECORD], 'PX', result_px)
    end
    if waiting[i] then notify(q, id, 'succeeded') end
    local ttype = ARGV[at + ACK_TYPE]
    by_type[ttype] = (by_type[ttype] or 0) + 1
  end
  for ttype, c in pairs(by_type) do tally.add(q, ttype, 'succeeded', c) end
  -- workflow members (the worker says which): their downstream members hear of the
  -- result in this same call, so no crash can lose or double that step
  if #members > 0 then
    local t = now_ms()
    for _, i in ipairs(members) do
      node_done(q, q.name, ok[i], 'ok', node_value(q.name, ok[i],
                records[i] or ARGV[ok_at[i] + ACK_RECORD]), t)
    end
  end
end

-- Settle `n_acks` acks from ARGV[first] on, grouped by queue (each group costs a fixed number
-- of calls plus one SET per ack); queue_of(name) gives a queue's keys. Returns the refused
-- ids and the ARGV position after the acks.
local function settle(worker, first, n_acks, queue_of, result_ttl, result_px, tally)
  local stale = {}
  local order, groups = {}, {}
  local a = first
  for _ = 1, n_acks do
    local name = ARGV[a + ACK_QUEUE]
    local g = groups[name]
    if not g then
      g = {}
      groups[name] = g
      order[#order + 1] = name
    end
    g[#g + 1] = a
    a = a + ACK_SIZE
  end
  for _, name in ipairs(order) do
    settle_queue(queue_of(name), worker, groups[name], result_ttl, result_px, tally, stale)
  end
  return stale, a
end
