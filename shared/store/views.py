"""What status pages read from Redis (tq.admin, the `tq` CLI, the dashboard): queue depths,
counters, flow-control fields, and windows of a queue's tasks by state.

Read-only, each a bounded number of round trips. A corrupt key costs its own figure (read as
nothing), never the page: pipelines here do not raise on an error reply unless they say so.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ..ids import created_ms
from .broker import Broker
from .heads import queue_heads
from .integrity import read_marks
from .keys import PRIORITY_LEVELS
from .scripts import SCRIPTS

MAX_RUNNING = 10_000     # running tasks read from one queue (its run hash) at most
SIZES_CHUNK = 500        # queues per sizes.lua call


# -- per queue ------------------------------------------------------------------------------
def queue_sizes(broker: Broker, queues: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per queue: ready (total and by priority), scheduled, running, dead, held, paused,
    broken (its mark, or None), oldest_ready (when the oldest ready task was created, Unix
    seconds; None when none is ready: heads.py), limited (it has rate or concurrency
    limits). A script over chunks of queues on a standalone Redis (a thousand queues in a few
    milliseconds), one pipeline on a cluster; then the broken marks."""
    counts = PRIORITY_LEVELS + 7
    if broker.cluster:
        pipe = broker.conn.pipeline(transaction=False)
        for q in queues:
            k = broker.qkeys(q)
            for key in k.ready:
                pipe.llen(key)
            pipe.zcard(k.sched)
            pipe.hlen(k.run)
            pipe.zcard(k.dead)
            pipe.zcard(k.held)
            pipe.hexists(k.flow, "limits")
            pipe.hexists(k.flow, "paused")
            pipe.exists(k.broken)
            queue_heads(pipe, k)
        raw = pipe.execute(raise_on_error=False)   # a corrupt key: that count only
        step = counts + PRIORITY_LEVELS
        replies = []
        for i in range(len(queues)):   # the heads as the script gives them: the oldest
            replies.extend(raw[i * step:i * step + counts])
            heads = [h for h in raw[i * step + counts:(i + 1) * step] if isinstance(h, bytes)]
            replies.append(min(heads, key=lambda h: created_ms(h.decode("ascii", "replace"))
                                or 0) if heads else b"")
    else:
        replies = []
        for i in range(0, len(queues), SIZES_CHUNK):
            replies.extend(SCRIPTS.sizes(broker.link, [broker.keys.groups],
                                         [broker.namespace, *queues[i:i + SIZES_CHUNK]]))
    step = counts + 1
    broken = [q for i, q in enumerate(queues) if replies[i * step + counts - 1] == 1]
    marks = read_marks(broker.conn, broken, broker.qkeys)
    out: dict[str, dict[str, Any]] = {}
    for i, q in enumerate(queues):
        r = [n if isinstance(n, int) else 0 for n in replies[i * step:i * step + counts]]
        by_priority = {9 - p: n for p, n in enumerate(r[:PRIORITY_LEVELS]) if n}
        out[q] = {"ready": sum(r[:PRIORITY_LEVELS]), "by_priority": by_priority,
                  "scheduled": r[-7], "running": r[-6], "dead": r[-5], "held": r[-4],
                  "limited": bool(r[-3]), "paused": bool(r[-2]), "broken": marks.get(q),
                  "oldest_ready": _created(replies[i * step + counts])}
    return out


def _created(head: Any) -> float | None:
    """When the task of a head id was created (Unix seconds), None for none or not tq's."""
    if not head:
        return None
    ms = created_ms(head.decode("ascii", "replace") if isinstance(head, bytes) else head)
    return None if ms is None else ms / 1000


def busiest(sizes: dict[str, dict[str, Any]], n: int) -> list[str]:
    """The n queues with the most work (ready, running, scheduled, held), then by name; broken
    and paused ones with work first, so a status page never hides them."""
    def key(q: str) -> tuple[int, int, str]:
        s = sizes[q]
        work = s["ready"] + s["running"] + s["scheduled"] + s.get("held", 0)
        alarm = 1 if (s.get("broken") or (s.get("paused") and work)) else 0
        return (-alarm, -work, q)
    return sorted(sizes, key=key)[:n]


def totals(sizes: dict[str, dict[str, Any]]) -> dict[str, int]:
    """The counts of all queues together, and how many queues there are and have work."""
    fields = ("ready", "scheduled", "running", "held", "dead")
    out = {f: sum(s.get(f, 0) for s in sizes.values()) for f in fields}
    out["queues"] = len(sizes)
    out["busy_queues"] = sum(1 for s in sizes.values()
                             if s["ready"] or s["running"] or s["scheduled"] or s.get("held"))
    out["paused"] = sum(1 for s in sizes.values() if s.get("paused"))
    out["broken"] = sum(1 for s in sizes.values() if s.get("broken"))
    return out


def counter_totals(broker: Broker, queues: Sequence[str]) -> dict[str, int]:
    """Every queue's counters added up by event ("succeeded" -> n): one script call per chunk
    of queues on a standalone Redis, the counters read on a cluster."""
    totals: dict[str, int] = {}
    if broker.cluster:
        for fields in counters(broker, queues):
            for f, v in fields.items():
                event = f.decode().rpartition(":")[2]
                try:
                    totals[event] = totals.get(event, 0) + int(v)
                except ValueError:
                    continue
        return totals
    for i in range(0, len(queues), SIZES_CHUNK):
        flat = SCRIPTS.counters(broker.link, [broker.keys.groups],
                                [broker.namespace, *queues[i:i + SIZES_CHUNK]])
        for event, n in zip(flat[0::2], flat[1::2], strict=True):
            totals[event.decode()] = totals.get(event.decode(), 0) + int(n)
    return totals


def counters(broker: Broker, queues: Sequence[str]) -> list[dict[bytes, bytes]]:
    """Each queue's counters hash ("type:event" -> n); {} for a corrupt one."""
    pipe = broker.conn.pipeline(transaction=False)
    for q in queues:
        pipe.hgetall(broker.qkeys(q).stats)
    return [r if isinstance(r, dict) else {} for r in pipe.execute(raise_on_error=False)]


def counted_types(broker: Broker, queue: str) -> set[str]:
    """The task types a queue has counters of (those enqueued to it)."""
    fields: Any = broker.conn.hkeys(broker.qkeys(queue).stats)
    return {f.decode().rpartition(":")[0] for f in fields}


def heads(broker: Broker, queue: str) -> tuple[list[str], float | None]:
    """The first task id of each of a queue's ready lists (that has one), and the earliest
    due time (Unix ms) of its schedule (None: nothing scheduled)."""
    k = broker.qkeys(queue)
    pipe = broker.conn.pipeline(transaction=False)
    for key in k.ready:
        pipe.lindex(key, 0)
    pipe.zrange(k.sched, 0, 0, withscores=True)
    replies = pipe.execute(raise_on_error=False)
    first = [r.decode() for r in replies[:-1] if isinstance(r, bytes)]
    due = replies[-1][0][1] if isinstance(replies[-1], list) and replies[-1] else None
    return first, due


# -- flow control ---------------------------------------------------------------------------
def flow_heads(broker: Broker, queues: Sequence[str]) -> list[tuple[Any, Any, int]]:
    """Per queue (paused field, effective limits JSON, fields in its flow hash): only those
    fields, since the hash also holds per-bucket and per-task state that grows with a
    backlog."""
    pipe = broker.conn.pipeline(transaction=False)
    for q in queues:
        pipe.hmget(broker.qkeys(q).flow, "paused", "limits")
        pipe.hlen(broker.qkeys(q).flow)
    first = pipe.execute(raise_on_error=False)
    out = []
    for head, size in zip(first[0::2], first[1::2], strict=True):
        paused, limits = head if isinstance(head, list) else (None, None)
        out.append((paused, limits, size if isinstance(size, int) else 0))
    return out


def leased_types(broker: Broker, queue: str) -> Iterator[str]:
    """The types holding concurrency leases in a queue (matched in Redis, by HSCAN)."""
    for f in broker.conn.hscan_iter(broker.qkeys(queue).flow, match="run:*", count=1000):
        yield f[0].decode("utf-8", "replace")[4:]


def type_flows(broker: Broker, wanted: Sequence[tuple[str, str]]
               ) -> list[tuple[Any, Any, Any, int]]:
    """Per (queue, type): its declared limits JSON, the operator's override JSON, leases
    held, tasks held waiting for one (None / 0 where absent or unreadable)."""
    if not wanted:
        return []
    pipe = broker.conn.pipeline(transaction=False)
    for q, t in wanted:
        pipe.hmget(broker.qkeys(q).flow, f"d:{t}", f"o:{t}", f"run:{t}")
        pipe.zlexcount(broker.qkeys(q).held, f"[{t}\0", f"({t}\1")
    replies = pipe.execute(raise_on_error=False)
    out = []
    for fields, held in zip(replies[0::2], replies[1::2], strict=True):
        d, o, running = fields if isinstance(fields, list) else (None, None, None)
        out.append((d, o, running, held if isinstance(held, int) else 0))
    return out


def limit_owners(broker: Broker, queues: Sequence[str], task_type: str
                 ) -> list[tuple[bool, bool]]:
    """Per queue: (its handlers declared limits of the type, an operator overrode them)."""
    pipe = broker.conn.pipeline(transaction=False)
    for q in queues:
        pipe.hexists(broker.qkeys(q).flow, f"d:{task_type}")
        pipe.hexists(broker.qkeys(q).flow, f"o:{task_type}")
    replies = pipe.execute(raise_on_error=False)
    return [(d is True, o is True) for d, o in zip(replies[0::2], replies[1::2], strict=True)]


# -- tasks by state -------------------------------------------------------------------------
def agenda_queues(broker: Broker, n: int) -> list[str]:
    """The n queues first on the masters' agenda (their earliest scheduled task soonest):
    where the soonest scheduled tasks of all queues are."""
    return [q.decode() for q in broker.conn.zrange(broker.keys.due, 0, n - 1)]


def firsts(broker: Broker, state: str, queues: Sequence[str], n: int
           ) -> list[tuple[float, str, str]]:
    """The first n of each queue's schedule ("scheduled": soonest first) or dead letters
    ("dead": newest first), (due or death time ms, queue, id); one pipeline."""
    pipe = broker.conn.pipeline(transaction=False)
    for q in queues:
        _ordered(pipe, broker, state, q, 0, n)
    return [(score, q, tid.decode()) for q, entries in zip(queues, pipe.execute(), strict=True)
            for tid, score in entries]


def window(broker: Broker, state: str, queue: str, start: int, n: int
           ) -> list[tuple[str, float]]:
    """(id, due or death time ms) of a queue's schedule ("scheduled": soonest first) or dead
    letters ("dead": newest first) from position `start`."""
    entries: Any = _ordered(broker.conn, broker, state, queue, start, n)
    return [(tid.decode(), score) for tid, score in entries]


def _ordered(target: Any, broker: Broker, state: str, queue: str, start: int, n: int) -> Any:
    """ZRANGE of a queue's schedule or ZREVRANGE of its dead letters, on a connection (the
    entries) or a pipeline (queued)."""
    k = broker.qkeys(queue)
    if state == "dead":
        return target.zrevrange(k.dead, start, start + n - 1, withscores=True)
    return target.zrange(k.sched, start, start + n - 1, withscores=True)


def bodies(broker: Broker, tasks: Sequence[tuple[str, str]]) -> list[tuple[Any, Any]]:
    """(body, failures) of each (queue, id), as stored (None where absent)."""
    pipe = broker.conn.pipeline(transaction=False)
    for q, tid in tasks:
        qk = broker.qkeys(q)
        pipe.hget(qk.tasks, tid)
        pipe.hget(qk.fails, tid)
    replies = pipe.execute()
    return list(zip(replies[0::2], replies[1::2], strict=True))


def finished_window(broker: Broker, queue: str, start: int, n: int) -> list[str]:
    """Ids of a queue's recently finished tasks from position `start`, newest first."""
    ids: Any = broker.conn.lrange(broker.qkeys(queue).done, start, start + n - 1)
    return [tid.decode() for tid in ids]


def ready_lengths(broker: Broker, queue: str) -> list[int]:
    """The length of each of a queue's ready lists, priority 9 first."""
    pipe = broker.conn.pipeline(transaction=False)
    for key in broker.qkeys(queue).ready:
        pipe.llen(key)
    return pipe.execute()


def ready_window(broker: Broker, queue: str, level: int, start: int, n: int) -> list[str]:
    """Ids of one ready list (level 0 is priority 9) from position `start`, oldest first."""
    ids: Any = broker.conn.lrange(broker.qkeys(queue).ready[level], start, start + n - 1)
    return [tid.decode() for tid in ids]


def running(broker: Broker, queue: str, limit: int = MAX_RUNNING) -> dict[str, str]:
    """A queue's running tasks, id -> claim ("worker|token|started ms..."), at most `limit`."""
    run = broker.qkeys(queue).run
    conn = broker.conn
    if conn.hlen(run) <= limit:   # type: ignore[operator]
        claims: Any = conn.hgetall(run)
        return {tid.decode(): v.decode() for tid, v in claims.items()}
    out: dict[str, str] = {}
    for tid, v in conn.hscan_iter(run, count=1000):
        out[tid.decode()] = v.decode()
        if len(out) >= limit:
            break
    return out


def state_counts(broker: Broker, state: str, queues: Sequence[str]) -> dict[str, int]:
    """How many tasks of a state ("scheduled", "dead", "finished", "running" or "ready")
    each queue has (one pipeline; a corrupt key counts 0)."""
    pipe = broker.conn.pipeline(transaction=False)
    for q in queues:
        k = broker.qkeys(q)
        if state == "scheduled":
            pipe.zcard(k.sched)
        elif state == "dead":
            pipe.zcard(k.dead)
        elif state == "finished":
            pipe.llen(k.done)
        elif state == "running":
            pipe.hlen(k.run)
        else:
            for key in k.ready:
                pipe.llen(key)
    replies = [r if isinstance(r, int) else 0 for r in pipe.execute(raise_on_error=False)]
    if state == "ready":
        return {q: sum(replies[i * PRIORITY_LEVELS:(i + 1) * PRIORITY_LEVELS])
                for i, q in enumerate(queues)}
    return dict(zip(queues, replies, strict=True))
