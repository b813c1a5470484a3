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
--[[ index: what queue scripts changed in the global indexes, applied on a Redis Cluster, where
  those indexes live in another slot than the queues (on a standalone Redis the queue scripts
  apply it themselves: see _lib's wake and agenda).

  KEYS: the groups hash (the global keys' prefix + 'groups')
  ARGV: n, then n x (queue, ready '1'/'0', due ms or '-1'), then m, then m x (queue, seen,
        due ms or '-1')
  Returns: n + m
  ready: the queue got ready work: it joins the ready index of every group that consumes it.
  due:   the queue needs a master by then (a due task, a hand-off, a cancel): the agenda keeps
         the earliest.
  The m entries reschedule (a master promoted the queue, promote.lua): its agenda entry becomes
  `due` (or goes), unless it moved since the master read it as `seen` (a task due earlier was
  scheduled meanwhile: that entry stands).
  Idempotent, so a caller may repeat it.
]]
local groups_key = KEYS[1]
local g = string.sub(groups_key, 1, -7)   -- "ns:{#}:" (cluster) or "ns:" (standalone)
local n = tonumber(ARGV[1])
local a = 2
for _ = 1, n do
  local name, ready, due = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  a = a + 3
  if ready == '1' then indexes().ready(g, groups_key, name, true) end
  if due >= 0 then indexes().due(g, name, due) end
end
local m = tonumber(ARGV[a] or '0')
a = a + 1
local agenda_key = g .. 'due'
for _ = 1, m do
  local name, seen, due = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  a = a + 3
  local now = rcall('ZSCORE', agenda_key, name)
  if now and tonumber(now) == tonumber(seen) then
    if tonumber(due) >= 0 then
      rcall('ZADD', agenda_key, due, name)
    else
      rcall('ZREM', agenda_key, name)
    end
  end
end
return n + m
