"""Handlers for bench/workflows.py (apart from benchapp: every handler module's queue is one
more queue each claim of bench/supervisor.py's masters looks at)."""

from __future__ import annotations

import time

import tq


@tq.handler("noop")
def noop(payload, ctx):
    return None


@tq.handler("slow")
def slow(payload, ctx):
    time.sleep(payload["s"])


@tq.handler("step")
def step(payload, ctx):
    """A workflow member (bench/workflows.py): the previous step's result + 1."""
    return (ctx.input or 0) + 1


@tq.handler("step_other", queue="other")
def step_other(payload, ctx):
    """The same in another queue: each edge to it is a hand-off through a master."""
    return (ctx.input or 0) + 1
