-- uses: _lib
--[[ purge: delete up to `limit` waiting tasks (ready, scheduled and held) of one queue.

  KEYS: queue block (29)
  ARGV: limit, queue
  Returns: number deleted (call again until it returns 0). Running and dead tasks are kept.
  Purged workflow members count as cancelled for their downstream members (see node_done).
]]
local q = qkeys(1)
local limit, queue = tonumber(ARGV[1]), ARGV[2]
local gone = 0
local now = now_ms()
local function drop(ids)
  local members = rcall('HLEN', q.wf) > 0
  for _, id in ipairs(ids) do
    if members then
      node_done(q, queue, id, 'cancelled', node_value(queue, id, CANCELLED), now)
    end
    rcall('HDEL', q.tasks, id)
    rcall('HDEL', q.fails, id, id .. ':k')
    rcall('HDEL', q.errors, id)
    rcall('HDEL', q.waiters, id)
    rcall('HDEL', q.flow, 'dfr:' .. id)   -- a task deferred by its rate limit
  end
  gone = gone + #ids
end
for lvl = 1, 10 do
  while gone < limit do
    local ids = rcall('LRANGE', q.ready[lvl], 0, limit - gone - 1)
    if #ids == 0 then break end
    rcall('LTRIM', q.ready[lvl], #ids, -1)
    drop(ids)
  end
end
if gone < limit then
  local ids = rcall('ZRANGE', q.sched, 0, limit - gone - 1)
  if #ids > 0 then
    rcall('ZREM', q.sched, unpack(ids))
    drop(ids)
  end
end
if gone < limit then   -- waiting for a concurrency lease ("type\0id")
  local members = rcall('ZRANGE', q.held, 0, limit - gone - 1)
  if #members > 0 then
    rcall('ZREM', q.held, unpack(members))
    local ids = {}
    for i, member in ipairs(members) do
      ids[i] = string.sub(member, (string.find(member, '\0', 1, true) or 0) + 1)
    end
    drop(ids)
  end
end
return gone
