"""tq's exceptions: one small hierarchy, translated at the Redis boundary."""

from __future__ import annotations

import math


class TQError(Exception):
    """Base of every error tq raises on purpose."""


class ConfigError(TQError, ValueError):
    """A setting or an argument that tq cannot use."""


class PayloadError(TQError, ValueError):
    """A payload that cannot be enqueued: not a JSON object, not serialisable, or too large."""


class RedisUnavailable(TQError, ConnectionError):
    """Redis could not be reached; the message names the URL with its password redacted."""

    def __init__(self, url: str, cause: BaseException | str) -> None:
        self.url = url
        super().__init__(f"Redis at {url} is unavailable: {cause}")


class NoPermission(TQError, PermissionError):
    """The Redis user may not run a command tq needs (an ACL): the message says which."""

    def __init__(self, url: str, cause: BaseException | str) -> None:
        self.url = url
        super().__init__(f"Redis at {url} refused: {cause} (see docs/operations.md, 'Redis "
                         "users and ACLs', for the grants tq needs)")


class QueueBroken(TQError):
    """A key of the queue is corrupt (a wrong type, a counter that is not a number)."""

    def __init__(self, queue: str, why: str, done: str = "") -> None:
        self.queue = queue
        super().__init__(f"queue {queue} is broken ({why}){': ' + done if done else ''}; "
                         f"repair it with `tq queue repair {queue}`")


class EvictionPolicyError(TQError):
    """Redis would evict queue keys under memory pressure (maxmemory-policy is not noeviction)."""


class TaskNotFound(TQError, LookupError):
    """No task with that id is known (never enqueued, or its result has expired)."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(f"no task with id {task_id!r} (never enqueued, or its result expired)")


class TaskFailed(TQError):
    """wait() found the task in the dead-letter queue."""

    def __init__(self, task_id: str, error: str | None, traceback: str | None = None) -> None:
        self.task_id = task_id
        self.error = error
        self.traceback = traceback
        super().__init__(f"task {task_id} is dead: {error}")


class WaitTimeout(TQError, TimeoutError):
    """wait() gave up before the task finished."""

    def __init__(self, task_id: str, timeout: float, state: str) -> None:
        self.task_id = task_id
        self.state = state
        super().__init__(f"task {task_id} did not finish within {timeout:g}s (state: {state})")


class Retry(TQError):
    """Raised by a handler to ask for a retry, optionally after `delay` seconds."""

    def __init__(self, reason: str = "retry requested", delay: float | None = None) -> None:
        if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int | float)
                                  or not math.isfinite(delay) or delay < 0):
            raise ValueError(f"Retry(delay=...) must be a finite number of seconds >= 0, "
                             f"not {delay!r}")
        self.delay = delay
        super().__init__(reason)


class PermanentError(TQError):
    """Raised by a handler for a failure no retry can fix: the task goes straight to dead."""


class Cancelled(BaseException):  # not Exception: a handler's `except Exception` must not eat it
    """Raised inside a running handler when its task is cancelled (client.cancel, tq cancel,
    the dashboard): clean up and re-raise; the task ends cancelled, no attempt counted."""


class TaskCancelled(TQError):
    """client.wait() on a task that was cancelled before it ran."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} was cancelled")
        self.task_id = task_id
