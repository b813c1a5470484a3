-- uses: _lib
--[[ repair: re-index a queue from its task bodies, once its corrupt keys were moved aside.

  KEYS: queue block (24), the queue's broken mark, then n_live processing lists of workers
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
for i = 1, n_live do add(rcall('LRANGE', KEYS[QBLOCK + 1 + i], 0, -1)) end
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
rcall('DEL', KEYS[QBLOCK + 1])
if restored > 0 then wake(q) end
schedule_moved(q.wake, q.soon)   -- the schedule may be new: let the master read it again
return {restored, buried}
