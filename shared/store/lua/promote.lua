-- uses: _lib
--[[ promote: move due scheduled tasks (delayed tasks, retries) to their ready lists.

  KEYS: queue block (28)
  ARGV: queue, limit
  Returns: {promoted, next_due}: next_due is ms until the earliest task still scheduled, -1 if none
  Atomic, so any number of masters may call it at once: each due task moves exactly once.
]]
local q = qkeys(1)
local now = now_ms()
local moved = promote(q, ARGV[1], now, tonumber(ARGV[2]))
if moved > 0 then wake(q) end
return {moved, next_due(q, now)}
