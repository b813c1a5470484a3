"""The operators' calls (tq.Client inherits them): queue sizes, counters, limits, dead letters,
scheduled tasks, pauses, purge, key rotation, repair and deletion of queues.

    client = tq.Client()
    client.queue_sizes()["email"]["dead"]      # how many dead letters
    client.retry_dead("all", queue="email")    # back on their queue, attempts reset

Redis is reached through tq.store only: its views (reads), admin (the scripts operators run)
and tasks (inspection); what they return is decoded by tq.info.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, Self

from .errors import ConfigError
from .info import int_or, limits_or_none, loads_or, task_info
from .limits import Limits, declared
from .protect import KeyRing, reseal_body, reseal_error
from .store import admin as store
from .store import tasks, views
from .store.broker import Broker
from .store.connection import translated
from .store.integrity import RepairReport, repair
from .task import TaskInfo, validate_name

ADMIN_CHUNK = 1000         # tasks per script call when retrying/deleting/purging many
REKEY_CHUNK = 100          # values resealed per script call
EVENTS = ("enqueued", "started", "succeeded", "failed", "retried", "dead", "throttled")

Progress = Callable[[int, int], None]


def known_queue(queue: str, known: list[str]) -> str:
    """`queue` if it is a valid name among `known`, else ValueError naming the known ones."""
    validate_name("queue", queue)
    if queue not in known:
        raise ValueError(f"unknown queue {queue!r} (known: {', '.join(known) or 'none'})")
    return queue


class Admin:
    """Manage queues and dead letters, over one connection (tq.store.Broker)."""

    def __init__(self, broker: Broker, keys: KeyRing | None = None) -> None:
        self.broker = broker
        self.url = broker.url
        self.safe_url = broker.safe_url
        self.namespace = broker.namespace
        # Payload protection (tq.protect): opens what is shown, reseals on rotate_keys().
        self.keys = keys

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.broker.close()

    # -- queues and counters ------------------------------------------------------------
    def queues(self) -> list[str]:
        return self.broker.known_queues()

    def queue_sizes(self) -> dict[str, dict[str, Any]]:
        """Per queue: ready (total and by priority), scheduled, running, dead, held (waiting
        for a concurrency lease), paused, broken (its mark, or None), oldest_ready (when the
        oldest ready task was created, Unix seconds; None when none is ready)."""
        queues = self.queues()
        with translated(self.url):
            return views.queue_sizes(self.broker, queues)

    def totals(self) -> dict[str, int]:
        """The counters of every queue added up by event (enqueued, started, succeeded,
        failed, retried, dead): stats()["total"], cheaply (one call on a standalone Redis)."""
        queues = self.queues()
        with translated(self.url):
            got = views.counter_totals(self.broker, queues)
        out = dict.fromkeys(EVENTS, 0)
        out.update(got)
        return out

    def stats(self) -> dict[str, Any]:
        """Counters (enqueued, started, succeeded, failed, retried, dead) in total/by type/queue."""
        queues = self.queues()
        with translated(self.url):
            # a corrupt counter hash (its queue is set aside) costs that queue's counters only
            replies = views.counters(self.broker, queues)
        total = dict.fromkeys(EVENTS, 0)
        by_type: dict[str, dict[str, int]] = {}
        by_queue: dict[str, dict[str, int]] = {}
        by_queue_type: dict[str, dict[str, dict[str, int]]] = {}
        for q, fields in zip(queues, replies, strict=True):
            per_q = by_queue.setdefault(q, dict.fromkeys(EVENTS, 0))
            for f, v in fields.items():
                ttype, _, event = f.decode().rpartition(":")
                try:
                    n = int(v)
                except ValueError:   # a counter that is not a number: skipped, not fatal
                    continue
                by_queue_type.setdefault(q, {}).setdefault(ttype, {})[event] = n
                by_type.setdefault(ttype, dict.fromkeys(EVENTS, 0))
                by_type[ttype][event] = by_type[ttype].get(event, 0) + n
                per_q[event] = per_q.get(event, 0) + n
                total[event] = total.get(event, 0) + n
        return {"total": total, "by_type": by_type, "by_queue": by_queue,
                "by_queue_type": by_queue_type}

    def delete_queue(self, queue: str, force: bool = False) -> dict[str, Any]:
        """Delete a queue and everything in it (ready, scheduled, dead tasks, counters) and
        forget its name. Refused while tasks of it run, unless force (their acks are then
        refused: nothing is left to ack). Returns {"deleted": bool, ready, scheduled, running,
        dead} as counted just before."""
        validate_name("queue", queue)
        with translated(self.url):
            outcome, counts = store.drop(self.broker, queue, force)
            if outcome == "dropped":
                self.broker.forget_queue(queue)
        return {"queue": queue, "deleted": outcome == "dropped",
                **dict(zip(("ready", "scheduled", "running", "dead"), counts, strict=True))}

    def repair_queue(self, queue: str) -> RepairReport:
        """Bring a broken queue back: corrupt keys moved aside, the queue re-indexed from its
        task bodies, its broken mark cleared (see tq.store.integrity). Safe on a healthy queue."""
        validate_name("queue", queue)
        with translated(self.url):
            return repair(self.broker, queue)

    # -- dead letters -------------------------------------------------------------------
    def dead(self, limit: int = 50, offset: int = 0, queue: str | None = None) -> list[TaskInfo]:
        """Dead-lettered tasks, newest first, with their last error and traceback."""
        if limit <= 0 or offset < 0:
            raise ValueError("limit must be positive and offset not negative")
        queues = [queue] if queue else self.queues()
        with translated(self.url):
            found = views.firsts(self.broker, "dead", queues, offset + limit)
            found.sort(key=lambda e: (-e[0], e[2]))
            page = [(tid, q) for _, q, tid in found[offset:offset + limit]]
            snaps = tasks.inspect_many(self.broker, page)
        return [task_info(tid, q, snap, ring=self.keys)
                for (tid, q), snap in zip(page, snaps, strict=True)
                if snap is not None and snap.body is not None]   # deleted meanwhile: left out

    def retry_dead(self, ids: Iterable[str] | str = "all", queue: str | None = None,
                   progress: Progress | None = None) -> int:
        """Put dead tasks back on their queues with attempts reset; returns how many.

        Malformed dead letters (nothing tq could run) stay dead: delete them instead.
        """
        return self._dead_op("retry", ids, queue, progress)

    def delete_dead(self, ids: Iterable[str] | str = "all", queue: str | None = None,
                    progress: Progress | None = None) -> int:
        """Delete dead tasks for good; returns how many."""
        return self._dead_op("delete", ids, queue, progress)

    def _dead_op(self, op: str, ids: Iterable[str] | str, queue: str | None,
                 progress: Progress | None) -> int:
        queues = [queue] if queue else self.queues()
        with translated(self.url):
            if ids == "all":
                return self._dead_all(op, queues, progress)
            if isinstance(ids, str):
                raise ValueError('ids must be a list of task ids or "all"')
            wanted = list(dict.fromkeys(ids))
            done = 0
            for q, tids in store.where_dead(self.broker, wanted, queues).items():
                for part in tasks.chunks(tids, ADMIN_CHUNK):
                    done += store.dead_by_id(self.broker, q, op, part)
                    if progress:
                        progress(done, len(wanted))
        return done

    def _dead_all(self, op: str, queues: list[str], progress: Progress | None) -> int:
        """Every dead letter of `queues`, as many as there are when this starts (tasks failing
        again meanwhile are not re-read)."""
        totals = {q: store.dead_count(self.broker, q) for q in queues}
        grand = sum(totals.values())
        done = 0
        for q in queues:
            left = totals[q]
            kept = 0   # unrunnable dead letters stay first in line: skip them
            while left > 0:
                n, k = store.dead_oldest(self.broker, q, op, min(ADMIN_CHUNK, left), kept)
                if n + k == 0:
                    break
                left -= n + k
                kept += k
                done += n
                if progress:
                    progress(done, grand)
        return done

    # -- waiting tasks ------------------------------------------------------------------
    def run_now(self, ids: Iterable[str], queue: str) -> int:
        """Make scheduled tasks (delayed, or waiting for a retry) of `queue` ready at once;
        returns how many were still scheduled."""
        return self._sched_op("now", ids, queue)

    def delete_scheduled(self, ids: Iterable[str], queue: str) -> int:
        """Delete scheduled tasks of `queue` before they run; returns how many."""
        return self._sched_op("delete", ids, queue)

    def _sched_op(self, op: str, ids: Iterable[str], queue: str) -> int:
        validate_name("queue", queue)
        if isinstance(ids, str):
            raise ValueError("ids must be a list of task ids")
        wanted = list(dict.fromkeys(ids))
        done = 0
        with translated(self.url):
            for part in tasks.chunks(wanted, ADMIN_CHUNK):
                done += store.scheduled_by_id(self.broker, queue, op, part)
        return done

    def purge(self, queue: str) -> int:
        """Delete every waiting (ready or scheduled) task of a queue; returns how many."""
        validate_name("queue", queue)
        total = 0
        with translated(self.url):
            while True:
                n = store.purge_some(self.broker, queue, ADMIN_CHUNK)
                total += n
                if n == 0:
                    return total

    # -- payload protection (tq.protect) -----------------------------------------------
    def rotate_keys(self, queue: str | None = None) -> dict[str, int]:
        """Seal every stored body and error (waiting, scheduled, running, dead) that is not
        sealed with the current key again with it; {queue: how many}. Needs the old keys
        too (listed after the current one). Results expire with the result TTL: keep an old
        key listed that long after rotating."""
        ring = self.keys
        if ring is None:
            raise ConfigError("no keys configured (TQ_KEYS or keys_file)")
        queues = [validate_name("queue", queue)] if queue else self.queues()
        out = {}
        with translated(self.url):
            for q in queues:
                changes: list[tuple[str, str, bytes, str]] = []
                for tid, raw in store.bodies(self.broker, q):
                    new = reseal_body(ring, q, tid, raw.decode("utf-8", "replace"))
                    if new is not None:
                        changes.append(("b", tid, raw, new))
                for tid, raw in store.errors(self.broker, q):
                    new = reseal_error(ring, q, tid, raw.decode("utf-8", "replace"))
                    if new is not None:
                        changes.append(("e", tid, raw, new))
                out[q] = sum(store.rekey(self.broker, q, part)
                             for part in tasks.chunks(changes, REKEY_CHUNK))
        return out

    # -- flow control (tq.limits) ------------------------------------------------------
    def pause(self, queue: str) -> None:
        """Stop claims from a queue (on every host): enqueues go on, running tasks finish."""
        self._flow(known_queue(queue, self.queues()), "pause")

    def resume(self, queue: str) -> None:
        """Claims from a paused queue start again (within the usual pickup latency)."""
        self._flow(known_queue(queue, self.queues()), "resume")

    def set_limit(self, task_type: str, rate_limit: str | None = None, *,
                  burst: int | None = None, rate_key: str | None = None,
                  concurrency: int | None = None, queue: str | None = None) -> Limits:
        """An operator's override of a type's limits, across the fleet, until clear_limit():
        rate_limit "100/s" | "6000/m" | "10/h" (burst: starts allowed at once; rate_key: a
        payload field, one bucket per value) and/or concurrency (at most N running at once).
        Limits not given keep the handler's. Returns the type's effective limits."""
        validate_name("type", task_type)
        if rate_limit is None and concurrency is None:
            raise ValueError("give rate_limit and/or concurrency")
        given = declared(rate_limit, burst, rate_key, concurrency)
        assert given is not None
        q = self._queue_of_type(task_type, queue)
        wire = given.to_wire()
        eff = self._flow(q, "set", task_type, json.dumps(wire, separators=(",", ":")))
        return Limits.from_wire(eff.get(task_type, wire))

    def clear_limit(self, task_type: str, queue: str | None = None) -> Limits | None:
        """Drop an operator's override: the handlers' own limits (if any) apply again."""
        validate_name("type", task_type)
        q = self._queue_of_type(task_type, queue)
        eff = self._flow(q, "clear", task_type)
        return Limits.from_wire(eff[task_type]) if task_type in eff else None

    def limits(self, queue: str | None = None) -> dict[str, dict[str, Any]]:
        """Flow control per queue: {"paused", "types": {type: {"effective", "declared",
        "override", "running" (leases held), "held" (tasks waiting for one)}}}."""
        return self.limits_of([queue] if queue else self.queues())

    def limits_of(self, queues: list[str]) -> dict[str, dict[str, Any]]:
        """limits() of these queues (the dashboard asks only for those queue_sizes() says are
        limited or paused)."""
        with translated(self.url):
            heads = views.flow_heads(self.broker, queues)
            effective = {q: loads_or(h[1], {}) for q, h in zip(queues, heads, strict=True)}
            wanted = [(q, t) for q in queues for t in effective[q]]
            for q, (_, _, size) in zip(queues, heads, strict=True):
                if size > 0:   # leases of types whose limit was cleared
                    wanted.extend((q, t) for t in views.leased_types(self.broker, q)
                                  if t not in effective[q])
            flows = views.type_flows(self.broker, wanted)
        out: dict[str, dict[str, Any]] = {
            q: {"paused": h[0] is not None, "types": {}} for q, h in zip(queues, heads,
                                                                       strict=True)}
        for (q, t), (d, o, running, held) in zip(wanted, flows, strict=True):
            out[q]["types"][t] = {
                "effective": limits_or_none(effective[q].get(t)),
                "declared": limits_or_none(loads_or(d, {})),
                "override": loads_or(o, {}) or None,
                "running": int_or(running, 0),
                "held": held}
        return out

    def _queue_of_type(self, task_type: str, queue: str | None) -> str:
        """The queue of a type's limits: given, else the one its handlers declared limits
        in, else the one whose override it has, else the type's own name."""
        if queue is not None:
            return validate_name("queue", queue)
        queues = self.queues()
        with translated(self.url):
            owners = views.limit_owners(self.broker, queues, task_type)
        for want in (0, 1):
            for q, owner in zip(queues, owners, strict=True):
                if owner[want]:
                    return q
        return task_type

    def _flow(self, queue: str, mode: str, *args: str) -> dict[str, Any]:
        """Change a queue's flow control; its types' effective limits after the change."""
        with translated(self.url):
            effective, _ = store.flow(self.broker, queue, mode, *args)
            self.broker.register_queues([queue])
        return loads_or(effective, {})
