"""Handlers for the ACL matrix (tests/processes/test_acl_matrix.py): every path of a master run
as a Redis user with only the documented grants. Nothing here touches a key outside the
namespace (ctx.redis writes under tq:acl:, inside the user's key pattern)."""

from __future__ import annotations

import os
import signal
import time

import tq

tq.periodic(1, "acl.tick", {"from": "aclapp"})


@tq.handler("acl.ok")
def ok(payload, ctx):
    return {"pid": os.getpid(), "attempt": ctx.attempt}


@tq.handler("acl.tick")
def tick(payload, ctx):
    return payload


@tq.handler("acl.crash", max_retries=3)
def crash(payload, ctx):
    """Kills its own child on the first attempt: the master requeues it."""
    if ctx.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return ctx.attempt


@tq.handler("acl.slow", max_retries=3)
def slow(payload, ctx):
    """Reports progress, then runs for payload["s"] seconds on its first attempt (a stall to
    kill, a task to cancel), at once after that."""
    ctx.progress(0.5, "half way")
    if ctx.attempt == 1:
        time.sleep(payload.get("s", 30))
    return ctx.attempt


@tq.handler("acl.flaky", max_retries=0)
def flaky(payload, ctx):
    """Dies on its first run (a dead letter), succeeds when the dead letter is retried."""
    if ctx.redis.incr(f"tq:acl:flaky:{ctx.task_id}") == 1:
        raise RuntimeError("first run fails")
    return "retried"


@tq.handler("acl.limited", concurrency=1)
def limited(payload, ctx):
    return payload.get("n")


@tq.handler("acl.vault")
def vault(payload, ctx):
    return {"secret": payload.get("secret")}


@tq.handler("acl.wf1", queue="acl-wf1")
def wf1(payload, ctx):
    return payload.get("n", 0) + (ctx.input or 0)


@tq.handler("acl.wf2", queue="acl-wf2")   # another queue: another slot on a cluster
def wf2(payload, ctx):
    return payload.get("n", 0) + (ctx.input or 0)


@tq.handler("acl.fix")   # a queue of its own to corrupt and repair
def fix(payload, ctx):
    return "repaired"
