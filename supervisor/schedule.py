"""Promotion of due tasks (delayed tasks, retries) and workflow hand-offs by the master, on time,
without polling, and at a cost that grows with what is due, not with the number of queues.

Queue scripts keep the masters' agenda (tq.store.indexes): each queue's earliest time it needs
a master, a scheduled task or a waiting hand-off. The master blocks one connection on the
agenda's soon list inside its own select() (a token comes when the earliest time of all moves
earlier), and its select() timeout is the exact time to the next entry: Redis checks blocking
timeouts only on its own clock tick (hz=10: up to 100 ms late), so a sleep "until the next due
time" on a server-side timeout would start tasks late. When an entry is due it applies the
queue's hand-offs, promotes its due tasks (which wakes the workers of every group that
consumes it) and reschedules the entry. Any number of masters may do this at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from tq.store.broker import Broker
from tq.store.grants import REFUSALS, note, refusal
from tq.store.link import OUTAGE, Connection, ResponseError

log = logging.getLogger("tq.master")

IDLE_RECHECK = 1.0      # look at the agenda at least this often (a lost token, a clock)
BLOCK = 5               # seconds a BLPOP on the soon list stays open (then it is re-armed)


class Promoter:
    """Promotes what the agenda says is due; one blocked connection whatever the queues."""

    def __init__(self, broker: Broker, before: Callable[[str], None] | None = None) -> None:
        self.broker = broker
        self.before = before               # run on each due queue first (its hand-offs)
        self.next_at = 0.0                 # monotonic time of the next look at the agenda
        self.woken = False                 # a token came (or entries were due): news
        self._conn: Connection | None = None    # blocked in a BLPOP, or None
        self._idle: Connection | None = None    # answered, reusable
        self._refused_until = 0.0   # an ACL refused the BLPOP: not re-armed at once (a spin)

    def filenos(self) -> list[int]:
        """The blocked connection's socket, for the master's select()."""
        conn = self._conn
        return [conn._sock.fileno()] if conn is not None and conn._sock is not None else []

    def due_in(self, now: float) -> float:
        return max(0.0, self.next_at - now)

    def on_readable(self, fds: Sequence[int] = ()) -> None:
        """A token arrived (or the block timed out): look at the agenda at once."""
        conn = self._conn
        if conn is None or conn._sock is None or conn._sock.fileno() not in fds:
            return
        try:
            conn.read_response()
            self._idle, self._conn = conn, None   # answered: re-armed by run()
        except OUTAGE:
            self._drop()
        except ResponseError as exc:   # READONLY (a failover), an ACL...
            self._drop()
            if refusal(exc):
                note(exc, log, "the wait for due tasks")
                self._refused_until = time.monotonic() + IDLE_RECHECK
        self.next_at = 0.0
        self.woken = True

    def run(self, now: float) -> None:
        """Promote what is due if it is time, then block on the soon list again."""
        if now >= self.next_at:
            try:
                _, wait, due = self.broker.promote_agenda(before=self.before)
            except (*OUTAGE, *REFUSALS) as exc:
                if refusal(exc):   # an ACL: said once, naming the grant; retried like an outage
                    note(exc, log, "the promotion of due tasks")
                self.next_at = now + IDLE_RECHECK
                self._drop()
                return
            if due:
                self.woken = True
            self.next_at = now + (IDLE_RECHECK if wait is None else min(IDLE_RECHECK, wait))
        if now >= self._refused_until:
            self._arm()

    def _arm(self) -> None:
        if self._conn is not None:
            return   # still blocked
        try:
            conn = self._idle or self.broker.promotion_connection()
            self._idle = None
            conn.send_command("BLPOP", self.broker.keys.soon, BLOCK)
            self._conn = conn
        except OUTAGE:
            self._drop()

    def _drop(self) -> None:
        for conn in (self._conn, self._idle):
            if conn is not None:
                conn.disconnect()
        self._conn = self._idle = None

    def close(self) -> None:
        self._drop()
