"""Handlers for the supervisor's process tests. Each run is recorded in Redis so a test can
tell which tasks started, where, and how often."""

from __future__ import annotations

import ctypes
import os
import signal
import time

import redis

import tq
from tq.store.connection import connect

_conn = None
_pid = 0
_hoard: list[bytes] = []


def r() -> redis.Redis:
    global _conn, _pid
    if _conn is None or _pid != os.getpid():   # any mode tq takes: standalone, cluster...
        _conn, _pid = connect(os.environ["TQ_REDIS_URL"]), os.getpid()
    return _conn


def record(event: str, task_id: str) -> None:
    r().rpush(f"test:{event}", f"{task_id}|{os.getpid()}")


@tq.handler("noop")
def noop(payload, ctx):
    return None


@tq.handler("incr")
def incr(payload, ctx):
    """One Redis round trip of its own, like the peers' benchmark tasks."""
    r().incr("test:counter")


@tq.handler("work", max_retries=3, backoff=tq.Backoff(base=0.05))
def work(payload, ctx):
    record("started", ctx.task_id)
    time.sleep(payload.get("s", 0.0))
    record("finished", ctx.task_id)
    return {"pid": os.getpid(), "attempt": ctx.attempt}


@tq.handler("hang", timeout=1, max_retries=0)
def hang(payload, ctx):
    """Stuck where the soft limit cannot reach it (SIGALRM blocked): only SIGKILL ends it."""
    record("started", ctx.task_id)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(600)


@tq.handler("alloc", max_retries=0)
def alloc(payload, ctx):
    """Keeps `mb` megabytes per call (a leak), touched so they count as the child's own."""
    _hoard.append(os.urandom(int(payload["mb"] * 1024 * 1024)))
    return {"pid": os.getpid()}


@tq.handler("segv", max_retries=2)
def segv(payload, ctx):
    record("started", ctx.task_id)
    ctypes.string_at(0)   # SIGSEGV


@tq.handler("pid")
def pid(payload, ctx):
    return os.getpid()


@tq.handler("stamp")
def stamp(payload, ctx):
    return time.time()


@tq.handler("brief", result_ttl=2)
def brief(payload, ctx):
    return "kept for two seconds"
