-- uses: _lib
--[[ sweep: the safety net of the global indexes. A queue that holds ready work joins the ready
  index of each group that consumes it, and a queue with scheduled tasks or hand-offs is in
  the masters' agenda, whatever a producer or worker did not get to tell them (a process that
  died between a queue script and index.lua on a cluster, tq versions before the indexes, a
  group that starts with an empty index). A master runs it every few seconds over the known
  queues (one master at a time: supervisor/sweep.py).

  KEYS: standalone: the groups hash; cluster: "ns:{Q}:groups" of the one queue it looks at
  ARGV: namespace, then the queues (cluster: one)
  Returns: standalone: {queues with ready work, queues in the agenda}; cluster: {ready '1'/'0',
           due ms or -1} of the queue, for the caller's index.lua call
  Queues set aside as broken (their repair re-indexes them) are skipped.
]]
local groups_key, ns = KEYS[1], ARGV[1]
local readies, dues = 0, 0
local direct = not string.find(groups_key, '}', 1, true)
for i = 2, #ARGV do
  local name = ARGV[i]
  local p = ns .. ':{' .. name .. '}:'
  local ready, due = false, -1
  -- most of a thousand queues hold nothing most of the time: one EXISTS says so (named here:
  -- qkeys_of's 28 names cost more than the EXISTS)
  if rcall('EXISTS', p .. 'ready:9', p .. 'ready:8', p .. 'ready:7', p .. 'ready:6',
           p .. 'ready:5', p .. 'ready:4', p .. 'ready:3', p .. 'ready:2', p .. 'ready:1',
           p .. 'ready:0', p .. 'sched', p .. 'out') > 0
      and rcall('EXISTS', p .. 'broken') == 0 then
    local q = qkeys_of(ns, name, groups_key)
    ready = rcall('HGET', q.flow, 'paused') ~= '1' and rcall('EXISTS', unpack(q.ready)) > 0
    local first = rcall('ZRANGE', q.sched, 0, 0, 'WITHSCORES')
    if first[2] then due = tonumber(first[2]) end
    if rcall('LLEN', q.out) > 0 then due = 0 end
  end
  if not direct then return {ready and '1' or '0', int(due)} end
  if ready then
    indexes().ready(ns .. ':', groups_key, name, false)
    readies = readies + 1
  end
  if due >= 0 then
    indexes().due(ns .. ':', name, due)
    dues = dues + 1
  end
end
return {readies, dues}
