-- uses: _lib
--[[ sched: act on scheduled tasks (delayed ones and retries waiting for their time), by id.

  KEYS: queue block (29)
  ARGV: queue, op ('now' | 'delete'), then the ids
  Returns: how many of the ids were scheduled and acted on (others are skipped: they ran,
           were deleted, or never were scheduled).
  now:    the task becomes ready at once, at its priority, its attempts so far kept
          (scored 0, the earliest possible, then promoted like a due task).
  delete: the task is deleted with its failure count and last error; waiters are told.
]]
local q = qkeys(1)
local queue, op = ARGV[1], ARGV[2]
local n = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  if rcall('ZSCORE', q.sched, id) then
    n = n + 1
    if op == 'now' then
      rcall('ZADD', q.sched, 0, id)
    else
      rcall('ZREM', q.sched, id)
      rcall('HDEL', q.tasks, id)
      rcall('HDEL', q.fails, id, id .. ':k')
      rcall('HDEL', q.errors, id)
      notify(q, id, 'deleted')
    end
  end
end
if op == 'now' and n > 0 then
  local now = now_ms()
  if promote(q, queue, now, n) > 0 then wake(q) end
  pcall(schedule_changed, q)   -- the earliest due time changed: tell the masters
end
return n
