-- uses: _lib
--[[ wfadd: store the members of a workflow that live in one queue (client.workflow).

  KEYS: queue block (29)
  ARGV: queue, n, then n x (id, body, upstream count, member JSON (see node_done), type)
  Returns: how many were new (a repeated call, same ids and bodies, adds nothing).
  A member without upstream members is ready at once; the others wait ("d:ID") until the
  last of them finishes. The client adds waiting members (every queue) before ready ones,
  so no member can finish before the members downstream of it exist.
]]
local q = qkeys(1)
local queue, n = ARGV[1], tonumber(ARGV[2])
local added, pushed = 0, false
local counts = {}   -- type -> members added: one HINCRBY per type, not per member
for i = 0, n - 1 do
  local a = 3 + i * 5
  local id, body, deps, node, ttype = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3],
                                      ARGV[a + 4]
  if rcall('HSETNX', q.tasks, id, body) == 1 then
    if deps > 0 then
      rcall('HSET', q.wf, 'n:' .. id, node, 'd:' .. id, deps)
    else
      rcall('HSET', q.wf, 'n:' .. id, node)
      local _, prio = header(body, queue)
      rcall('RPUSH', ready_key(q, prio or 0), id)
      pushed = true
    end
    counts[ttype] = (counts[ttype] or 0) + 1
    added = added + 1
  elseif rcall('HGET', q.tasks, id) ~= body then
    return redis.error_reply('task id ' .. id .. ' is taken by another task')
  end
end
for ttype, c in pairs(counts) do count(q, ttype, 'enqueued', c) end
if pushed then wake(q) end
return reply_with_signals(added)
