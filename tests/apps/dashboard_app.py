"""Handlers for the dashboard's browser test, run by a real tq-master."""

from __future__ import annotations

import os
import time

import redis

import tq
from tq.store.connection import connect

_conn: redis.Redis | None = None
_pid = 0


def _redis() -> redis.Redis:
    global _conn, _pid
    if _conn is None or _pid != os.getpid():   # any mode tq takes: standalone, cluster...
        _conn, _pid = connect(os.environ["TQ_REDIS_URL"]), os.getpid()
    return _conn


@tq.handler("work")
def work(payload, ctx):
    time.sleep(payload.get("s", 0.01))
    return payload.get("i")


@tq.handler("flaky", max_retries=0)
def flaky(payload, ctx):
    """Fails its first run (with whatever message the payload asks for), succeeds after."""
    if _redis().incr(f"test:flaky:{ctx.task_id}") == 1:
        raise ValueError(payload.get("error", "first run fails"))
    return "ok"
