-- uses: _lib
--[[ flow: change a queue's flow control (shared/limits.py): limits, pause.

  KEYS: queue block (29)
  ARGV: queue, mode, then by mode:
    'declare', n, n x (type, limits JSON or '')  a worker's handlers' limits ('' : none)
    'set', type, JSON                            an operator's override of some limits of a
                                                 type ({"i","b","k","rate"} and/or {"c"}),
                                                 on top of its earlier override
    'clear', type                                drop the operator's override
    'pause' | 'resume'
  Returns: the effective limits JSON ('' when none) after the change, and the paused flag.
  The claim script reads the effective limits from the "limits" field in one HMGET: they are
  recomputed here (declared, then the override's fields on top) on every change. Tasks held
  for a concurrency lease are re-examined with the new limits (a raised or removed limit
  releases them at once).
]]
local q = qkeys(1)
local queue, mode = ARGV[1], ARGV[2]

local function effective()
  local merged = {}
  local fields = rcall('HGETALL', q.flow)
  local over = {}
  for i = 1, #fields, 2 do
    local f, v = fields[i], fields[i + 1]
    local kind, ttype = string.sub(f, 1, 2), string.sub(f, 3)
    if kind == 'd:' or kind == 'o:' then
      local ok, lim = pcall(cjson.decode, v)
      if ok and type(lim) == 'table' then
        if kind == 'd:' then
          merged[ttype] = merged[ttype] or {}
          for k, x in pairs(lim) do merged[ttype][k] = x end
        else
          over[ttype] = lim
        end
      end
    end
  end
  for ttype, lim in pairs(over) do
    local m = merged[ttype] or {}
    if lim.i then m.i, m.b, m.k, m.rate = lim.i, lim.b, lim.k, lim.rate end
    if lim.c then m.c = lim.c end
    merged[ttype] = m
  end
  return merged
end

local _, before = flow_of(q)
before = before or {}

if mode == 'declare' then
  local n = tonumber(ARGV[3])
  for i = 0, n - 1 do
    local ttype, json = ARGV[4 + 2 * i], ARGV[5 + 2 * i]
    if json == '' then rcall('HDEL', q.flow, 'd:' .. ttype)
    else rcall('HSET', q.flow, 'd:' .. ttype, json) end
  end
elseif mode == 'set' then
  -- on top of the type's earlier override: a rate set now keeps a concurrency set before
  local old = rcall('HGET', q.flow, 'o:' .. ARGV[3])
  local ok, prev = pcall(cjson.decode, old or '{}')
  local new = cjson.decode(ARGV[4])
  if ok and type(prev) == 'table' then
    if new.i then prev.i, prev.b, prev.k, prev.rate = new.i, new.b, new.k, new.rate end
    if new.c then prev.c = new.c end
    new = prev
  end
  rcall('HSET', q.flow, 'o:' .. ARGV[3], cjson.encode(new))
elseif mode == 'clear' then
  rcall('HDEL', q.flow, 'o:' .. ARGV[3])
elseif mode == 'pause' then
  rcall('HSET', q.flow, 'paused', '1')
elseif mode == 'resume' then
  rcall('HDEL', q.flow, 'paused')
  if rcall('EXISTS', unpack(q.ready)) > 0 then wake(q) end
else
  return redis.error_reply('unknown flow mode ' .. tostring(mode))
end

local json = ''
if mode == 'declare' or mode == 'set' or mode == 'clear' then
  local merged = effective()
  if next(merged) then
    json = cjson.encode(merged)
    rcall('HSET', q.flow, 'limits', json)
  else
    rcall('HDEL', q.flow, 'limits')
  end
  -- held tasks of types whose concurrency limit changed: give them the free leases now
  for ttype, lim in pairs(before) do
    if lim.c and (not merged[ttype] or merged[ttype].c ~= lim.c) then
      refill(q, queue, ttype, merged[ttype] and tonumber(merged[ttype].c))
    end
  end
else
  json = rcall('HGET', q.flow, 'limits') or ''
end
return reply_with_signals({json, rcall('HEXISTS', q.flow, 'paused')})
