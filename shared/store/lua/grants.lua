--[[ grants: which of the given command lines this ACL user may not run (a check only: nothing
  is run; tq.store.grants calls it when a master starts).

  KEYS: none (run on each primary of a cluster)
  ARGV: command lines, each as its length then its words ('client', 'setname', 'x'); each line
        must have as many words as its command's arity asks: Redis 7.0 crashes otherwise
  Returns: false where Redis has no redis.acl_check_cmd (before 7.0: nothing is known), else
           the positions (from 1) of the lines refused
]]
if not redis.acl_check_cmd then return false end
local out, i, k = {}, 1, 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local ok, allowed = pcall(redis.acl_check_cmd, unpack(ARGV, i + 1, i + n))
  if ok and not allowed then out[#out + 1] = k end
  i, k = i + n + 1, k + 1
end
return out
