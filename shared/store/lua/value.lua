-- uses: _lib, _json
--[[ value: one value of a task in full, for the task page's "full value" (peek.lua gives
  previews), up to a limit.

  KEYS: queue block (29), the task's result key
  ARGV: id, part ('payload', 'message', 'traceback' or 'result'), limit (bytes)
  Returns: {text, size}: the value as stored (JSON: the whole body for 'payload', whose
           header a sealed or signed payload needs to be opened; a member of the error
           record; the whole result record) when it has at most `limit` bytes (false
           beyond: only its size), or {false, -1} when the task has no such value (or it
           cannot be read)
]]
local q = qkeys(1)
local id, part, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])

local function within(text, first, after)
  local size = after - first
  if size > limit then return {false, size} end
  return {string.sub(text, first, after - 1), size}
end

local whole = nil
if part == 'payload' then
  whole = rcall('HGET', q.tasks, id)
elseif part == 'result' then   -- whole: a result's end is costly to find in a dense value
  whole = rcall('GET', KEYS[QBLOCK + 1])
end
if whole ~= nil then
  if not whole then return {false, -1} end
  return within(whole, 1, #whole + 1)
end
local record = rcall('HGET', q.errors, id)
if not record then return {false, -1} end
JSON.steps = 1000000   -- one value on an operator's request: a longer walk is fine
local items = json_items(record, 1)
for n = 1, items and #items - 2 or 0, 3 do
  if items[n] == part then return within(record, items[n + 1], items[n + 2]) end
end
return {false, -1}
