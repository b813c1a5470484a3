"""Statistics a child keeps and sends its master (tq.tally): counts per type and outcome,
latency histograms and their quantiles, and their JSON wire form."""

from __future__ import annotations

import json

import pytest

from tq.tally import BUCKETS, Histogram, Tally, bucket_index


def test_bucket_index():
    assert bucket_index(0) == 0
    assert bucket_index(0.0005) == 0
    assert bucket_index(0.0006) == 1
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


def test_histogram_quantiles_are_upper_bounds():
    h = Histogram()
    assert h.quantile(0.5) is None
    for _ in range(90):
        h.observe(0.003)      # bucket <= 0.005
    for _ in range(10):
        h.observe(2.0)        # bucket <= 2.5
    assert h.quantile(0.5) == 0.005
    assert h.quantile(0.99) == 2.5
    h.observe(10_000)         # +Inf bucket reports the last finite bound
    assert h.quantile(1.0) == BUCKETS[-2]
