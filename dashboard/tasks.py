"""Lists of tasks for the dashboard: by state, across queues, filtered, paged at bounded cost.

Each queue keeps its tasks of a state in one ordered Redis structure: the schedule (a zset by
due time), the dead letters (a zset by time of death), the ready lists (priority 9 to 0, FIFO
within a level), the run hash (by time of claim) and the list of recently finished tasks. A
page across queues is a merge of each queue's own order, and its cursor is each queue's own
offset: reading a page costs the page (plus, with a filter, at most SCAN_BUDGET examined
tasks), however deep the queues are. Offsets shift as tasks come and go, like any live list:
a task may show on two pages or on none while the operator pages.

Filters (type, text in the last error) need the task itself; each request examines at most
SCAN_BUDGET tasks and says how far it got, and the page asks for more. Bulk actions over a
filter walk everything that matches, in chunks.

A page is bounded in bytes too: each task's values are cut in Redis to PREVIEW bytes
(tq.store.peek, tq.previews: the task page shows more, and each value in full), and a page
stops early once its items pass PAGE_BYTES of JSON, its cursor going on from there. The
text filter reads the error's preview (its first PREVIEW bytes).
"""

from __future__ import annotations

import base64
import heapq
import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from tq.client import Client
from tq.ids import created_ms
from tq.previews import Previewed, preview_info
from tq.store import peek, views
from tq.store.keys import PRIORITY_LEVELS
from tq.task import TaskInfo

STATES = ("scheduled", "ready", "running", "dead", "finished")
SCAN_BUDGET = 2000       # tasks a filtered page examines at most per request
FETCH = 100              # entries read from one queue's structure per round trip
PREVIEW = 1024           # bytes of each value (payload, result, error...) a list shows
TRACEBACK_TAIL = 1024    # and of the end of a long traceback
PAGE_BYTES = 256 * 1024  # a page's items stop once their JSON passes this (plus one item)


def json_size(item: Any) -> int:
    """Bytes of an item in the JSON of a reply (Flask's compact, ASCII-escaped form)."""
    return len(json.dumps(item, separators=(",", ":")))


@dataclass(frozen=True)
class Filter:
    state: str
    queues: list[str]
    type: str | None = None
    text: str | None = None      # case-insensitive, in the last error message

    @property
    def narrows(self) -> bool:
        return bool(self.type or self.text)

    def match(self, info: TaskInfo) -> bool:
        if self.type and info.type != self.type:
            return False
        return not self.text or self.text.lower() in (info.error or "").lower()


def encode_cursor(pos: dict[str, int]) -> str:
    return base64.urlsafe_b64encode(json.dumps(pos, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str | None) -> dict[str, int]:
    if not cursor:
        return {}
    try:
        pos = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError) as exc:
        raise ValueError("cursor is not one this dashboard gave out") from exc
    if not isinstance(pos, dict) or not all(isinstance(k, str) and isinstance(v, int) and
                                            0 <= v < 10**9 for k, v in pos.items()):
        raise ValueError("cursor is not one this dashboard gave out")
    return pos


class Lister:
    """Reads one state's tasks of some queues, in the dashboard's order."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.broker = client.broker

    # -- per-queue sources: (sort key, id) from an offset -------------------------------
    def _window(self, state: str, queue: str, start: int, n: int) -> list[tuple[Any, str]]:
        """Up to n entries of one queue from offset `start`, each (sort key, task id)."""
        b = self.broker
        if state == "scheduled":
            return [((score, tid), tid) for tid, score in views.window(b, state, queue, start, n)]
        if state == "dead":
            return [((-score, tid), tid) for tid, score in views.window(b, state, queue, start, n)]
        if state == "finished":
            ids = views.finished_window(b, queue, start, n)
            return [((queue, start + i), tid) for i, tid in enumerate(ids)]
        if state == "ready":
            return self._ready_window(queue, start, n)
        if state == "running":
            claims = sorted((int(claim.split("|")[2]), tid)
                            for tid, claim in views.running(b, queue).items())
            return [((ms, tid), tid) for ms, tid in claims[start:start + n]]
        raise ValueError(f"state is one of {', '.join(STATES)}")

    def _ready_window(self, queue: str, start: int, n: int) -> list[tuple[Any, str]]:
        """The ready lists of a queue as one list: priority 9 first, FIFO within a level."""
        out: list[tuple[Any, str]] = []
        skip = start
        for level, length in enumerate(views.ready_lengths(self.broker, queue)):
            if skip >= length:
                skip -= length
                continue
            ids = views.ready_window(self.broker, queue, level, skip, n - len(out))
            priority = PRIORITY_LEVELS - 1 - level
            out.extend(((-priority, created_ms(t) or 0, t), t) for t in ids)
            skip = 0
            if len(out) >= n:
                break
        return out

    def counts(self, state: str, queues: list[str]) -> dict[str, int]:
        """How many tasks of the state each queue has (one pipeline)."""
        return views.state_counts(self.broker, state, queues)

    # -- the merge ----------------------------------------------------------------------
    def _merged(self, f: Filter, pos: dict[str, int]) -> Iterator[tuple[str, str]]:
        """(queue, id) in the page order, from each queue's offset in `pos`, advancing `pos`
        as entries are taken (so `pos` is the next page's cursor at any point)."""
        order = {q: i for i, q in enumerate(f.queues)}
        fetch_at = {q: pos.get(q, 0) for q in f.queues}
        buffers: dict[str, deque[tuple[Any, str]]] = {}
        heap: list[tuple[Any, int, str]] = []

        def refill(q: str) -> None:
            got = self._window(f.state, q, fetch_at[q], FETCH)
            fetch_at[q] += len(got)
            buffers[q] = deque(got)
            if got:
                heapq.heappush(heap, (got[0][0], order[q], q))

        for q in f.queues:
            refill(q)
        while heap:
            _, _, q = heapq.heappop(heap)
            _, tid = buffers[q].popleft()
            pos[q] = pos.get(q, 0) + 1
            yield q, tid
            if buffers[q]:
                heapq.heappush(heap, (buffers[q][0][0], order[q], q))
            else:
                refill(q)

    def page(self, f: Filter, cursor: str | None, limit: int) -> dict[str, Any]:
        """One page: {"items": [task dicts], "next": cursor or None, "total": n (None when
        filtered), "counts": {queue: n}, "scanned": tasks examined, "exhausted": bool,
        "cut_short": the page stopped at PAGE_BYTES before `limit` items}."""
        pos = {q: v for q, v in decode_cursor(cursor).items() if q in f.queues}
        counts = self.counts(f.state, f.queues)
        stream = self._merged(f, pos)
        items: list[dict[str, Any]] = []
        scanned = size = 0
        budget = SCAN_BUDGET if f.narrows else limit
        while len(items) < limit and scanned < budget and size < PAGE_BYTES:
            want = min(FETCH, budget - scanned) if f.narrows else limit - len(items)
            batch = list(islice(stream, want))
            if not batch:
                break
            scanned += len(batch)
            for i, shown in enumerate(self.details(batch)):
                if len(items) >= limit or size >= PAGE_BYTES:
                    for q2, _ in batch[i:]:   # give the rest back: the next page starts there
                        pos[q2] -= 1
                    break
                if shown is None and f.state == "finished":   # its result was not kept
                    q, tid = batch[i]
                    shown = Previewed(TaskInfo(tid, q, "?", "succeeded",
                                               extra={"result": "not kept"}))
                if shown is not None and f.match(shown.info):
                    items.append(shown.to_dict())
                    size += json_size(items[-1])
        more = any(pos.get(q, 0) < n for q, n in counts.items())
        return {"state": f.state, "items": items, "next": encode_cursor(pos) if more else None,
                "total": None if f.narrows else sum(counts.values()), "counts": counts,
                "scanned": scanned, "exhausted": not more,
                "cut_short": size >= PAGE_BYTES and len(items) < limit and more}

    def details(self, pairs: list[tuple[str, str]], records: bool = True
                ) -> list[Previewed | None]:
        """What a list shows of each (queue, id), its values cut to PREVIEW bytes, in one
        pipeline (None: gone)."""
        peeks = peek.peek_many(self.broker, [(tid, q) for q, tid in pairs], PREVIEW,
                               records=records, tail=TRACEBACK_TAIL)
        return [None if p is None else preview_info(tid, q, p, ring=self.client.keys)
                for (q, tid), p in zip(pairs, peeks, strict=True)]

    def all_matching(self, f: Filter) -> list[tuple[str, list[str]]]:
        """(queue, ids) chunks of every task that passes the filter (for bulk actions).
        Collected before anyone acts: acting moves entries, which would shift the offsets."""
        chunks: list[tuple[str, list[str]]] = []
        stream = self._merged(f, {})
        while batch := list(islice(stream, 1000)):
            infos = self.details(batch) if f.narrows else [None] * len(batch)
            by_queue: dict[str, list[str]] = {}
            for (q, tid), shown in zip(batch, infos, strict=True):
                if not f.narrows or (shown is not None and f.match(shown.info)):
                    by_queue.setdefault(q, []).append(tid)
            chunks.extend(by_queue.items())
        return chunks
