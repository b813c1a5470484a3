"""Running one task in a child: find its handler, call it under its time limits, settle it."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tq import hooks
from tq.errors import Cancelled, PermanentError, Retry
from tq.handlers import DEFAULT_BACKOFF, REGISTRY, HandlerSpec
from tq.ids import created_ms
from tq.protect import KeyRing, Rejected, error_aad, open_payload, result_aad
from tq.store.broker import Ack, Broker, FailOutcome, result_record
from tq.task import DEFAULT_MAX_RETRIES, Task

from .context import HandlerServices, TaskContext
from .timelimits import SoftTimeout, limited, time_limits

log = logging.getLogger("tq.worker")
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode

_PLAIN = frozenset((type(None), dict, list, str, int, float, bool))   # results, not awaitables
# failures whose message comes from the handler (sealed with keys); tq's own (malformed,
# unknown_type, bad_signature, cannot_decrypt) stay readable for the operator
SEALED_KINDS = frozenset(("error", "retry", "permanent", "timeout"))
# on_start(task, hard_deadline_monotonic, max_retries): a run starts (the child tells the master)
OnStart = Callable[[Task, float, int], None]


@dataclass(slots=True)
class Failure:
    """A failed run, to be recorded in Redis by the child (which retries through outages)."""

    task: Task
    kind: str           # error, timeout, retry, permanent, malformed, unknown_type
    message: str
    traceback: str | None
    retry: bool
    delay: float = 0.0
    default_max_retries: int = DEFAULT_MAX_RETRIES
    exc: BaseException | None = None      # what the handler raised, for middleware
    ctx: TaskContext | None = None


class Runner:
    """Runs tasks for one child; each run ends in an Ack (sent batched) or a Failure."""

    def __init__(self, broker: Broker, worker_id: str, keys: KeyRing | None = None) -> None:
        self.broker = broker
        self.worker_id = worker_id
        self.keys = keys      # payload protection (tq.protect); None: plain payloads
        self.running = False
        self._loop: asyncio.AbstractEventLoop | None = None   # for async def handlers
        self._loop_pid = 0
        self.current = ""         # the id of the task whose handler runs now
        self.cancelled: set[str] = set()   # ids of running tasks whose cancel came
        self._async_task: asyncio.Task[Any] | None = None
        self.pool: dict[str, asyncio.Task[Any]] = {}   # async tasks running at once
        self.services = HandlerServices(broker, worker_id, keys, self.cancelled)

    def read_inputs(self, task: Task) -> list[Any]:
        """The results its upstream workflow members handed this member (one HMGET)."""
        return self.services.read_inputs(task)

    def cancel(self, task_id: str) -> None:
        """The master asks to cancel `task_id` (from the SIGUSR1 handler): if its handler
        runs now, tq.Cancelled is raised in it (an async one has its coroutine cancelled)."""
        pooled = self.pool.get(task_id)
        if pooled is not None and self._loop is not None:   # one of many async tasks
            self.cancelled.add(task_id)
            self._loop.call_soon_threadsafe(pooled.cancel)
            return
        if not task_id or task_id != self.current or not self.running:
            return
        self.cancelled.add(task_id)
        if self._async_task is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._async_task.cancel)
            return
        raise Cancelled(f"task {task_id} was cancelled")

    def _await(self, awaitable: Any, timeout: float | None) -> Any:
        """Run a handler's coroutine to its end on this process's event loop (made on first
        use, never shared with a forked child); past `timeout` it is cancelled (its
        `finally` blocks run) and SoftTimeout raised."""
        loop = self.loop()
        self._async_task = loop.create_task(limited(awaitable, timeout))
        try:
            return loop.run_until_complete(self._async_task)
        except asyncio.CancelledError:
            if self.current in self.cancelled:
                raise Cancelled(f"task {self.current} was cancelled") from None
            raise
        finally:
            self._async_task = None

    def on_alarm(self, signum: int, frame: object) -> None:
        if self.running:
            raise SoftTimeout("soft time limit reached")

    def _admit(self, task: Task, on_start: OnStart) -> tuple[Task, HandlerSpec | None,
                                                         Failure | None]:
        """Open a protected body and find the handler: (task, spec, None), or the failure
        that ends it before any handler runs (published as started, with no limits)."""
        if (self.keys is not None or task.sealed) and not task.malformed:
            try:   # a protected body is opened (or refused) before anything else
                opened = open_payload(self.keys, task.queue, task.id, task.raw, task.sealed)
                if opened is not None:
                    task = task.with_payload(opened)
            except Rejected as exc:
                on_start(task, 0.0, 0)
                return task, None, Failure(task, exc.reason, str(exc), None, retry=False)
        spec = REGISTRY.get(task.type)
        if task.malformed or spec is None:
            on_start(task, 0.0, 0)
            why = task.malformed or (f"no handler for task type {task.type!r} in this worker "
                                     f"(registered: {', '.join(sorted(REGISTRY)) or 'none'})")
            kind = "malformed" if task.malformed else "unknown_type"
            return task, None, Failure(task, kind, why, None, retry=False)
        return task, spec, None

    def _raised(self, task: Task, spec: HandlerSpec, exc: BaseException,
                soft: float | None) -> Failure:
        """The failure a handler's exception means (called inside its `except`)."""
        if isinstance(exc, Cancelled):
            return Failure(task, "cancelled", "cancelled while it ran", None, retry=False,
                           exc=exc)
        if isinstance(exc, SoftTimeout):
            return self._failure(task, spec, "timeout",
                                 f"soft time limit of {soft or 0:g}s exceeded", True)
        if isinstance(exc, Retry):
            delay = exc.delay if exc.delay is not None else backoff(spec, task.attempt)
            return self._failure(task, spec, "retry", str(exc), True, delay)
        if isinstance(exc, PermanentError):
            return self._failure(task, spec, "permanent", str(exc) or "permanent error", False)
        return self._failure(task, spec, "error", f"{type(exc).__name__}: {exc}", True)

    def _succeeded(self, task: Task, spec: HandlerSpec, ctx: TaskContext, result: Any,
                   started: float) -> Ack | Failure:
        try:
            result_json = "null" if result is None else _dumps(result)
        except (TypeError, ValueError) as exc:
            return Failure(task, "error", f"result is not JSON-serialisable: {exc}", None,
                           retry=False, exc=exc, ctx=ctx)
        if hooks.MIDDLEWARE:
            hooks.call("after", ctx, task.payload, result)
        sealed = None
        if self.keys is not None and self.keys.encrypts:
            sealed = self.keys.seal(result_json, result_aad(task.queue, task.id))
        return Ack(task, result_record(task, result_json, self.worker_id, started, time.time(),
                                       sealed), spec.result_ttl)

    def run(self, task: Task, on_start: OnStart, inputs: list[Any] | None = None
            ) -> tuple[Ack | Failure, float]:
        """Run `task`; returns its ack or failure and the handler's run time in seconds.

        on_start(task, hard_deadline_monotonic, max_retries) publishes the start to the master.
        inputs: its upstream workflow members' results (read_inputs).
        """
        spec = REGISTRY.get(task.type)
        if spec is None or task.malformed or self.keys is not None or task.sealed:
            task, spec, refused = self._admit(task, on_start)
            if spec is None:
                assert refused is not None
                return refused, 0.0
        lim = time_limits(task, spec)
        max_retries = task.max_retries if task.max_retries is not None else spec.max_retries
        on_start(task, time.monotonic() + lim.hard if lim.hard else 0.0, max_retries)
        ctx = TaskContext(self.services, task, spec,
                          time.time() + lim.soft if lim.soft else None, inputs)
        if hooks.MIDDLEWARE:
            hooks.call("before", ctx, task.payload)
        started = time.time()
        t0 = time.perf_counter()
        failure: Failure | None = None
        if lim.soft:
            signal.setitimer(signal.ITIMER_REAL, lim.soft)
        self.current = task.id
        if self.cancelled:
            self.cancelled.clear()
        self.running = True
        try:
            result = spec.func(task.payload, ctx)
            if type(result) not in _PLAIN and inspect.isawaitable(result):
                # an async def handler (or one returning an awaitable): run on this child's loop
                if lim.soft:   # the soft limit becomes a cancellation of the coroutine
                    signal.setitimer(signal.ITIMER_REAL, 0)
                result = self._await(result, None if ctx.deadline is None
                                     else ctx.deadline - time.time())
        except (Exception, SystemExit, Cancelled, SoftTimeout) as exc:
            failure = self._raised(task, spec, exc, lim.soft)
        finally:
            self.running = False
            self.current = ""
            if lim.soft:
                signal.setitimer(signal.ITIMER_REAL, 0)
        elapsed = time.perf_counter() - t0
        if failure is not None:
            failure.ctx = ctx
            return failure, elapsed
        return self._succeeded(task, spec, ctx, result, started), elapsed

    # -- async handlers, many at once (async_concurrency) -------------------------------
    def loop(self) -> asyncio.AbstractEventLoop:
        """This process's event loop (made on first use, never shared with a forked child)."""
        if self._loop is None or self._loop_pid != os.getpid():
            self._loop, self._loop_pid = asyncio.new_event_loop(), os.getpid()
        return self._loop

    def is_async(self, task: Task) -> bool:
        spec = REGISTRY.get(task.type)
        return spec is not None and spec.is_async and not task.malformed

    async def run_async(self, task: Task, on_start: OnStart, inputs: list[Any] | None = None
                        ) -> tuple[Ack | Failure, float]:
        """run() for one of many async tasks sharing this child's loop: its time limit is a
        cancellation (no hard limit: the master cannot kill one coroutine), a cancel request
        cancels it too (see cancel())."""
        task, spec, refused = self._admit(task, on_start)
        if spec is None:
            assert refused is not None
            return refused, 0.0
        lim = time_limits(task, spec)
        soft = lim.soft or lim.hard
        ctx = TaskContext(self.services, task, spec, time.time() + soft if soft else None,
                          inputs)
        if hooks.MIDDLEWARE:
            hooks.call("before", ctx, task.payload)
        started = time.time()
        t0 = time.perf_counter()
        me = asyncio.current_task()
        if me is not None:
            self.pool[task.id] = me
        try:
            result = spec.func(task.payload, ctx)
            if inspect.isawaitable(result):
                result = await limited(result, soft)
        except asyncio.CancelledError:
            if task.id not in self.cancelled:
                raise
            failure = Failure(task, "cancelled", "cancelled while it ran", None, retry=False,
                              ctx=ctx)
            return failure, time.perf_counter() - t0
        except (Exception, SystemExit, Cancelled, SoftTimeout) as exc:
            failure = self._raised(task, spec, exc, soft)
            failure.ctx = ctx
            return failure, time.perf_counter() - t0
        finally:
            self.pool.pop(task.id, None)
            self.cancelled.discard(task.id)
        return self._succeeded(task, spec, ctx, result, started), time.perf_counter() - t0

    @staticmethod
    def _failure(task: Task, spec: HandlerSpec, kind: str, message: str, retry: bool,
                 delay: float | None = None) -> Failure:
        return Failure(task, kind, message, traceback.format_exc(), retry,
                       backoff(spec, task.attempt) if delay is None else delay, spec.max_retries,
                       exc=sys.exc_info()[1])

    def record(self, f: Failure) -> FailOutcome:
        """Write a failure to Redis (retry or dead letter) and log the outcome."""
        task = f.task
        message, tb = f.message, f.traceback
        if self.keys is not None and self.keys.encrypts and f.kind in SEALED_KINDS:
            # what a handler raised often echoes its payload: stored sealed like the payload
            message = self.keys.seal(message, error_aad(task.queue, task.id, "message"))
            if tb:
                tb = self.keys.seal(tb, error_aad(task.queue, task.id, "traceback"))
        outcome = self.broker.fail(self.worker_id, task, message, kind=f.kind,
                                   traceback=tb, retry=f.retry, delay=f.delay,
                                   default_max_retries=f.default_max_retries)
        extra = {"task": task.id, "worker": self.worker_id, "type": task.type}
        limit = task.max_retries if task.max_retries is not None else f.default_max_retries
        if outcome.outcome == "retry":
            log.warning("%s task failed (attempt %d of %d), retrying in %.1fs: %s", task.type,
                        outcome.failures, limit + 1, f.delay, f.message, extra=extra)
        elif outcome.outcome == "dead":
            # the one line an operator greps for when a task is lost to the dead letters:
            # with its traceback, which `tq dead show` has too
            log.error("%s task is dead after %d attempt(s): %s%s", task.type, outcome.failures,
                      f.message, f"\n{f.traceback.rstrip()}" if f.traceback else "",
                      extra=extra)
        elif outcome.outcome == "cancelled":
            log.info("%s task was cancelled while it ran", task.type, extra=extra)
        else:
            log.warning("%s task was requeued while it ran (stale claim): its failure was "
                        "dropped", task.type, extra=extra)
        if hooks.MIDDLEWARE and outcome.outcome in ("retry", "dead"):
            self._hooks(f, outcome.outcome == "retry")
        return outcome

    def _hooks(self, f: Failure, will_retry: bool) -> None:
        ctx = f.ctx or TaskContext(self.services, f.task, REGISTRY.get(f.task.type), None)
        payload = None if f.task.malformed else f.task.payload
        if f.kind not in ("malformed", "unknown_type"):   # it ran (or tried to)
            hooks.call("on_failure", ctx, payload, f.exc, will_retry)
        if not will_retry:
            hooks.call("on_dead", ctx, payload, f.message, f.traceback)


def backoff(spec: HandlerSpec, attempt: int) -> float:
    """The handler's retry delay for `attempt`; its own backoff function may fail or talk
    nonsense (NaN, negative), which costs it the default backoff, never the child."""
    try:
        delay = spec.backoff(attempt)
        if isinstance(delay, int | float) and not isinstance(delay, bool) and delay >= 0 \
                and math.isfinite(delay):
            return float(delay)
        log.warning("backoff of %s handler returned %r: using the default", spec.type, delay)
    except Exception:
        log.exception("backoff of %s handler failed: using the default", spec.type)
    return DEFAULT_BACKOFF(attempt)


def queue_wait(task: Task, started: float) -> float | None:
    """Seconds from creation to start, for first attempts (retries waited on purpose)."""
    ms = created_ms(task.id)
    if ms is None or task.failures:
        return None
    return max(0.0, started - ms / 1000)
