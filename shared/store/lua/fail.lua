-- uses: _lib
--[[ fail: record a failed attempt of a claimed task, then schedule its retry or bury it.

  KEYS: queue block (29), the worker's processing list of this queue, the task's result key
  ARGV: queue, worker, id, token, kind, message, traceback, retry ('1'/'0'), delay_ms,
        default_max_retries, record TTL ms
  Returns: {outcome, failures, due_ms}: outcome 'retry' (due_ms: when), 'dead', 'cancelled'
           or 'stale'
  Fenced like ack. A task is retried while its failures <= max_retries, where max_retries
  is the task's own, else its handler's (from the policy hash), else the default. A dead
  workflow member's downstream members hear of it. Kind 'cancelled' (the handler stopped on
  a cancel request): the task ends cancelled, no attempt counted.
]]
local q = qkeys(1)
local queue, worker, id, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local kind, message, traceback = ARGV[5], ARGV[6], ARGV[7]
local retry, delay, default = ARGV[8] == '1', tonumber(ARGV[9]), ARGV[10]
local proc = KEYS[QBLOCK + 1]

local prefix = worker .. '|' .. token .. '|'
local claim = rcall('HGET', q.run, id)
if not claim or string.sub(claim, 1, #prefix) ~= prefix then return {'stale', 0, 0} end

local now = now_ms()
rcall('HDEL', q.run, id)
rcall('LREM', proc, 1, id)
if kind == 'cancelled' then
  local body = rcall('HGET', q.tasks, id)
  local ttype = body and header(body, queue) or nil
  if ttype and leased(claim) then release(q, queue, ttype, concurrency_of(q, ttype)) end
  local failures = tonumber(rcall('HGET', q.fails, id)) or 0
  cancel_task(q, queue, id, ttype, KEYS[QBLOCK + 2], tonumber(ARGV[11]) or 0, now, failures + 1)
  return reply_with_signals({'cancelled', failures, 0})
end
local failures = rcall('HINCRBY', q.fails, id, 1)
if traceback == '' then traceback = nil end
record_error(q, id, kind, message, traceback, now, worker)

local body = rcall('HGET', q.tasks, id)
local ttype, _, m = nil, nil, nil
if body then ttype, _, m = header(body, queue) end
if ttype and leased(claim) then release(q, queue, ttype, concurrency_of(q, ttype)) end
ttype = ttype or '?'
count(q, ttype, 'failed')
-- refused by payload protection (shared/protect.py): counted for /metrics
if kind == 'bad_signature' or kind == 'cannot_decrypt' then count(q, ttype, 'rejected') end
if retry and body and failures <= max_retries(q, ttype, m, default) then
  local due = now + delay
  local first = rcall('ZRANGE', q.sched, 0, 0, 'WITHSCORES')
  rcall('ZADD', q.sched, due, id)
  if not first[2] or due < tonumber(first[2]) then schedule_moved(q, due) end
  count(q, ttype, 'retried')
  return reply_with_signals({'retry', failures, due})
end
if not body then rcall('HSET', q.tasks, id, '') end
rcall('ZADD', q.dead, now, id)
count(q, ttype, 'dead')
notify(q, id, 'dead')
member_dead(q, queue, id, kind, message, now)
return reply_with_signals({'dead', failures, 0})
