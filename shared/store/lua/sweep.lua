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
for i = 2, #ARGV do
  local name = ARGV[i]
  local q = qkeys_of(ns, name, groups_key)
  local ready, due = false, -1
  -- most of a thousand queues hold nothing most of the time: one EXISTS says so
  if rcall('EXISTS', q.ready[1], q.ready[2], q.ready[3], q.ready[4], q.ready[5], q.ready[6],
           q.ready[7], q.ready[8], q.ready[9], q.ready[10], q.sched, q.out) > 0
      and rcall('EXISTS', q.prefix .. 'broken') == 0 then
    ready = rcall('HGET', q.flow, 'paused') ~= '1' and rcall('EXISTS', unpack(q.ready)) > 0
    local first = rcall('ZRANGE', q.sched, 0, 0, 'WITHSCORES')
    if first[2] then due = tonumber(first[2]) end
    if rcall('LLEN', q.out) > 0 then due = 0 end
  end
  if not q.direct then return {ready and '1' or '0', int(due)} end
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
