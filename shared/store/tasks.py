"""What producers do to tasks in Redis (tq.Client): enqueue, inspect, cancel, workflows' members
and records, progress records, and the event stream a wait blocks on.

Each script call is one function here that names its KEYS and ARGV; the scripts' headers
(lua/*.lua) give their contracts. Errors are redis-py's: callers translate them (translated()),
except enqueue(), the hot path, which does it without a context manager.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple, NoReturn

import redis

from ..errors import QueueBroken
from .broker import DEFAULT_RESULT_TTL, Broker
from .connection import translation
from .scripts import SCRIPTS, Script

Member = tuple[str, str, int, str, str]   # a workflow member: id, body, upstream count, node, type


class Snapshot(NamedTuple):
    """inspect.lua's reply: one consistent look at a task (None where absent)."""

    body: bytes | None            # the task body while it waits, runs or is dead
    claim: bytes | None           # "worker|token|started ms" while it runs ("|x": cancelling)
    failures: bytes | None        # failed attempts so far
    error: bytes | None           # the last error (JSON)
    sched: bytes | None           # due time (ms) while scheduled
    dead: bytes | None            # time of death (ms) while dead-lettered
    result: bytes | None          # the result record (JSON) once finished
    last_event: bytes | None = None   # watch: the stream id to read its events after
    waiting: bytes | None = None      # a workflow member: upstream members it waits for


def enqueue(broker: Broker, queue: str, tasks: list[list[Any]], locks: list[str]) -> list[str]:
    """enqueue.lua for tasks of one queue; their ids in order, "" where the id was taken by
    another task (the caller retries that one with a fresh id). QueueBroken if a corrupt key
    of the queue refused them; errors translated (RedisUnavailable...).

    tasks: [id, body, priority, delay_ms, eta_ms, uniq_ttl_ms, type] each ('' when unused);
    locks: the unique-lock keys of those with uniq_ttl_ms, in order.
    """
    q = broker.qkeys(queue)
    ready = q.ready   # index 0 is priority 9
    keys: list[Any] = [q.tasks, q.sched, q.wake, q.stats, q.soon, q.groups]
    args: list[Any] = [len(tasks)]
    if len(tasks) == 1:   # enqueue(): the producer's hot path
        t = tasks[0]
        keys.append(ready[9 - t[2]])
        args.extend((t[0], t[1], 7, *t[3:]))
    else:
        index: dict[int, int] = {}
        for t in tasks:
            i = index.get(t[2])
            if i is None:
                keys.append(ready[9 - t[2]])
                i = index[t[2]] = len(keys)
            args.extend((t[0], t[1], i, *t[3:]))
    keys.extend(locks)
    try:   # (translated(), without a context manager per call)
        broker.register_queues([queue])
        try:
            reply = broker.replicated(SCRIPTS.enqueue, keys, args)
        except redis.exceptions.ResponseError as exc:
            if not str(exc).startswith("TQBROKEN "):
                raise
            why = str(exc)[len("TQBROKEN "):].split(" script:", 1)[0]
            broker.quarantine.contain([queue], exc)   # mark it, for status and workers
            raise QueueBroken(queue, why, "nothing was enqueued") from None
        broker.register_queues([queue])   # again if that call had to reconnect
    except Exception as exc:
        better = translation(broker.url, exc)
        if better is None:
            raise
        raise better from None
    got = [g.decode() for g in reply]
    if len(got) > len(tasks):   # '+': the queue was new or forgotten (see enqueue.lua)
        got.pop()
        broker.register_queues([queue], again=True)
    return got


def inspect_many(broker: Broker, pairs: Sequence[tuple[str, str]], watch: bool = False
                 ) -> list[Snapshot | None]:
    """inspect.lua for each (task id, queue), in one pipeline; None where the queue knows
    nothing of the task, or (looking at several) where its queue is broken and set aside.
    watch: register a waiter on each unfinished task (wait() reads its events)."""
    for attempt in (1, 2):
        pipe = broker.conn.pipeline(transaction=False)
        for task_id, q in pairs:
            SCRIPTS.inspect.queue(pipe, [*broker.block(q), broker.qkeys(q).result(task_id)],
                                  [task_id, "1" if watch else "0"])
        replies = pipe.execute(raise_on_error=False)
        if attempt == 1 and any(isinstance(r, redis.exceptions.NoScriptError)
                                for r in replies):
            broker.load_scripts()   # Redis restarted: its script cache is empty
            continue
        break
    out: list[Snapshot | None] = []
    for (_, q), reply in zip(pairs, replies, strict=True):
        if isinstance(reply, Exception):
            if len(pairs) > 1 and broker.quarantine.explains([q], reply):
                out.append(None)   # looking through every queue: a broken one hides nothing
                continue
            raise_broken(broker, q, reply)
        snap = Snapshot(*reply)
        out.append(snap if snap.body is not None or snap.result is not None else None)
    return out


def progress(broker: Broker, tasks: Sequence[tuple[str, str]]) -> list[bytes | None]:
    """The last ctx.progress() record of each (queue, task id), in one pipeline (None: none,
    or a corrupt key)."""
    pipe = broker.conn.pipeline(transaction=False)
    for queue, task_id in tasks:
        pipe.get(broker.qkeys(queue).progress(task_id))
    return [raw if isinstance(raw, bytes) else None
            for raw in pipe.execute(raise_on_error=False)]


def events(broker: Broker, queue: str, after: str, block_ms: int
           ) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """A queue's task events (id, fields) after stream id `after`, at most 100, blocking up to
    block_ms while there are none ([] then)."""
    got: Any = broker.conn.xread({broker.qkeys(queue).events: after}, count=100, block=block_ms)
    return got[0][1] if got else []


def cancel(broker: Broker, queue: str, task_id: str) -> str:
    """cancel.lua: 'cancelled', 'cancelling', 'finished' or 'unknown'."""
    got = call_on_queue(broker, SCRIPTS.cancel, queue,
                        [queue, task_id, int(DEFAULT_RESULT_TTL * 1000)],
                        extra=[broker.qkeys(queue).result(task_id)])
    return got.decode() if isinstance(got, bytes) else str(got)


def save_workflow(broker: Broker, workflow_id: str, record: str, ttl_ms: int) -> None:
    """Store a workflow's record (its members, policy) for ttl_ms."""
    broker.conn.set(broker.keys.workflow(workflow_id), record, px=ttl_ms)


def workflow(broker: Broker, workflow_id: str) -> bytes | None:
    """A workflow's record as stored, None once expired or for an unknown id."""
    raw: Any = broker.conn.get(broker.keys.workflow(workflow_id))
    return raw


def add_members(broker: Broker, queue: str, members: Sequence[Member]) -> int:
    """wfadd.lua: store workflow members of one queue; how many were new."""
    flat = [x for m in members for x in m]
    return int(call_on_queue(broker, SCRIPTS.wfadd, queue, [queue, len(members), *flat]))


def call_on_queue(broker: Broker, script: Script, queue: str, args: list[Any],
                  extra: Sequence[Any] = ()) -> Any:
    """A script over one queue's block of keys (then `extra`); QueueBroken if a corrupt key
    of the queue fails it."""
    try:
        keys = [*broker.block(queue), *extra] if extra else broker.block(queue)
        return script(broker.link, keys, args)   # type: ignore[arg-type]   # or a ClusterLink
    except redis.exceptions.ResponseError as exc:
        raise_broken(broker, queue, exc)


def raise_broken(broker: Broker, queue: str, exc: Exception) -> NoReturn:
    """Raise QueueBroken if a corrupt key of `queue` explains the error `exc`, else exc."""
    if broker.quarantine.explains([queue], exc):
        raise QueueBroken(queue, broker.quarantine.queues[queue]) from None
    raise exc


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """`items` in slices of `size` (one script call each)."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
