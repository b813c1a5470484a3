"""Handlers with flow control (tests/redis/test_flow.py and the fault suite's fleet tests). Every
run is recorded with its start and end time: on the recorder (TQ_TEST_RECORDER_URL, a second
redis-server) when there is one, else on the Redis under test."""

from __future__ import annotations

import os
import time

import redis

import tq

_rec = None


def rec() -> redis.Redis:
    global _rec
    if _rec is None or _rec.connection_pool.pid != os.getpid():
        url = os.environ.get("TQ_TEST_RECORDER_URL") or os.environ["TQ_REDIS_URL"]
        _rec = redis.Redis.from_url(url, protocol=2, socket_timeout=10)
    return _rec


def run(kind: str, payload: dict, ctx) -> None:
    # when tq claimed it (Redis' clock, from the task's claim record): what the limit governs
    claim = ctx.redis.hget(f"tq:{{{ctx.queue}}}:run", ctx.task_id) or b"||0"
    claimed = int(claim.split(b"|")[2]) / 1000
    rec().rpush(f"flow:{kind}", f"start|{ctx.task_id}|{os.getpid()}|{time.time()}|"
                                f"{payload.get('tenant', '')}|{claimed}")
    if payload.get("s"):
        time.sleep(payload["s"])
    rec().rpush(f"flow:{kind}", f"end|{ctx.task_id}|{os.getpid()}|{time.time()}||")


@tq.handler("limited", queue="flow", rate_limit="50/s")
def limited(payload, ctx):
    run("limited", payload, ctx)


@tq.handler("tenant", queue="flow", rate_limit="10/s", rate_key="tenant")
def tenant(payload, ctx):
    run("tenant", payload, ctx)


@tq.handler("conc", queue="flow", concurrency=3, max_retries=20)
def conc(payload, ctx):
    run("conc", payload, ctx)


@tq.handler("free", queue="flow")
def free(payload, ctx):
    run("free", payload, ctx)


@tq.handler("heavy", queue="heavy")
def heavy(payload, ctx):
    run("heavy", payload, ctx)


@tq.handler("light", queue="light")
def light(payload, ctx):
    run("light", payload, ctx)
