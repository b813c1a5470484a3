"""Handlers for bench/supervisor.py."""

from __future__ import annotations

import os
import time

import redis

import tq
from tq.store.connection import connect

_conn = None


def _r() -> redis.Redis:
    global _conn
    if _conn is None:   # any mode tq takes: standalone, cluster, sentinel
        _conn = connect(os.environ["TQ_REDIS_URL"])
    return _conn


@tq.handler("noop")
def noop(payload, ctx):
    return None


@tq.handler("incr")
def incr(payload, ctx):
    _r().incr("bench:counter")


@tq.handler("cpu")
def cpu(payload, ctx):
    n = 0
    for i in range(payload["loops"]):
        n += i * i
    return None


@tq.handler("latency")
def latency(payload, ctx):
    return time.time() - payload["t"]


@tq.handler("slow")
def slow(payload, ctx):
    _r().rpush("bench:started", f"{time.time()}|{os.getpid()}")
    time.sleep(payload["s"])


@tq.handler("incr_ctx")
def incr_ctx(payload, ctx):
    """The same INCR through ctx.redis: the worker's dedicated connection for handlers."""
    ctx.redis.incr("bench:counter")

