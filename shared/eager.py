"""What the eager mode (tq.testing) keeps of the tasks it ran, the ctx its handlers get, and the
eager client's queue side: every tq.Client method that looks at or changes queues —
queue_sizes, pause and resume, limits, dead letters, cancel, purge, delete_queue... —
answering as tq.Client would for what ran in this process.

What cannot happen eagerly is empty, not an error: nothing is ever scheduled (delays are not
waited for), so run_now and delete_scheduled find nothing; nothing is stored sealed, so
rotate_keys reseals nothing; no key can be corrupt, so repair_queue repairs nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import TaskNotFound
from .handlers import REGISTRY
from .limits import Limits, merge, override
from .store.integrity import RepairReport
from .task import TaskInfo, encode_payload, validate_name, validate_progress
from .workflow import FINISHED

Progress = Callable[[int, int], None]


@dataclass
class EagerStore:
    """What ran inside one run_eagerly(): every task in enqueue order, and the queues' state."""

    tasks: list[TaskInfo] = field(default_factory=list)
    by_id: dict[str, TaskInfo] = field(default_factory=dict)
    workflows: dict[str, Any] = field(default_factory=dict)   # id -> (record, members)
    pending: list[Pending] = field(default_factory=list)   # in a paused queue, or waiting
    paused: set[str] = field(default_factory=set)
    queues: set[str] = field(default_factory=set)          # every queue enqueued to
    unique: dict[tuple[str, ...], tuple[str, float]] = field(default_factory=dict)
    overrides: dict[tuple[str, str], Limits] = field(default_factory=dict)  # (queue, type)
    cancel_requested: set[str] = field(default_factory=set)   # running tasks (cancel())
    counts: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)  # stats()

    def of_type(self, task_type: str) -> list[TaskInfo]:
        return [t for t in self.tasks if t.type == task_type]


class EagerContext:
    """The ctx an eager handler gets (the worker's TaskContext, without Redis)."""

    def __init__(self, client: Any, info: TaskInfo, attempt: int, max_retries: int,
                 inputs: list[Any] | None = None):
        self._client = client
        self.task_id, self.type, self.queue = info.id, info.type, info.queue
        self.workflow_id = info.workflow
        self.inputs = inputs if inputs is not None else []
        self.attempt, self.max_retries = attempt, max_retries
        self.deadline: float | None = None
        self.worker_id = "eager"
        self.log = logging.LoggerAdapter(logging.getLogger(f"tq.task.{info.type}"),
                                         {"task": info.id, "worker": "eager"})

    def enqueue(self, task_type: str, payload: dict[str, Any] | None = None,
                **options: Any) -> str:
        return self._client.enqueue(task_type, payload, **options)

    @property
    def input(self) -> Any:
        return self.inputs[-1] if self.inputs else None

    @property
    def cancelled(self) -> bool:
        return self.task_id in self._client.store.cancel_requested

    def progress(self, fraction: float, message: str = "") -> None:
        self._client.store.by_id[self.task_id].progress = {
            "fraction": validate_progress(fraction), "message": str(message),
            "at": time.time()}

    @property
    def redis(self) -> Any:
        raise RuntimeError("ctx.redis is not available when running eagerly (no Redis); "
                           "test that code with tq.testing.Worker against a real Redis")


@dataclass(eq=False)
class Pending:
    """A task that has not run: its queue is paused, or it waits for upstream members."""

    info: TaskInfo
    payload_json: str
    ups: list[TaskInfo] = field(default_factory=list)   # workflow members it waits for
    policy: str = "stop"


class EagerAdmin:
    """The queue side of EagerClient (which provides store, _drain, _submit and _run)."""

    store: EagerStore
    _drain: Callable[[], None]
    _submit: Callable[[Pending], None]

    # -- cancellation -------------------------------------------------------------------
    def cancel(self, task_id: str, queue: str | None = None) -> str:
        """"cancelled" for a task that waits (a paused queue, its upstream), "cancelling" for
        the one running now (it ends cancelled when its handler returns), "finished" or
        "unknown" — as tq.Client.cancel."""
        if queue is not None:
            validate_name("queue", queue)
        info = self.store.by_id.get(task_id)
        if info is None or (queue is not None and info.queue != queue):
            return "unknown"
        if info.state in FINISHED:
            return "finished"
        if info.state == "running":
            self.store.cancel_requested.add(task_id)
            return "cancelling"
        self.store.pending = [p for p in self.store.pending if p.info is not info]
        info.state, info.finished_at = "cancelled", time.time()
        self._drain()   # its downstream members end (policy "stop") or run ("continue")
        return "cancelled"

    def cancel_workflow(self, workflow_id: str) -> dict[str, int]:
        """Cancel every member that has not finished; how many of each outcome."""
        try:
            _, infos = self.store.workflows[workflow_id]
        except KeyError:
            raise TaskNotFound(workflow_id) from None
        out: dict[str, int] = {}
        for info in reversed(infos):   # downstream first, as tq.Client does
            outcome = self.cancel(info.id)
            out[outcome] = out.get(outcome, 0) + 1
        return out

    # -- queues and counters ------------------------------------------------------------
    def queues(self) -> list[str]:
        return sorted(self.store.queues)

    def totals(self) -> dict[str, int]:
        """As tq.Client.totals: stats()["total"]."""
        total: dict[str, int] = self.stats()["total"]   # type: ignore[attr-defined]
        return total

    def queue_sizes(self) -> dict[str, dict[str, Any]]:
        """Per queue, as tq.Client.queue_sizes: ready (tasks a paused queue holds), dead,
        paused; nothing is ever scheduled, running between calls, held or broken."""
        out: dict[str, dict[str, Any]] = {}
        for q in self.queues():
            ready = [p.info for p in self.store.pending if p.info.queue == q and not p.ups]
            by_priority: dict[int, int] = {}
            for info in ready:
                by_priority[info.priority] = by_priority.get(info.priority, 0) + 1
            out[q] = {"ready": len(ready), "by_priority": by_priority, "scheduled": 0,
                      "running": 0, "dead": len(self._dead_in([q])), "held": 0,
                      "limited": bool(self.limits_of([q])[q]["types"]),
                      "paused": q in self.store.paused, "broken": None,
                      "oldest_ready": min((i.created_at for i in ready if i.created_at),
                                          default=None)}
        return out

    def delete_queue(self, queue: str, force: bool = False) -> dict[str, Any]:
        """Forget a queue and every task of it that waits or is dead."""
        validate_name("queue", queue)
        sizes = self.queue_sizes().get(queue, {"ready": 0, "dead": 0})
        self._forget(lambda i: i.queue == queue and i.state not in ("succeeded", "cancelled"))
        self.store.queues.discard(queue)
        self.store.paused.discard(queue)
        return {"queue": queue, "deleted": True, "ready": sizes["ready"], "scheduled": 0,
                "running": 0, "dead": sizes["dead"]}

    def rotate_keys(self, queue: str | None = None) -> dict[str, int]:
        """Nothing is stored sealed in eager mode: {queue: 0}."""
        return {q: 0 for q in ([validate_name("queue", queue)] if queue else self.queues())}

    def purge(self, queue: str) -> int:
        """Delete the tasks a (paused) queue holds; how many."""
        validate_name("queue", queue)
        return self._forget(lambda i: i.queue == queue and i.state == "queued")

    # -- flow control ---------------------------------------------------------------------
    def _known_queue(self, queue: str) -> str:
        validate_name("queue", queue)
        if queue not in self.store.queues:
            raise ValueError(f"unknown queue {queue!r} (known: "
                             f"{', '.join(self.queues()) or 'none'})")
        return queue

    def pause(self, queue: str) -> None:
        """Hold the queue's tasks from now on (they read "queued") until resume()."""
        self.store.paused.add(self._known_queue(queue))

    def resume(self, queue: str) -> None:
        """Run what the queue held, higher priorities first."""
        self.store.paused.discard(self._known_queue(queue))
        self._drain()

    def set_limit(self, task_type: str, rate_limit: str | None = None, *,
                  burst: int | None = None, rate_key: str | None = None,
                  concurrency: int | None = None, queue: str | None = None) -> Limits:
        """Record an override (an eager run has no rate to keep); the effective limits."""
        given = override(task_type, rate_limit, burst, rate_key, concurrency)
        q = self._queue_of_type(task_type, queue)
        self.store.queues.add(q)
        old = self.store.overrides.get((q, task_type))
        over = self.store.overrides[(q, task_type)] = merge(old, given) or given
        effective = merge(self._declared(q, task_type), over)
        assert effective is not None
        return effective

    def clear_limit(self, task_type: str, queue: str | None = None) -> Limits | None:
        validate_name("type", task_type)
        q = self._queue_of_type(task_type, queue)
        self.store.overrides.pop((q, task_type), None)
        return self._declared(q, task_type)

    def limits(self, queue: str | None = None) -> dict[str, dict[str, Any]]:
        """As tq.Client.limits: per queue, paused and each limited type's limits."""
        return self.limits_of([queue] if queue else self.queues())

    def limits_of(self, queues: list[str]) -> dict[str, dict[str, Any]]:
        """As tq.Client.limits_of: limits() of these queues."""
        out: dict[str, dict[str, Any]] = {}
        for q in queues:
            types = {s.type for s in REGISTRY.values() if s.queue == q and s.limits}
            types |= {t for (oq, t) in self.store.overrides if oq == q}
            out[q] = {"paused": q in self.store.paused, "types": {}}
            for t in sorted(types):
                over = self.store.overrides.get((q, t))
                out[q]["types"][t] = {"effective": merge(self._declared(q, t), over),
                                      "declared": self._declared(q, t),
                                      "override": over.to_wire() if over else None,
                                      "running": 0, "held": 0}
        return out

    def _declared(self, queue: str, task_type: str) -> Limits | None:
        spec = REGISTRY.get(task_type)
        return spec.limits if spec is not None and spec.queue == queue else None

    def _queue_of_type(self, task_type: str, queue: str | None) -> str:
        if queue is not None:
            return validate_name("queue", queue)
        spec = REGISTRY.get(task_type)
        if spec is not None and spec.limits:
            return spec.queue
        return next((q for (q, t) in self.store.overrides if t == task_type), task_type)

    def repair_queue(self, queue: str) -> RepairReport:
        """No key can be corrupt in eager mode: nothing to repair."""
        validate_name("queue", queue)
        return RepairReport(moved={}, restored=0, buried=0, was_marked=False)

    # -- dead letters ---------------------------------------------------------------------
    def dead(self, limit: int = 50, offset: int = 0, queue: str | None = None) -> list[TaskInfo]:
        """Dead tasks, newest first."""
        if limit <= 0 or offset < 0:
            raise ValueError("limit must be positive and offset not negative")
        found = self._dead_in([queue] if queue else self.queues())
        found.sort(key=lambda i: (-int((i.finished_at or 0) * 1000), i.id))   # as Redis
        return found[offset:offset + limit]

    def retry_dead(self, ids: Iterable[str] | str = "all", queue: str | None = None,
                   progress: Progress | None = None) -> int:
        """Run dead tasks again, attempts reset; how many."""
        again = self._dead_letters(ids, queue)
        for n, info in enumerate(again, 1):
            info.attempts, info.history, info.result = 0, [], None
            info.error = info.error_kind = info.traceback = None
            info.finished_at = info.failed_at = None
            payload = self._payload_json(info)
            self._submit(Pending(info, payload))
            if progress:
                progress(n, len(again))
        return len(again)

    def delete_dead(self, ids: Iterable[str] | str = "all", queue: str | None = None,
                    progress: Progress | None = None) -> int:
        gone = {i.id for i in self._dead_letters(ids, queue)}
        done = self._forget(lambda i: i.id in gone)
        if progress:
            progress(done, done)
        return done

    def run_now(self, ids: Iterable[str], queue: str) -> int:
        """Nothing is scheduled in eager mode (delays are not waited for): 0."""
        return self._scheduled(ids, queue)

    def delete_scheduled(self, ids: Iterable[str], queue: str) -> int:
        """Nothing is scheduled in eager mode: 0."""
        return self._scheduled(ids, queue)

    @staticmethod
    def _scheduled(ids: Iterable[str], queue: str) -> int:
        validate_name("queue", queue)
        if isinstance(ids, str):
            raise ValueError("ids must be a list of task ids")
        return 0

    def _dead_in(self, queues: list[str]) -> list[TaskInfo]:
        return [i for i in self.store.tasks if i.state == "dead" and i.queue in queues]

    def _dead_letters(self, ids: Iterable[str] | str, queue: str | None) -> list[TaskInfo]:
        found = self._dead_in([queue] if queue else self.queues())
        if ids == "all":
            return found
        if isinstance(ids, str):
            raise ValueError('ids must be a list of task ids or "all"')
        wanted = set(ids)
        return [i for i in found if i.id in wanted]

    @staticmethod
    def _payload_json(info: TaskInfo) -> str:
        return encode_payload(info.payload if info.payload is not None else {})

    def _forget(self, gone: Callable[[TaskInfo], bool]) -> int:
        """Delete the tasks `gone` picks (get() then raises TaskNotFound); how many."""
        store = self.store
        doomed = [i for i in store.tasks if gone(i)]
        ids = {i.id for i in doomed}
        store.pending = [p for p in store.pending if p.info.id not in ids]
        store.tasks = [i for i in store.tasks if i.id not in ids]
        for tid in ids:
            store.by_id.pop(tid, None)
        return len(doomed)
