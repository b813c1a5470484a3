"""Fetching tasks for the loop: each claim carries the waiting acks and takes from the queues of
this worker's consumer group that hold work (tq.store.groups), an idle worker blocks on its
group's wake list with the next claim queued behind, and a failed claim is followed by what
makes this worker's lists safe again (wait out the outage, set a broken queue aside, hand
back)."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque

from tq.channel import IDLE
from tq.store.broker import Broker, ClaimResult
from tq.store.grants import note, refusal
from tq.store.groups import Group
from tq.store.link import OUTAGE, ResponseError
from tq.task import Task

from .acks import Acks, log_strays
from .containment import Containment
from .outage import Outage
from .prefetch import Prefetch
from .report import Report
from .stop import Interrupt, Stop

log = logging.getLogger("tq.worker")
STRAY_SWEEP = 1.0        # s between a busy worker's looks for strays (idle: each wake-up)
IDLE_BLOCK = 1.0         # longest wait on Redis while idle: the heartbeat's period


class Fetcher:
    def __init__(self, broker: Broker, worker_id: str, result_ttl: float, min_batch: int,
                 acks: Acks, containment: Containment, outage: Outage, report: Report,
                 stop: Stop, group: Group, prefetch: Prefetch) -> None:
        self.broker = broker
        self.worker_id = worker_id
        self.result_ttl = result_ttl
        self.min_batch = min_batch   # async_concurrency: a claim can fill the async pool
        self.acks = acks
        self.containment = containment
        self.outage = outage
        self.report = report
        self.stop = stop
        self.group = group
        self.prefetch = prefetch
        self.extra = {"worker": worker_id}
        self.pending: deque[Task] = deque()   # claimed, not started yet
        self.lock = threading.Lock()   # the loop takes from pending, the watch thread too
        self.unsure = False   # a claim's reply may have been lost: lists hold unknown tasks
        self.next_sweep = 0.0            # see _sweep_due()
        self.unexplained_logged = -60.0  # when a refusal no key explains was last logged

    def fetch(self) -> bool:
        """Send waiting acks and claim more; blocks while there is nothing. True if claimed."""
        self.report.state(IDLE)
        if self.containment.any_broken:   # some queue is set aside: repaired yet?
            back = self.outage.call(self.containment.repaired)
            if back:
                self._resume(back)
        try:
            # Called with nothing pending: once these acks are settled this worker holds no
            # task, so Redis hands back any claim made in its name whose reply was lost.
            got = self.broker.claim_group(self.worker_id, self.group, self._batch(),
                                          acks=self.acks.waiting, result_ttl=self.result_ttl,
                                          holds_nothing=self._sweep_due(),
                                          excluded=self.containment.broken)
        except OUTAGE as exc:
            self._recover(exc)
            return False
        except ResponseError as exc:
            self._contain(exc)
            return False
        self.acks.settled(got)
        if not got.tasks and not self.stop.stopping:
            got = self._wait_and_claim(got.next_due)
            log_strays(got, self.extra)
        self.pending.extend(got.tasks)
        return bool(got.tasks)

    def next_task(self) -> Task:
        """The next claimed task to start (under the lock: see take_unstarted)."""
        with self.lock:
            return self.pending.popleft()

    def take_unstarted(self) -> list[Task]:
        """Every claimed task not started yet, taken out (the watch thread hands them back
        while a long task runs: giveback.py)."""
        with self.lock:
            tasks = list(self.pending)
            self.pending.clear()
        return tasks

    def claim_more(self, k: int) -> list[Task]:
        """A claim that does not block (the async pool has work running); sends the acks too."""
        try:
            got = self.broker.claim_group(self.worker_id, self.group, k,
                                          acks=self.acks.waiting, result_ttl=self.result_ttl,
                                          excluded=self.containment.broken)
        except OUTAGE:
            self.unsure = True   # its reply may be lost with tasks in it: handed back at exit
            return []
        except ResponseError as exc:
            self._contain(exc)
            return []
        self.acks.settled(got)
        return got.tasks

    def _sweep_due(self) -> bool:
        """Should this claim look for strays (see Broker.claim's holds_nothing)? Called with
        nothing pending, so the worker will hold nothing once its acks are settled. A stray
        is a claim made in its name whose reply never came (a call delivered late after a
        network cut): rare, so a busy worker looks once every STRAY_SWEEP seconds, not on
        every claim (each look reads its processing list of every queue it claimed from)."""
        now = time.monotonic()
        if now < self.next_sweep:
            return False
        self.next_sweep = now + STRAY_SWEEP
        return True

    def _batch(self) -> int:
        """Tasks per claim: the prefetch's, or async_concurrency when that is larger."""
        size = self.prefetch.size()
        return size if size >= self.min_batch else self.min_batch

    def _wait_and_claim(self, next_due: float | None) -> ClaimResult:
        """Idle: block on the group's wake-up list with the next claim queued behind."""
        self.report.send_tally(force=True)
        timeout = IDLE_BLOCK if next_due is None else min(IDLE_BLOCK, next_due)
        nothing = ClaimResult([])
        stop = self.stop
        stop.blocking = True
        try:
            return self.broker.wait_and_claim_group(
                self.worker_id, self.group, timeout, self._batch(), self.result_ttl,
                holds_nothing=not self.pending, excluded=self.containment.broken)
        except Interrupt:
            # Told to stop mid-read: the connection is unusable, and the queued claim may have
            # run. finish() hands back whatever this worker's lists hold.
            self.broker.link.close()
            self.unsure = True
            return nothing
        except OUTAGE as exc:
            stop.blocking = False
            self._recover(exc)
            return nothing
        except ResponseError as exc:
            stop.blocking = False
            self._contain(exc)
            return nothing
        finally:
            stop.blocking = False

    # -- after a failed claim -----------------------------------------------------------------
    def _recover(self, exc: BaseException) -> None:
        """Redis went away: the claim's reply may be lost with tasks claimed in it. Wait, then
        settle the acks and hand back whatever this worker's lists hold (none of it started)."""
        self.outage.pause(exc)
        self._settle_and_hand_back()

    def _contain(self, exc: ResponseError) -> None:
        """An error reply that is no outage (WRONGTYPE, a counter that is not a number...):
        set the queue with the corrupt key aside and go on with the others. The failed call
        may have claimed tasks of healthy queues: hand them back (nothing of them started)."""
        suspects = self._suspects(exc)
        found = self.outage.call(lambda: self.containment.explain(exc, suspects))
        if not found:
            now = time.monotonic()
            if refusal(exc):
                note(exc, log, "claim", self.extra)
            elif now >= self.unexplained_logged + 60:
                self.unexplained_logged = now
                log.error("Redis refused a claim and no queue key explains it (%s): retrying "
                          "with a pause", exc, extra=self.extra)
            self.stop.sleep(0.5 + random.random())
        broken = set(self.containment.broken)
        kept = [t for t in self.pending if t.queue not in broken]
        self.pending.clear()
        self.pending.extend(kept)
        self._settle_and_hand_back()

    def _suspects(self, exc: Exception) -> list[str]:
        """The queues whose keys may explain a refused claim: the one claim.lua names (it
        tells which queue failed), else those of in_line()."""
        named = str(exc).split("(TQQUEUE ", 1)
        if len(named) == 2:
            return [named[1].split(")", 1)[0]]
        return self.in_line()

    def in_line(self) -> list[str]:
        """The queues in line in the group's index, else the plain names the group lists."""
        try:
            line = [q for q, _ in self.broker.group_line(self.group, 16)]
        except Exception:   # (the diagnosis is best effort: an outage is waited out above)
            line = []
        return line or self.group.names()

    def _resume(self, queues: list[str]) -> None:
        """Queues repaired: settle what finished while they were broken, then hand back the
        rest of their lists (claims whose reply was lost, prefetched tasks set aside)."""
        self.acks.flush(self.containment.release(queues), keep=True)
        self.outage.call(lambda: self.broker.release(self.worker_id, queues))

    def _settle_and_hand_back(self) -> None:
        self.acks.flush()
        self.hand_back()

    def hand_back(self) -> int | None:
        """Hand back what this worker's lists hold (nothing of it started), in every queue it
        claimed from but those set aside as broken (their repair requeues them)."""
        return self.outage.call(lambda: self.broker.release(self.worker_id))
