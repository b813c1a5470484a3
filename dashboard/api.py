"""What the dashboard shows, read through tq.Client and tq.store (views, registry, History) as
JSON-able dicts.

Bounded in bytes as well as in count: tasks' values are previews (tasks.py), a list stops
at PAGE_BYTES, and the overview, polled every second, carries no payload at all.
"""

from __future__ import annotations

import math
from typing import Any

from tq.admin import ADMIN_CHUNK
from tq.cli.status import periodic_view
from tq.client import UNFINISHED, Client
from tq.errors import TaskNotFound
from tq.info import progress_info, workflow_record
from tq.previews import Previewed
from tq.store import tasks as store
from tq.store import views
from tq.store.history import History
from tq.tally import Histogram
from tq.workflow import summarize

from .tasks import PAGE_BYTES, Lister, json_size

STALE_AFTER = 15.0          # s without a heartbeat before a master is shown as stale
LATENCY_WINDOW = 300.0      # s of history behind the percentiles on the page
SCHEDULED_LIMIT = 20


class Board:
    """The dashboard's reads, for one namespace."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.broker = client.broker
        self.history = History(client.broker)
        self.lister = Lister(client)

    def masters(self, now: float | None = None) -> list[dict[str, Any]]:
        """Registered masters with their children; ages and staleness by Redis' clock."""
        now = self.history.now() if now is None else now
        out = []
        for m in self.broker.registry("masters"):
            m["age"] = now - m["last_seen_ms"] / 1000
            m["stale"] = m["age"] > STALE_AFTER
            children = m.get("children")
            if not isinstance(children, list):
                m["children"] = children = []
            for c in children:
                since = c.get("since")
                c["task_age"] = now - since if c.get("task") and isinstance(
                    since, int | float) else None
            out.append(m)
        out.sort(key=lambda m: (str(m.get("host", "")), m.get("pid") or 0))
        return out

    def workers(self) -> list[dict[str, Any]]:
        return self.broker.registry("workers")

    def scheduled(self, limit: int = SCHEDULED_LIMIT, queue: str | None = None,
                  payloads: bool = True) -> list[dict[str, Any]]:
        """The next `limit` delayed tasks and pending retries, soonest first; payloads:
        with each payload (a preview when long), else none (the overview's poll)."""
        # the queues first on the masters' agenda hold the soonest tasks (each queue's entry
        # is at most its first task's due time): the first few are read, not every queue
        queues = [queue] if queue else views.agenda_queues(self.broker, 2 * limit)
        due = sorted(views.firsts(self.broker, "scheduled", queues, limit))[:limit]
        if not due:
            return []
        shown = self.lister.details([(q, tid) for _, q, tid in due], records=False)
        out: list[dict[str, Any]] = []
        size = 0
        for (score, q, tid), s in zip(due, shown, strict=True):
            if s is None:   # run or deleted meanwhile
                continue
            info = s.info
            row = {"id": tid, "queue": q, "type": info.type, "eta": score / 1000,
                   "priority": info.priority, "failures": info.attempts,
                   "malformed": info.extra.get("malformed")}
            if payloads:
                row.update(payload=info.payload, encrypted=info.encrypted,
                           truncated=s.truncated, **{f"{k}_preview": v for k, v in
                                                     s.previews.items()})
                size += json_size(row)
            out.append(row)
            if size >= PAGE_BYTES:
                break
        return out

    def dead(self, limit: int = 50, offset: int = 0, queue: str | None = None
             ) -> tuple[list[dict[str, Any]], int | None]:
        """Dead tasks, newest first, with their last error and traceback (previews), up to
        `limit` or PAGE_BYTES; and the offset of the next ones when the bytes cut it short."""
        queues = [queue] if queue else self.client.queues()
        found = views.firsts(self.broker, "dead", queues, offset + limit)
        found.sort(key=lambda e: (-e[0], e[2]))
        page = [(q, tid) for _, q, tid in found[offset:offset + limit]]
        out: list[dict[str, Any]] = []
        size = 0
        for i, s in enumerate(self.lister.details(page)):
            if size >= PAGE_BYTES:
                return out, offset + i
            if s is not None:   # (deleted meanwhile: left out)
                out.append(s.to_dict())
                size += json_size(out[-1])
        return out, None

    def workflow(self, workflow_id: str) -> dict[str, Any]:
        """A workflow as get_workflow() gives it, members' results and errors previews; its
        members listed up to PAGE_BYTES ("shown" of "members_total"). TaskNotFound if it
        is unknown or expired."""
        rec = workflow_record(store.workflow(self.broker, workflow_id))
        if rec is None:
            raise TaskNotFound(workflow_id)
        pairs = [(row[1], row[2]) for row in rec["members"]]   # (queue, id)
        shown: list[Previewed | None] = []
        for part in store.chunks(pairs, ADMIN_CHUNK):
            shown.extend(self.lister.details(list(part)))
        running = [s.info for s in shown if s is not None and s.info.state in UNFINISHED]
        if running:
            raws = store.progress(self.broker, [(i.queue, i.id) for i in running])
            for i, raw in zip(running, raws, strict=True):
                i.progress = progress_info(raw, self.client.keys, i.queue, i.id)
        out = summarize(rec, [None if s is None else s.info for s in shown]).to_dict()
        members, size = [], 0
        for m, s in zip(out["members"], shown, strict=True):
            if size >= PAGE_BYTES:
                break
            if s is not None:
                m.update({f"{k}_preview": v for k, v in s.previews.items()},
                         truncated=s.truncated)
            members.append(m)
            size += json_size(m)
        out.update(members=members, members_total=len(out["members"]))
        return out

    def queue_types(self, queue: str) -> set[str]:
        """The task types enqueued to a queue (from its counters)."""
        return views.counted_types(self.broker, queue)

    def series(self, span: int, queue: str | None = None) -> dict[str, Any]:
        """Throughput and run time over the last `span` seconds (an hour or a day) per
        minute, for one queue (the task types enqueued to it) or all: {"start", "step",
        "processed", "failed", "p50", "p99", "p50_bounds", "p99_bounds"} (seconds; None where
        nothing ran; a bounds entry is [low, high] of the percentile's histogram bucket)."""
        now = self.history.now()
        end = int(now) // 60 + 1                   # the current minute included
        minutes = range(end - max(1, span // 60), end)
        tallies = self.history.minutes(minutes)
        types = self.queue_types(queue) if queue else None
        out: dict[str, Any] = {"start": minutes.start * 60, "step": 60, "queue": queue,
                               "types": sorted(types) if types is not None else None,
                               "processed": [], "failed": [], "p50": [], "p99": [],
                               "p50_bounds": [], "p99_bounds": []}
        for tally in tallies:
            chosen = [t for t in tally.counts if types is None or t in types]
            succeeded = sum(tally.counts[t].get("succeeded", 0) for t in chosen)
            failed = sum(tally.counts[t].get("failed", 0) for t in chosen)
            merged = Histogram()
            for t, h in tally.durations.items():
                if types is None or t in types:
                    merged.merge(h)
            out["processed"].append(succeeded + failed)
            out["failed"].append(failed)
            for name, q in (("p50", 0.5), ("p99", 0.99)):   # interpolated, with their bucket
                p = merged.percentile(q)
                out[name].append(None if p is None else p.value)
                out[f"{name}_bounds"].append(None if p is None else [p.low, _finite(p.high)])
        return out

    def overview(self, since: int | None = None) -> dict[str, Any]:
        """Everything the page polls for, in one reply."""
        now = self.history.now()
        queues = self.client.queue_sizes()
        limits = self.client.limits_of([q for q, s in queues.items()
                                        if s.get("limited") or s.get("paused")])
        for name, q in queues.items():   # each queue's limited types, for its row
            q["limits"] = {t: {"limits": e["effective"].describe(), "running": e["running"],
                               "held": e["held"], "set_by": "operator" if e["override"]
                               else "handler"}
                           for t, e in limits.get(name, {}).get("types", {}).items()
                           if e["effective"] is not None}
        return {
            "now": now,
            "namespace": self.client.namespace,
            "redis": self.client.safe_url,
            "stats": self.client.totals(),
            "rates": self.history.rates(60),
            "queues": queues,
            "dead": sum(q["dead"] for q in queues.values()),
            "history": self.history.series(3600, "s", since=since, now=now),
            "latency": self.history.latency(LATENCY_WINDOW, now=now),
            "latency_window": LATENCY_WINDOW,
            "masters": self.masters(now),
            "scheduled": self.scheduled(payloads=False),
            "periodic": [{k: v for k, v in p.items() if k != "payload"}
                         for p in periodic_view(self.client)],
        }


def _finite(value: float | None) -> float | None:
    """A bound for JSON: the histogram's open last bucket (infinity) as None."""
    return value if value is not None and math.isfinite(value) else None
