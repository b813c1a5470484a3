"""What operators do to whole queues in Redis (tq.admin): dead letters, scheduled tasks, purge,
queue deletion, key rotation and flow control, one typed call per script.

Errors are redis-py's (callers translate them); a corrupt key of the queue raises QueueBroken.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import redis

from .broker import Broker
from .scripts import SCRIPTS
from .tasks import call_on_queue, raise_broken


# -- dead letters (dead.lua) ---------------------------------------------------------------
def dead_count(broker: Broker, queue: str) -> int:
    """How many dead letters a queue holds."""
    try:
        return int(broker.conn.zcard(broker.qkeys(queue).dead))
    except redis.exceptions.ResponseError as exc:
        raise_broken(broker, queue, exc)


def dead_oldest(broker: Broker, queue: str, op: str, limit: int, skip: int) -> tuple[int, int]:
    """Retry or delete (op) up to `limit` of a queue's oldest dead letters, from position
    `skip`: (done, kept), kept being those that can never run (retry leaves them dead)."""
    done, kept = call_on_queue(broker, SCRIPTS.dead, queue, [queue, op, limit, skip])
    return int(done), int(kept)


def dead_by_id(broker: Broker, queue: str, op: str, ids: Sequence[str]) -> int:
    """Retry or delete (op) these dead letters of a queue; how many were dead there."""
    return int(call_on_queue(broker, SCRIPTS.dead, queue, [queue, op, 0, 0, *ids])[0])


def where_dead(broker: Broker, ids: Sequence[str], queues: Sequence[str]
               ) -> dict[str, list[str]]:
    """queue -> those of `ids` dead-lettered in it (the first of `queues` that has each)."""
    pipe = broker.conn.pipeline(transaction=False)
    for tid in ids:
        for q in queues:
            pipe.zscore(broker.qkeys(q).dead, tid)
    scores = pipe.execute(raise_on_error=False)
    for j, score in enumerate(scores):
        if isinstance(score, Exception):
            raise_broken(broker, queues[j % len(queues)], score)
    by_queue: dict[str, list[str]] = {}
    for i, tid in enumerate(ids):
        for j, q in enumerate(queues):
            if scores[i * len(queues) + j] is not None:
                by_queue.setdefault(q, []).append(tid)
                break
    return by_queue


# -- waiting tasks (sched.lua, purge.lua) ---------------------------------------------------
def scheduled_by_id(broker: Broker, queue: str, op: str, ids: Sequence[str]) -> int:
    """Make these scheduled tasks ready now (op "now") or delete them ("delete"); how many
    were still scheduled."""
    return int(call_on_queue(broker, SCRIPTS.sched, queue, [queue, op, *ids]))


def purge_some(broker: Broker, queue: str, limit: int) -> int:
    """Delete up to `limit` waiting (ready, scheduled, held) tasks of a queue; how many."""
    return int(call_on_queue(broker, SCRIPTS.purge, queue, [limit, queue]))


# -- the queue itself (drop.lua) -------------------------------------------------------------
def drop(broker: Broker, queue: str, force: bool) -> tuple[str, list[int]]:
    """Delete a queue's keys: (outcome "dropped" | "busy", [ready, scheduled, running, dead]
    as counted just before). force: even while tasks of it run (their workers' processing
    lists lose them too)."""
    qk = broker.qkeys(queue)
    procs = []
    if force:   # the processing lists of the workers that hold its running tasks
        claims: Any = broker.conn.hvals(qk.run)
        holders = {v.split(b"|", 1)[0] for v in claims}
        procs = [qk.proc(w.decode()) for w in sorted(holders)]
    reply = call_on_queue(broker, SCRIPTS.drop, queue, ["delete", "1" if force else "0"],
                          extra=[qk.broken, *procs])
    return reply[0].decode(), [int(n) for n in reply[1:]]


# -- payload protection (rekey.lua) ---------------------------------------------------------
def bodies(broker: Broker, queue: str) -> Iterator[tuple[str, bytes]]:
    """Every stored task body of a queue, (id, body), by HSCAN."""
    for field, raw in broker.conn.hscan_iter(broker.qkeys(queue).tasks, count=500):
        yield field.decode(), raw


def errors(broker: Broker, queue: str) -> Iterator[tuple[str, bytes]]:
    """Every stored last error of a queue's tasks, (id, error JSON), by HSCAN."""
    for field, raw in broker.conn.hscan_iter(broker.qkeys(queue).errors, count=500):
        yield field.decode(), raw


def rekey(broker: Broker, queue: str, changes: Sequence[tuple[str, str, bytes, str]]) -> int:
    """Replace stored values, each (where "b" body | "e" error, id, old, new), only where
    they still hold `old`; how many were replaced."""
    flat = [x for change in changes for x in change]
    return int(call_on_queue(broker, SCRIPTS.rekey, queue, [len(changes), *flat]))


# -- flow control (flow.lua) ----------------------------------------------------------------
def flow(broker: Broker, queue: str, mode: str, *args: str) -> tuple[bytes | None, bool]:
    """Change a queue's flow control: mode "pause" | "resume" | "set" (type, limits JSON) |
    "clear" (type). Returns (the effective limits JSON of its types, paused)."""
    reply = call_on_queue(broker, SCRIPTS.flow, queue, [queue, mode, *args])
    return reply[0] or None, bool(reply[1])
