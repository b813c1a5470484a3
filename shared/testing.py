"""Testing code that enqueues, and handlers that run, with the queue's own rules.

Without Redis or a master (unit tests): inside `run_eagerly()` every `tq.Client()` is an
`EagerClient` that runs the handler of each task the moment it is enqueued, in-process, with
the real queue's rules — the payload and the result make a JSON round trip (a payload or
result JSON cannot carry fails the same way), `tq.Retry` and errors are retried up to
`max_retries` (at once: delays and backoff are not waited for), `tq.PermanentError` and an
unknown type end dead, `async def` handlers are awaited, a repeated `unique_for` enqueue gets
the first task's id, a paused queue holds its tasks until resume() — and every other method
of tq.Client answers as it would (get, wait, stats, queue_sizes, dead letters, cancel, limits,
purge...; see tq.eager):

    with tq.testing.run_eagerly() as eager:
        signup("carol@example.com")             # code under test: tq.Client().enqueue(...)
        assert eager.tasks[0].state == "succeeded"

or, with pytest, `from tq.testing import tq_eager` in a conftest.py and a `tq_eager` argument.
Code that did `from tq import Client` before the patch keeps the real class: import `tq` and
call `tq.Client`, or pass an `EagerClient` in.

Against a real Redis (integration tests): `Worker(client).run_until_empty()` claims and runs
tasks in this process through the worker's own code (claim script, runner, acks), until the
queues hold nothing ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import json
import logging
import math
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from .eager import EagerAdmin, EagerContext, EagerStore, Pending
from .errors import (
    Cancelled,
    PermanentError,
    Retry,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
    WaitTimeout,
)
from .handlers import REGISTRY
from .ids import new_id
from .task import (
    TaskInfo,
    encode_payload,
    validate_max_retries,
    validate_name,
    validate_priority,
)
from .workflow import (
    FINISHED,
    Workflow,
    WorkflowInfo,
    compile_workflow,
    downstream,
    validate_policy,
)
from .workflow import record as workflow_record
from .workflow import summarize as summarize_workflow

log = logging.getLogger("tq.testing")
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


class EagerClient(EagerAdmin):
    """tq.Client's API, running each task in-process when it is enqueued."""

    def __init__(self, url: str | None = None, namespace: str = "tq", *,
                 store: EagerStore | None = None, **_: Any) -> None:
        self.namespace = namespace
        self.store = store if store is not None else (_STORE or EagerStore())
        self.workflows: dict[str, tuple[dict[str, Any], list[TaskInfo]]] = \
            self.store.workflows

    def __enter__(self) -> EagerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def enqueue(self, type: str, payload: dict[str, Any] | None = None, *,
                queue: str | None = None, priority: int = 0, delay: Any = None,
                eta: Any = None, max_retries: int | None = None, timeout: Any = None,
                unique_for: Any = None, unique_key: str | None = None) -> str:
        if delay is not None and eta is not None:
            raise ValueError("give delay or eta, not both")
        window = _window(unique_for, unique_key)
        lock = None
        if window is not None:   # the first task's id while the window holds, as in Redis
            q = type if queue is None else validate_name("queue", queue)
            lock = (q, "k", unique_key) if unique_key is not None else \
                (q, "p", type, json.dumps(payload or {}, sort_keys=True, default=str))
            held = self.store.unique.get(lock)
            if held is not None and held[1] > time.monotonic():
                return held[0]
        info, payload_json = self._new(type, payload, queue, priority, max_retries)
        if lock is not None and window is not None:
            self.store.unique[lock] = (info.id, time.monotonic() + window)
        self._submit(Pending(info, payload_json))
        return info.id

    def _new(self, type: str, payload: Any, queue: str | None, priority: int,
             max_retries: int | None, workflow: str | None = None) -> tuple[TaskInfo, str]:
        validate_name("type", type)
        queue = type if queue is None else validate_name("queue", queue)
        validate_priority(priority)
        if max_retries is not None:
            validate_max_retries(max_retries)
        payload_json = encode_payload({} if payload is None else payload)   # the real checks
        info = TaskInfo(new_id(), queue, type, "queued", priority=priority,
                        payload=json.loads(payload_json), max_retries=max_retries,
                        created_at=time.time(), workflow=workflow)
        self.store.tasks.append(info)
        self.store.by_id[info.id] = info
        self.store.queues.add(queue)
        self._count(info, "enqueued")
        return info, payload_json

    def workflow(self, spec: Any, *, policy: str = "stop", ttl: Any = None) -> Workflow:
        """client.workflow(), eagerly: the members run now, in an order that respects their
        edges, with their upstream results as ctx.inputs and the same failure policies."""
        validate_policy(policy)
        members = compile_workflow(spec)
        wid = new_id()
        made = [self._new(m.step.type, m.step.payload, m.step.queue, m.step.priority,
                          m.step.max_retries, wid) for m in members]
        infos = [info for info, _ in made]
        for m, (info, payload_json) in zip(members, made, strict=True):
            m.id, m.queue = info.id, info.queue
            self.store.pending.append(Pending(info, payload_json, [infos[d] for d in m.deps],
                                              policy))
        self._drain()
        below = downstream(members)
        rec = json.loads(workflow_record(wid, policy, members))
        self.workflows[wid] = (rec, infos)
        return Workflow(wid, {m.name: m.id for m in members},
                        [m.id for i, m in enumerate(members) if not below[i]])

    def get_workflow(self, workflow_id: str) -> WorkflowInfo:
        try:
            rec, infos = self.workflows[workflow_id]
        except KeyError:
            raise TaskNotFound(workflow_id) from None
        return summarize_workflow(rec, list(infos))

    def wait_workflow(self, workflow_id: str, timeout: float | None = None) -> WorkflowInfo:
        return self.get_workflow(workflow_id)

    def enqueue_many(self, specs: Iterable[Mapping[str, Any] | Sequence[Any]],
                     progress: Any = None) -> list[str]:
        ids = []
        for spec in specs:
            if isinstance(spec, Mapping):
                options = dict(spec)
                ids.append(self.enqueue(options.pop("type"), options.pop("payload", {}),
                                        **options))
            else:
                ids.append(self.enqueue(spec[0], spec[1]))
        return ids

    def get(self, task_id: str, queue: str | None = None) -> TaskInfo:
        try:
            return self.store.by_id[task_id]
        except KeyError:
            raise TaskNotFound(task_id) from None

    def wait(self, task_id: str, timeout: float | None = None,
             queue: str | None = None) -> Any:
        """Its result; TaskFailed, TaskCancelled; WaitTimeout at once for a task that waits
        (a paused queue, an upstream member): nothing can change it while this call waits."""
        info = self.get(task_id)
        if info.state == "dead":
            raise TaskFailed(task_id, info.error, info.traceback)
        if info.state == "cancelled":
            raise TaskCancelled(task_id)
        if info.state not in FINISHED:
            raise WaitTimeout(task_id, timeout or 0.0, info.state)
        return info.result

    def stats(self) -> dict[str, Any]:
        """Counters as tq.Client.stats() gives them: events, kept when tasks are deleted."""
        events = ("enqueued", "started", "succeeded", "failed", "retried", "dead", "throttled")
        total = dict.fromkeys(events, 0)
        by_type: dict[str, dict[str, int]] = {}
        by_queue: dict[str, dict[str, int]] = {}
        by_queue_type: dict[str, dict[str, dict[str, int]]] = {}
        for (q, t), counts in self.store.counts.items():
            for per in (total, by_type.setdefault(t, dict.fromkeys(events, 0)),
                        by_queue.setdefault(q, dict.fromkeys(events, 0)),
                        by_queue_type.setdefault(q, {}).setdefault(t, dict.fromkeys(events, 0))):
                for k, n in counts.items():
                    per[k] += n
        return {"total": total, "by_type": by_type, "by_queue": by_queue,
                "by_queue_type": by_queue_type}

    def _count(self, info: TaskInfo, *events: str) -> None:
        per = self.store.counts.setdefault((info.queue, info.type), {})
        for e in events:
            per[e] = per.get(e, 0) + 1

    # -- running ------------------------------------------------------------------------
    def _submit(self, p: Pending) -> None:
        self.store.pending.append(p)
        self._drain()

    def _drain(self) -> None:
        """Run what may run now (its queue not paused, its upstream members finished), higher
        priorities first, until nothing more can; what cannot waits, "queued" or "waiting"."""
        store = self.store
        ran = True
        while ran:
            ran = False
            for p in sorted(store.pending, key=lambda p: -p.info.priority):
                if p not in store.pending:   # taken out by a handler that ran meanwhile
                    continue
                if any(u.state not in FINISHED for u in p.ups):
                    p.info.state = "waiting"
                    continue
                p.info.state = "queued"
                if p.info.queue in store.paused:
                    continue
                store.pending.remove(p)
                self._start(p)
                ran = True

    def _start(self, p: Pending) -> None:
        failed = next((u for u in p.ups if u.state != "succeeded"), None)
        if failed is not None and p.policy == "stop":
            how = "cancelled" if failed.state == "cancelled" else "dead"
            self._dead(p.info, f"upstream_{how}", f"upstream task {failed.id} "
                       f"{'was cancelled' if how == 'cancelled' else 'is dead'}: the "
                       "workflow stops here", None)
            return
        self._run(p.info, p.payload_json,
                  [u.result if u.state == "succeeded" else None for u in p.ups])

    def _run(self, info: TaskInfo, payload_json: str, inputs: list[Any] | None = None) -> None:
        spec = REGISTRY.get(info.type)
        if spec is None:
            self._dead(info, "unknown_type", f"no handler for task type {info.type!r} "
                       f"(registered: {', '.join(sorted(REGISTRY)) or 'none'})", None)
            return
        limit = info.max_retries if info.max_retries is not None else spec.max_retries
        info.started_at = time.time()
        for attempt in range(1, limit + 2):
            info.attempts, info.state = attempt, "running"
            self._count(info, "started")
            ctx = EagerContext(self, info, attempt, limit, inputs)
            try:
                result = spec.func(json.loads(payload_json), ctx)   # a fresh copy each run
                if inspect.isawaitable(result):
                    result = asyncio.run(_awaited(result))
                if self._cancelled(info):
                    return
                try:
                    info.result = json.loads(_dumps(result))
                except (TypeError, ValueError) as exc:
                    self._dead(info, "error", f"result is not JSON-serialisable: {exc}", None)
                    return
                info.state, info.finished_at = "succeeded", time.time()
                self._count(info, "succeeded")
                return
            except PermanentError as exc:
                self._dead(info, "permanent", str(exc) or "permanent error", _tb())
                return
            except Retry as exc:
                kind, message = "retry", str(exc)
            except Exception as exc:
                kind, message = "error", f"{type(exc).__name__}: {exc}"
            except Cancelled:   # the handler's own way of ending a cancelled run
                self.store.cancel_requested.add(info.id)
            if self._cancelled(info):
                return
            self._count(info, "failed", "dead" if attempt == limit + 1 else "retried")
            info.history.append({"kind": kind, "message": message, "at": time.time(),
                                 "worker": "eager"})
            info.error, info.error_kind, info.traceback = message, kind, _tb()
        info.history.pop()   # the last attempt's error is the task's own
        info.state, info.finished_at = "dead", time.time()

    def _cancelled(self, info: TaskInfo) -> bool:
        """A run that was cancelled while it ran (cancel() from its own handler, or one it
        called) ends cancelled, whatever it did: no attempt counted, as against Redis."""
        if info.id not in self.store.cancel_requested:
            return False
        self.store.cancel_requested.discard(info.id)
        info.state, info.finished_at, info.result = "cancelled", time.time(), None
        return True

    def _dead(self, info: TaskInfo, kind: str, message: str, tb: str | None) -> None:
        if info.attempts:   # a run ended it (else no handler, or its upstream, did)
            self._count(info, "failed")
        self._count(info, "dead")
        info.state, info.error, info.error_kind, info.traceback = "dead", message, kind, tb
        info.finished_at = time.time()


def _window(unique_for: Any, unique_key: str | None) -> float | None:
    """unique_for in seconds (None: no lock), checked as tq.Client checks it."""
    if unique_key is not None and unique_for is None:
        raise ValueError("unique_key needs unique_for (how long the key holds)")
    if unique_for is None:
        return None
    if isinstance(unique_for, dt.timedelta):
        unique_for = unique_for.total_seconds()
    if isinstance(unique_for, bool) or not isinstance(unique_for, int | float) \
            or not math.isfinite(unique_for) or unique_for <= 0:
        raise ValueError(f"unique_for must be a positive number of seconds, not {unique_for!r}")
    return float(unique_for)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _tb() -> str:
    return traceback.format_exc()


_STORE: EagerStore | None = None


@contextlib.contextmanager
def run_eagerly() -> Iterator[EagerStore]:
    """Within the block every `tq.Client(...)` runs tasks in-process as they are enqueued
    (see the module's docstring); yields what ran."""
    import tq

    global _STORE
    saved, saved_store = tq.Client, _STORE
    _STORE = EagerStore()
    tq.Client = EagerClient   # type: ignore[misc, assignment]
    try:
        yield _STORE
    finally:
        tq.Client = saved   # type: ignore[misc]
        _STORE = saved_store


class Worker:
    """A worker in this process against a real Redis, for integration tests: the same claim
    script, runner and acks as a child of tq-master, without the master."""

    def __init__(self, client: Any, queues: Sequence[str] | None = None,
                 worker_id: str = "test-worker") -> None:
        from .store.broker import Broker
        from .worker.runner import Runner

        self.client = client
        self.queues = list(queues) if queues else sorted({s.queue for s in REGISTRY.values()})
        self.broker = Broker(client.broker.url, client.namespace)
        self.runner = Runner(self.broker, worker_id, getattr(client, "keys", None))
        self.worker_id = worker_id

    def run_until_empty(self, max_tasks: int = 10_000) -> int:
        """Claim and run until nothing is ready (scheduled tasks are not waited for);
        returns how many ran."""
        from .store.broker import Ack
        from .worker.runner import Failure

        self.broker.register_queues(self.queues)
        done = 0
        while done < max_tasks:
            got = self.broker.claim(self.worker_id, self.queues, 1)
            if not got.tasks:
                return done
            for task in got.tasks:
                inputs = self.runner.read_inputs(task) if task.inputs else None
                outcome, _ = self.runner.run(task, lambda *a: None, inputs)
                if isinstance(outcome, Failure):
                    self.runner.record(outcome)
                else:
                    assert isinstance(outcome, Ack)
                    self.broker.claim(self.worker_id, [task.queue], 0, acks=[outcome])
                done += 1
        return done

    def close(self) -> None:
        self.broker.close()


try:   # a pytest fixture, for a conftest.py: `from tq.testing import tq_eager`
    import pytest

    @pytest.fixture
    def tq_eager() -> Iterator[EagerStore]:
        with run_eagerly() as store:
            yield store
except ImportError:  # pragma: no cover - pytest is not a dependency of tq
    pass
