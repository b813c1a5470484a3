-- uses: _lib
--[[ counters: the counters of many queues added up by event (enqueued, started, succeeded,
  failed, retried, dead...), in one call on a standalone Redis (the dashboard's overview each
  second, with a thousand queues).

  KEYS: the groups hash (only names the call's node)
  ARGV: namespace, then the queues
  Returns: flat (event, total) pairs; a counter that is not a number is left out
]]
local ns = ARGV[1]
local totals = {}
for i = 2, #ARGV do
  local fields = redis.pcall('HGETALL', ns .. ':{' .. ARGV[i] .. '}:stats')
  if type(fields) == 'table' and not fields.err then
    for k = 1, #fields, 2 do
      local event = string.match(fields[k], ':([^:]*)$')
      local n = tonumber(fields[k + 1])
      if event and n then totals[event] = (totals[event] or 0) + n end
    end
  end
end
local out = {}
for event, n in pairs(totals) do
  out[#out + 1] = event
  out[#out + 1] = int(n)
end
return out
