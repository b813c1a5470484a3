--[[ agenda: the queues that need a master now (a due task, a hand-off, a cancel), and when the
  next one will (the masters' promoter, supervisor/schedule.py).

  KEYS: the agenda (zset: queue -> Redis ms)
  ARGV: limit
  Returns: {now (Redis ms), flat (queue, score) of at most `limit` entries due by now,
            the first later score or -1}
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stamp = string.format('%d', now)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', stamp, 'WITHSCORES', 'LIMIT', '0',
                       ARGV[1])
local later = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. stamp, '+inf', 'WITHSCORES', 'LIMIT',
                         '0', '1')
return {stamp, due, later[2] or '-1'}
