--[[ heartbeat: a master reports itself and its live children, stamped with Redis' clock.

  KEYS: masters zset, workers zset, master info key, one info key per worker
  ARGV: master_id ('' when a worker registers itself), master info JSON,
        then per worker (worker_id, info JSON)
  Returns: Redis time in ms
  Info stays until the worker is unregistered (by itself, its master or a reaper), so a
  reaper can always find the queues of a worker whose heartbeat stopped.
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] ~= '' then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  redis.call('SET', KEYS[3], ARGV[2])
end
local k = 4
for i = 3, #ARGV, 2 do
  redis.call('ZADD', KEYS[2], now, ARGV[i])
  redis.call('SET', KEYS[k], ARGV[i + 1])
  k = k + 1
end
return now
