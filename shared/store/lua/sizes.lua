-- uses: _lib
--[[ sizes: the counts of many queues for status pages, in one call (standalone Redis: `tq
  status` and the dashboard's overview read a thousand queues in a few milliseconds).

  KEYS: the groups hash (only names the call's node)
  ARGV: namespace, then the queues
  Returns: flat, per queue: its ready lists' lengths (10, priority 9 first), scheduled, running,
           dead, held, paused (0/1), broken (0/1), then the head of each ready list (10: the
           id ready there longest, '' when empty: its age, see heads.py)
  A queue with none of these keys (most of a thousand tenant queues, most of the time) costs
  one EXISTS.
]]
local ns = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local q = qkeys_of(ns, ARGV[i], KEYS[1])
  local broken = q.prefix .. 'broken'
  if rcall('EXISTS', q.ready[1], q.ready[2], q.ready[3], q.ready[4], q.ready[5], q.ready[6],
           q.ready[7], q.ready[8], q.ready[9], q.ready[10], q.sched, q.run, q.dead, q.held,
           q.flow, broken) == 0 then
    for _ = 1, 16 do out[#out + 1] = 0 end
    for _ = 1, 10 do out[#out + 1] = '' end
  else
    for lvl = 1, 10 do out[#out + 1] = rcall('LLEN', q.ready[lvl]) end
    out[#out + 1] = rcall('ZCARD', q.sched)
    out[#out + 1] = rcall('HLEN', q.run)
    out[#out + 1] = rcall('ZCARD', q.dead)
    out[#out + 1] = rcall('ZCARD', q.held)
    out[#out + 1] = rcall('HEXISTS', q.flow, 'paused')
    out[#out + 1] = rcall('EXISTS', broken)
    for lvl = 1, 10 do out[#out + 1] = rcall('LINDEX', q.ready[lvl], 0) or '' end
  end
end
return out
