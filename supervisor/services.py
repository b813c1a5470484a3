"""The master's outputs besides the children: systemd notifications, Prometheus metrics and
the shared throughput history in Redis. One small interface, so the main loop stays readable."""

from __future__ import annotations

import logging
import time
from typing import Any

from tq.config import Config
from tq.store.broker import Broker
from tq.store.history import History
from tq.tally import Tally

from .metrics import Metrics
from .sdnotify import Notifier

log = logging.getLogger("tq.master")


class Services:
    def __init__(self, broker: Broker, master_id: str, host: str = "",
                 started: float | None = None) -> None:
        self.broker = broker
        self.master_id = master_id
        self.host = host
        self.started = started
        self.notifier: Notifier | None = None
        self.metrics: Metrics | None = None
        self.history: History | None = None
        self._next_watchdog = 0.0

    def start(self, config: Config) -> None:
        self.notifier = Notifier()
        self.history = History(self.broker)
        if config.metrics_bind:
            self.metrics = Metrics(self.broker, self.master_id, host=self.host,
                                   started=self.started)
            self.metrics.serve(config.metrics_bind)
            log.info("Prometheus metrics on http://%s/metrics", config.metrics_bind)

    # systemd
    def ready(self) -> None:
        if self.notifier:
            self.notifier.ready()

    def reloading(self) -> None:
        if self.notifier:
            self.notifier.reloading()

    def stopping(self) -> None:
        if self.notifier:
            self.notifier.stopping()

    def status(self, text: str) -> None:
        if self.notifier:
            self.notifier.status(text)

    def watchdog(self) -> None:
        """Ping systemd's watchdog from the main loop (a stuck loop stops the pings)."""
        n = self.notifier
        if n and n.watchdog_interval:
            now = time.monotonic()
            if now >= self._next_watchdog:
                n.watchdog()
                self._next_watchdog = now + n.watchdog_interval   # already half the limit

    # statistics
    def observe(self, done: Tally, children: list[dict[str, Any]]) -> None:
        if self.metrics:
            self.metrics.observe(done)
            self.metrics.set_children(children)

    def record(self, done: Tally) -> None:
        """Add this second's outcomes to the shared history (raises on Redis errors)."""
        if self.history and done:
            self.history.record(done)

    def child_restarted(self, reason: str) -> None:
        if self.metrics:
            self.metrics.child_restarted(reason)

    def fds(self) -> list[int]:
        """Descriptors a forked child must close (the metrics listener would stay bound)."""
        return self.metrics.fds() if self.metrics else []

    def close(self) -> None:
        if self.metrics:
            self.metrics.close()
