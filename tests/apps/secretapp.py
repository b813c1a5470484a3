"""Handlers for tests/processes/test_protect.py: each run recorded on the Redis under test (so a
test can tell that a refused task never ran), results and errors that echo the payload."""

from __future__ import annotations

import os

import redis

import tq

_r = None


def r() -> redis.Redis:
    global _r
    if _r is None or _r.connection_pool.pid != os.getpid():
        _r = redis.Redis.from_url(os.environ["TQ_REDIS_URL"], protocol=2)
    return _r


@tq.handler("mail", max_retries=0)
def mail(payload, ctx):
    r().rpush("secret:ran", ctx.task_id)
    if payload.get("fail"):
        raise ValueError(f"cannot send to {payload['to']}")
    return {"sent": payload["to"]}
