"""Statistics a child keeps and sends its master (tq.tally): counts per type and outcome,
latency histograms and their quantiles, and their JSON wire form."""

from __future__ import annotations

import json
import math

import pytest

from tq.tally import BUCKETS, Histogram, Tally, bucket_index


def test_bucket_index():
    assert bucket_index(0) == 0
    assert bucket_index(0.0001) == 0
    assert bucket_index(0.00011) == 1
    assert BUCKETS[bucket_index(0.0005)] == 0.0005   # a bound is in the bucket it closes
    assert bucket_index(1e9) == len(BUCKETS) - 1


def test_tally_adds_merges_and_survives_the_wire():
    a, b = Tally(), Tally()
    assert not a
    a.add("email", "succeeded", duration=0.002, wait=0.1)
    a.add("email", "failed", duration=0.3)
    b.add("email", "succeeded", duration=0.004)
    b.add("resize", "dead")
    a.merge(b)
    assert a.counts["email"] == {"succeeded": 2, "failed": 1, "retried": 0, "dead": 0}
    assert a.total("succeeded") == 2 and a.total("dead") == 1
    assert a.durations["email"].n == 3
    assert a.waits["email"].n == 1
    wire = json.loads(json.dumps(a.to_wire()))   # really JSON
    back = Tally.from_wire(wire)
    assert back.counts == a.counts
    assert back.durations["email"].counts == a.durations["email"].counts
    assert back.durations["email"].total == pytest.approx(0.306)


def test_histogram_quantiles_interpolate_within_their_bucket():
    h = Histogram()
    assert h.quantile(0.5) is None and h.percentile(0.5) is None
    for _ in range(90):
        h.observe(0.0035)     # bucket (3, 4] ms
    for _ in range(10):
        h.observe(2.2)        # bucket (2, 2.5] s
    assert h.percentile(0.5) == pytest.approx((0.003 + 0.001 * 50 / 90, 0.003, 0.004))
    assert h.percentile(0.99) == pytest.approx((2.0 + 0.5 * 9 / 10, 2.0, 2.5))
    h.observe(10_000)         # the +Inf bucket: its lower bound, no upper one
    assert h.percentile(1.0) == (BUCKETS[-2], BUCKETS[-2], math.inf)
