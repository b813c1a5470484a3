"""tq: a distributed task queue for Python on Redis, with a prefork supervisor.

Producers:  client = tq.Client(); client.enqueue("email", {"to": "a@example.com"})
Handlers:   @tq.handler("email", max_retries=5, timeout=10)
            def send_email(payload, ctx): ...
Workers:    tq-master start -c 8 -A myapp.tasks
"""

from __future__ import annotations

if __name__ != "tq":  # the source folder is shared/; only the installed name may import it
    raise ImportError(f"import tq, not {__name__} (install the project: pip install -e .)")

__version__ = "0.2.0"   # the one place: setup.cfg, both CLIs and /metrics read it

from .client import Client
from .errors import (
    Cancelled,
    ConfigError,
    EvictionPolicyError,
    NoPermission,
    PayloadError,
    PermanentError,
    QueueBroken,
    RedisUnavailable,
    Retry,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
    TQError,
    WaitTimeout,
)
from .handlers import Backoff, Context, Handler, handler
from .hooks import Middleware, add_middleware, remove_middleware
from .periodic_tasks import periodic
from .task import Task, TaskInfo
from .workflow import Workflow, WorkflowInfo, chain, chord, group, step

__all__ = [
    "Backoff",
    "Cancelled",
    "Client",
    "ConfigError",
    "Context",
    "EvictionPolicyError",
    "Handler",
    "Middleware",
    "NoPermission",
    "PayloadError",
    "PermanentError",
    "QueueBroken",
    "RedisUnavailable",
    "Retry",
    "TQError",
    "Task",
    "TaskCancelled",
    "TaskFailed",
    "TaskInfo",
    "TaskNotFound",
    "WaitTimeout",
    "Workflow",
    "WorkflowInfo",
    "add_middleware",
    "chain",
    "chord",
    "group",
    "handler",
    "periodic",
    "remove_middleware",
    "step",
]
