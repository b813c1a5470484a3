"""Handlers: the functions (or classes) that run tasks, and their retry policy.

    @tq.handler("email", max_retries=5, timeout=10)
    def send_email(payload, ctx): ...

    class ImageProcessing(tq.Handler):        # the article's TaskHandler: a type and handle()
        type = "image_processing"
        timeout = 120
        def handle(self, payload, ctx): ...

Both register in the process-wide registry when their module is imported; workers import the
modules named by `tq-master -A`.
"""

from __future__ import annotations

import inspect
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

from .limits import Limits, RateKey, declared
from .task import (
    DEFAULT_MAX_RETRIES,
    MAX_SECONDS,
    validate_max_retries,
    validate_name,
    validate_timeout,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: base * factor**(attempt-1), capped, then +-jitter."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 3600.0
    jitter: float = 0.25   # fraction of the delay, spread both ways

    def __post_init__(self) -> None:
        if self.base < 0 or self.factor < 1 or self.cap < 0 or not 0 <= self.jitter <= 1:
            raise ValueError(f"invalid backoff {self}")

    def __call__(self, attempt: int) -> float:
        delay = min(self.cap, self.base * self.factor ** max(attempt - 1, 0))
        if self.jitter:
            delay *= 1 + self.jitter * (2 * random.random() - 1)
        return max(delay, 0.0)


DEFAULT_BACKOFF = Backoff()

_H = TypeVar("_H")   # what @tq.handler decorates: returned unchanged, types and all


class Context(Protocol):
    """What a handler gets besides the payload (the worker supplies the implementation)."""

    task_id: str
    type: str
    queue: str
    attempt: int
    max_retries: int
    deadline: float | None
    worker_id: str
    log: logging.Logger
    redis: Any   # a redis-py client on this worker's own connection (made on first use)

    def enqueue(self, task_type: str, payload: dict[str, Any], **options: Any) -> str: ...

    def progress(self, fraction: float, message: str = "") -> None: ...


@dataclass(slots=True)
class HandlerSpec:
    """A registered handler and its policy."""

    type: str
    func: Callable[[dict[str, Any], Any], Any]
    queue: str
    max_retries: int = DEFAULT_MAX_RETRIES
    timeout: float | None = None        # hard limit, enforced by the master (kills the child)
    soft_timeout: float | None = None   # raises SoftTimeout inside the handler first
    backoff: Callable[[int], float] = DEFAULT_BACKOFF
    result_ttl: float | None = None     # None: the worker's default
    limits: Limits | None = None        # rate / concurrency limits (tq.limits), fleet-wide
    rate_key: RateKey | None = None     # a function: producers write its value in the header
    is_async: bool = field(init=False, default=False)   # an async def handler (or handle)

    def __post_init__(self) -> None:
        self.is_async = inspect.iscoroutinefunction(self.func)

    def policy(self) -> dict[str, Any]:
        """What Lua needs to know when the handler is not at hand (a reaper in the master)."""
        return {"max_retries": self.max_retries, "timeout": self.timeout}


REGISTRY: dict[str, HandlerSpec] = {}


def _register(spec: HandlerSpec) -> None:
    old = REGISTRY.get(spec.type)
    if old is not None and getattr(old.func, "__qualname__", None) != getattr(
            spec.func, "__qualname__", None):
        raise ValueError(f"a handler for type {spec.type!r} is already registered: {old.func!r}")
    REGISTRY[spec.type] = spec


def _validate_policy(max_retries: int, timeout: float | None, soft_timeout: float | None) -> None:
    """The same ranges as a task's own options (tq.task), so a policy never breaks a worker."""
    validate_max_retries(max_retries)
    for name, value in (("timeout", timeout), ("soft_timeout", soft_timeout)):
        if value is not None:
            try:
                validate_timeout(value)
            except ValueError:
                raise ValueError(f"{name} must be a number of seconds above 0 and at most "
                                 f"{MAX_SECONDS}, not {value!r}") from None


def handler(task_type: str, *, queue: str | None = None, max_retries: int = DEFAULT_MAX_RETRIES,
            timeout: float | None = None, soft_timeout: float | None = None,
            backoff: Callable[[int], float] | Backoff | None = None,
            result_ttl: float | None = None, rate_limit: str | None = None,
            burst: int | None = None, rate_key: RateKey | None = None,
            concurrency: int | None = None) -> Callable[[_H], _H]:
    """Register a function `(payload, ctx) -> JSON-serialisable result | None` for a task type.

    rate_limit ("100/s", "6000/m", "10/h"), burst, rate_key (a payload field name, or a
    function of the payload: one rate bucket per value) and concurrency (at most N running at
    once) hold across every worker of the fleet; see tq.limits.

    The decorated function (or Handler class) is returned as it is, so a type checker keeps its
    signature: calling it directly in a test, or reading it in an editor, shows the real types.
    """
    validate_name("type", task_type)
    validate_name("queue", queue or task_type)
    _validate_policy(max_retries, timeout, soft_timeout)
    limits = declared(rate_limit, burst, rate_key, concurrency)

    def register(func: _H) -> _H:
        target: Any = func
        if isinstance(target, type) and issubclass(target, Handler):
            target = target()
        call = target.handle if isinstance(target, Handler) else target
        if not callable(call):
            raise TypeError(f"@tq.handler needs a function (payload, ctx), got {func!r}")
        _register(HandlerSpec(task_type, call, queue or task_type, max_retries, timeout,
                              soft_timeout, backoff or DEFAULT_BACKOFF, result_ttl, limits,
                              rate_key))
        return func

    return register


class Handler:
    """Class form: subclasses that set `type` register themselves when defined."""

    type: ClassVar[str]
    queue: ClassVar[str | None] = None
    max_retries: ClassVar[int] = DEFAULT_MAX_RETRIES
    timeout: ClassVar[float | None] = None
    soft_timeout: ClassVar[float | None] = None
    backoff: ClassVar[Callable[[int], float] | None] = None
    result_ttl: ClassVar[float | None] = None
    rate_limit: ClassVar[str | None] = None
    burst: ClassVar[int | None] = None
    rate_key: ClassVar[RateKey | None] = None
    concurrency: ClassVar[int | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type" not in cls.__dict__:
            return   # an abstract intermediate class
        validate_name("type", cls.type)
        validate_name("queue", cls.queue or cls.type)
        _validate_policy(cls.max_retries, cls.timeout, cls.soft_timeout)
        rate_key = cls.__dict__.get("rate_key", cls.rate_key)   # (not bound as a method)
        limits = declared(cls.rate_limit, cls.burst, rate_key, cls.concurrency)
        instance = cls()
        _register(HandlerSpec(cls.type, instance.handle, cls.queue or cls.type, cls.max_retries,
                              cls.timeout, cls.soft_timeout, cls.backoff or DEFAULT_BACKOFF,
                              cls.result_ttl, limits, rate_key))

    def handle(self, payload: dict[str, Any], ctx: Context) -> Any:
        raise NotImplementedError
