"""Decoding what tq.store returns into what users read: TaskInfo from a task's snapshot, its
progress, a workflow's record, and the JSON fields of flow control.

Total on purpose: status pages must show the rest of a queue whatever one stored value holds,
so anything unreadable decodes to a default (and a note in TaskInfo.extra) instead of raising.
"""

from __future__ import annotations

import json
from typing import Any

from .ids import created_ms
from .limits import Limits
from .protect import (
    KeyRing,
    Rejected,
    error_aad,
    open_payload,
    open_text,
    progress_aad,
    result_aad,
    reveal,
)
from .store.tasks import Snapshot
from .task import STATES, Task, TaskInfo


def task_info(task_id: str, queue: str, snap: Snapshot, ring: KeyRing | None = None
              ) -> TaskInfo:
    """What client.get() says of a task, from its snapshot (tq.store.tasks.inspect_many);
    `ring` opens sealed payloads, results and errors (tq.protect)."""
    created = created_ms(task_id)
    info = TaskInfo(task_id, queue, queue, "queued",
                    created_at=created / 1000 if created is not None else None)
    failures = int(snap.failures or 0)
    if snap.error:
        _read_error(info, snap.error, ring)
    if snap.body is not None:
        _read_body(info, snap, failures, ring)
        return info
    _read_result(info, snap.result, ring)
    return info


def _read_error(info: TaskInfo, error: bytes, ring: KeyRing | None) -> None:
    queue, task_id = info.queue, info.id
    try:
        err = json.loads(error)
        info.error = reveal(ring, err.get("message"), error_aad(queue, task_id, "message"))
        info.error_kind = err.get("kind")
        info.traceback = reveal(ring, err.get("traceback"),
                                error_aad(queue, task_id, "traceback"))
        info.failed_at = err["at"] / 1000 if err.get("at") else None
        info.history = _history(err.get("history"), ring, queue, task_id)
    except (ValueError, TypeError, AttributeError):
        info.error = error.decode("utf-8", "replace")


def _read_body(info: TaskInfo, snap: Snapshot, failures: int, ring: KeyRing | None) -> None:
    """A task that waits, runs or is dead: its body and where it is."""
    assert snap.body is not None
    queue, task_id = info.queue, info.id
    task = Task.from_body(task_id, queue, snap.body, failures)
    if task.raw is not None and not task.malformed:   # signed or encrypted (tq.protect)
        try:
            opened = open_payload(ring, queue, task_id, task.raw, task.sealed)
            if opened is not None:
                task = task.with_payload(opened)
        except Rejected as exc:
            info.encrypted = task.sealed
            info.extra["protection"] = str(exc)
    info.type, info.priority, info.payload = task.type, task.priority, task.payload
    info.workflow = task.workflow
    if info.encrypted:
        info.payload = None
    info.max_retries, info.timeout = task.max_retries, task.timeout
    if task.malformed:
        info.extra["malformed"] = task.malformed
    info.attempts = failures
    if snap.dead is not None:
        info.state = "dead"
        info.finished_at = float(snap.dead) / 1000
    elif snap.claim:
        parts = snap.claim.decode().split("|")
        info.state, info.attempts, info.worker = "running", failures + 1, parts[0]
        info.started_at = int(parts[2]) / 1000 if len(parts) > 2 else None
        if snap.claim.endswith(b"|x"):   # a cancel was requested (cancel.lua)
            info.state = "cancelling"
    elif snap.sched is not None:
        info.state = "failed-will-retry" if failures else "scheduled"
        info.eta = float(snap.sched) / 1000
    elif snap.waiting is not None:
        info.state = "waiting"
        info.extra["waiting_for"] = int_or(snap.waiting, 0)


def _read_result(info: TaskInfo, result: bytes | None, ring: KeyRing | None) -> None:
    """A finished task: its result record (succeeded, or a cancelled record)."""
    queue, task_id = info.queue, info.id
    try:
        rec = json.loads(result) if result is not None else None
    except ValueError:
        rec = None
    if not isinstance(rec, dict):   # a result key that is not tq's (total, like from_body)
        info.state = "succeeded"
        info.extra["result"] = "unreadable result record"
        return
    state, ttype = rec.get("s"), rec.get("t")
    info.state = state if isinstance(state, str) and state in STATES else "succeeded"
    info.type = ttype if isinstance(ttype, str) else queue
    info.result = rec.get("r")
    if isinstance(rec.get("x"), str):   # an encrypted result
        opened = open_text(ring, rec["x"], result_aad(queue, task_id))
        info.encrypted = opened is None
        try:
            info.result = json.loads(opened) if opened is not None else None
        except ValueError:   # opened, but not JSON: not what a worker seals
            info.result = None
    info.attempts = rec["a"] if isinstance(rec.get("a"), int) else 1
    info.worker = rec.get("w") if isinstance(rec.get("w"), str) else None
    info.workflow = rec.get("wf") if isinstance(rec.get("wf"), str) else None
    info.started_at = _ms(rec.get("st"))
    info.finished_at = _ms(rec.get("f"))
    if rec.get("e"):
        info.error = str(rec["e"])
    info.history = _history(rec.get("h"), ring, queue, task_id)


def progress_info(raw: bytes | None, ring: KeyRing | None, queue: str, task_id: str
                  ) -> dict[str, Any] | None:
    """A stored ctx.progress() record as TaskInfo.progress, or None (none, or unreadable)."""
    rec = loads_or(raw, {})
    if not isinstance(rec.get("f"), int | float):
        return None
    return {"fraction": rec["f"],
            "message": reveal(ring, rec.get("m", ""), progress_aad(queue, task_id)),
            "at": rec.get("at")}


def workflow_record(raw: bytes | None) -> dict[str, Any] | None:
    """A workflow's stored record (tq.workflow.record), or None for nothing or unreadable."""
    rec = loads_or(raw, {})
    return rec if rec and isinstance(rec.get("members"), list) else None


def limits_or_none(wire: Any) -> Limits | None:
    """Limits from their stored JSON form; None for none or unreadable."""
    try:
        return Limits.from_wire(wire) if isinstance(wire, dict) and wire else None
    except (ValueError, TypeError, KeyError):
        return None


def loads_or(raw: Any, default: Any) -> Any:
    """JSON from Redis, or `default` for nothing, something unreadable, or a value of another
    type than `default`'s."""
    if not raw:
        return default
    try:
        value = json.loads(raw)
    except ValueError:
        return default
    return value if isinstance(value, type(default)) else default


def int_or(raw: Any, default: int) -> int:
    """An integer from Redis, or `default`."""
    try:
        return int(raw)
    except (TypeError, ValueError):
        return default


def _ms(value: Any) -> float | None:
    """Unix ms as stored -> seconds; None for nothing or something else."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value:
        return None
    return value / 1000


def _history(raw: Any, ring: KeyRing | None, queue: str, task_id: str
             ) -> list[dict[str, Any]]:
    """Earlier attempts' errors as stored ({kind, message, at ms, worker}), at in seconds."""
    if not isinstance(raw, list):
        return []
    aad = error_aad(queue, task_id, "message")
    return [{"kind": h.get("kind"), "message": reveal(ring, h.get("message"), aad),
             "at": h["at"] / 1000 if isinstance(h.get("at"), int | float) else None,
             "worker": h.get("worker")} for h in raw if isinstance(h, dict)]
