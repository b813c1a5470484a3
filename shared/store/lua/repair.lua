-- uses: _lib
--[[ repair: re-index a queue from its task bodies, once its corrupt keys were moved aside.

  KEYS: queue block (29), the queue's broken mark, then n_live processing lists of workers
        that are registered, then the processing lists of workers that are gone
  ARGV: queue, n_live
  Returns: {restored, buried}
  Every stored task that no ready list, schedule, dead-letter set or live worker's list
  refers to is pushed back to the tail of its ready list: a script cut short by the
  corruption may have popped it and lost its place. Lists of workers that are gone are
  requeued the same way (no attempt counted: nobody knows which of them ran) and deleted.
  A body that cannot be read is dead-lettered as malformed. Then the mark is cleared, and
  workers and masters take the queue up again. Loads every id of the queue: for a queue of
  millions of tasks this blocks Redis for seconds, once, as an operator's repair.
]]
local q = qkeys(1)
local queue, n_live = ARGV[1], tonumber(ARGV[2])
local refs = {}
local function add(ids)
  for _, id in ipairs(ids) do refs[id] = true end
end
for i = 1, 10 do add(rcall('LRANGE', q.ready[i], 0, -1)) end
add(rcall('ZRANGE', q.sched, 0, -1))
add(rcall('ZRANGE', q.dead, 0, -1))
for _, member in ipairs(rcall('ZRANGE', q.held, 0, -1)) do   -- "type\0id"
  local sep = string.find(member, '\0', 1, true)
  if sep then refs[string.sub(member, sep + 1)] = true end
end
for i = 1, n_live do add(rcall('LRANGE', KEYS[QBLOCK + 1 + i], 0, -1)) end
for _, f in ipairs(rcall('HKEYS', q.wf)) do   -- workflow members waiting for their upstream
  if string.sub(f, 1, 2) == 'd:' then refs[string.sub(f, 3)] = true end
end
for i = QBLOCK + 2 + n_live, #KEYS do rcall('DEL', KEYS[i]) end

local now = now_ms()
local restored, buried = 0, 0
local ids = rcall('HKEYS', q.tasks)
for start = 1, #ids, 500 do
  local chunk = {}
  for i = start, math.min(start + 499, #ids) do
    if not refs[ids[i]] then chunk[#chunk + 1] = ids[i] end
  end
  if #chunk > 0 then
    local bodies = rcall('HMGET', q.tasks, unpack(chunk))
    for i, id in ipairs(chunk) do
      rcall('HDEL', q.run, id)
      local _, prio = nil, nil
      if bodies[i] then _, prio = header(bodies[i], queue) end
      if prio then
        rcall('RPUSH', ready_key(q, prio), id)
        restored = restored + 1
      else
        bury_malformed(q, id, now, 'unreadable task body (found by repair)')
        buried = buried + 1
      end
    end
  end
end
-- Concurrency leases, counted again from the claims that hold one (a corruption may have
-- cut a script short between a claim's end and its lease's release).
local leases = {}
local run = rcall('HGETALL', q.run)
for i = 1, #run, 2 do
  if leased(run[i + 1]) then
    local body = rcall('HGET', q.tasks, run[i])
    local ttype = body and header(body, queue)
    if ttype then leases[ttype] = (leases[ttype] or 0) + 1 end
  end
end
for _, f in ipairs(rcall('HKEYS', q.flow)) do
  if string.sub(f, 1, 4) == 'run:' and not leases[string.sub(f, 5)] then rcall('HDEL', q.flow, f) end
end
for ttype, c in pairs(leases) do rcall('HSET', q.flow, 'run:' .. ttype, c) end
rcall('DEL', KEYS[QBLOCK + 1])
if restored > 0 then wake(q) end
schedule_changed(q)   -- the schedule may be new: let the masters read it again
return reply_with_signals({restored, buried})
