-- uses: _lib
--[[ dead: retry or delete dead-lettered tasks of one queue.

  KEYS: queue block (29)
  ARGV: queue, op ('retry' | 'delete'), limit, offset, ids...
        (no ids: up to `limit` dead tasks, oldest first, from position `offset`)
  Returns: {done, kept}: tasks retried or deleted, and tasks left dead because they can
           never run (a malformed dead letter stays dead on retry: only delete removes it)
  Retry resets the failure count and puts the task at the tail of its ready list.
]]
local q = qkeys(1)
local queue, op = ARGV[1], ARGV[2]
local limit, offset = tonumber(ARGV[3]), tonumber(ARGV[4])
local ids = {}
if #ARGV > 4 then
  for i = 5, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = rcall('ZRANGE', q.dead, offset, offset + limit - 1)
end
local done, kept = 0, 0
for _, id in ipairs(ids) do
  if rcall('ZSCORE', q.dead, id) then
    if op == 'delete' then
      rcall('ZREM', q.dead, id)
      rcall('HDEL', q.tasks, id)
      rcall('HDEL', q.fails, id, id .. ':k')
      rcall('HDEL', q.errors, id)
      rcall('HDEL', q.waiters, id)
      done = done + 1
    else
      local body = rcall('HGET', q.tasks, id)
      local prio = nil
      if body then prio = select(2, header(body, queue)) end
      if prio then
        rcall('ZREM', q.dead, id)
        rcall('HDEL', q.fails, id, id .. ':k')
        rcall('HDEL', q.errors, id)
        rcall('RPUSH', ready_key(q, prio), id)
        done = done + 1
      else
        kept = kept + 1
      end
    end
  end
end
if op == 'retry' and done > 0 then wake(q) end
return reply_with_signals({done, kept})
