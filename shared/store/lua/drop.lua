-- uses: _lib
--[[ drop: delete a whole queue (`tq queue delete`), or forget an idle, empty one.

  KEYS: queue block (29), the queue's broken mark, then (delete) the processing lists of the
        workers that hold its running tasks
  ARGV: mode ('delete' | 'forget'), force ('1': delete even while tasks run)
  Returns: {outcome, ready, scheduled, running, dead}: outcome 'dropped', 'busy' (tasks run
           and no force: nothing deleted) or 'not-empty' (forget: the queue holds tasks).
  Deleted keys are UNLINKed (freed in the background: a large queue does not block Redis).
  Result records and unique locks are left to expire. Forgetting deletes the stats hash too:
  the next enqueue finds it missing and adds the queue to the queue set again.
]]
local q = qkeys(1)
local mode, force = ARGV[1], ARGV[2] == '1'
local ready = 0
for lvl = 1, 10 do ready = ready + rcall('LLEN', q.ready[lvl]) end
local sched, running, dead = rcall('ZCARD', q.sched), rcall('HLEN', q.run), rcall('ZCARD', q.dead)
local counts = {ready, sched, running, dead}
if mode == 'forget' then
  if ready + sched + running + dead + rcall('HLEN', q.tasks) + rcall('EXISTS', KEYS[QBLOCK + 1])
      + rcall('HLEN', q.wf) + rcall('LLEN', q.out) > 0 then
    return {'not-empty', unpack(counts)}
  end
  -- an operator's pause or limits outlive idleness (they are gone only with a delete)
  if rcall('HEXISTS', q.flow, 'paused') == 1 then return {'not-empty', unpack(counts)} end
  for _, f in ipairs(rcall('HKEYS', q.flow)) do
    if string.sub(f, 1, 2) == 'o:' then return {'not-empty', unpack(counts)} end
  end
elseif running > 0 and not force then
  return {'busy', unpack(counts)}
end
rcall('UNLINK', unpack(KEYS))
return {'dropped', unpack(counts)}
