"""The master's housekeeping in Redis besides its children, every pass of the loop: periodic
tasks, promotion of due tasks and workflow hand-offs (from the agenda), cancel requests; and
once a second its heartbeat and its consumer groups, the sweep of the indexes (one master at a
time), the recovery of expired workers, forgetting idle queues and the shared history.

Nothing here stops the master: Redis unreachable is said once and waited out (the children wait
for it too), an error reply is logged at most once a minute, and each step is tried again on
a later pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

from tq.config import Config, protect_settings
from tq.errors import TQError
from tq.periodic_tasks import Periodic
from tq.store.broker import Broker
from tq.store.grants import REFUSALS, note, refusal
from tq.store.groups import Group
from tq.store.link import OUTAGE, ResponseError
from tq.tally import Tally
from tq.task import is_pattern

from .cancels import Cancels
from .children import ChildRecord
from .forget import Forgetter, check_every
from .handoff import Handoffs
from .periodic import Scheduler
from .recovery import Recovery
from .schedule import Promoter
from .services import Services

log = logging.getLogger("tq.master")

SECOND = 1.0               # heartbeat, memory, titles, statistics
REAP_EXPIRED_EVERY = 5.0
SWEEP_EVERY = 2.0          # s between sweeps of the indexes (by whichever master's turn it is)
ERROR_LOG_EVERY = 60.0     # an error reply that comes back every pass is said this often


class Master(Protocol):
    """What the housekeeping reads of the master (tq.supervisor.master.Supervisor)."""

    config: Config
    children: dict[int, ChildRecord]
    draining: bool
    status: str

    def serving(self) -> list[str]: ...

    def groups(self) -> list[Group]: ...

    def heartbeat(self) -> None: ...


class Housekeeping:
    def __init__(self, master: Master, broker: Broker, services: Services,
                 recovery: Recovery) -> None:
        self.master = master
        self.broker = broker
        self.services = services
        self.recovery = recovery
        self.handoffs = Handoffs(broker)
        self.promoter = Promoter(broker, before=self._handoffs_of)
        self.cancels = Cancels(broker)
        self.forgetter = Forgetter(broker)
        self.scheduler = Scheduler(self._periodic_client)   # periodic tasks (tq.periodic)
        self.scheduler.add(master.config.periodic or [])
        self.next_second = self.next_expired = self.next_forget = 0.0
        # The first sweep after one interval: at start the process that makes a group (this
        # master or its first child) sweeps for it at once (see register_group).
        self.next_sweep = time.monotonic() + SWEEP_EVERY
        self.master_id = ""   # set by the master: the sweep lock's holder
        self.next_error_log = 0.0
        self.redis_down = False
        # Other masters' heartbeats read as expired right after an outage (theirs stopped too):
        # reap them only once everyone has had a TTL of good connection to beat again.
        self.reap_others_after = 0.0

    # -- for the loop's select() ------------------------------------------------------------
    def due_in(self, now: float) -> float:
        """Seconds until something here is due (the next second, a promotion, a periodic
        task)."""
        return min(self.next_second - now, self.promoter.due_in(now),
                   self.scheduler.due_in(time.time()))

    def fds(self) -> list[int]:
        """The connection blocked on the agenda's soon list: readable when a token comes."""
        return self.promoter.filenos()

    def on_readable(self, ready: Sequence[int]) -> None:
        self.promoter.on_readable(ready)

    def hold_reaping(self) -> None:
        """Wait a heartbeat TTL before reaping other masters' workers (at start, and after an
        outage): their heartbeats may be stale only because they could not beat either."""
        self.reap_others_after = time.monotonic() + self.master.config.heartbeat_ttl

    # -- every pass -------------------------------------------------------------------------
    def every_pass(self, final: bool = False) -> bool:
        """Periodic tasks, promotion, cancels and hand-offs; True when a second has passed
        since the last True (or `final`): the master's per-second work is due."""
        self.run_periodic()
        now = time.monotonic()
        try:
            self.broker.quarantine.recheck()
        except OUTAGE:
            pass
        except REFUSALS as exc:
            note(exc, log, "the check for repaired queues")
        try:
            self.promoter.run(now)
        except ResponseError as exc:   # unexplained: no queue key is bad
            self._error("promoting due tasks failed: %s", exc, now)
        due = final or now >= self.next_second
        if self.promoter.woken or due:
            self.promoter.woken = False
            self.lifecycle()
        if due:
            self.next_second = now + SECOND
        return due

    def run_periodic(self) -> None:
        if self.master.draining or not self.scheduler.entries:
            return
        try:
            self.scheduler.run()
        except (*OUTAGE, TQError) as exc:   # the tick is tried again on the next pass
            if refusal(exc):
                note(exc, log, "periodic tasks")
            elif time.monotonic() >= self.next_error_log:
                self.next_error_log = time.monotonic() + ERROR_LOG_EVERY
                log.warning("periodic tasks: %s", exc)

    def lifecycle(self) -> None:
        """Cancel requests for tasks its children run (cancel.lua puts the queue in the
        agenda, which wakes a promoter at once; every master also looks every second)."""
        try:
            self.cancels.check(self.master.children.values(), self.master.config.cancel_grace)
        except OUTAGE:
            pass   # every_second says so
        except REFUSALS as exc:
            note(exc, log, "cancel requests")
        except ResponseError as exc:
            self._error("cancel requests: %s", exc, time.monotonic())

    def _handoffs_of(self, queue: str) -> None:
        """A due queue's workflow hand-offs, applied before its promotion (the agenda lists a
        queue whose out list waits, see lua/_lib.lua soon)."""
        try:
            self.handoffs.run([queue])
        except REFUSALS as exc:
            note(exc, log, "workflow hand-offs")
        except ResponseError as exc:
            self._error("workflow hand-offs: %s", exc, time.monotonic())

    # -- every second -----------------------------------------------------------------------
    def every_second(self, done: Tally) -> None:
        """The master's heartbeat, then recovery, idle queues and this second's outcomes
        (`done`) in the history; all skipped while Redis is unreachable."""
        config, now = self.master.config, time.monotonic()
        try:
            self.master.heartbeat()
            if self.redis_down:   # back: others' heartbeats are stale until they beat again
                log.info("Redis is reachable again")
                self.redis_down = False
                self.hold_reaping()
            # plain names into the queue set (cached; again after a reconnect), and the groups
            # its children claim through (their specs: producers enter queues in them)
            self.broker.register_queues([q for q in self.master.serving()
                                         if not is_pattern(q)])
            for group in self.master.groups():
                if self.broker.register_group(group):   # new (or Redis lost it): fill its index
                    self.broker.sweep_group(group)
                    self.next_sweep = max(self.next_sweep, now + SWEEP_EVERY)   # just done
            if now >= self.next_sweep:
                self.next_sweep = now + SWEEP_EVERY
                self.broker.sweep(self.master_id, SWEEP_EVERY)
            self.recovery.flush()
            if now >= self.next_expired and now >= self.reap_others_after:
                self.next_expired = now + REAP_EXPIRED_EVERY
                self.recovery.expired(config.heartbeat_ttl)
            after = config.forget_queues_after
            if after and now >= self.next_forget and self.master.status == "running":
                first = self.next_forget == 0.0
                self.next_forget = now + check_every(after)
                if not first:   # (not while it starts: a pass reads every known queue's sizes)
                    self.forgetter.run(after, self.master.serving())
            self.services.record(done)
        except OUTAGE as exc:
            if not self.redis_down:
                log.warning("Redis unavailable (%s): children wait for it; retrying", exc)
                self.redis_down = True
        except REFUSALS as exc:   # an ACL changed under it: said once, retried every second
            note(exc, log, "the master's bookkeeping")
        except ResponseError as exc:
            # Not an outage, and no queue's (those are set aside where they fail): a corrupt
            # registry or history key. Say so once a minute; the children go on.
            self._error("Redis refused the master's bookkeeping (%s): tasks still run; check "
                        "the registry and history keys", exc, now)

    # -- periodic tasks ---------------------------------------------------------------------
    def add_periodic(self, index: int, wire: Any) -> None:
        """The periodic tasks a child's handler modules declared (it imported them)."""
        if not isinstance(wire, list):
            return
        entries = []
        for item in wire:
            try:
                entries.append(Periodic(**item))
            except TypeError:
                log.warning("worker[%d] sent an unreadable periodic task: %r", index, item)
        self.scheduler.add(entries)

    def _periodic_client(self) -> Any:
        from tq import Client

        config = self.master.config
        return Client(self.broker.url, config.namespace, socket_timeout=5.0,
                      keys=protect_settings(config=config) or "")

    def _error(self, message: str, exc: Exception, now: float) -> None:
        if now >= self.next_error_log:
            self.next_error_log = now + ERROR_LOG_EVERY
            log.error(message, exc)

    def close(self) -> None:
        self.scheduler.close()
        self.promoter.close()
        self.forgetter.close()
