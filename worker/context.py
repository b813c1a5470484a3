"""What a handler reaches besides its payload: its `ctx` (TaskContext) and, behind it, this
worker's services to handlers (HandlerServices: follow-ups, progress, inputs, own Redis)."""

from __future__ import annotations

import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from tq.handlers import HandlerSpec
from tq.protect import KeyRing, open_text, progress_aad, result_aad
from tq.store.broker import Broker
from tq.store.connection import connect
from tq.task import Task, validate_progress

if TYPE_CHECKING:
    from tq import Client

log = logging.getLogger("tq.worker")
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode

PROGRESS_EVERY = 0.5              # seconds between progress writes of one task
PROGRESS_TTL_MS = 24 * 3600 * 1000   # a progress record outlives its task by a day at most


class HandlerServices:
    """One worker's services to its handlers, made on first use and once per process: a Client
    for follow-up tasks, a Redis client for their own commands, progress records, and the
    inputs of workflow members."""

    def __init__(self, broker: Broker, worker_id: str, keys: KeyRing | None,
                 cancelled: set[str]) -> None:
        self.broker = broker
        self.worker_id = worker_id
        self.keys = keys      # payload protection (tq.protect); None: plain payloads
        self.cancelled = cancelled   # the runner's: ids of running tasks whose cancel came
        self._client: Client | None = None
        self._redis: Any = None
        self._redis_pid = 0

    def client(self) -> Client:
        if self._client is None:
            from tq import Client
            self._client = Client(self.broker.url, self.broker.namespace,
                                  keys=self.keys or "")   # follow-ups sealed like the rest
        return self._client

    def redis(self) -> Any:
        """ctx.redis: made once per process (a child is forked after the master's imports)."""
        if self._redis is None or self._redis_pid != os.getpid():
            self._redis = connect(self.broker.url, retries=3, client_name="tq-handler",
                                  single_connection=True)
            self._redis_pid = os.getpid()
        return self._redis

    def write_progress(self, queue: str, task_id: str, fraction: float, message: str) -> None:
        """One progress record (sealed like results when payloads are encrypted); a Redis
        error is logged, never raised into the handler (progress is a report, not work)."""
        if self.keys is not None and self.keys.encrypts and message:
            message = self.keys.seal(message, progress_aad(queue, task_id))
        record = _dumps({"f": round(fraction, 4), "m": message[:1000], "at": time.time()})
        try:
            self.redis().set(self.broker.keys.queue(queue).progress(task_id), record,
                             px=PROGRESS_TTL_MS)
        except Exception as exc:   # redis-py's errors, an ACL refusal...
            log.warning("could not record progress: %s", exc,
                        extra={"task": task_id, "worker": self.worker_id})

    def read_inputs(self, task: Task) -> list[Any]:
        """The results its upstream workflow members handed this member (one HMGET)."""
        return [self._input(r) for r in self.broker.workflow_inputs(task)]

    def _input(self, raw: Any) -> Any:
        """One input as node_value() wrote it: [queue, id, result record]; the result, or
        None (a member that did not succeed, or one gone: a retried dead letter)."""
        try:
            queue, tid, rec = json.loads(raw)
        except (TypeError, ValueError):
            return None
        if not isinstance(rec, dict) or rec.get("s") != "succeeded":
            return None
        if isinstance(rec.get("x"), str):   # sealed (tq.protect)
            opened = open_text(self.keys, rec["x"], result_aad(queue, tid))
            try:
                return json.loads(opened) if opened is not None else None
            except ValueError:
                return None
        return rec.get("r")


class TaskContext:
    """What a handler gets besides its payload."""

    __slots__ = ("_inputs", "_log", "_progress_at", "_services", "attempt", "deadline",
                 "max_retries", "queue", "task_id", "type", "worker_id", "workflow_id")
    # (redis, log, inputs, input and cancelled are properties)

    def __init__(self, services: HandlerServices, task: Task, spec: HandlerSpec | None,
                 deadline: float | None, inputs: list[Any] | None = None):
        self._services = services
        self.workflow_id = task.workflow
        self._inputs = inputs
        self.task_id, self.type, self.queue = task.id, task.type, task.queue
        self.attempt = task.failures + 1
        default = spec.max_retries if spec is not None else 0
        self.max_retries = task.max_retries if task.max_retries is not None else default
        self.deadline = deadline
        self.worker_id = services.worker_id
        self._log: logging.LoggerAdapter[logging.Logger] | None = None
        self._progress_at = 0.0   # when progress was last written to Redis (monotonic)

    @property
    def inputs(self) -> list[Any]:
        """The results of its upstream workflow members, in their order (None for one that
        is dead or cancelled, under the workflow's "continue" policy); [] for a plain task."""
        if self._inputs is None:
            self._inputs = []
        return self._inputs

    @property
    def input(self) -> Any:
        """The last upstream result (in a chain: the previous step's), or None."""
        return self._inputs[-1] if self._inputs else None

    @property
    def cancelled(self) -> bool:
        """Has this task been cancelled while it runs? (tq.Cancelled is raised in the
        handler too; a handler that catches it to clean up can look here.)"""
        return self.task_id in self._services.cancelled

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger for this task (`tq.task.TYPE`, with the task and worker ids), made on first
        use: most handlers never log, and every task would pay for it."""
        if self._log is None:
            self._log = logging.LoggerAdapter(logging.getLogger(f"tq.task.{self.type}"),
                                              {"task": self.task_id, "worker": self.worker_id})
        return self._log

    def enqueue(self, task_type: str, payload: dict[str, Any] | None = None, **options: Any) -> str:
        """Enqueue a follow-up task through this worker's Redis."""
        return self._services.client().enqueue(task_type, payload, **options)

    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far the task is (0..1) and what it does, for `client.get()`, `tq get`
        and the dashboard. Cheap in a tight loop: written to Redis at most every
        PROGRESS_EVERY seconds (the last call in between is lost; the first is not)."""
        fraction = validate_progress(fraction)
        now = time.monotonic()
        if now - self._progress_at < PROGRESS_EVERY:
            return
        self._progress_at = now
        self._services.write_progress(self.queue, self.task_id, fraction, str(message))

    @property
    def redis(self) -> Any:
        """A redis-py client of this worker's Redis for the handler's own commands: one
        dedicated connection per worker process (made on first use, never shared with another
        process), no pool to check out from on each call. Bytes replies, a few retries after a
        connection error (a handler's own commands are its business to make idempotent)."""
        return self._services.redis()
