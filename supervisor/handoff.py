"""Workflow hand-offs between queues (see shared/workflow.py).

A workflow member that finishes hands its outcome to downstream members of its own queue in the
same Lua script as its ack. One in another queue lives in another cluster slot, out of the
script's reach: the script appends an entry to its own queue's `out` list instead, and pushes
the queue's `soon` token, which wakes the masters serving the queue. A master reads the
entries, applies them to their queues with handoff.lua, then deletes each entry it applied.
Applying is idempotent (an input is set once), so two masters doing the same entries, or one
that dies between applying and deleting, change nothing. Entries wait in `out` while no
master serves the queue, or while the other queue is broken.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from tq.store.broker import Broker
from tq.store.link import ResponseError

log = logging.getLogger("tq.master")

BATCH = 500   # entries read from one queue's out list per pass


class Handoffs:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._warned_at = -60.0

    def run(self, queues: Sequence[str]) -> int:
        """Apply waiting hand-offs of `queues`; returns how many were applied."""
        if not queues:
            return 0
        b = self.broker
        replies = b.handoff_entries(queues, BATCH)
        done = 0
        for q, entries in zip(queues, replies, strict=True):
            if isinstance(entries, Exception):   # a corrupt `out` list: set the queue aside
                b.quarantine.explains([q], entries)
            elif entries:
                done += self._apply(q, entries)
        return done

    def _apply(self, source: str, entries: list[bytes]) -> int:
        b = self.broker
        by_target: dict[str, list[tuple[bytes, list[Any]]]] = {}
        bad: list[bytes] = []
        for raw in entries:
            try:
                e = json.loads(raw)
                target = e["q"]
                args = [str(e["id"]), int(e["k"]), str(e["o"]),
                        json.dumps(e["v"], separators=(",", ":"), ensure_ascii=False)]
                if not isinstance(target, str):
                    raise TypeError("no queue")
            except (ValueError, KeyError, TypeError) as exc:
                log.error("unreadable workflow hand-off in queue %s (%s): dropped: %r",
                          source, exc, raw[:200])
                bad.append(raw)
                continue
            by_target.setdefault(target, []).append((raw, args))
        applied: list[bytes] = list(bad)
        for target, items in by_target.items():
            try:
                b.apply_handoffs(target, [args for _, args in items])
            except ResponseError as exc:
                now = time.monotonic()
                if now >= self._warned_at + 60:
                    self._warned_at = now
                    log.error("workflow hand-offs to queue %s wait: %s", target, exc)
                b.quarantine.explains([target], exc)
                continue
            applied.extend(raw for raw, _ in items)
        b.remove_handoffs(source, applied)
        return len(applied) - len(bad)
