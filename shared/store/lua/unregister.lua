--[[ unregister: a master or a worker leaves the registry (its zset entry and its info key
  go together: a script, not MULTI, so the documented ACL grants cover it).

  KEYS: the zset (masters or workers), the member's info key
  ARGV: the member's id
  Returns: 1 if it was registered, else 0
]]
local gone = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return gone
