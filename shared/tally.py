"""Task outcome counters and duration histograms, aggregated where they happen.

A child adds one entry per finished task and sends its Tally to the master over its pipe a
few times a second (not one message per task: that would cost the master more than the task).
The master merges them and feeds Prometheus (supervisor/metrics.py) and the shared history
in Redis (history.py). Buckets are fixed so tallies merge by adding.

Percentiles come from the buckets, so their error is the bucket's width: BUCKETS has ten per
decade (each at most 1/3 wider than its lower bound, 0.1 ms to 300 s), and a percentile is
interpolated within its bucket as Prometheus' histogram_quantile() does, reported with that
bucket's bounds (the true value lies between them). /metrics keeps the coarser
EXPORT_BUCKETS that Prometheus users' queries and the Grafana dashboard were written against:
each is one of BUCKETS, so its cumulative count is exact.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, NamedTuple

INF = float("inf")
_STEPS = ("1", "1.25", "1.5", "2", "2.5", "3", "4", "5", "6", "8")   # per decade
# Upper bounds in seconds (the last bucket is +Inf), for task duration and queue wait alike;
# from decimal strings, so 0.0025 is the same float as the literal.
BUCKETS: tuple[float, ...] = (*(float(f"{m}e{e}") for e in range(-4, 2) for m in _STEPS),
                              100.0, 125.0, 150.0, 200.0, 250.0, 300.0, INF)
# The /metrics buckets (tq_task_duration_seconds, tq_task_queue_wait_seconds): unchanged
# since the first version, a subset of BUCKETS.
EXPORT_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                     0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, INF)
_EXPORT_AT = tuple(BUCKETS.index(b) for b in EXPORT_BUCKETS)
OUTCOMES = ("succeeded", "failed", "retried", "dead")


class Percentile(NamedTuple):
    """A percentile estimated from a histogram: the true value lies in (low, high]."""

    value: float   # interpolated within the bucket (its low bound in the open last one)
    low: float
    high: float    # INF in the last bucket


def bucket_index(seconds: float) -> int:
    """The first bucket whose upper bound is >= seconds (NaN: the last)."""
    i = bisect_left(BUCKETS, seconds)
    return i if i < len(BUCKETS) and seconds == seconds else len(BUCKETS) - 1


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    total: float = 0.0   # sum of observed seconds

    def observe(self, seconds: float) -> None:
        """Count one observation (negative counts as 0; NaN goes to the last bucket)."""
        if seconds >= 0.0:   # (on every finished task's path: no function call, no max())
            self.counts[bisect_left(BUCKETS, seconds)] += 1
            self.total += seconds
        elif seconds < 0.0:
            self.counts[0] += 1
        else:
            self.counts[-1] += 1
            self.total += seconds

    def merge(self, other: Histogram) -> None:
        # (the master merges every child's tally a few times a second: one pass, no indexing)
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.total += other.total

    @property
    def n(self) -> int:
        return sum(self.counts)

    def percentile(self, q: float) -> Percentile | None:
        """Quantile q (0..1] of the observations, None when empty.

        The bucket holding the observation of rank ceil(q*n) (the nearest-rank quantile) gives
        the bounds; the value is interpolated linearly within it, as histogram_quantile()."""
        n = sum(self.counts)
        if not n:
            return None
        rank = q * n
        if abs(rank - round(rank)) < 1e-9:   # 0.29 * 100 is 28.999999999999996
            rank = round(rank)
        seen = 0
        for i, c in enumerate(self.counts):
            if c and seen + c >= rank:
                low, high = (BUCKETS[i - 1] if i else 0.0), BUCKETS[i]
                if high == INF:
                    return Percentile(low, low, high)
                return Percentile(low + (high - low) * max(rank - seen, 0) / c, low, high)
            seen += c
        raise AssertionError("unreachable: the counts sum to n")

    def quantile(self, q: float) -> float | None:
        """The estimate of quantile q (0..1], None when empty (see percentile())."""
        p = self.percentile(q)
        return None if p is None else p.value

    def cumulative(self) -> list[tuple[float, int]]:
        """(bound, observations <= bound) at each of EXPORT_BUCKETS: /metrics' buckets."""
        running = list(accumulate(self.counts))
        return [(b, running[i]) for b, i in zip(EXPORT_BUCKETS, _EXPORT_AT, strict=True)]


@dataclass
class Tally:
    """Per task type: outcome counts, run-time and queue-wait histograms."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)   # type -> outcome -> n
    durations: dict[str, Histogram] = field(default_factory=dict)     # type -> run time
    waits: dict[str, Histogram] = field(default_factory=dict)         # type -> enqueue..start

    def add(self, task_type: str, outcome: str, duration: float | None = None,
            wait: float | None = None) -> None:
        per = self.counts.get(task_type)
        if per is None:
            per = self.counts[task_type] = dict.fromkeys(OUTCOMES, 0)
        per[outcome] = per.get(outcome, 0) + 1
        # on every finished task's path: no throwaway Histogram per call (setdefault's default)
        if duration is not None:
            h = self.durations.get(task_type)
            if h is None:
                h = self.durations[task_type] = Histogram()
            h.observe(duration)
        if wait is not None:
            h = self.waits.get(task_type)
            if h is None:
                h = self.waits[task_type] = Histogram()
            h.observe(wait)

    def __bool__(self) -> bool:
        return bool(self.counts)

    def merge(self, other: Tally) -> None:
        for t, per in other.counts.items():
            mine = self.counts.setdefault(t, dict.fromkeys(OUTCOMES, 0))
            for outcome, n in per.items():
                mine[outcome] = mine.get(outcome, 0) + n
        for src, dst in ((other.durations, self.durations), (other.waits, self.waits)):
            for t, h in src.items():
                dst.setdefault(t, Histogram()).merge(h)

    def total(self, outcome: str) -> int:
        return sum(per.get(outcome, 0) for per in self.counts.values())

    def to_wire(self) -> dict[str, Any]:
        """A JSON-able form (for the child -> master pipe)."""
        return {"c": self.counts,
                "d": {t: [h.counts, h.total] for t, h in self.durations.items()},
                "w": {t: [h.counts, h.total] for t, h in self.waits.items()}}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Tally:
        t = cls(counts={k: dict(v) for k, v in data.get("c", {}).items()})
        for src, dst in ((data.get("d", {}), t.durations), (data.get("w", {}), t.waits)):
            for name, (counts, total) in src.items():
                dst[name] = Histogram(list(counts), float(total))
        return t
