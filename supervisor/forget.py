"""Forgetting queues nobody uses: empty, served by no live master, idle for a while.

A queue name stays in the queue set as long as anything may need it. Without this, a fleet
that made queues per customer or per day would list (and export metric series for) every queue
it ever had. A queue is forgotten when, for --forget-queues-after seconds (Redis' clock) in a
row, it held no task (ready, scheduled, running or dead) and no live master or worker listed it
among the queues it consumes. Any master may do it; doing it twice is harmless.

The drop script deletes the queue's keys only if it is still empty, atomically in its slot;
the name then leaves the queue set, which is a global key (another slot on a Redis Cluster),
so an enqueue may slip in between. It is caught both ways: the enqueue finds the queue's stats
hash gone and adds the name back itself (enqueue.lua's '+'), and here the name is put back if
the stats hash came back before it was removed.
"""

from __future__ import annotations

import logging

from tq.client import Client
from tq.store.broker import Broker
from tq.store.groups import Group
from tq.store.link import ResponseError

log = logging.getLogger("tq.master")


def check_every(after: float) -> float:
    """How often to look: a quarter of the idle time, from 1 s to a minute."""
    return min(max(after / 4, 1.0), 60.0)


class Forgetter:
    """Finds idle, empty, unserved queues and forgets them (one master's view)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.client: Client | None = None   # its own connections (queue_sizes, scripts)

    def run(self, after: float, serving: list[str]) -> list[str]:
        """One pass; returns the queues it forgot. `serving`: this master's own queues (names
        and globs)."""
        if self.client is None:
            self.client = Client(self.broker.url, self.broker.namespace)
        client = self.client
        store = client.broker
        sizes = client.queue_sizes()
        specs = list(serving)   # names and globs: a queue a glob matches is served too
        for kind in ("masters", "workers"):
            for entry in store.registry(kind):
                specs.extend(q for q in entry.get("queues") or [] if isinstance(q, str))
        served = Group.of(list(dict.fromkeys(specs)))
        idle = store.idle_queues()
        now = store.redis_ms()
        busy = [q for q, s in sizes.items() if served.consumes(q) or s.get("broken") or
                s["ready"] or s["scheduled"] or s["running"] or s["dead"]]
        store.clear_idle([q for q in busy if q in idle] + [q for q in idle if q not in sizes])
        quiet = sorted(set(sizes) - set(busy))
        # first seen empty and unserved now; another master's earlier mark stays
        store.mark_idle([q for q in quiet if q not in idle], now)
        forgotten = [q for q in quiet if q in idle and now - idle[q] >= after * 1000
                     and self._forget(q)]
        if forgotten:
            log.info("forgot %d queue(s) empty, unserved and idle for %gs: %s", len(forgotten),
                     after, ", ".join(forgotten))
        return forgotten

    def _forget(self, queue: str) -> bool:
        assert self.client is not None
        try:
            return self.client.broker.drop_idle_queue(queue)
        except ResponseError as exc:   # a corrupt key: not empty, keep it
            log.debug("not forgetting queue %s: %s", queue, exc)
            return False

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

