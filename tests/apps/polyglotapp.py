"""Handlers for tests/processes/test_node_producer.py: tasks a producer in another language
(examples/node) enqueues; results that echo what the handler was given."""

from __future__ import annotations

import tq


@tq.handler("greet", max_retries=0)
def greet(payload, ctx):
    return {"hello": payload.get("name"), "i": payload.get("i"), "type": ctx.type,
            "queue": ctx.queue, "max_retries": ctx.max_retries, "attempt": ctx.attempt}


@tq.handler("boom", max_retries=0)
def boom(payload, ctx):
    raise tq.PermanentError(f"no luck for task {payload.get('i')}")
