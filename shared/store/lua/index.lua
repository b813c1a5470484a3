-- uses: _lib
--[[ index: what queue scripts changed in the global indexes, applied on a Redis Cluster, where
  those indexes live in another slot than the queues (on a standalone Redis the queue scripts
  apply it themselves: see _lib's wake and agenda).

  KEYS: the groups hash (the global keys' prefix + 'groups')
  ARGV: n, then n x (queue, ready '1'/'0', due ms or '-1'), then m, then m x (queue, seen,
        due ms or '-1')
  Returns: n + m
  ready: the queue got ready work: it joins the ready index of every group that consumes it.
  due:   the queue needs a master by then (a due task, a hand-off, a cancel): the agenda keeps
         the earliest.
  The m entries reschedule (a master promoted the queue, promote.lua): its agenda entry becomes
  `due` (or goes), unless it moved since the master read it as `seen` (a task due earlier was
  scheduled meanwhile: that entry stands).
  Idempotent, so a caller may repeat it.
]]
local groups_key = KEYS[1]
local g = string.sub(groups_key, 1, -7)   -- "ns:{#}:" (cluster) or "ns:" (standalone)
local n = tonumber(ARGV[1])
local a = 2
for _ = 1, n do
  local name, ready, due = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  a = a + 3
  if ready == '1' then indexes().ready(g, groups_key, name, true) end
  if due >= 0 then indexes().due(g, name, due) end
end
local m = tonumber(ARGV[a] or '0')
a = a + 1
local agenda_key = g .. 'due'
for _ = 1, m do
  local name, seen, due = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  a = a + 3
  local now = rcall('ZSCORE', agenda_key, name)
  if now and tonumber(now) == tonumber(seen) then
    if tonumber(due) >= 0 then
      rcall('ZADD', agenda_key, due, name)
    else
      rcall('ZREM', agenda_key, name)
    end
  end
end
return n + m
