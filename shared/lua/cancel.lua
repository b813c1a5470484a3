-- uses: _lib
--[[ cancel: take a waiting task (ready, scheduled or held for a concurrency lease) out of its
  queue for good, and keep a "cancelled" record where its result would go.

  KEYS: queue block (26), the task's result key
  ARGV: queue, id, record TTL ms
  Returns: 'cancelled', 'running' (claimed by a worker: not cancelled here), 'finished'
           (succeeded, dead or already cancelled), or 'unknown'.
  No attempt is counted; waiters are told (their wait ends with tq.TaskCancelled).
]]
local q = qkeys(1)
local queue, id, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local body = rcall('HGET', q.tasks, id)
if not body then
  if rcall('EXISTS', KEYS[QBLOCK + 1]) == 1 then return 'finished' end
  return 'unknown'
end
if rcall('HEXISTS', q.run, id) == 1 then return 'running' end
if rcall('ZSCORE', q.dead, id) then return 'finished' end
local ttype, prio = header(body, queue)
local gone = rcall('ZREM', q.sched, id)
if gone == 0 and prio then gone = rcall('LREM', ready_key(q, prio), 1, id) end
if gone == 0 and ttype then gone = rcall('ZREM', q.held, ttype .. '\0' .. id) end
if gone == 0 then   -- in no list tq knows of (a script cut short): look in every ready list
  for lvl = 1, 10 do
    gone = rcall('LREM', q.ready[lvl], 1, id)
    if gone > 0 then break end
  end
end
rcall('HDEL', q.tasks, id)
rcall('HDEL', q.fails, id, id .. ':k')
rcall('HDEL', q.errors, id)
rcall('HDEL', q.flow, 'dfr:' .. id)
local record = cjson.encode({s = 'cancelled', t = ttype or queue, a = 0, f = now_ms()})
rcall('SET', KEYS[QBLOCK + 1], record, 'PX', math.max(ttl, 1000))
count(q, ttype or '?', 'cancelled')
notify(q, id, 'cancelled')
return 'cancelled'
