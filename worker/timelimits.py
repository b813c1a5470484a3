"""A task's time limits inside the child: which apply to a run, and the soft one's exception."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from tq.handlers import HandlerSpec
from tq.task import Task

HARD_GRACE = 2.0   # seconds between the soft limit (exception) and the master's SIGKILL


class SoftTimeout(BaseException):  # not Exception: a handler's `except Exception` must not eat it
    """Raised inside a handler when its time limit passes."""


@dataclass(slots=True)
class TimeLimits:
    soft: float | None      # seconds until SoftTimeout is raised in the handler
    hard: float | None      # seconds until the master kills the child


_NO_LIMITS = TimeLimits(None, None)   # (shared: nobody changes a TimeLimits)


def time_limits(task: Task, spec: HandlerSpec) -> TimeLimits:
    """The task's timeout wins over its handler's; a hard limit follows the soft one."""
    if not task.timeout and not spec.timeout and not spec.soft_timeout:
        return _NO_LIMITS   # the usual case: no object per task
    timeout = task.timeout or spec.timeout
    if spec.soft_timeout and (timeout is None or spec.soft_timeout < timeout):
        return TimeLimits(spec.soft_timeout, timeout)
    if timeout:
        return TimeLimits(timeout, timeout + HARD_GRACE)
    return TimeLimits(None, None)


async def limited(awaitable: Any, timeout: float | None) -> Any:
    """Await a handler's coroutine; past `timeout` it is cancelled (its `finally` blocks
    run) and SoftTimeout raised."""
    if timeout is None:
        return await awaitable
    try:
        return await asyncio.wait_for(awaitable, max(timeout, 0.0))
    except TimeoutError:
        raise SoftTimeout("soft time limit reached") from None
