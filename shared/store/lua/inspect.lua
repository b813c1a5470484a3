-- uses: _lib
--[[ inspect: one consistent snapshot of a task, optionally registering a waiter.

  KEYS: queue block (29), the task's result key
  ARGV: id, watch ('1': if the task is not finished, register a waiter)
  Returns: {body, claim, failures, error, sched_score, dead_score, result, last_event_id,
            waiting}
  (false where absent; last_event_id only when a waiter was registered: read events after it;
  waiting: how many upstream workflow members it still waits for)
]]
local q = qkeys(1)
local id = ARGV[1]
local body = rcall('HGET', q.tasks, id)
local result = rcall('GET', KEYS[QBLOCK + 1])
local dead = rcall('ZSCORE', q.dead, id)
local last = false
if ARGV[2] == '1' and body and not dead then
  rcall('HSET', q.waiters, id, '1')
  local ev = rcall('XREVRANGE', q.events, '+', '-', 'COUNT', 1)
  last = ev[1] and ev[1][1] or '0-0'
end
return {body, rcall('HGET', q.run, id), rcall('HGET', q.fails, id), rcall('HGET', q.errors, id),
        rcall('ZSCORE', q.sched, id), dead, result, last,
        rcall('HGET', q.wf, 'd:' .. id)}
