"""Handlers for the workflow and cancellation tests (tests/redis/test_workflow.py,
tests/faults/test_workflow_faults.py). Runs of wf.num and wf.collect are recorded on the
fault suite's recorder (TQ_TEST_RECORDER_URL, a second redis-server) when it is set: "id|pid"
in runs:started when a run starts and runs:finished when it returns."""

from __future__ import annotations

import os
import signal
import time

import redis

import tq

_record = None


def record(event: str, ctx) -> redis.Redis | None:
    global _record
    url = os.environ.get("TQ_TEST_RECORDER_URL")
    if not url:
        return None
    if _record is None:
        _record = redis.Redis.from_url(url)
    _record.rpush(f"runs:{event}", f"{ctx.task_id}|{os.getpid()}")
    return _record


@tq.handler("wf.num", max_retries=20)
def num(payload, ctx):
    """Its payload's n, plus the previous step's result in a chain."""
    record("started", ctx)
    if payload.get("slow"):
        time.sleep(payload["slow"])
    record("finished", ctx)
    return payload.get("n", 0) + (ctx.input or 0)


@tq.handler("wf.collect", max_retries=20)
def collect(payload, ctx):
    record("started", ctx)
    r = record("finished", ctx)
    if r is not None:
        r.rpush("collected", len(ctx.inputs))
    return {"inputs": ctx.inputs, "workflow": ctx.workflow_id}


@tq.handler("wf.fail", max_retries=0)
def fail(payload, ctx):
    raise tq.PermanentError("this member fails")


@tq.handler("wf.other", queue="wf-other")
def other(payload, ctx):
    """A member in another queue (a cross-queue edge: hand-off through the master)."""
    return {"other": ctx.inputs}


@tq.handler("wf.block")
def block(payload, ctx):
    """Runs until cancelled; says it started, and cleans up on tq.Cancelled."""
    r = redis.Redis.from_url(os.environ["TQ_REDIS_URL"])
    r.rpush("test:started", ctx.task_id)
    try:
        for _ in range(600):
            time.sleep(0.05)
    except tq.Cancelled:
        r.rpush("test:cleaned", f"{ctx.task_id}:{ctx.cancelled}")
        raise
    return "not cancelled"


@tq.handler("wf.stuck")
def stuck(payload, ctx):
    """Like a handler stuck in C code: the cancel signal is never delivered to it."""
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
    redis.Redis.from_url(os.environ["TQ_REDIS_URL"]).rpush("test:started", ctx.task_id)
    time.sleep(60)
    return "not cancelled"
