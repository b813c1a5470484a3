--[[ Reading a JSON text without decoding it, for status pages (peek, value): where a value
  ends, an object's members, and an outline of a long value. Each step is a string.find, in C,
  so a megabyte string costs a scan, not a decode into Lua tables (cjson.decode of a record
  with a megabyte payload in it would cost Redis milliseconds per task of a page).

  The texts are tq's own (bodies, error and result records): valid JSON. A text that is not,
  or one with more tokens than JSON.steps allows (a result of a million small numbers), makes
  the helpers give up (nil): the caller cuts the whole text instead, so the cost of a call is
  bounded whatever Redis holds.
]]
-- steps: string.find calls left to this script call; items: members (elements) of one
-- object (array) an outline lists; small: bytes of a member always given whole; sub: the
-- cap of values below a record's members; tail: bytes of the end of a long traceback an
-- outline keeps; budget: bytes an outline has left
local JSON = {steps = 20000, items = 64, small = 40, sub = 256, tail = 0, budget = 0}

-- How many backslashes run just before index j, read back 64 bytes a step (a megabyte of
-- them costs steps, not a loop per byte); nil: too many steps.
local function json_backslashes(s, j)
  local n, stop = 0, j - 1
  while JSON.steps > 0 do
    JSON.steps = JSON.steps - 1
    local first = math.max(1, stop - 63)
    local run = #string.match(string.sub(s, first, stop), '\\*$')
    n = n + run
    if run < stop - first + 1 or first == 1 then return n end
    stop = first - 1
  end
  return nil
end

-- The index just after the JSON string that starts at i (s[i] is '"'); nil: unterminated.
local function json_string_end(s, i)
  local j = i
  while JSON.steps > 0 do
    JSON.steps = JSON.steps - 1
    j = string.find(s, '"', j + 1, true)
    if not j then return nil end
    if string.byte(s, j - 1) ~= 92 then return j + 1 end
    local run = json_backslashes(s, j)   -- a quote after an odd run of \ is text
    if not run then return nil end
    if run % 2 == 0 then return j + 1 end
  end
  return nil
end

-- The index just after the JSON value that starts at i; nil: not a whole value (or too many
-- steps). A number or a literal ends at the next delimiter.
local function json_value_end(s, i)
  local c = string.byte(s, i)
  if c == 34 then return json_string_end(s, i) end
  if c == 123 or c == 91 then
    local depth, j = 0, i
    while JSON.steps > 0 do
      JSON.steps = JSON.steps - 1
      j = string.find(s, '[%[%]{}"]', j)
      if not j then return nil end
      c = string.byte(s, j)
      if c == 34 then
        j = json_string_end(s, j)
        if not j then return nil end
      else
        depth = depth + ((c == 123 or c == 91) and 1 or -1)
        j = j + 1
        if depth == 0 then return j end
      end
    end
    return nil
  end
  if not c then return nil end
  return string.find(s, '[,%]}%s]', i) or #s + 1
end

-- The items of the object or array that starts at i: {key, first, after, ...} per item (key
-- '' in an array; first and after bound its value); nil when they cannot be read (not
-- JSON, or too many steps). More than JSON.items items: the list ends with {'+'}.
local function json_items(s, i)
  local out = {}
  local object = string.byte(s, i) == 123
  local j = string.find(s, '[^%s]', i + 1)
  while j do
    local c = string.byte(s, j)
    if c == 125 or c == 93 then return out end   -- } or ]: the end
    if #out >= 3 * JSON.items then
      out[#out + 1] = '+'
      return out
    end
    local key = ''
    if object then
      if c ~= 34 then return nil end
      local k = json_string_end(s, j)
      if not k then return nil end
      key = string.sub(s, j + 1, k - 2)   -- (tq's keys have nothing to unescape)
      j = string.find(s, '[^%s]', k)
      if not j or string.byte(s, j) ~= 58 then return nil end   -- ':'
      j = string.find(s, '[^%s]', j + 1)
      if not j then return nil end
    end
    local after = json_value_end(s, j)
    if not after then return nil end
    out[#out + 1] = key
    out[#out + 1] = j
    out[#out + 1] = after
    j = string.find(s, '[^%s]', after)
    if j and string.byte(s, j) == 44 then j = string.find(s, '[^%s]', j + 1) end   -- ','
  end
  return nil
end

-- A bounded outline of the JSON value s[i, after): the text itself when it has at most cap
-- bytes; else, for an object or array with depth > 0 left, {'{' or '[', size, key,
-- outline, ...} (key '' in an array; items outlined with depth - 1, each to cap bytes at
-- the top, JSON.sub below, and to its share of the budget left; an object's short members
-- first; '+' ends a list cut short); else a cut, {'~', size, its first bytes, its last
-- JSON.tail bytes for a traceback ('' otherwise)}. Every piece of text counts against
-- JSON.budget (bytes left to this outline): a cut's pieces shrink to it, items stop ('+')
-- when it is spent. A value whose items cannot be read (too many steps) is cut.
local function json_outline(s, i, after, cap, depth, top, tailed)
  local size = after - i
  if size <= math.min(cap, JSON.budget) then
    JSON.budget = JSON.budget - size
    return string.sub(s, i, after - 1)
  end
  local c = string.byte(s, i)
  if depth > 0 and (c == 123 or c == 91) then
    local items = json_items(s, i)
    if items then
      local object = c == 123
      local out = {object and '{' or '[', size}
      -- an object's short members first, whatever the budget (the kind, the time, the
      -- worker of an error come whole whatever follows them); its long ones and an array's
      -- items (in their order) while the budget lasts
      if object then
        for n = 1, #items - 2, 3 do
          local first, past = items[n + 1], items[n + 2]
          if past - first <= JSON.small then
            out[#out + 1] = items[n]
            out[#out + 1] = string.sub(s, first, past - 1)
            JSON.budget = JSON.budget - (past - first)
          end
        end
      end
      local long = {}
      for n = 1, #items - 2, 3 do
        if not object or items[n + 2] - items[n + 1] > JSON.small then long[#long + 1] = n end
      end
      for k, n in ipairs(long) do
        if JSON.budget <= 0 then
          out[#out + 1] = '+'
          return out
        end
        -- each its share of what is left (twenty earlier errors all show, each shorter)
        local share = math.max(64, math.floor(JSON.budget / (#long - k + 1)))
        out[#out + 1] = items[n]
        out[#out + 1] = json_outline(s, items[n + 1], items[n + 2],
                                     math.min(top and cap or math.min(cap, JSON.sub), share),
                                     depth - 1,
                                     false, top and items[n] == 'traceback')
      end
      if items[#items] == '+' then out[#out + 1] = '+' end
      return out
    end
  end
  local head = math.max(0, math.min(cap, JSON.budget))
  local tail = tailed and math.max(0, math.min(JSON.tail, JSON.budget - head)) or 0
  JSON.budget = JSON.budget - head - tail
  return {'~', size, string.sub(s, i, i + head - 1),
          tail > 0 and string.sub(s, math.max(i + head, after - tail), after - 1) or ''}
end
