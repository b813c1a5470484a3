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
-- a count of a corrupt key (the wrong type) is 0, as a pipeline's error for that count only
local function n(...)
  local r = redis.pcall(...)
  if type(r) == 'table' then return 0 end
  return r
end
local function head(key)
  local r = redis.pcall('LINDEX', key, 0)
  if type(r) ~= 'string' then return '' end
  return r
end
for i = 2, #ARGV do
  local q = qkeys_of(ns, ARGV[i], KEYS[1])
  local broken = q.prefix .. 'broken'
  if rcall('EXISTS', q.ready[1], q.ready[2], q.ready[3], q.ready[4], q.ready[5], q.ready[6],
           q.ready[7], q.ready[8], q.ready[9], q.ready[10], q.sched, q.run, q.dead, q.held,
           q.flow, broken) == 0 then
    for _ = 1, 16 do out[#out + 1] = 0 end
    for _ = 1, 10 do out[#out + 1] = '' end
  else
    for lvl = 1, 10 do out[#out + 1] = n('LLEN', q.ready[lvl]) end
    out[#out + 1] = n('ZCARD', q.sched)
    out[#out + 1] = n('HLEN', q.run)
    out[#out + 1] = n('ZCARD', q.dead)
    out[#out + 1] = n('ZCARD', q.held)
    out[#out + 1] = n('HEXISTS', q.flow, 'paused')
    out[#out + 1] = n('EXISTS', broken)
    for lvl = 1, 10 do out[#out + 1] = head(q.ready[lvl]) end
  end
end
return out
