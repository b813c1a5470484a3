-- uses: _lib
--[[ rekey: replace stored bodies and errors with the same content sealed under another key
  (tq keys rotate, shared/protect.py), each only if it is still what the caller read.

  KEYS: queue block (29)
  ARGV: n, then n x (where 'b' body | 'e' error, id, old value, new value)
  Returns: how many were replaced (a value changed meanwhile, e.g. a task that finished, is
  left alone: the caller reads it again on its next pass).
]]
local q = qkeys(1)
local n = tonumber(ARGV[1])
local done = 0
for i = 0, n - 1 do
  local a = 2 + i * 4
  local key = ARGV[a] == 'b' and q.tasks or q.errors
  if rcall('HGET', key, ARGV[a + 1]) == ARGV[a + 2] then
    rcall('HSET', key, ARGV[a + 1], ARGV[a + 3])
    done = done + 1
  end
end
return done
