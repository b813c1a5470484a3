"""Middleware: code of yours around every task a worker runs (error trackers, tracing, metrics).

    class Tracker(tq.Middleware):
        def on_failure(self, ctx, payload, exc, will_retry):
            sentry_sdk.capture_exception(exc)      # the handler's exception, traceback and all

    tq.add_middleware(Tracker())                   # in a module the workers import (-A)

Hooks run in the worker process, in the order middleware was added, for each run of a task:
before(ctx, payload) -> the handler -> after(ctx, payload, result) when it returned, or
on_failure(ctx, payload, exc, will_retry) when it raised or timed out (once Redis has
recorded whether it will be retried), then on_dead(ctx, payload, error, traceback) when that
run made it dead. A task that cannot run at all (an unknown type, a malformed body) gets
on_dead only, with exc None. A hook that raises is logged and skipped: it never fails the
task nor the worker. With no middleware added, running a task costs nothing extra.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("tq.worker")

MIDDLEWARE: list[Middleware] = []


class Middleware:
    """Override the hooks you need; each gets the task's context (tq.Context: task_id, type,
    queue, attempt, max_retries, worker_id, log) and its payload."""

    def before(self, ctx: Any, payload: dict[str, Any]) -> None:
        """Just before the handler is called."""

    def after(self, ctx: Any, payload: dict[str, Any], result: Any) -> None:
        """The handler returned `result` (its ack follows, batched)."""

    def on_failure(self, ctx: Any, payload: dict[str, Any], exc: BaseException | None,
                   will_retry: bool) -> None:
        """The run failed: `exc` is what the handler raised (SoftTimeout on a time limit)."""

    def on_dead(self, ctx: Any, payload: dict[str, Any] | None, error: str,
                traceback: str | None) -> None:
        """The task was dead-lettered: no retries left, a permanent error, or it cannot run."""


def add_middleware(middleware: Middleware) -> Middleware:
    """Run `middleware`'s hooks around every task of this process (returns it)."""
    if not isinstance(middleware, Middleware):
        raise TypeError(f"add_middleware needs a tq.Middleware instance, not {middleware!r}")
    MIDDLEWARE.append(middleware)
    return middleware


def remove_middleware(middleware: Middleware) -> None:
    MIDDLEWARE.remove(middleware)


def call(hook: str, *args: Any) -> None:
    """Run one hook of every middleware; one that raises is logged, and the rest still run."""
    for mw in MIDDLEWARE:
        try:
            getattr(mw, hook)(*args)
        except Exception:
            log.exception("middleware %s.%s failed (ignored)", type(mw).__name__, hook)
