"""Task outcome counters and duration histograms, aggregated where they happen.

A child adds one entry per finished task and sends its Tally to the master over its pipe a
few times a second (not one message per task: that would cost the master more than the task).
The master merges them and feeds Prometheus (supervisor/metrics.py) and the shared history
in Redis (history.py). Buckets are fixed so tallies merge by adding.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

# Upper bounds in seconds (the last bucket is +Inf), for task duration and queue wait alike.
BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                              1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, float("inf"))
OUTCOMES = ("succeeded", "failed", "retried", "dead")


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
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.total += other.total

    @property
    def n(self) -> int:
        return sum(self.counts)

    def quantile(self, q: float) -> float | None:
        """An upper-bound estimate of quantile q (0..1), None when empty."""
        n = self.n
        if not n:
            return None
        rank, seen = q * n, 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank and c:
                return BUCKETS[i] if BUCKETS[i] != float("inf") else BUCKETS[-2]
        return BUCKETS[-2]


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
