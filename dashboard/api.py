"""What the dashboard shows, read from Redis (Client, registry, History) as JSON-able dicts."""

from __future__ import annotations

from typing import Any

from tq.client import Client
from tq.history import History
from tq.task import Task

STALE_AFTER = 15.0          # s without a heartbeat before a master is shown as stale
LATENCY_WINDOW = 300.0      # s of history behind the percentiles on the page
SCHEDULED_LIMIT = 20


class Board:
    """The dashboard's reads, for one namespace."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.broker = client.broker
        self.history = History(client.broker)

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

    def scheduled(self, limit: int = SCHEDULED_LIMIT, queue: str | None = None
                  ) -> list[dict[str, Any]]:
        """The next `limit` delayed tasks and pending retries, soonest first."""
        queues = [queue] if queue else self.client.queues()
        conn = self.broker.conn
        pipe = conn.pipeline(transaction=False)
        for q in queues:
            pipe.zrange(self.broker.qkeys(q).sched, 0, limit - 1, withscores=True)
        due = sorted(((score, q, tid.decode()) for q, entries in zip(
            queues, pipe.execute(), strict=True) for tid, score in entries))[:limit]
        if not due:
            return []
        pipe = conn.pipeline(transaction=False)
        for _, q, tid in due:
            qk = self.broker.qkeys(q)
            pipe.hget(qk.tasks, tid)
            pipe.hget(qk.fails, tid)
        replies = pipe.execute()
        out = []
        for i, (score, q, tid) in enumerate(due):
            body, fails = replies[2 * i], replies[2 * i + 1]
            task = Task.from_body(tid, q, body or b"{}", int(fails or 0))
            out.append({"id": tid, "queue": q, "type": task.type, "eta": score / 1000,
                        "priority": task.priority, "failures": task.failures,
                        "payload": task.payload, "malformed": task.malformed})
        return out

    def dead(self, limit: int = 50, offset: int = 0, queue: str | None = None
             ) -> list[dict[str, Any]]:
        return [info.to_dict() for info in self.client.dead(limit, offset, queue)]

    def overview(self, since: int | None = None) -> dict[str, Any]:
        """Everything the page polls for, in one reply."""
        now = self.history.now()
        queues = self.client.queue_sizes()
        return {
            "now": now,
            "namespace": self.client.namespace,
            "redis": self.client.safe_url,
            "stats": self.client.stats()["total"],
            "rates": self.history.rates(60),
            "queues": queues,
            "dead": sum(q["dead"] for q in queues.values()),
            "history": self.history.series(3600, "s", since=since, now=now),
            "latency": self.history.latency(LATENCY_WINDOW, now=now),
            "latency_window": LATENCY_WINDOW,
            "masters": self.masters(now),
            "scheduled": self.scheduled(),
        }
