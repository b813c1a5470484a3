"""Handlers with middleware: every hook call is recorded in Redis (test:hooks), and a second
middleware raises in every hook, which must change nothing."""

from __future__ import annotations

import json

from procapp import r

import tq


class Recorder(tq.Middleware):
    def _log(self, hook: str, ctx, **extra) -> None:
        r().rpush("test:hooks", json.dumps({"hook": hook, "id": ctx.task_id, "type": ctx.type,
                                            "attempt": ctx.attempt, **extra}))

    def before(self, ctx, payload):
        self._log("before", ctx, payload=payload)

    def after(self, ctx, payload, result):
        self._log("after", ctx, result=result)

    def on_failure(self, ctx, payload, exc, will_retry):
        self._log("on_failure", ctx, exc=type(exc).__name__ if exc else None,
                  traceback=exc is not None and exc.__traceback__ is not None,
                  will_retry=will_retry)

    def on_dead(self, ctx, payload, error, traceback):
        self._log("on_dead", ctx, error=error, traceback=bool(traceback))


class Broken(tq.Middleware):
    def before(self, ctx, payload):
        raise RuntimeError("a broken middleware")

    after = on_failure = on_dead = before


tq.add_middleware(Recorder())
tq.add_middleware(Broken())


@tq.handler("fine")
def fine(payload, ctx):
    return {"double": payload["n"] * 2}


@tq.handler("doomed", max_retries=1, backoff=tq.Backoff(base=0.01, jitter=0))
def doomed(payload, ctx):
    raise ValueError(f"no luck on attempt {ctx.attempt}")


@tq.handler("counted")
def counted(payload, ctx):
    """ctx.redis: the worker's own connection for the handler's commands."""
    return {"n": ctx.redis.incr("test:counted"), "name": ctx.redis.client_getname(),
            "same": ctx.redis is ctx.redis}
