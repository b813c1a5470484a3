"""One task as the dashboard's task page shows it: its values cut to generous previews, and
each value in full on request, up to tq's largest payload (both read at bounded cost).

A list shows 1 KiB of each value (tasks.py); the task page 64 KiB; "full value" the value
as stored, up to MAX_BODY_BYTES (16 MiB and the header: the largest body a worker runs).
Results, error messages and tracebacks have no limit of their own in tq: one longer than
that is refused with its size (413), never read into the dashboard.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tq.client import UNFINISHED, Client
from tq.errors import TaskNotFound
from tq.info import progress_info
from tq.keyring import Rejected
from tq.previews import Previewed, preview_info
from tq.protect import error_aad, open_payload, open_text, result_aad, reveal
from tq.store import peek
from tq.store import tasks as store
from tq.task import MAX_BODY_BYTES, Task

PAGE_PREVIEW = 64 * 1024    # bytes of each value the task page shows
PAGE_TAIL = 16 * 1024       # and of the end of a long traceback
PAGE_STEPS = 200_000        # string.find steps reading a long record's members (_json.lua)
FULL_LIMIT = MAX_BODY_BYTES
PARTS = {"payload": "payload", "result": "result", "error": "message",
         "traceback": "traceback"}   # the page's names -> value.lua's


class TooLarge(Exception):
    """A value longer than FULL_LIMIT: its size."""

    def __init__(self, size: int) -> None:
        super().__init__(f"{size:,} bytes, more than the {FULL_LIMIT:,} the dashboard shows "
                         f"(read it from Redis)")
        self.size = size


@dataclass(frozen=True)
class FullValue:
    """A value as stored, as text: JSON for a payload or a result, else plain text."""

    text: str
    size: int
    note: str | None = None   # e.g. a signature that does not verify


def locate(client: Client, task_id: str, queue: str | None, cap: int, *, records: bool = True,
           tail: int = 0, steps: int = 20_000) -> tuple[str, peek.Peek]:
    """The queue that knows the task (the given one, else those its id's hint names, as
    Client.get looks) and a peek at it; TaskNotFound if none does."""
    broker = client.broker
    looked: set[str] = set()
    for fresh in (False, True):   # (again with the queue set read anew: it may have grown)
        queues = [queue] if queue else [q for q in broker.queues_for_id(task_id, fresh)
                                        if q not in looked]
        if not queues:
            break
        peeks = peek.peek_many(broker, [(task_id, q) for q in queues], cap, records=records,
                               tail=tail, steps=steps)
        for q, p in zip(queues, peeks, strict=True):
            if p is not None:
                return q, p
        if queue:
            break
        looked.update(queues)
    raise TaskNotFound(task_id)


def task_page(client: Client, task_id: str, queue: str | None) -> Previewed:
    """What the task page shows: the task with each value cut to PAGE_PREVIEW bytes."""
    q, p = locate(client, task_id, queue, PAGE_PREVIEW, tail=PAGE_TAIL, steps=PAGE_STEPS)
    shown = preview_info(task_id, q, p, ring=client.keys)
    info = shown.info
    if info.state in UNFINISHED:
        (raw,) = store.progress(client.broker, [(q, task_id)])
        info.progress = progress_info(raw, client.keys, q, task_id)
    return shown


def full_value(client: Client, task_id: str, queue: str | None, part: str) -> FullValue:
    """One value of a task in full: TaskNotFound if the task or the value is not there,
    TooLarge past FULL_LIMIT, ValueError for an unknown part."""
    if part not in PARTS:
        raise ValueError(f"a value is one of {', '.join(PARTS)}")
    q, _ = locate(client, task_id, queue, 0, records=True)
    raw, size = peek.value(client.broker, q, task_id, PARTS[part], FULL_LIMIT)
    if raw is None:
        if size > FULL_LIMIT:
            raise TooLarge(size)
        raise TaskNotFound(task_id)
    ring = client.keys
    if part == "payload":
        return _payload(q, task_id, raw, ring)
    if part == "result":
        record = _loads(raw)
        if not isinstance(record, dict):
            raise TaskNotFound(task_id)
        if isinstance(record.get("x"), str):   # encrypted
            opened = open_text(ring, record["x"], result_aad(q, task_id))
            if opened is None:
                return FullValue("", size, "encrypted: no key here opens it")
            return FullValue(opened, size)
        return FullValue(json.dumps(record.get("r"), ensure_ascii=False,
                                    separators=(",", ":")), size)
    text = reveal(ring, _loads(raw), error_aad(q, task_id, PARTS[part]))
    return FullValue(text if isinstance(text, str) else "", size)


def _payload(queue: str, task_id: str, raw: bytes, ring: Any) -> FullValue:
    """A body's payload as stored, opened (encrypted) or checked (signed) with the keys."""
    size = len(raw)
    task = Task.from_body(task_id, queue, raw)
    text = raw.decode("utf-8", "replace")
    plain = text.split('"p":', 1)[1][:-1] if '"p":' in text else text
    if task.raw is None:   # neither signed nor encrypted (or malformed: shown as it is)
        return FullValue(plain, size)
    try:
        opened = open_payload(ring, queue, task_id, task.raw, task.sealed)
    except Rejected as exc:
        if task.sealed:
            return FullValue("", size, f"encrypted: {exc}")
        return FullValue(plain, size, str(exc))
    return FullValue(opened if opened is not None else plain, size)


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
