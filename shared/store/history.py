"""Throughput and latency history in Redis, shared by every master and every dashboard.

Each master calls History.record() about once a second with what its children finished since
the last call; all masters add into the same buckets (HINCRBY), so any reader sees the whole
system. Two resolutions, both bounded by TTL:

  ns:history:s:SECOND   p, f                      processed / failed in that second (~1 h)
  ns:history:m:MINUTE   p, f                      the same per minute (~1 day), and per type:
                        c:TYPE:OUTCOME            outcome counts
                        dur:TYPE:LE, wait:TYPE:LE duration / queue-wait runs in the histogram
                                                  bucket whose upper bound is LE seconds
                                                  (tq.tally.BUCKETS: 0.25, +Inf)
                        dur_sum:TYPE, wait_sum:TYPE  their sums in microseconds (integers add
                                                  exactly)

Buckets are named by their bound, not their position: a reader meets a bound it does not know
(another version's buckets) in the bucket that holds it, its count at that bucket's top. The
fields tq wrote before 0.2.0 (d:TYPE:I, w:TYPE:I by position in 18 coarse buckets, ds:, ws:)
are not read: they expire within the day, and readers of before ignore these.

A run ends "succeeded" or "failed" (a failed one is counted again as "retried" or "dead",
as the children's tallies and the queue's stats do): "processed" is succeeded + failed. Buckets
are placed by Redis' clock (an offset measured with TIME every few minutes), so masters with
skewed clocks still fill the same second.
"""

from __future__ import annotations

import math
import time
from typing import Any

from ..tally import BUCKETS, OUTCOMES, Histogram, Tally, bucket_index
from .broker import Broker
from .connection import translated

SECOND_TTL = 3600 + 120          # per-second buckets: the last hour, plus slack for readers
MINUTE_TTL = 26 * 3600           # per-minute buckets: a day, plus slack
CLOCK_REFRESH = 300.0            # re-measure the offset to Redis' clock this often (s)
RESOLUTIONS = {"s": (1, SECOND_TTL), "m": (60, MINUTE_TTL)}
QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
_LE = [repr(b) if math.isfinite(b) else "+Inf" for b in BUCKETS]   # a bucket's field suffix
_INDEX = {le: i for i, le in enumerate(_LE)}


class History:
    """Record tallies into Redis and read throughput series and latency percentiles back."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.keys = broker.keys
        self._offset: float | None = None   # Redis clock minus ours, in seconds
        self._offset_at = 0.0
        self._pending = Tally()             # what a failed record() could not send yet

    # -- clock ----------------------------------------------------------------------------
    def now(self) -> float:
        """Unix time by Redis' clock (one TIME round trip every CLOCK_REFRESH seconds)."""
        mono = time.monotonic()
        if self._offset is None or mono - self._offset_at > CLOCK_REFRESH:
            with translated(self.broker.url):
                secs, micros = self.broker.conn.time()
            self._offset = secs + micros / 1e6 - time.time()
            self._offset_at = mono
        return time.time() + self._offset

    # -- writing --------------------------------------------------------------------------
    def record(self, tally: Tally, now: float | None = None) -> None:
        """Add what finished since the last call to the buckets of `now`; one round trip.

        Raises RedisUnavailable; the tally is then kept and added to the next call.
        """
        pending = self._pending
        pending.merge(tally)
        if not pending:
            return
        t = self.now() if now is None else now
        second = int(t)
        sec_key = self.keys.history("s", second)
        min_key = self.keys.history("m", second // 60)
        failed = pending.total("failed")
        processed = pending.total("succeeded") + failed
        pipe = self.broker.conn.pipeline(transaction=False)
        for key, ttl in ((sec_key, SECOND_TTL), (min_key, MINUTE_TTL)):
            if processed:
                pipe.hincrby(key, "p", processed)
            if failed:
                pipe.hincrby(key, "f", failed)
            pipe.expire(key, ttl)
        for ttype, per in pending.counts.items():
            for outcome, n in per.items():
                if n:
                    pipe.hincrby(min_key, f"c:{ttype}:{outcome}", n)
        for prefix, hists in (("dur", pending.durations), ("wait", pending.waits)):
            for ttype, h in hists.items():
                for i, n in enumerate(h.counts):
                    if n:
                        pipe.hincrby(min_key, f"{prefix}:{ttype}:{_LE[i]}", n)
                pipe.hincrby(min_key, f"{prefix}_sum:{ttype}", round(h.total * 1e6))
        with translated(self.broker.url):
            pipe.execute()
        self._pending = Tally()

    # -- reading --------------------------------------------------------------------------
    def series(self, span: float = 3600.0, resolution: str = "s", since: int | None = None,
               now: float | None = None) -> dict[str, Any]:
        """Processed and failed counts per bucket over the last `span` seconds.

        Only complete buckets (the current one is still filling). `since`: the last bucket
        start the caller already has; only later buckets are returned. Returns
        {"start": first bucket's Unix time, "step": seconds, "processed": [...], "failed": [...]}.
        """
        step, _ = RESOLUTIONS[resolution]
        t = self.now() if now is None else now
        end = int(t) // step                       # the current bucket, excluded
        first = end - max(1, int(span // step))
        if since is not None:
            first = max(first, int(since) // step + 1)
        buckets = range(first, end)
        pipe = self.broker.conn.pipeline(transaction=False)
        for b in buckets:
            pipe.hmget(self.keys.history(resolution, b), "p", "f")
        with translated(self.broker.url):
            replies = pipe.execute() if buckets else []
        return {"start": first * step, "step": step,
                "processed": [int(p or 0) for p, _ in replies],
                "failed": [int(f or 0) for _, f in replies]}

    def rates(self, window: float = 60.0) -> dict[str, float]:
        """{"processed": per second, "failed": per second} over the last `window` seconds."""
        resolution = "s" if window <= SECOND_TTL - 120 else "m"
        got = self.series(window, resolution)
        seconds = max(len(got["processed"]) * got["step"], 1)
        return {"processed": sum(got["processed"]) / seconds,
                "failed": sum(got["failed"]) / seconds}

    def latency(self, window: float = 300.0, now: float | None = None) -> dict[str, Any]:
        """Per task type over the last `window` seconds (whole minutes, the current included):

        {type: {"outcomes": {outcome: n}, "duration": {"n", "mean", "p50", "p90", "p99",
                "bounds": {"p50": [low, high], ...}}, "wait": {...}}}: percentiles in seconds,
        interpolated within their histogram bucket, whose bounds the true value lies in
        (see summary()).
        """
        t = self.now() if now is None else now
        end = int(t) // 60
        with translated(self.broker.url):
            tallies = self.minutes(range(end - max(0, math.ceil(window / 60) - 1), end + 1))
        merged = Tally()
        for tally in tallies:
            merged.merge(tally)
        out: dict[str, Any] = {}
        for ttype in sorted(set(merged.counts) | set(merged.durations) | set(merged.waits)):
            out[ttype] = {"outcomes": merged.counts.get(ttype, dict.fromkeys(OUTCOMES, 0)),
                          "duration": summary(merged.durations.get(ttype)),
                          "wait": summary(merged.waits.get(ttype))}
        return out

    def minutes(self, minutes: range) -> list[Tally]:
        """The per-type tallies of these minute buckets (minutes since the epoch), in one
        pipeline: outcome counts and duration / wait histograms."""
        pipe = self.broker.conn.pipeline(transaction=False)
        for m in minutes:
            pipe.hgetall(self.keys.history("m", m))
        return [_tally_of(fields) for fields in pipe.execute()]


def _bucket_of(le: str) -> int | None:
    """The index in BUCKETS of a field's bound (one of ours, else the bucket holding it)."""
    i = _INDEX.get(le)
    if i is None:
        try:
            i = bucket_index(float(le))
        except ValueError:
            return None
    return i


def _tally_of(fields: dict[bytes, bytes]) -> Tally:
    """The per-type part of one minute bucket, as a Tally (so buckets merge like tallies)."""
    tally = Tally()
    hists = {"dur": tally.durations, "wait": tally.waits}
    sums = {"dur_sum": tally.durations, "wait_sum": tally.waits}
    for raw_field, raw_value in fields.items():
        kind, _, rest = raw_field.decode().partition(":")
        if kind == "c":
            ttype, _, outcome = rest.rpartition(":")
            tally.counts.setdefault(ttype, dict.fromkeys(OUTCOMES, 0))[outcome] = int(raw_value)
        elif kind in hists:
            ttype, _, le = rest.rpartition(":")
            i = _bucket_of(le)
            if i is not None:
                hists[kind].setdefault(ttype, Histogram()).counts[i] += int(raw_value)
        elif kind in sums:
            sums[kind].setdefault(rest, Histogram()).total += int(raw_value) / 1e6
    return tally


def summary(h: Histogram | None) -> dict[str, Any]:
    """n, mean, and each of QUANTILES (seconds, None when empty) with "bounds": {name: [low,
    high]}, the bucket it lies in (high None: no upper bound, the histogram's last bucket)."""
    if h is None or not h.n:
        return {"n": 0, "mean": None, **{name: None for name, _ in QUANTILES}, "bounds": {}}
    out: dict[str, Any] = {"n": h.n, "mean": h.total / h.n, "bounds": {}}
    for name, q in QUANTILES:
        p = h.percentile(q)
        assert p is not None   # (not empty)
        out[name] = p.value
        out["bounds"][name] = [p.low, p.high if math.isfinite(p.high) else None]
    return out
