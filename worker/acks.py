"""Settling finished runs: an ack waits to ride on the next claim (or on a claim of nothing when
due; held while its queue is broken), a failure is written at once."""

from __future__ import annotations

import logging
import time

from tq.store.broker import Ack, Broker, ClaimResult
from tq.task import Task

from .containment import Containment
from .outage import Outage
from .report import Report
from .runner import Failure, Runner, queue_wait

log = logging.getLogger("tq.worker")


class Acks:
    def __init__(self, broker: Broker, worker_id: str, result_ttl: float, runner: Runner,
                 containment: Containment, outage: Outage, report: Report) -> None:
        self.broker = broker
        self.worker_id = worker_id
        self.result_ttl = result_ttl
        self.runner = runner
        self.containment = containment
        self.outage = outage
        self.report = report
        self.extra = {"worker": worker_id}
        self.waiting: list[Ack] = []   # to be sent with the next claim
        self.since = 0.0   # when the oldest ack still waiting was made (monotonic)

    def settle(self, task: Task, outcome: Ack | Failure, elapsed: float,
               started: float) -> None:
        """Record a finished run: its ack waits for the next claim, a failure is written."""
        wait = queue_wait(task, started)
        s = self.report.slot.state
        s.processed += 1
        tally = self.report.tally
        if isinstance(outcome, Failure) and outcome.kind == "cancelled":
            self.outage.call(lambda: self.runner.record(outcome))   # not a failure: no attempt
        elif isinstance(outcome, Failure):
            s.failed += 1
            result = self.outage.call(lambda: self.runner.record(outcome))
            tally.add(task.type, "failed", elapsed, wait)
            if result is not None and result.outcome in ("retry", "dead"):
                tally.add(task.type, "retried" if result.outcome == "retry" else "dead")
        elif outcome.result_ttl is not None and outcome.result_ttl != self.result_ttl:
            ack = outcome   # its handler keeps results for its own time: sent on its own
            self.flush([ack], ack.result_ttl or 0.0, keep=True)
            tally.add(task.type, "succeeded", elapsed, wait)
        else:
            if not self.waiting:
                self.since = time.monotonic()
            self.waiting.append(outcome)
            tally.add(task.type, "succeeded", elapsed, wait)

    def flush(self, acks: list[Ack] | None = None, result_ttl: float | None = None,
              keep: bool = False) -> None:
        """Send acks now (a claim of nothing): the waiting batch, or `acks`."""
        batch = self.containment.hold(self.waiting if acks is None else acks)
        if acks is None:
            self.waiting = batch
        if not batch:
            return
        queues = list(dict.fromkeys(a.task.queue for a in batch))   # a claim of nothing there
        ttl = self.result_ttl if result_ttl is None else result_ttl
        self.outage.call(lambda: self.settled(
            self.broker.claim(self.worker_id, queues, 0, acks=batch, result_ttl=ttl),
            keep=keep))

    def settled(self, got: ClaimResult, keep: bool = False) -> None:
        """Log acks the fence refused; forget the batch of acks just sent (unless `keep`)."""
        log_strays(got, self.extra)
        for tid in got.stale:
            log.warning("task was requeued while this worker ran it (stale claim): its result "
                        "was dropped", extra={**self.extra, "task": tid})
        if not keep:
            self.waiting = []


def log_strays(got: ClaimResult, extra: dict[str, str]) -> None:
    if got.strays:
        log.warning("%d task(s) were claimed in this worker's name by a call whose reply "
                    "never came back: handed back to their queues", got.strays, extra=extra)
