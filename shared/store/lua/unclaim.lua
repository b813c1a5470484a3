-- uses: _lib
--[[ unclaim: a worker gives back claimed tasks it has not started (a batch stuck behind a
  long task, while other workers may idle): to the front of their ready lists, in order.

  KEYS: queue block (29)
  ARGV: worker, then n x (id, token)
  Returns: {ids given back, in claim order}
  Fenced: only tasks still claimed by this worker with that token go back (a task requeued or
  acked meanwhile is left alone). No attempt is counted; a concurrency lease goes back too.
]]
local q = qkeys(1)
local worker = ARGV[1]
local proc = proc_key(q, worker)
local back = {}
for i = #ARGV - 1, 2, -2 do   -- last first: LPUSH puts the first of the batch at the front
  local id, token = ARGV[i], ARGV[i + 1]
  local claim = rcall('HGET', q.run, id)
  local prefix = worker .. '|' .. token .. '|'
  if claim and string.sub(claim, 1, #prefix) == prefix then
    rcall('HDEL', q.run, id)
    rcall('LREM', proc, 1, id)
    local body = rcall('HGET', q.tasks, id)
    local ttype, prio = nil, nil
    if body then ttype, prio = header(body, q.name) end
    if ttype and leased(claim) then release(q, q.name, ttype, concurrency_of(q, ttype)) end
    if prio then
      rcall('LPUSH', ready_key(q, prio), id)
      back[#back + 1] = id
    else
      bury_malformed(q, id, now_ms(), 'no readable task body for a claimed id')
    end
  end
end
local ordered = {}
for i = #back, 1, -1 do ordered[#ordered + 1] = back[i] end
if #back > 0 then wake(q) end
return reply_with_signals({ordered})
