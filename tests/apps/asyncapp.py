"""An async def handler run by a real tq-master (tests/processes/test_async_handlers.py)."""

from __future__ import annotations

import asyncio
import os

import tq


@tq.handler("fetch", timeout=5)
async def fetch(payload, ctx):
    await asyncio.sleep(payload.get("s", 0.01))
    return {"url": payload["url"], "pid": os.getpid(), "attempt": ctx.attempt}


@tq.handler("resize")
def resize(payload, ctx):
    """Reports progress in a tight loop, then waits until the test has read it."""
    import redis as _redis

    r = _redis.Redis.from_url(os.environ["TQ_REDIS_URL"], protocol=2)
    for i in range(100_000):
        ctx.progress(i / 100_000 * 0.4, f"resized {i}/10")   # written twice a second at most
    ctx.progress(0.4, "resized 4/10")
    r.blpop(["test:go-on"], timeout=10)
    return "done"


@tq.handler("nap", timeout=1)
async def nap(payload, ctx):
    """Many at once in one child with --async-concurrency
    (tests/processes/test_async_handlers.py)."""
    import time

    t0 = time.time()
    await asyncio.sleep(payload.get("s", 0.1))
    return {"t0": t0, "t1": time.time(), "pid": os.getpid()}


@tq.handler("doze")
async def doze(payload, ctx):
    """Sleeps until cancelled (no time limit)."""
    await asyncio.sleep(payload.get("s", 30))
    return "woke up"
