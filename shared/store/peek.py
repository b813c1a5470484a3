"""Bounded reads of tasks for status pages: each task's values cut to previews inside Redis
(peek.lua), and one value in full up to a limit (value.lua).

A page of fifty tasks whose payloads, errors and results are a megabyte each then costs Redis
and the network kilobytes, not a hundred megabytes; tq.previews decodes what comes back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import redis

from .broker import Broker
from .scripts import SCRIPTS
from .tasks import raise_broken

PARTS = ("payload", "message", "traceback", "result")   # what value() reads


class Peek(NamedTuple):
    """peek.lua's reply: one look at a task, long values cut (None where absent)."""

    body: bytes | None      # the body whole when body_size <= the cap, else its first bytes
    body_size: int
    claim: bytes | None
    failures: bytes | None
    error: Any              # the record (bytes) when short, else its outline (a list)
    sched: bytes | None
    dead: bytes | None
    result: Any             # as error
    waiting: bytes | None

    @property
    def body_cut(self) -> bool:
        return self.body is not None and len(self.body) < self.body_size


def peek_many(broker: Broker, pairs: Sequence[tuple[str, str]], cap: int, *,
              records: bool = True, tail: int = 0, steps: int = 20_000
              ) -> list[Peek | None]:
    """peek.lua for each (task id, queue), in one pipeline: values of at most `cap` bytes
    whole, longer ones cut (a traceback keeps its last `tail` bytes too); records: read the
    error and result records. None where the queue knows nothing of the task, or (looking at
    several) where its queue is broken and set aside. `steps` bounds the work of reading a
    long record's members (_json.lua)."""
    args = ["", cap, "1" if records else "0", tail, steps]

    def call(pipe: Any, task_id: str, queue: str) -> None:
        args[0] = task_id
        SCRIPTS.peek.queue(pipe, [*broker.block(queue), broker.qkeys(queue).result(task_id)],
                           args)

    replies = _pipelined(broker, pairs, call)
    out: list[Peek | None] = []
    for (_, q), reply in zip(pairs, replies, strict=True):
        if isinstance(reply, Exception):
            if len(pairs) > 1 and broker.quarantine.explains([q], reply):
                out.append(None)
                continue
            raise_broken(broker, q, reply)
        p = Peek(*reply)
        out.append(p if p.body is not None or p.result is not None else None)
    return out


def value(broker: Broker, queue: str, task_id: str, part: str, limit: int
          ) -> tuple[bytes | None, int]:
    """value.lua: one value of a task as stored (JSON; for "payload" the whole body, for
    "result" the whole record), when it has at most `limit` bytes: (text, size); (None,
    size) when it is longer; (None, -1) when the task has none."""
    if part not in PARTS:
        raise ValueError(f"part is one of {', '.join(PARTS)}")
    args = [task_id, part, limit]

    def call(pipe: Any, task_id: str, queue: str) -> None:
        SCRIPTS.value.queue(pipe, [*broker.block(queue), broker.qkeys(queue).result(task_id)],
                            args)

    (reply,) = _pipelined(broker, [(task_id, queue)], call)
    if isinstance(reply, Exception):
        raise_broken(broker, queue, reply)
    text, size = reply
    return text, int(size)


def _pipelined(broker: Broker, pairs: Sequence[tuple[str, str]], call: Any) -> list[Any]:
    """A script called for each (task id, queue) in one pipeline, loaded and called again
    after NOSCRIPT (Redis restarted: its script cache is empty). Error replies are returned."""
    for attempt in (1, 2):
        pipe = broker.conn.pipeline(transaction=False)
        for task_id, q in pairs:
            call(pipe, task_id, q)
        replies = pipe.execute(raise_on_error=False)
        if attempt == 1 and any(isinstance(r, redis.exceptions.NoScriptError)
                                for r in replies):
            broker.load_scripts()
            continue
        break
    return replies
