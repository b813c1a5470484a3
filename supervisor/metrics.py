"""Prometheus metrics of one master, served on --metrics-bind (off by default).

Children never talk to Prometheus: each sends its Tally (outcome counts, duration and wait
histograms with fixed buckets) to the master over its pipe a few times a second, and the
master calls observe(). prometheus_client's multiprocess mode would instead have every child
update mmap'ed files per task and the scrape merge one file per pid ever started; here the
children's hot path stays free of metrics, and one process serves them from memory.

Histograms arrive pre-aggregated, so a custom collector emits them (and the counters) from
plain sums, on tq.tally.EXPORT_BUCKETS (the children count finer buckets, which the
dashboard's percentiles use; these are the ones Prometheus queries were written against).
Queue depths, the age of each queue's oldest ready task (the autoscaling signal) and enqueue
counts are read from Redis at scrape time: fresh, free between scrapes, and the same from
every master (aggregate them with max(), not sum()).

Names follow Prometheus' conventions: base units (seconds, bytes), `_total` on counters. No
label changes across a master restart: a master is its scrape target's `instance` plus the
`host` of tq_master_info; children are labelled by their slot index (0..N-1), which their
replacements keep.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from tq import __version__
from tq.client import Client
from tq.config import split_bind
from tq.errors import ConfigError, TQError
from tq.store.broker import Broker
from tq.tally import Histogram, Tally

log = logging.getLogger(__name__)

RESTART_REASONS = ("exited", "signal", "timeout", "memory", "max_tasks", "heartbeat", "stalled",
                   "reload", "scale_down")
CHILD_STATES = ("starting", "idle", "busy", "stopping")
QUEUE_STATES = ("ready", "scheduled", "running", "held", "dead")


class Metrics:
    """What one master knows, as Prometheus metrics (its own registry, not the global one)."""

    def __init__(self, broker: Broker, master_id: str, host: str = "",
                 started: float | None = None) -> None:
        self.broker = broker
        self.master_id = master_id
        self.host = host
        self.started = time.time() if started is None else started
        self._lock = threading.Lock()   # observe() runs in the master loop, collect() in HTTP
        self._tasks: dict[tuple[str, str], int] = {}
        self._durations: dict[str, Histogram] = {}
        self._waits: dict[str, Histogram] = {}
        self._children: list[dict[str, Any]] = []
        self._restarts = dict.fromkeys(RESTART_REASONS, 0)
        self._client: Client | None = None   # its own connections, used only by scrapes
        self._server: Any = None
        self.address: tuple[str, int] | None = None
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))

    # -- fed by the master ----------------------------------------------------------------
    def observe(self, tally: Tally) -> None:
        """Add a tally of finished tasks (counters and histograms)."""
        with self._lock:
            for ttype, per in tally.counts.items():
                for outcome, n in per.items():
                    if n:
                        key = (ttype, outcome)
                        self._tasks[key] = self._tasks.get(key, 0) + n
            for src, dst in ((tally.durations, self._durations), (tally.waits, self._waits)):
                for ttype, h in src.items():
                    dst.setdefault(ttype, Histogram()).merge(h)

    def set_children(self, children: list[dict[str, Any]]) -> None:
        """The master registry's child dicts (state, rss, uss, cpu, index, pid)."""
        with self._lock:
            self._children = [dict(c) for c in children]

    def child_restarted(self, reason: str) -> None:
        with self._lock:
            self._restarts[reason] = self._restarts.get(reason, 0) + 1

    # -- serving --------------------------------------------------------------------------
    def serve(self, bind: str) -> None:
        """Serve /metrics on HOST:PORT from a daemon thread."""
        host, port = split_bind(bind)
        try:
            self._server, _ = start_http_server(port, host, registry=self.registry)
        except OSError as exc:   # in use, not an address of this machine, no permission
            raise ConfigError(f"--metrics-bind {bind}: cannot listen there: "
                              f"{exc.strerror or exc}") from None
        self.address = (host, self._server.server_port)

    def fds(self) -> list[int]:
        """The listening socket's descriptor, for the master to close in forked children."""
        return [self._server.fileno()] if self._server is not None else []

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- read by the collector ------------------------------------------------------------
    def snapshot(self) -> tuple[dict[tuple[str, str], int], dict[str, Histogram],
                                dict[str, Histogram], list[dict[str, Any]], dict[str, int]]:
        with self._lock:
            return (dict(self._tasks),
                    {t: Histogram(list(h.counts), h.total) for t, h in self._durations.items()},
                    {t: Histogram(list(h.counts), h.total) for t, h in self._waits.items()},
                    list(self._children), dict(self._restarts))

    def queue_sizes(self) -> tuple[dict[str, dict[str, Any]], dict[str, Any]] | None:
        """Queue depths and counters from Redis, None when Redis cannot be reached."""
        try:
            if self._client is None:
                self._client = Client(self.broker.url, self.broker.namespace, socket_timeout=2.0)
            return self._client.queue_sizes(), self._client.stats()["by_queue_type"]
        except TQError as exc:
            log.warning("metrics: queue depths unavailable: %s", exc)
            return None


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        tasks, durations, waits, children, restarts = m.snapshot()
        info = GaugeMetricFamily("tq_master_info", "This master (1): its host and tq version",
                                 labels=["host", "version"])
        info.add_metric([m.host, __version__], 1)
        yield info
        yield GaugeMetricFamily("tq_master_start_time_seconds", "When this master started "
                                "(Unix time)", value=m.started)

        counter = CounterMetricFamily("tq_tasks", "Finished task runs by type and outcome",
                                      labels=["type", "outcome"])
        for (ttype, outcome), n in sorted(tasks.items()):
            counter.add_metric([ttype, outcome], n)
        yield counter
        for name, doc, hists in (
                ("tq_task_duration_seconds", "Task run time", durations),
                ("tq_task_queue_wait_seconds", "Time from enqueue (or due time) to start", waits)):
            fam = HistogramMetricFamily(name, doc, labels=["type"])
            for ttype, h in sorted(hists.items()):
                fam.add_metric([ttype], [(floatToGoString(b), n) for b, n in h.cumulative()],
                               sum_value=h.total)
            yield fam

        by_state = dict.fromkeys(CHILD_STATES, 0)
        rss = GaugeMetricFamily("tq_child_rss_bytes", "Resident memory of a child",
                                labels=["child"])
        uss = GaugeMetricFamily("tq_child_uss_bytes", "Memory of a child's own (USS)",
                                labels=["child"])
        cpu = CounterMetricFamily("tq_child_cpu_seconds", "CPU time (user + system) used by "
                                  "the child in this slot (resets when it is replaced)",
                                  labels=["child"])
        families: tuple[tuple[Any, str], ...] = ((rss, "rss"), (uss, "uss"), (cpu, "cpu_seconds"))
        for c in children:
            state = str(c.get("state", "starting"))
            by_state[state] = by_state.get(state, 0) + 1
            label = [str(c.get("index", c.get("pid", "?")))]
            for fam, field in families:
                if isinstance(c.get(field), int | float):
                    fam.add_metric(label, c[field])
        states = GaugeMetricFamily("tq_children", "Children of this master by state",
                                   labels=["state"])
        for state, n in by_state.items():
            states.add_metric([state], n)
        yield from (states, rss, uss, cpu)

        restart = CounterMetricFamily("tq_child_restarts", "Children replaced, by reason",
                                      labels=["reason"])
        for reason, n in restarts.items():
            restart.add_metric([reason], n)
        yield restart

        read = m.queue_sizes()
        sizes, counts = read if read is not None else ({}, {})
        yield GaugeMetricFamily("tq_redis_up", "1 if the last scrape could read Redis",
                                value=0 if read is None else 1)
        depth = GaugeMetricFamily("tq_queue_depth", "Tasks in a queue by state (read at "
                                  "scrape time; the same from every master)",
                                  labels=["queue", "state"])
        broken = GaugeMetricFamily("tq_queue_broken", "1 while a queue is set aside because "
                                   "one of its keys is corrupt (see `tq queue repair`)",
                                   labels=["queue"])
        age = GaugeMetricFamily("tq_queue_oldest_age_seconds", "Age of the oldest ready task "
                                "of a queue, from its creation (0 when none is ready; read "
                                "at scrape time with the depth)", labels=["queue"])
        now = time.time()
        for queue, size in sorted(sizes.items()):
            for state in QUEUE_STATES:
                depth.add_metric([queue, state], size.get(state, 0))
            broken.add_metric([queue], 1 if size.get("broken") else 0)
            oldest = size.get("oldest_ready")
            age.add_metric([queue], 0.0 if oldest is None else max(now - oldest, 0.0))
        paused = GaugeMetricFamily("tq_queue_paused", "1 while a queue is paused (`tq pause`)",
                                   labels=["queue"])
        for queue, size in sorted(sizes.items()):
            paused.add_metric([queue], 1 if size.get("paused") else 0)
        yield depth
        yield age
        yield broken
        yield paused
        throttled = CounterMetricFamily("tq_tasks_throttled", "Tasks set aside by a rate or "
                                        "concurrency limit at claim time (deferred or held; "
                                        "read from Redis at scrape time)",
                                        labels=["queue", "type"])
        for queue, by_type in sorted(counts.items()):
            for ttype, events in sorted(by_type.items()):
                if events.get("throttled"):
                    throttled.add_metric([queue, ttype], events["throttled"])
        yield throttled
        rejected = CounterMetricFamily("tq_tasks_rejected", "Tasks dead-lettered by payload "
                                       "protection: a bad signature or a body that cannot be "
                                       "decrypted (read from Redis at scrape time)",
                                       labels=["queue", "type"])
        for queue, by_type in sorted(counts.items()):
            for ttype, events in sorted(by_type.items()):
                if events.get("rejected"):
                    rejected.add_metric([queue, ttype], events["rejected"])
        yield rejected
        enqueued = CounterMetricFamily("tq_tasks_enqueued", "Tasks enqueued, by queue and type "
                                       "(read from Redis at scrape time; the same from every "
                                       "master)", labels=["queue", "type"])
        for queue, by_type in sorted(counts.items()):
            for ttype, events in sorted(by_type.items()):
                enqueued.add_metric([queue, ttype], events.get("enqueued", 0))
        yield enqueued
