-- uses: _lib
--[[ dead: retry or delete dead-lettered tasks of one queue.

  KEYS: queue block (22)
  ARGV: queue, op ('retry' | 'delete'), limit, ids...   (no ids: the oldest `limit` dead tasks)
  Returns: number of tasks retried or deleted
  Retry resets the failure count and puts the task at the tail of its ready list.
]]
local q = qkeys(1)
local queue, op, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ids = {}
if #ARGV > 3 then
  for i = 4, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = rcall('ZRANGE', q.dead, 0, limit - 1)
end
local done, pushed = 0, false
for _, id in ipairs(ids) do
  if rcall('ZREM', q.dead, id) == 1 then
    done = done + 1
    rcall('HDEL', q.fails, id)
    rcall('HDEL', q.errors, id)
    local body = rcall('HGET', q.tasks, id)
    local _, prio = nil, nil
    if body then _, prio = header(body, queue) end
    if op == 'retry' and prio then
      rcall('RPUSH', ready_key(q, prio), id)
      pushed = true
    else
      -- deleting, or retrying something that can never run (malformed): it goes for good
      rcall('HDEL', q.tasks, id)
      rcall('HDEL', q.waiters, id)
    end
  end
end
if pushed then wake(q) end
return done
