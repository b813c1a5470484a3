"""What a claim returns (ClaimResult, its tasks decoded from claim.lua's reply) and what a
finished task's ack carries (Ack, the result record stored for it)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..task import Task

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


@dataclass(slots=True)
class Ack:
    """A finished task's ack, waiting to be sent (possibly together with the next claim)."""

    task: Task
    record: str   # the result record (JSON) stored under the task's result key
    result_ttl: float | None = None   # the handler's own; None: the claim's


@dataclass(slots=True)
class ClaimResult:
    tasks: list[Task]
    stale: list[str] = field(default_factory=list)   # acks refused by the fence
    next_due: float | None = None                     # s until the next scheduled task
    strays: int = 0   # tasks found in the worker's lists that it did not know it held
    gone: list[str] = field(default_factory=list)     # named queues found without ready work

    def merge(self, other: ClaimResult) -> None:
        self.tasks.extend(other.tasks)
        self.stale.extend(other.stale)
        self.strays += other.strays
        self.gone.extend(other.gone)
        if other.next_due is not None:
            self.next_due = other.next_due if self.next_due is None else \
                min(self.next_due, other.next_due)


def result_record(task: Task, result_json: str, worker_id: str, started: float,
                  finished: float, sealed: str | None = None) -> str:
    """The JSON stored for a succeeded task (result_json is already JSON; `sealed`: the
    result encrypted by tq.protect, stored as "x" instead)."""
    value = f'"x":"{sealed}"' if sealed is not None else f'"r":{result_json}'
    if task.workflow is not None:   # a workflow member's result links back to it
        value = f'"wf":"{task.workflow}",{value}'
    return (f'{{"s":"succeeded","t":{_json_name(task.type)},"a":{task.failures + 1},'
            f'"st":{int(started * 1000)},"f":{int(finished * 1000)},'
            f'"w":{_json_name(worker_id)},{value}}}')


_NAMES: dict[str, str] = {}


def _json_name(name: str) -> str:
    """A task type or worker id as JSON: a worker's few names, encoded once (every ack)."""
    encoded = _NAMES.get(name)
    if encoded is None:
        encoded = _dumps(name)
        if len(_NAMES) < 10_000:
            _NAMES[name] = encoded
    return encoded


_QUEUE_NAMES: dict[bytes, str] = {}


def _queue_name(raw: bytes) -> str:
    name = _QUEUE_NAMES.get(raw)
    if name is None:
        name = raw.decode()
        if len(_QUEUE_NAMES) < 100_000:
            _QUEUE_NAMES[raw] = name
    return name


def parse_claim(reply: Any) -> ClaimResult:
    """claim.lua's reply as a ClaimResult."""
    claimed, stale, due, strays, gone = reply[:5]
    from_body = Task.from_body
    it = iter(claimed)   # flat: (queue, id, token, body, failures) per task
    tasks = [from_body(tid.decode(), _queue_name(q), body, fails, token.decode())
             for q, tid, token, body, fails in zip(it, it, it, it, it, strict=True)]
    return ClaimResult(tasks, [s.decode() for s in stale] if stale else [],
                       None if due < 0 else due / 1000, strays,
                       [_queue_name(g) for g in gone] if gone else [])
