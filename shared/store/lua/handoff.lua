-- uses: _lib
--[[ handoff: apply outcomes of workflow members of other queues to members of this one.

  KEYS: queue block (29)
  ARGV: queue, n, then n x (member id, k, outcome, value) as node_done wrote them to the
        finishing member's queue's `out` list
  Returns: n
  Idempotent (see node_input): a master that dies between this call and deleting the
  entries from `out` leaves them to be applied again, harmlessly.
]]
local q = qkeys(1)
local queue, n = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
for i = 0, n - 1 do
  local a = 3 + i * 4
  local more = node_input(q, queue, ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2], ARGV[a + 3], now)
  if more then node_done(q, queue, more[1], more[2], more[3], now) end
end
return n
