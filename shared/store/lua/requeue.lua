-- uses: _lib
--[[ requeue: give back everything a worker holds in one queue, to the front of its ready list.

  KEYS: queue block (29), the worker's processing list of this queue, the result key of
        running_id (when given)
  ARGV: queue, mode, running_id, kind, message, default_max_retries, killed ('1'/'0'),
        max_kills, record TTL ms
    mode 'none': nothing is counted (prefetched tasks, a graceful drain, a lost connection)
    mode 'head': the first claimed task was running: it counts a failed attempt (a worker
                 that died, found without its master's knowledge of what ran)
    mode 'id':   running_id was running: it counts a failed attempt
    killed '1': the counted task's run ended in the death of its worker (a crash, not a time
                limit or a lost host): that is counted too, in the fails hash under 'ID:k'
  Returns: {requeued, dead ids}
  A counted task over its max_retries is dead-lettered instead, so a task that kills every
  worker that touches it ends in the dead-letter queue rather than in a crash loop; one that
  killed max_kills workers is dead-lettered with kind 'killed-worker' whatever its retries.
  Kind 'cancelled' (mode 'id'): the running task was stopped on a cancel request; it ends
  cancelled, no attempt counted. A dead workflow member's downstream members hear of it.
  The processing list is deleted in the same call: two reapers cannot requeue a task twice.
]]
local q = qkeys(1)
local queue, mode, running, kind, message, default =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local killed, max_kills = ARGV[7] == '1', tonumber(ARGV[8] or '0') or 0
local proc = KEYS[QBLOCK + 1]
local ids = rcall('LRANGE', proc, 0, -1)
if #ids == 0 then return {0, {}} end

local now = now_ms()
local requeued, dead = 0, {}
for i = #ids, 1, -1 do
  local id = ids[i]
  local claim = rcall('HGET', q.run, id)
  rcall('HDEL', q.run, id)
  local body = rcall('HGET', q.tasks, id)
  local ttype, prio, m = nil, nil, nil
  if body then ttype, prio, m = header(body, queue) end
  if ttype and leased(claim) then release(q, queue, ttype, concurrency_of(q, ttype)) end
  if not ttype then
    bury_malformed(q, id, now, body and 'unreadable task body' or 'no task body for a claimed id')
  else
    local counted = (mode == 'head' and i == 1) or (mode == 'id' and id == running)
    local buried = false
    if counted and kind == 'cancelled' then
      local failures = tonumber(rcall('HGET', q.fails, id)) or 0
      cancel_task(q, queue, id, ttype, KEYS[QBLOCK + 2], tonumber(ARGV[9]) or 0, now,
                  failures + 1)
      buried = true
    elseif counted then
      local failures = rcall('HINCRBY', q.fails, id, 1)
      local w = claim and string.match(claim, '^(.-)|') or nil
      local k, why = kind, message
      local kills = 0
      if killed then kills = rcall('HINCRBY', q.fails, id .. ':k', 1) end
      if killed and max_kills > 0 and kills >= max_kills then
        k = 'killed-worker'
        why = 'killed ' .. kills .. ' workers (poison task), the last one: ' .. message
      end
      record_error(q, id, k, why, nil, now, w)
      count(q, ttype, 'failed')
      if k == 'killed-worker' or failures > max_retries(q, ttype, m, default) then
        rcall('ZADD', q.dead, now, id)
        count(q, ttype, 'dead')
        notify(q, id, 'dead')
        dead[#dead + 1] = id
        buried = true
        member_dead(q, queue, id, k, why, now)
      else
        count(q, ttype, 'retried')
      end
    end
    if not buried then
      rcall('LPUSH', ready_key(q, prio), id)
      requeued = requeued + 1
    end
  end
end
rcall('DEL', proc)
if requeued > 0 then wake(q) end
return reply_with_signals({requeued, dead})
