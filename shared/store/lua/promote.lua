-- uses: _lib
--[[ promote: move due scheduled tasks (delayed tasks, retries) to their ready lists.

  KEYS: queue block (29)
  ARGV: queue, limit, agenda ('1': a master called it from the agenda: the queue's agenda entry
        becomes what remains, its next due task, 0 while hand-offs wait, or none)
  Returns: {promoted, next_due}: next_due is ms until the earliest task still scheduled, -1 if
           none (0 while hand-offs wait and agenda is '1')
  Atomic, so any number of masters may call it at once: each due task moves exactly once. On a
  cluster the agenda is in another slot: the caller reschedules there (index.lua).
]]
local q = qkeys(1)
local now = now_ms()
local moved = promote(q, ARGV[1], now, tonumber(ARGV[2]))
if moved > 0 then wake(q) end
local due = next_due(q, now)
if ARGV[3] == '1' then
  if rcall('LLEN', q.out) > 0 then due = 0 end
  if q.direct then
    local key = q.ns .. ':due'
    if due >= 0 then
      rcall('ZADD', key, int(now + due), q.name)
    else
      rcall('ZREM', key, q.name)
    end
  end
end
return reply_with_signals({moved, due})
