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
import time
from collections.abc import Sequence
from typing import Any

from tq.store.broker import Broker
from tq.store.grants import REFUSALS, note, refusal
from tq.store.link import OUTAGE, Connection, ResponseError

log = logging.getLogger("tq.master")

IDLE_RECHECK = 1.0      # promote at least this often even without news (a lost token, a clock)
BLOCK = 5               # seconds a BLPOP on the soon lists stays open (then it is re-armed)


class Promoter:
    """Promotes due tasks of the master's queues. On a Redis Cluster each queue's soon list
    lives in its own slot, so there is one blocked connection per queue (else one in all)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.queues: list[str] = []
        self.next_at = 0.0                 # monotonic time of the next promotion
        self.woken = False                 # a token came: the master looks at its queues
        # soon lists of one BLPOP -> its connection, None until armed
        self._conns: dict[tuple[str, ...], Connection] = {}   # blocked in a BLPOP
        self._idle: dict[tuple[str, ...], Connection] = {}   # answered, reusable
        self._refused_until = 0.0   # an ACL refused the BLPOP: not re-armed at once (a spin)

    def filenos(self) -> list[int]:
        """The blocked connections' sockets, for the master's select()."""
        socks: list[Any] = [c._sock for c in self._conns.values()]   # None: not connected
        return [s.fileno() for s in socks if s is not None]

    def due_in(self, now: float) -> float:
        return max(0.0, self.next_at - now)

    def set_queues(self, queues: Sequence[str]) -> None:
        queues = sorted(queues)
        if queues != self.queues:
            self.queues = queues
            self._drop()          # re-arm on the new set of lists
            self.next_at = 0.0

    def on_readable(self, fds: Sequence[int] = ()) -> None:
        """A token arrived (or a block timed out) on one of `fds`: promote at once."""
        for group, conn in list(self._conns.items()):
            if conn._sock is None or conn._sock.fileno() not in fds:
                continue
            try:
                conn.read_response()
                del self._conns[group]   # answered: re-armed by run()
                self._idle[group] = conn
            except OUTAGE:
                self._drop()
            except ResponseError as exc:
                self._drop()   # a corrupt soon list sets its queue aside; READONLY (a
                self.broker.quarantine.explains(self.queues, exc)   # failover) is an outage
                if refusal(exc):
                    note(exc, log, "the wait for due tasks")
                    self._refused_until = time.monotonic() + IDLE_RECHECK
        self.next_at = 0.0
        self.woken = True

    def run(self, now: float) -> None:
        """Promote if it is time, then block on the soon lists again."""
        if not self.queues:
            return
        if now >= self.next_at:
            try:
                _, due = self.broker.promote_due(self.queues)
            except (*OUTAGE, *REFUSALS) as exc:
                if refusal(exc):   # an ACL: said once, naming the grant; retried like an outage
                    note(exc, log, "the promotion of due tasks")
                self.next_at = now + IDLE_RECHECK
                self._drop()
                return
            self.next_at = now + (IDLE_RECHECK if due is None else min(IDLE_RECHECK, due))
        if now >= self._refused_until:
            self._arm()

    def _groups(self) -> list[tuple[str, ...]]:
        if self.broker.cluster:
            return [(q,) for q in self.queues]
        return [tuple(self.queues)]

    def _arm(self) -> None:
        for group in self._groups():
            if group in self._conns:
                continue   # still blocked
            try:
                conn = self._idle.pop(group, None)
                if conn is None:
                    conn = self.broker.promotion_connection(group[0])
                keys = [self.broker.qkeys(q).soon for q in group]
                conn.send_command("BLPOP", *keys, BLOCK)
                self._conns[group] = conn
            except OUTAGE:
                self._drop()
                return

    def _drop(self) -> None:
        for conn in [*self._conns.values(), *self._idle.values()]:
            conn.disconnect()
        self._conns = {}
        self._idle = {}

    def close(self) -> None:
        self._drop()
