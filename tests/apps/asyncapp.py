"""An async def handler run by a real tq-master (tests/test_async_handlers.py)."""

from __future__ import annotations

import asyncio
import os

import tq


@tq.handler("fetch", timeout=5)
async def fetch(payload, ctx):
    await asyncio.sleep(payload.get("s", 0.01))
    return {"url": payload["url"], "pid": os.getpid(), "attempt": ctx.attempt}
