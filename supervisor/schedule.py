"""Promotion of due tasks (delayed tasks, retries) by the master, on time and without polling.

Redis checks blocking timeouts only on its own clock tick (hz=10: up to 100 ms late), so a
worker sleeping "until the next due time" on a server-side timeout would start tasks late.
Instead the master keeps one connection blocked on the queues' `soon` lists inside its own
select(): enqueue and fail push a token there when a task becomes the earliest one due, the
master re-reads the schedule, and its select() timeout is the exact time to the next task. The
promote script then wakes the blocked children with their usual token.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis
from redis.connection import AbstractConnection

from tq.broker import Broker
from tq.connection import OUTAGE, dedicated

log = logging.getLogger("tq.master")

IDLE_RECHECK = 1.0      # promote at least this often even without news (a lost token, a clock)
BLOCK = 5               # seconds a BLPOP on the soon lists stays open (then it is re-armed)


class Promoter:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.queues: list[str] = []
        self.next_at = 0.0                 # monotonic time of the next promotion
        self._conn: AbstractConnection | None = None
        self._waiting = False              # a BLPOP is in flight on _conn

    def fileno(self) -> int | None:
        """The blocked connection's socket, for the master's select(); None when none."""
        if self._waiting and self._conn is not None and self._conn._sock is not None:
            return self._conn._sock.fileno()
        return None

    def due_in(self, now: float) -> float:
        return max(0.0, self.next_at - now)

    def set_queues(self, queues: Sequence[str]) -> None:
        queues = sorted(queues)
        if queues != self.queues:
            self.queues = queues
            self._drop()          # re-arm on the new set of lists
            self.next_at = 0.0

    def on_readable(self) -> None:
        """A token arrived (or the block timed out): promote at once."""
        if self._conn is not None:
            try:
                self._conn.read_response()
            except OUTAGE:
                self._drop()
            except redis.exceptions.ResponseError as exc:
                self._drop()   # a corrupt soon list sets its queue aside; READONLY (a
                self.broker.quarantine.explains(self.queues, exc)   # failover) is an outage
        self._waiting = False
        self.next_at = 0.0

    def run(self, now: float) -> None:
        """Promote if it is time, then block on the soon lists again."""
        if not self.queues:
            return
        if now >= self.next_at:
            try:
                _, due = self.broker.promote_due(self.queues)
            except OUTAGE:
                self.next_at = now + IDLE_RECHECK
                self._drop()
                return
            self.next_at = now + (IDLE_RECHECK if due is None else min(IDLE_RECHECK, due))
        if not self._waiting:
            self._arm()

    def _arm(self) -> None:
        try:
            if self._conn is None:
                self._conn = dedicated(self.broker.conn.connection_pool)
            keys = [self.broker.qkeys(q).soon for q in self.queues]
            self._conn.send_command("BLPOP", *keys, BLOCK)
            self._waiting = True
        except OUTAGE:
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.disconnect()
        self._conn = None
        self._waiting = False

    def close(self) -> None:
        self._drop()

