--[[ expired: masters and workers whose last heartbeat is older than ttl_ms (Redis clock).

  KEYS: masters zset, workers zset
  ARGV: ttl_ms
  Returns: {now_ms, expired master ids, expired worker ids}
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = now - tonumber(ARGV[1])
return {now, redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. limit),
        redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. limit)}
