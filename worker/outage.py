"""Waiting out Redis outages and refusals: the wrapper the child's Redis calls go through
(Outage.call), and its backoff while Redis is away."""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from typing import TypeVar

from tq import exitcodes
from tq.channel import RECONNECTING
from tq.errors import NoPermission
from tq.store.broker import Broker
from tq.store.grants import note, refusal
from tq.store.link import OUTAGE, ResponseError

from .containment import Containment
from .report import Report
from .watch import Watch, flush_logs

log = logging.getLogger("tq.worker")
ORPHAN_REDIS_PATIENCE = 10   # seconds an orphan waits out a Redis outage before it just exits

T = TypeVar("T")


class Outage:
    def __init__(self, broker: Broker, containment: Containment, report: Report,
                 watch: Watch, worker_id: str) -> None:
        self.broker = broker
        self.containment = containment
        self.report = report
        self.watch = watch
        self.extra = {"worker": worker_id}
        self.delay: float | None = None   # the next pause; set while Redis is unavailable
        self.since = 0.0                  # when this outage began (monotonic)

    def call(self, op: Callable[[], T]) -> T | None:
        """Run a Redis operation, waiting out outages and refusals (OOM, READONLY...).

        What is retried here is fenced or idempotent (acks, fails, releases), so repeating one
        whose reply was lost is safe. None: Redis refused it for good (see below).
        """
        while True:
            try:
                result = op()
            except OUTAGE as exc:
                self.pause(exc)
                continue
            except (NoPermission, ResponseError) as exc:
                if refusal(exc):   # an ACL: said once, naming the grant; retried like an outage
                    note(exc, log, "worker", self.extra)
                    time.sleep(0.5 + random.random())
                    continue
                # Not an outage: a corrupt key (or a bug). Set the queue aside if a key
                # explains it; the operation is dropped and its task stays claimed, to be
                # handed back when this worker leaves (or re-indexed by the queue's repair).
                try:
                    self.containment.explain(exc)
                except OUTAGE:
                    pass
                log.error("Redis refused an operation (%s): dropped", exc, extra=self.extra)
                return None
            if self.delay is not None:
                log.info("Redis is back", extra=self.extra)
                self.delay = None
                self.watch.state = "idle"
            return result

    def pause(self, exc: BaseException) -> None:
        """One wait of an outage: warn when it starts, back off to 2 s, keep the heartbeat."""
        if self.delay is None:
            log.warning("Redis unavailable (%s): waiting for it", exc, extra=self.extra)
            self.watch.state = "reconnecting"
            self.delay = 0.05
            self.since = time.monotonic()
        if self.watch.orphaned_at is not None and \
                time.monotonic() - self.since > ORPHAN_REDIS_PATIENCE:
            # No master to wait for: leave what this worker holds to the reapers (its
            # registry entry ages out) rather than retry for ever as a stray process.
            log.error("master gone and Redis unavailable for %ds (%s): exiting; a reaper "
                      "requeues what this worker holds", ORPHAN_REDIS_PATIENCE, exc,
                      extra=self.extra)
            flush_logs()
            os._exit(exitcodes.FAILURE)
        self.broker.link.close()
        self.report.state(RECONNECTING)
        time.sleep(self.delay * (0.5 + random.random()))
        self.delay = min(self.delay * 2, 2.0)
