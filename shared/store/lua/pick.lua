-- uses: _lib
--[[ pick: on a Redis Cluster, the queues a worker of a consumer group claims from next, from
  the group's ready index; and what its last claims found, applied to the index. (On a
  standalone Redis, claim.lua does both in the claim's own call.)

  KEYS: the group's ready index (zset), wake list, gens (hash), the worker's procs set
  ARGV: k (queues wanted), n_updates, then n_updates x (queue, verdict, gen, stride), then
        the queues this worker set aside as broken
        verdict: 'left' (ready work left: its pass grows by stride, '0' for strict groups) or
        'gone' (drained or paused: out of line, unless it joined again since it was picked)
  Returns: flat (queue, gen) of up to k queues in line, lowest pass (or rank) first
  A worker keeps the gen a queue had when picked and hands it back with its verdict: a join
  since then (index.lua counts each in gens) means the queue got work the claim did not see.
  A token is left for another idle worker while queues are in line. The picked queues join the worker's procs set before it claims from them (its reaper's list).
]]
local index, wake_key, gens, procs = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local k, n_updates = tonumber(ARGV[1]), tonumber(ARGV[2])
local a = 3
for _ = 1, n_updates do
  local name, verdict, gen, stride = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  a = a + 4
  if verdict == 'left' then
    if stride ~= '0' and rcall('ZSCORE', index, name) then rcall('ZINCRBY', index, stride, name) end
  elseif (rcall('HGET', gens, name) or '0') == gen then   -- (gens only grow: no ABA)
    rcall('ZREM', index, name)
  end
end
local excluded, n_excluded = {}, 0
for i = a, #ARGV do
  excluded[ARGV[i]] = true
  n_excluded = n_excluded + 1
end
local out = {}
if k > 0 then
  local line = rcall('ZRANGE', index, 0, int(k - 1 + n_excluded))
  local picked = {}
  for _, name in ipairs(line) do
    if #picked < k and not excluded[name] then picked[#picked + 1] = name end
  end
  if #picked > 0 then
    rcall('SADD', procs, unpack(picked))
    local got = rcall('HMGET', gens, unpack(picked))
    for i, name in ipairs(picked) do
      out[#out + 1] = name
      out[#out + 1] = got[i] or '0'
    end
  end
end
-- Queues in line that this worker may not get to (it may fill its batch from the first): a
-- token for another idle worker (one that finds nothing tells the index so with its next pick).
local waiting = rcall('ZCARD', index)
if waiting > n_excluded then
  if rcall('LLEN', wake_key) == 0 then rcall('RPUSH', wake_key, '1') end
elseif waiting == 0 then
  rcall('DEL', wake_key)
end
return out
