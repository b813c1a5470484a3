-- uses: _lib
--[[ sizes: the counts of many queues for status pages, in one call (standalone Redis: `tq
  status` and the dashboard's overview read a thousand queues in a few milliseconds).

  KEYS: the groups hash (only names the call's node)
  ARGV: namespace, then the queues
  Returns: flat, per queue: its ready lists' lengths (10, priority 9 first), scheduled, running,
           dead, held, limited (0/1: it has rate or concurrency limits), paused (0/1), broken
           (0/1), then the oldest of the heads of its ready lists (the id ready longest,
           '' when none: its age, see heads.py; ids sort by their creation time)
  A queue with none of these keys (most of a thousand tenant queues, most of the time) costs
  one EXISTS.
]]
local ns = ARGV[1]
local out = {}
-- a count of a corrupt key (the wrong type) is 0, as a pipeline's error for that count only
local function n(...)
  local r = redis.pcall(...)
  if type(r) == 'table' then return 0 end
  return r
end
-- (the heads only of the lists that hold something: most queues use one priority)
local function oldest(q, lens)
  local best = ''
  for lvl = 1, 10 do
    if lens[lvl] > 0 then
      local r = redis.pcall('LINDEX', q.ready[lvl], 0)
      if type(r) == 'string' and (#r == 16 or #r == 17) and string.find(r, '^[%w_%-]+$')
          and (best == '' or r < best) then
        best = r
      end
    end
  end
  return best
end
for i = 2, #ARGV do
  local q = qkeys_of(ns, ARGV[i], KEYS[1])
  local broken = q.prefix .. 'broken'
  if rcall('EXISTS', q.ready[1], q.ready[2], q.ready[3], q.ready[4], q.ready[5], q.ready[6],
           q.ready[7], q.ready[8], q.ready[9], q.ready[10], q.sched, q.run, q.dead, q.held,
           q.flow, broken) == 0 then
    for _ = 1, 17 do out[#out + 1] = 0 end
    out[#out + 1] = ''
  else
    local lens = {}
    for lvl = 1, 10 do
      lens[lvl] = n('LLEN', q.ready[lvl])
      out[#out + 1] = lens[lvl]
    end
    out[#out + 1] = n('ZCARD', q.sched)
    out[#out + 1] = n('HLEN', q.run)
    out[#out + 1] = n('ZCARD', q.dead)
    out[#out + 1] = n('ZCARD', q.held)
    local flow = redis.pcall('HMGET', q.flow, 'limits', 'paused')
    if flow.err then flow = {false, false} end
    out[#out + 1] = flow[1] and 1 or 0
    out[#out + 1] = flow[2] and 1 or 0
    out[#out + 1] = n('EXISTS', broken)
    out[#out + 1] = oldest(q, lens)
  end
end
return out
