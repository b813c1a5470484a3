--[[ Flow control at claim time (rate and concurrency limits, shared/limits.py): a part of
  claim.lua, prepended by scripts.py to the scripts that say `-- uses: ..., _admit`. Needs _lib.

  A limited task met by a claim runs, waits in the held set for a concurrency lease, or goes
  back to the schedule until its rate slot opens: it costs no attempt and no worker time.
]]
-- The rate bucket of a limited task: its type, or type:key for a per-key limit, the key being
-- the producer's "k" header field (a rate_key function, evaluated at enqueue) or else the
-- payload field the limit names.
local function bucket(ttype, lim, body)
  if not lim.k then return ttype end
  local h = string.match(body, '^{(.-)"p":')
  local key = h and string.match(h, '"k":"([^"]*)"')
  if not key and lim.k ~= '()' then   -- ('()': a rate_key function, see shared/limits.py)
    local ok, doc = pcall(cjson.decode, body)
    local v = ok and type(doc) == 'table' and type(doc.p) == 'table' and doc.p[lim.k]
    if type(v) == 'number' then
      key = string.format('%.17g', v)
    elseif type(v) == 'string' then
      key = v
    end
  end
  if not key then return ttype end
  return ttype .. ':' .. key
end

-- GCRA: a start is allowed while the theoretical arrival time (TAT) is within the burst
-- tolerance of now; it moves TAT one interval on. Returns true, or false and the opening (ms).
-- The tolerance has a quarter of an interval (at most 20 ms) on top of the burst's: a start
-- that was a little late (promotion and claim take a millisecond or two) must not push the
-- next one out of its slot. Over any window of W ms this allows at most
-- burst + floor(W / interval) starts (W a whole number of intervals; the quarter is taken
-- back by the window's own edge).
local function rate_ok(q, b, lim, now)
  local interval = tonumber(lim.i)
  local tolerance = interval * ((tonumber(lim.b) or 1) - 1) + math.min(interval / 4, 20)
  local tat = tonumber(rcall('HGET', q.flow, 'tat:' .. b)) or now
  if tat < now then tat = now end
  if tat - now > tolerance then return false, tat - tolerance end
  rcall('HSET', q.flow, 'tat:' .. b, string.format('%.3f', tat + interval))
  return true
end

-- Over its rate: into the schedule, due when its slot opens. A first deferral joins the end
-- of its bucket's line: deferrals of a bucket are spaced one interval apart ("next:" is the
-- first free slot), so they come back one per slot rather than all at the first opening. A
-- deferred task ("dfr:ID" marks it) that is still early when it comes back (its slot was
-- taken by a late start) keeps its place: it goes back to the exact opening.
local function defer(q, b, lim, id, opening, again)
  local at = opening
  if not again then
    at = tonumber(rcall('HGET', q.flow, 'next:' .. b)) or 0
    if at < opening then at = opening end
    rcall('HSET', q.flow, 'next:' .. b, string.format('%.3f', at + tonumber(lim.i)),
          'dfr:' .. id, '1')
  end
  local due = math.ceil(at)
  local first = rcall('ZRANGE', q.sched, 0, 0, 'WITHSCORES')
  rcall('ZADD', q.sched, due, id)
  if not first[2] or due < tonumber(first[2]) then schedule_moved(q, due) end
end

-- A limited task met at claim time: 'run' (true: it holds a concurrency lease), 'held' (no
-- lease free: it waits in the held set for one) or 'deferred' (over its rate). A claim takes
-- at most an eighth of a type's leases (at least one), so small limits spread over the
-- fleet's workers instead of one worker prefetching them all.
local function admit(q, ttype, lim, id, body, now, leased_now)
  local c = tonumber(lim.c)
  if c then
    local taken = false
    if (leased_now[ttype] or 0) < math.max(1, math.floor(c / 8)) then
      taken = rcall('HINCRBY', q.flow, 'run:' .. ttype, 1) <= c
      if not taken then rcall('HINCRBY', q.flow, 'run:' .. ttype, -1) end
    end
    if not taken then
      rcall('ZADD', q.held, 0, ttype .. '\0' .. id)
      return 'held', false
    end
  end
  if lim.i then
    local b = bucket(ttype, lim, body)
    local ok, opening = rate_ok(q, b, lim, now)
    local again = rcall('HEXISTS', q.flow, 'dfr:' .. id) == 1
    if not ok then
      if c then rcall('HINCRBY', q.flow, 'run:' .. ttype, -1) end
      defer(q, b, lim, id, opening, again)
      return 'deferred', false
    end
    if again then rcall('HDEL', q.flow, 'dfr:' .. id) end
  end
  if c then leased_now[ttype] = (leased_now[ttype] or 0) + 1 end
  return 'run', c ~= nil
end
