-- uses: _lib
--[[ cancel: take a waiting task (ready, scheduled, held for a concurrency lease, or a
  workflow member waiting for its upstream) out of its queue for good, and keep a
  "cancelled" record where its result would go; or ask for a running task's interruption.

  KEYS: queue block (29), the task's result key
  ARGV: queue, id, record TTL ms
  Returns: 'cancelled', 'cancelling' (a worker runs it: its claim is marked '|x' and the
           master running it interrupts it,
           see supervisor/cancels.py; it ends cancelled unless it finishes first), 'finished'
           (succeeded, dead or already cancelled), or 'unknown'.
  No attempt is counted; waiters are told (their wait ends with tq.TaskCancelled); downstream
  workflow members hear of it (see node_done).
]]
local q = qkeys(1)
local queue, id, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local body = rcall('HGET', q.tasks, id)
if not body then
  if rcall('EXISTS', KEYS[QBLOCK + 1]) == 1 then return 'finished' end
  return 'unknown'
end
if rcall('ZSCORE', q.dead, id) then return 'finished' end
local now = now_ms()
local claim = rcall('HGET', q.run, id)
if claim then   -- marked on its claim ('|x'): gone with the claim, however the run ends
  if string.sub(claim, -2) ~= '|x' then rcall('HSET', q.run, id, claim .. '|x') end
  soon(q)   -- wakes the masters at once (they look for cancel requests of their children)
  return 'cancelling'
end
local ttype, prio = header(body, queue)
local gone = rcall('ZREM', q.sched, id)
if gone == 0 and prio then gone = rcall('LREM', ready_key(q, prio), 1, id) end
if gone == 0 and ttype then gone = rcall('ZREM', q.held, ttype .. '\0' .. id) end
if gone == 0 and not rcall('HGET', q.wf, 'd:' .. id) then
  -- in no list tq knows of (a script cut short): look in every ready list
  for lvl = 1, 10 do
    gone = rcall('LREM', q.ready[lvl], 1, id)
    if gone > 0 then break end
  end
end
cancel_task(q, queue, id, ttype, KEYS[QBLOCK + 1], ttl, now, 0)
return 'cancelled'
