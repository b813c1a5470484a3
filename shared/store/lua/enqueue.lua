-- uses: _lib
--[[ enqueue: store bodies and make tasks ready or scheduled, for one queue.

  KEYS: tasks, sched, wake, stats, soon, groups (standalone: ns:groups; cluster: ns:{Q}:groups,
        see _lib's finish_q), then the ready lists the batch uses, then one unique-lock key
        per task that has uniq_ttl_ms, in order
  ARGV: n, then n x (id, body, ready key index, delay_ms, eta_ms, uniq_ttl_ms, type)
        (ready key index: position in KEYS; delay_ms / eta_ms / uniq_ttl_ms are '' when
        unused; eta_ms is absolute Unix ms)
  Returns: n ids, in order: the new id, the id holding the unique lock (a duplicate), or ''
           when the id was already taken by another task (the caller retries that task
           with a fresh id). A repeated call (same id and body) returns the id again.
           One more element, '+', when an enqueued counter of the batch started from zero:
           the queue is new, or an idle master forgot it (drop.lua deletes its stats), or the
           type is new to it; the caller adds the queue to the queue set (again).
           On a cluster, what the global indexes must learn (see _lib's SIG) follows.
  Due-ness uses Redis' clock: delay_ms counts from Redis TIME, not from the producer's clock.
  This is the producer's hot path, so it only reads the clock and the schedule when a task
  of the batch is delayed.
]]
local tasks, sched, stats = KEYS[1], KEYS[2], KEYS[4]   -- (KEYS[5] is no longer used)
local n = tonumber(ARGV[1])
local now, earliest = nil, nil
local out = {}
local counts = {}
local pushed, woke_schedule = false, false
-- task i's fields start at ARGV[2 + (i - 1) * 7]
local delayed = false
local lock = 6   -- unique-lock keys follow the last ready key
for i = 0, n - 1 do
  local a = 2 + i * 7
  if ARGV[a + 3] ~= '' or ARGV[a + 4] ~= '' then delayed = true end
  local idx = tonumber(ARGV[a + 2])
  if idx > lock then lock = idx end
end
lock = lock + 1
-- A key of the wrong type (a mistaken write) would fail this script half-way, with some tasks
-- stored and others not. Check the keys it writes first: then it is all or nothing, and the
-- caller is told which key is corrupt (TQBROKEN). Bookkeeping at the end uses pcall instead.
local function wrong(key, want)
  local t = rcall('TYPE', key)['ok']
  if t ~= 'none' and t ~= want then return key .. ' is a ' .. t .. ', not a ' .. want end
end
-- One ready task (enqueue one at a time, the usual call; ARGV[7] is its unique-lock ttl)
-- writes its body, then pushes its id: a refused push takes the body back, so it needs no
-- look at the key types first.
local single = n == 1 and not delayed and ARGV[7] == ''
if not single then
  local bad = wrong(tasks, 'hash') or (delayed and wrong(sched, 'zset'))
  for k = 7, lock - 1 do bad = bad or wrong(KEYS[k], 'list') end
  if bad then return redis.error_reply('TQBROKEN ' .. bad) end
end
-- A write of the body or the id: its reply, or nil and the error reply to end with (single:
-- a refusal is explained here, TQBROKEN naming the key, any other, such as OOM, as it is).
local function write(cmd, key, want, ...)
  if not single then return rcall(cmd, key, ...) end
  local reply = redis.pcall(cmd, key, ...)
  if type(reply) == 'table' and reply.err then
    local bad = wrong(key, want)
    return nil, bad and redis.error_reply('TQBROKEN ' .. bad) or reply
  end
  return reply
end
if delayed then
  now = now_ms()
  local first = rcall('ZRANGE', sched, 0, 0, 'WITHSCORES')
  earliest = tonumber(first[2])
end

for i = 0, n - 1 do
  local a = 2 + i * 7
  local id, body, ready = ARGV[a], ARGV[a + 1], KEYS[tonumber(ARGV[a + 2])]
  local delay, eta, uniq_ttl, ttype = ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]
  local holder = false
  local lock_key = nil
  if uniq_ttl ~= '' then
    lock_key = KEYS[lock]
    lock = lock + 1
    holder = rcall('GET', lock_key)
  end
  local stored, err
  if not holder then
    stored, err = write('HSETNX', tasks, 'hash', id, body)
    if err then return err end
  end
  if holder then
    out[#out + 1] = holder
  elseif stored == 0 then
    -- The same id and body: this call is a repeat of one whose reply was lost (the client
    -- retries after a connection error), so the task is already here. Else a collision.
    out[#out + 1] = rcall('HGET', tasks, id) == body and id or ''
  else
    if lock_key then rcall('SET', lock_key, id, 'PX', uniq_ttl) end
    local due = nil
    if delay ~= '' then due = now + tonumber(delay) elseif eta ~= '' then due = tonumber(eta) end
    if due and due > now then
      rcall('ZADD', sched, due, id)
      if not earliest or due < earliest then
        earliest = due
        woke_schedule = true
      end
    else
      -- A ready list that was empty may have workers blocked on the queue's wake list: it
      -- gets them a token. One that was not has its token already, or a worker that will
      -- claim it (claim.lua leaves a token when it takes only part of what is ready).
      local len
      len, err = write('RPUSH', ready, 'list', id)
      if err then
        rcall('HDEL', tasks, id)   -- (single: the body just written)
        return err
      end
      if len == 1 then pushed = true end
    end
    counts[ttype] = (counts[ttype] or 0) + 1
    out[#out + 1] = id
  end
end

-- Counters and wake-ups: a corrupt one must not fail a batch that is stored (the workers'
-- scripts find it and set the queue aside), hence pcall.
-- A counter that starts from zero (its queue is new, or was forgotten and its stats hash
-- deleted; or the type is new to the queue) asks the caller to (re)register the queue name.
local fresh = false
for ttype, c in pairs(counts) do
  if redis.pcall('HINCRBY', stats, ttype .. ':enqueued', int(c)) == c then fresh = true end
end
if fresh then out[#out + 1] = '+' end
-- (The usual call wakes no one: its queue has work, and a token or a worker that will claim
-- it. The helpers are made only when one is needed, see _lib's indexes.)
if woke_schedule or pushed then
  local q = finish_q({tasks = tasks, sched = sched, stats = stats, groups = KEYS[6]})
  q.wake = KEYS[3]
  if woke_schedule then pcall(indexes().schedule_moved, q, earliest) end
  if pushed then pcall(indexes().wake, q) end
  if SIG then return indexes().reply(out) end
end
return out
