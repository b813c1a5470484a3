"""The master's side of periodic tasks (tq.periodic_tasks declares them): each schedule's ticks
enqueued as they come, exactly once across the masters (a unique key per tick), and the last
and next tick kept for `tq status` and the dashboard."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from tq.periodic_tasks import GRACE, Periodic
from tq.store import periodic as store


class Scheduler:
    """A master's side: enqueue each schedule's ticks as they come (exactly once across the
    masters, see the module)."""

    def __init__(self, client_factory: Callable[[], Any]) -> None:
        self.client_factory = client_factory
        self._client: Any = None
        self.entries: dict[str, Periodic] = {}
        self.last: dict[str, float] = {}     # name -> the last tick this master dealt with
        self.next_at = 0.0   # the earliest next tick of any schedule (Unix s): nothing before

    def add(self, entries: list[Periodic]) -> None:
        for e in entries:
            if self.entries.get(e.name) != e:
                self.entries[e.name] = e
                self.last.pop(e.name, None)
                self.next_at = 0.0

    def due_in(self, now: float) -> float:
        """Seconds until the next tick of any schedule (for the master's select)."""
        return max(0.0, self.next_at - now) if self.entries else 3600.0

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.client_factory()
        return self._client

    def run(self, now: float | None = None) -> int:
        """Enqueue what is due; returns how many ticks this master enqueued."""
        now = time.time() if now is None else now
        if now < self.next_at:   # the master's loop calls this far more often than ticks come
            return 0
        fired = 0
        for name, e in list(self.entries.items()):
            tick = e.latest(now)
            last = self.last.get(name)
            if last is not None and tick <= last:
                continue
            if last is None:   # first look since this master started: what was missed?
                stored = self._stored_last(name)
                if stored is not None and tick <= stored:
                    self.last[name] = tick
                    continue
                if now - tick > GRACE and e.missed == "skip":
                    self.last[name] = tick       # missed while no master ran: dropped
                    self._publish(e, stored, now)
                    continue
            self._enqueue(e, tick)
            self.last[name] = tick
            self._publish(e, tick, now)
            fired += 1
        self.next_at = min((e.following(now) for e in self.entries.values()), default=0.0)
        return fired

    def _enqueue(self, e: Periodic, tick: float) -> None:
        period = e.period(tick)
        self.client.enqueue(e.type, e.payload, queue=e.queue,
                            unique_for=max(2 * period, 120.0),
                            unique_key=f"periodic:{e.name}:{tick:.0f}")

    def _stored_last(self, name: str) -> float | None:
        raw = store.entry(self.client.broker, name)
        try:
            last = json.loads(raw).get("last") if raw else None
        except (ValueError, AttributeError):
            return None
        return float(last) if isinstance(last, int | float) else None

    def _publish(self, e: Periodic, last: float | None, now: float) -> None:
        info = {**e.to_wire(), "last": last, "next": e.following(now)}
        store.publish(self.client.broker, e.name, json.dumps(info, separators=(",", ":")))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
