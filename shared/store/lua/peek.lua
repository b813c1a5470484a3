-- uses: _lib, _json
--[[ peek: what a status page shows of a task, its long values cut to bounded previews in
  Redis, so that a page of fifty tasks with megabyte payloads ships kilobytes (inspect.lua
  gives the values whole).

  KEYS: queue block (29), the task's result key
  ARGV: id, cap (bytes: a value of at most cap bytes comes whole, a longer one is cut),
        records ('1': read the error and result records too; '0': the body and where the
        task is, only), tail (bytes of the end of a long traceback kept too), steps (the
        most string.find calls reading a long record may take: _json.lua)
  Returns: {body, body_size, claim, failures, error, sched_score, dead_score, result,
            waiting}
    body: the body when body_size <= cap, else its first cap bytes (tq writes the payload
      last: the header is whole)
    error, result: the record (JSON) when it has at most cap bytes, else its outline
      (_json.lua's json_outline, three levels deep: a record's members, the items of its
      history and theirs): members of at most cap bytes whole, longer ones cut to cap bytes
      (below them to cap / 4), a traceback with its last `tail` bytes; 4 caps and a tail
      of text at most
  (false where absent; error and result false too when records is '0')
]]
local q = qkeys(1)
local id, cap = ARGV[1], tonumber(ARGV[2])
JSON.tail, JSON.steps = tonumber(ARGV[4]) or 0, tonumber(ARGV[5]) or JSON.steps
JSON.sub = math.max(64, math.floor(cap / 4))

-- a record's outline: its members, the items of a history and their members (3 levels), in
-- at most 4 caps and a tail (a row of a page stays within a few caps, however long the
-- values, and however many)
local function outlined(text)
  if not text or #text <= cap then return text end
  JSON.budget = 4 * cap + JSON.tail
  return json_outline(text, 1, #text + 1, cap, 3, true, false)
end

local size = rcall('HSTRLEN', q.tasks, id)
local body = rcall('HGET', q.tasks, id)
if body and size > cap then body = string.sub(body, 1, cap) end
local err, result = false, false
if ARGV[3] == '1' then
  err = outlined(rcall('HGET', q.errors, id))
  result = outlined(rcall('GET', KEYS[QBLOCK + 1]))
end
return {body, size, rcall('HGET', q.run, id), rcall('HGET', q.fails, id), err,
        rcall('ZSCORE', q.sched, id), rcall('ZSCORE', q.dead, id), result,
        rcall('HGET', q.wf, 'd:' .. id)}
