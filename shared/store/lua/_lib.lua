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

local QBLOCK = 29
-- LMPOP (Redis 7) pops from the first non-empty of many lists in one call; 6.2 LPOPs each.
local HAS_LMPOP = (redis.REDIS_VERSION_NUM or 0) >= 0x070000
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

-- (Tables built whole by one constructor: filled key by key, a queue's 28 names cost a table
-- rehash at each power of two. Its slots for finish_q's fields too.)
local function qkeys(base)
  local K = KEYS
  return finish_q({
    ready = {K[base], K[base + 1], K[base + 2], K[base + 3], K[base + 4], K[base + 5],
             K[base + 6], K[base + 7], K[base + 8], K[base + 9]},   -- ready[1] is priority 9
    tasks = K[base + 10], sched = K[base + 11], run = K[base + 12], fails = K[base + 13],
    errors = K[base + 14], dead = K[base + 15], wake = K[base + 16], seq = K[base + 17],
    stats = K[base + 18], policy = K[base + 19], waiters = K[base + 20], events = K[base + 21],
    soon = K[base + 22], done = K[base + 23], flow = K[base + 24], held = K[base + 25],
    wf = K[base + 26], out = K[base + 27],
    groups = K[base + 28], prefix = false, name = false, ns = false, direct = false})
end

-- The same keys named from the namespace and queue name: a claim that picks its queues from
-- the ready index on a standalone Redis (where there is no slot to stay in), or a script that
-- was given one key of the queue. groups: as in a block (see finish_q).
local function qkeys_of(ns, name, groups)
  local p = ns .. ':{' .. name .. '}:'
  return {
    ready = {p .. 'ready:9', p .. 'ready:8', p .. 'ready:7', p .. 'ready:6', p .. 'ready:5',
             p .. 'ready:4', p .. 'ready:3', p .. 'ready:2', p .. 'ready:1', p .. 'ready:0'},
    tasks = p .. 'tasks', sched = p .. 'sched', run = p .. 'run', fails = p .. 'fails',
    errors = p .. 'errors', dead = p .. 'dead', wake = p .. 'wake', seq = p .. 'seq',
    stats = p .. 'stats', policy = p .. 'policy', waiters = p .. 'waiters',
    events = p .. 'events', soon = p .. 'soon', done = p .. 'done', flow = p .. 'flow',
    held = p .. 'held', wf = p .. 'wf', out = p .. 'out',
    groups = groups, prefix = p, ns = ns, name = name,
    direct = not string.find(groups, '}', 1, true)}
end

local function proc_key(q, worker) return q.prefix .. 'proc:' .. worker end
local function result_key(q, id) return q.prefix .. 'res:' .. id end

local function ready_key(q, priority)
  return q.ready[10 - priority]
end

local function now_ms()
  local t = rcall('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The header of a stored body (everything before "p"): type, priority, max_retries.
-- tq writes header fields before the payload and never puts quotes inside them, so this
-- never has to decode the payload. Returns nil for a body tq did not write.
local function header(body, queue)
  local h = string.match(body, '^{(.-)"p":')
  if not h then return nil end
  local t = string.match(h, '"t":"([^"]*)"') or queue
  local r = tonumber(string.match(h, '"r":(%d)')) or 0
  local m = tonumber(string.match(h, '"m":(%d+)'))
  return t, r, m
end

-- Only the type of a body, with header()'s verdict on what tq did not write: the claim's
-- per-task work. Bodies begin with the payload (type == queue) or with the type.
local function body_type(body, queue)
  if string.sub(body, 1, 5) == '{"p":' then return queue end
  local t = string.match(body, '^{"t":"([^"]*)"')
  if t and string.find(body, '"p":', 8 + #t, true) then return t end
  return (header(body, queue))
end

local function max_retries(q, ttype, m, default)
  if m then return m end
  local p = rcall('HGET', q.policy, ttype)
  if p then
    local v = tonumber(string.match(p, '"max_retries":(%d+)'))
    if v then return v end
  end
  return tonumber(default)
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

-- Workers blocked on this queue alone (broker.fetch, tests) get a token.
local function wake_queue(q)
  if rcall('LLEN', q.wake) == 0 then rcall('RPUSH', q.wake, '1') end
end

-- Queue q got ready work: wake workers blocked on it, and enter it in the ready index of every
-- group that consumes it (on a cluster: note it for the caller). See IDX.wake.
local function wake(q) return indexes().wake(q) end

-- Queue q needs a master at `at` (Redis ms): see IDX.agenda.
local function agenda(q, at) return indexes().agenda(q, at) end

-- The earliest scheduled task of q is now `due` (ms): see IDX.schedule_moved.
local function schedule_moved(q, due) return indexes().schedule_moved(q, due) end

-- The schedule of q changed in a way that may have moved its earliest task (repair, a task
-- made due at once): tell the agenda its earliest due time.
local function schedule_changed(q)
  local first = rcall('ZRANGE', q.sched, 0, 0, 'WITHSCORES')
  if first[2] then schedule_moved(q, tonumber(first[2])) end
end

-- The reply of a script, with what it changed in the global indexes on a cluster (see SIG):
-- a last element {'~sig', ready (0/1), due (ms, -1: none)} that scripts.py takes off.
local function reply_with_signals(reply)
  if SIG == nil then return reply end
  return indexes().reply(reply)
end

local function notify(q, id, state)
  if rcall('HDEL', q.waiters, id) == 1 then
    rcall('XADD', q.events, 'MAXLEN', '~', 1000, '*', 'id', id, 's', state)
  end
end

local function count(q, ttype, event, n)
  rcall('HINCRBY', q.stats, ttype .. ':' .. event, n or 1)
end

local function error_json(kind, message, traceback, at, worker)
  return cjson.encode({kind = kind, message = message, traceback = traceback,
                       at = at, worker = worker})
end

-- The last error of a task, with the errors of its earlier attempts (without their
-- tracebacks, at most HISTORY of them) as "history", oldest first: the task page lists them.
local HISTORY = 20
local function record_error(q, id, kind, message, traceback, at, worker)
  local entry = {kind = kind, message = message, traceback = traceback, at = at,
                 worker = worker}
  local old = rcall('HGET', q.errors, id)
  if old then
    local ok, prev = pcall(cjson.decode, old)
    if ok and type(prev) == 'table' then
      local history = type(prev.history) == 'table' and prev.history or {}
      history[#history + 1] = {kind = prev.kind, message = prev.message, at = prev.at,
                               worker = prev.worker}
      while #history > HISTORY do table.remove(history, 1) end
      entry.history = history
    end
  end
  rcall('HSET', q.errors, id, cjson.encode(entry))
end

-- Something in a ready list or the schedule that tq cannot run: keep it as a dead letter with
-- the reason, under its own id when that looks like an id, else under a fresh one.
local function bury_malformed(q, entry, now, why)
  local id = entry
  local body = rcall('HGET', q.tasks, entry)
  if #entry > 64 or not string.match(entry, '^[%w%-_%.]+$') then
    id = 'malformed-' .. now .. '-' .. rcall('INCR', q.seq)
    body = string.sub(entry, 1, 65536)
    why = 'not a task id (something else was pushed onto the queue): kept as the body'
  end
  rcall('HSET', q.tasks, id, body or '')
  rcall('HSET', q.errors, id, error_json('malformed', why, nil, now, nil))
  rcall('ZADD', q.dead, now, id)
  count(q, '?', 'dead')
  notify(q, id, 'dead')
  return id
end

-- Move up to `limit` due tasks from the schedule to the tail of their ready lists.
-- (Numbers given to redis.call are formatted with "%.17g", which costs more than many
-- commands: the hot scripts pass strings, made once per call with int().)
local function promote(q, queue, now, limit)
  local due = rcall('ZRANGEBYSCORE', q.sched, '-inf', int(now), 'LIMIT', '0', int(limit))
  if #due == 0 then return 0 end
  -- Read before the first write: a corrupt tasks hash fails the script with nothing moved.
  local bodies = rcall('HMGET', q.tasks, unpack(due))
  rcall('ZREM', q.sched, unpack(due))
  local moved = 0
  for i, id in ipairs(due) do
    local body = bodies[i]
    local _, r = nil, nil
    if body then _, r = header(body, queue) end
    if r then
      rcall('RPUSH', ready_key(q, r), id)
      moved = moved + 1
    else
      bury_malformed(q, id, now, body and 'unreadable task body' or 'no task body for a scheduled id')
    end
  end
  return moved
end

-- Flow control (shared/limits.py) ------------------------------------------------------------
-- paused?, and the effective limits of the queue's types ({type = {i, b, k, c}}) or nil.
local function flow_of(q)
  local f = rcall('HMGET', q.flow, 'paused', 'limits')
  local limits = nil
  if f[2] then
    local ok, l = pcall(cjson.decode, f[2])
    if ok and type(l) == 'table' and next(l) then limits = l end
  end
  return f[1] == '1', limits
end

-- The concurrency limit of a type now (nil: none), for the paths that give a lease back.
local function concurrency_of(q, ttype)
  local _, limits = flow_of(q)
  local lim = limits and limits[ttype]
  return lim and tonumber(lim.c)
end

-- Move up to the free leases' worth of a type's held tasks (all of them once the type has no
-- concurrency limit) back to the front of their ready lists, oldest first.
local function refill(q, queue, ttype, c)
  local lo, hi = '[' .. ttype .. '\0', '(' .. ttype .. '\1'
  local members
  if c then
    local free = c - (tonumber(rcall('HGET', q.flow, 'run:' .. ttype)) or 0)
    if free <= 0 then return 0 end
    members = rcall('ZRANGEBYLEX', q.held, lo, hi, 'LIMIT', 0, free)
  else
    members = rcall('ZRANGEBYLEX', q.held, lo, hi, 'LIMIT', 0, 10000)
  end
  if #members == 0 then return 0 end
  rcall('ZREM', q.held, unpack(members))
  local moved = 0
  for i = #members, 1, -1 do
    local id = string.sub(members[i], #ttype + 2)
    local body = rcall('HGET', q.tasks, id)
    local _, prio = nil, nil
    if body then _, prio = header(body, queue) end
    if prio then                      -- (a body deleted meanwhile: nothing to run)
      rcall('LPUSH', ready_key(q, prio), id)
      moved = moved + 1
    end
  end
  if moved > 0 then wake(q) end
  return moved
end

-- A claim of a concurrency-limited type ended (ack, failure, requeue): give its lease back
-- and let a held task of the type take it.
local function release(q, queue, ttype, c)
  if rcall('HINCRBY', q.flow, 'run:' .. ttype, -1) < 0 then
    rcall('HSET', q.flow, 'run:' .. ttype, 0)
  end
  refill(q, queue, ttype, c)
end

-- Claims that hold a lease end in '|c' ("worker|token|claimed_ms|c"), then '|x' once a
-- cancel was requested (cancel.lua).
-- (Bytes, not substrings: this runs for every ack, and most claims end in a digit.)
local function leased(claim)
  if not claim then return false end
  local last = string.byte(claim, -1)
  if last == 99 then return string.byte(claim, -2) == 124 end   -- 'c', '|'
  return last == 120 and string.sub(claim, -4) == '|c|x'         -- 'x'
end

local function next_due(q, now)
  local first = rcall('ZRANGE', q.sched, 0, 0, 'WITHSCORES')
  if first[2] then return math.max(0, tonumber(first[2]) - now) end
  return -1
end

-- Workflows and cancellation (shared/workflow.py) --------------------------------------------
-- q.wf holds, per member of a workflow in this queue: "n:ID" {"x": [[queue, id, k], ...] its
-- downstream members (k: its place among their upstream ones), "n": how many upstream
-- members it has, "p": "stop" | "continue"}; while it waits, "d:ID" (upstream members still
-- to finish) and "i:ID:K" (what its K-th upstream member handed it).

-- What a finished member hands downstream: its queue, id and record (JSON text, not decoded).
local function node_value(queue, id, record)
  return '["' .. queue .. '","' .. id .. '",' .. record .. ']'
end

-- What a member that did not succeed hands downstream (kind: why it is dead).
local function dead_value(queue, id, kind, message)
  return node_value(queue, id, cjson.encode({s = 'dead', k = kind, e = message}))
end
local CANCELLED = '{"s":"cancelled"}'

-- A master must look at q now (a hand-off to apply, a cancel request).
local function soon(q)
  agenda(q, 0)
end

local function hdel_all(key, fields)
  for s = 1, #fields, 1000 do
    rcall('HDEL', key, unpack(fields, s, math.min(s + 999, #fields)))
  end
end

-- One upstream outcome ('ok', 'dead', 'cancelled') reaches member `id` of this queue as its
-- k-th input. Applied once: a hand-off replayed (two masters, a crash between apply and
-- delete) finds the input already there; ignored once the member no longer waits. The last
-- input makes it ready. Under 'stop' an outcome that is not 'ok' dead-letters the member
-- instead (kind upstream_dead / upstream_cancelled): returned as a work item, so that its
-- own downstream members hear of it.
local function node_input(q, queue, id, k, how, value, now)
  local field = 'i:' .. id .. ':' .. k
  if rcall('HSETNX', q.wf, field, value) == 0 then return nil end   -- applied before
  local left = rcall('HINCRBY', q.wf, 'd:' .. id, -1)
  if left < 0 then   -- it does not wait (any more): cancelled, dead or finished
    rcall('HDEL', q.wf, field, 'd:' .. id)
    return nil
  end
  if how ~= 'ok' then
    local info = rcall('HGET', q.wf, 'n:' .. id)
    if (info and string.match(info, '"p":"(%a+)"') or 'stop') == 'stop' then
      rcall('HDEL', q.wf, 'd:' .. id)
      local up = string.match(value, '^%["[^"]*","([^"]*)"') or '?'
      local why = 'upstream task ' .. up .. (how == 'cancelled' and ' was cancelled' or
                                             ' is dead') .. ': the workflow stops here'
      record_error(q, id, 'upstream_' .. how, why, nil, now, nil)
      rcall('ZADD', q.dead, now, id)
      local body = rcall('HGET', q.tasks, id)
      count(q, (body and header(body, queue)) or '?', 'dead')
      notify(q, id, 'dead')
      return {id, 'dead', dead_value(queue, id, 'upstream_' .. how, why)}
    end
  end
  if left == 0 then
    rcall('HDEL', q.wf, 'd:' .. id)
    local body = rcall('HGET', q.tasks, id)
    local _, prio = nil, nil
    if body then _, prio = header(body, queue) end
    if prio then
      rcall('RPUSH', ready_key(q, prio), id)
      wake(q)
    elseif body then
      bury_malformed(q, id, now, 'unreadable task body (a workflow member)')
    end
  end
  return nil
end

-- Member `id` finished ('ok', 'dead' or 'cancelled'; value: what its downstream members get):
-- each of them hears of it, in this queue at once, in another queue through q.out (a master
-- serving this queue applies it there, see supervisor/handoff.py). A work list, not
-- recursion: a long chain that stops must not exhaust Lua's stack.
local function node_done(q, queue, id, how, value, now)
  local work = {{id, how, value}}
  local handed = 0
  local w = 1
  while w <= #work do
    local nid, nhow, nvalue = work[w][1], work[w][2], work[w][3]
    w = w + 1
    local info = rcall('HGET', q.wf, 'n:' .. nid)
    if info then
      rcall('HDEL', q.wf, 'n:' .. nid, 'd:' .. nid)
      local ok, node = pcall(cjson.decode, info)
      if ok and type(node) == 'table' then
        local n = tonumber(node.n) or 0
        if n > 0 then
          local f = {}
          for k = 0, n - 1 do f[#f + 1] = 'i:' .. nid .. ':' .. k end
          hdel_all(q.wf, f)
        end
        for _, e in ipairs(type(node.x) == 'table' and node.x or {}) do
          if e[1] == queue then
            local more = node_input(q, queue, e[2], e[3], nhow, nvalue, now)
            if more then work[#work + 1] = more end
          else
            rcall('RPUSH', q.out, '{"q":"' .. e[1] .. '","id":"' .. e[2] .. '","k":' .. e[3] ..
                  ',"o":"' .. nhow .. '","v":' .. nvalue .. '}')
            handed = handed + 1
          end
        end
      end
    end
  end
  if handed > 0 then soon(q) end
end

-- A task ends cancelled: its body and bookkeeping go, a "cancelled" record stays where its
-- result would (result_key, ttl ms), waiters are told, its downstream members hear of it.
local function cancel_task(q, queue, id, ttype, result_key, ttl, now, attempts)
  rcall('HDEL', q.tasks, id)
  rcall('HDEL', q.fails, id, id .. ':k')
  rcall('HDEL', q.errors, id)
  rcall('HDEL', q.flow, 'dfr:' .. id)
  local record = cjson.encode({s = 'cancelled', t = ttype or queue, a = attempts or 0, f = now})
  rcall('SET', result_key, record, 'PX', math.max(ttl, 1000))
  count(q, ttype or '?', 'cancelled')
  notify(q, id, 'cancelled')
  if rcall('HLEN', q.wf) > 0 then
    rcall('HDEL', q.wf, 'd:' .. id)
    node_done(q, queue, id, 'cancelled', node_value(queue, id, CANCELLED), now)
  end
end

-- A task was dead-lettered: if it is a workflow member, its downstream members hear of it
-- (usually no workflow in the queue: one O(1) call).
local function member_dead(q, queue, id, kind, message, now)
  if rcall('HLEN', q.wf) > 0 then
    node_done(q, queue, id, 'dead', dead_value(queue, id, kind, message), now)
  end
end
