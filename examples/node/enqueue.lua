--[[ Shared helpers, prepended by scripts.py to every script that says `-- uses: _lib`.

  Every queue script receives its queue's keys as one block of KEYS (see qkeys); keys that
  depend on a task or a worker (results, unique locks, processing lists) are named from the
  block's prefix, in the same {hash tag}, so each script stays in the slot of its queue.

  The indexes that make claims cost with the work, not with the number of queues (the ready
  index of each consumer group, the masters' agenda: see shared/store/keys.py) are global.
  On a standalone Redis the scripts keep them in the same call (q.direct); on a Redis Cluster
  they live in another slot, so a script only notes what changed (SIG) and its reply carries
  that to the caller, which applies it (index.lua): see scripts.py.
]]
local rcall = redis.call
-- Globals read once into locals (a global is a table lookup at every use; the hot scripts use
-- these per task).
local KEYS, ARGV = KEYS, ARGV
local string, tonumber, unpack, ipairs, pairs, type = string, tonumber, unpack, ipairs, pairs, type
-- Redis < 5 replicated scripts verbatim, which forbids writes after TIME; 5+ replicates effects.
pcall(redis.replicate_commands)

-- What this call changed in the global indexes, on a cluster (nil: nothing): ready = the
-- queue got ready work, due = the earliest time it needs a master (ms). Returned to the
-- caller with the reply (scripts.py wraps every script: reply_with_signals).
local SIG = nil

-- q.prefix ("ns:{Q}:"), the namespace and the queue name, read off its tasks key; direct:
-- the groups hash (the global indexes) is reachable from this call (standalone Redis). On a
-- cluster the caller passes a key of the queue's own slot instead ("ns:{Q}:groups").
local function finish_q(q)
  q.prefix = string.sub(q.tasks, 1, -6)
  -- (a queue name has no braces; plain finds: a pattern with '.-' costs more than the enqueue
  -- it serves)
  q.name = string.match(q.prefix, '{([^{}]*)}:$')
  q.ns = string.sub(q.prefix, 1, -(#q.name + 5))
  q.direct = not string.find(q.groups, '}', 1, true)
  return q
end

local function now_ms()
  local t = rcall('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function int(n) return string.format('%d', n) end

-- The global indexes' helpers (consumer groups' ready indexes, the masters' agenda), made the
-- first time a call needs them: most calls do not, and Redis runs a script's whole text on
-- every call (each `local function` a closure for the collector).
local IDX = nil
local function indexes()
  if IDX then return IDX end
  IDX = {}

  -- Consumer groups (shared/store/groups.py): the groups hash maps a group id to its spec,
  -- "W" (weighted) or "S" (strict), "\n=" when it names plain queues (in its gnames hash:
  -- name -> "rank<TAB>stride"), then a line per glob: "rank<TAB>stride<TAB>lua pattern".
  -- The rank of the first of its patterns a queue matches, and its stride; nil when it does
  -- not consume it.
  function IDX.match_rank(g, gid, spec, name)
    local rank, stride = nil, nil
    if string.find(spec, '\n=', 1, true) then
      local e = rcall('HGET', g .. 'gnames:' .. gid, name)
      if e then
        local r, st = string.match(e, '^(%d+)\t(%d+)')
        rank, stride = tonumber(r), st
      end
    end
    for r, st, pattern in string.gmatch(spec, '\n(%d+)\t(%d+)\t([^\n]*)') do
      r = tonumber(r)
      if rank and r > rank then break end
      if string.find(name, pattern) then return r, st end
    end
    return rank, stride
  end

  -- Queue `name` joins the ready index of group `gid` (g: the global keys' prefix): at the
  -- end of the line (the lowest pass of those waiting: no catching up, no starving) when
  -- weighted, at its pattern's rank when strict. A queue new to the index wakes one idle
  -- worker of the group; one already there has its token, or a worker that will claim from
  -- it (a claim that leaves work leaves a token). On a cluster each join counts in the
  -- group's gens hash, so a worker's later "drained" cannot take out a queue that got work
  -- meanwhile (pick.lua).
  function IDX.join(g, gid, spec, name, rank, fenced)
    local idx = g .. 'gready:' .. gid
    local score = rank
    if string.byte(spec, 1) ~= 83 then   -- not 'S' (strict): weighted
      local first = rcall('ZRANGE', idx, 0, 0, 'WITHSCORES')
      score = first[2] or '0'
    end
    if fenced then rcall('HINCRBY', g .. 'ggen:' .. gid, name, 1) end
    if rcall('ZADD', idx, 'NX', score, name) == 1 then
      local wake_key = g .. 'gwake:' .. gid
      if rcall('LLEN', wake_key) == 0 then rcall('RPUSH', wake_key, '1') end
    end
  end

  -- Queue `name` got ready work: it joins the index of every group that consumes it.
  -- (read once per call: a sweep enters hundreds of queues; no script changes the groups)
  local groups_read = {}
  function IDX.ready(g, groups_key, name, fenced)
    local groups = groups_read[groups_key]
    if not groups then
      groups = rcall('HGETALL', groups_key)
      groups_read[groups_key] = groups
    end
    for i = 1, #groups, 2 do
      local rank = IDX.match_rank(g, groups[i], groups[i + 1], name)
      if rank then IDX.join(g, groups[i], groups[i + 1], name, rank, fenced) end
    end
  end

  -- Queue `name` needs a master at `at` (ms): the agenda keeps each queue's earliest such
  -- time; the masters block on the soon list and are told when the earliest of all moves
  -- earlier.
  function IDX.due(g, name, at)
    local key = g .. 'due'
    rcall('ZADD', key, 'LT', int(at), name)
    local first = rcall('ZRANGE', key, 0, 0)
    if first[1] == name then
      local soon_key = g .. 'soon'
      if rcall('LLEN', soon_key) == 0 then rcall('RPUSH', soon_key, '1') end
    end
  end

  -- Queue q got ready work: wake workers blocked on it, and enter it in the ready index of
  -- every group that consumes it (on a cluster: note it for the caller).
  function IDX.wake(q)
    if rcall('LLEN', q.wake) == 0 then rcall('RPUSH', q.wake, '1') end
    if q.direct then
      IDX.ready(q.ns .. ':', q.groups, q.name, false)
    else
      SIG = SIG or {}
      SIG.ready = true
    end
  end

  -- Queue q needs a master at `at` (Redis ms): a scheduled task falls due, a hand-off or a
  -- cancel waits (at 0); on a cluster: noted for the caller.
  function IDX.agenda(q, at)
    if q.direct then
      IDX.due(q.ns .. ':', q.name, at)
    else
      SIG = SIG or {}
      if not SIG.due or at < SIG.due then SIG.due = at end
    end
  end

  -- The earliest scheduled task of q is now `due` (ms): wake workers blocked on the queue
  -- (they sleep until the earliest due time they know of) and tell the masters' agenda (they
  -- promote on time, see supervisor/schedule.py).
  function IDX.schedule_moved(q, due)
    if rcall('LLEN', q.wake) == 0 then rcall('RPUSH', q.wake, '1') end
    IDX.agenda(q, due)
  end

  function IDX.reply(reply)
    if SIG == nil or type(reply) ~= 'table' or reply.err or reply.ok then return reply end
    reply[#reply + 1] = {'~sig', SIG.ready and 1 or 0, SIG.due and int(SIG.due) or '-1'}
    return reply
  end
  return IDX
end


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
