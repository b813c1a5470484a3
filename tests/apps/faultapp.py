"""Handlers for the fault suite: every run is recorded on a second redis-server (the recorder,
TQ_TEST_RECORDER_URL), so a test counts executions without trusting the Redis under test."""

from __future__ import annotations

import ctypes
import os
import time

import redis

import tq

_rec = None


def rec() -> redis.Redis:
    global _rec
    if _rec is None or _rec.connection_pool.pid != os.getpid():
        _rec = redis.Redis.from_url(os.environ["TQ_TEST_RECORDER_URL"], protocol=2,
                                    socket_timeout=10)
    return _rec


def record(event: str, task_id: str) -> None:
    rec().rpush(f"runs:{event}", f"{task_id}|{os.getpid()}")


@tq.handler("job", queue="a", max_retries=5)
def job(payload, ctx):
    record("started", ctx.task_id)
    if payload.get("s"):
        time.sleep(payload["s"])
    record("finished", ctx.task_id)
    return payload.get("n")


@tq.handler("job_b", queue="b", max_retries=5)
def job_b(payload, ctx):
    return job(payload, ctx)


@tq.handler("pill", queue="a", max_retries=10)
def pill(payload, ctx):
    """Takes its worker down: os._exit (a C library's exit) or a segfault."""
    record("started", ctx.task_id)
    if payload.get("how") == "segv":
        ctypes.string_at(0)
    os._exit(7)
