"""Percentiles from histograms: each lies in the bucket it is shown with, and the interpolated
figure is close to the true one, for known distributions of run times and for any sample."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tq.cli import output
from tq.tally import BUCKETS, EXPORT_BUCKETS, Histogram

QUANTILES = (0.5, 0.9, 0.99)

# run times in seconds, drawn from a seeded generator
DISTRIBUTIONS: dict[str, Callable[[random.Random], float]] = {
    # the example app's e-mails (make run): 100-500 ms, which read p50 = p90 = p99 = 500 ms
    # when percentiles were bucket tops
    "email, uniform 100-500 ms": lambda r: r.uniform(0.1, 0.5),
    "lognormal, median 50 ms": lambda r: r.lognormvariate(math.log(0.05), 1.0),
    "exponential, mean 20 ms": lambda r: r.expovariate(50),
    "bimodal, 2 ms and 1.5 s": lambda r: abs(r.gauss(0.002, 0.0003) if r.random() < 0.8
                                             else r.gauss(1.5, 0.2)),
    "sub-millisecond no-ops": lambda r: r.uniform(0.00003, 0.0004),
}


def nearest_rank(ordered: list[float], q: float) -> float:
    """The true q-quantile of a sorted sample: the observation of rank ceil(q*n)."""
    return ordered[math.ceil(round(q * len(ordered), 9)) - 1]


def histogram(xs: list[float]) -> Histogram:
    h = Histogram()
    for x in xs:
        h.observe(x)
    return h


def within(p: tuple[float, float, float], true: float) -> bool:
    """The true value lies in the stated bucket (low, high] (the first one holds 0 too)."""
    _, low, high = p
    return (low < true or low == 0) and true <= high


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_known_distributions_lie_in_their_stated_bucket(name: str):
    draw = DISTRIBUTIONS[name]
    rng = random.Random(28)
    xs = [draw(rng) for _ in range(20_000)]
    h, ordered = histogram(xs), sorted(xs)
    for q in QUANTILES:
        true, p = nearest_rank(ordered, q), h.percentile(q)
        assert p is not None and within(p, true), (q, true, p)
        # the stated error: the bucket, at most a quarter of its top wide
        assert p.high - p.low <= 0.25 * p.high + 1e-12, p
        assert abs(p.value - true) <= p.high - p.low
        # and interpolation within it lands close on these smooth distributions
        assert abs(p.value - true) <= 0.1 * true, (q, true, p)


def test_the_example_apps_emails_read_three_different_percentiles():
    rng = random.Random(4)
    h = histogram([rng.uniform(0.1, 0.5) for _ in range(2_000)])
    p50, p90, p99 = (h.quantile(q) for q in QUANTILES)
    assert p50 == pytest.approx(0.3, rel=0.05)
    assert p90 == pytest.approx(0.46, rel=0.05)
    assert p99 == pytest.approx(0.496, rel=0.05)


@given(st.lists(st.one_of(st.floats(0, 10_000), st.sampled_from(BUCKETS[:-1])),
                min_size=1, max_size=300),
       st.sampled_from((0.001, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0)))
def test_any_sample_lies_in_its_stated_bucket(xs: list[float], q: float):
    p = histogram(xs).percentile(q)
    true = nearest_rank(sorted(xs), q)
    assert p is not None and within(p, true), (true, p)
    assert p.low <= p.value <= p.high


def test_exported_buckets_are_cumulative_counts_at_the_prometheus_bounds():
    h = histogram([0.0003, 0.003, 0.0035, 0.2, 0.3, 7.0, 1e6])
    got = dict(h.cumulative())
    assert list(got) == list(EXPORT_BUCKETS)   # /metrics' bounds, unchanged
    assert (got[0.0005], got[0.005], got[0.25], got[0.5], got[10.0], got[math.inf]) == \
        (1, 3, 4, 5, 6, 7)
    # every exported bound is one of the finer buckets, so these counts are exact
    assert set(EXPORT_BUCKETS) <= set(BUCKETS)


@pytest.mark.parametrize("value, bounds, shown", [
    (0.311, [0.3, 0.4], "311ms (300-400ms)"),
    (0.9, [0.8, 1.0], "900ms (800ms-1s)"),
    (1.3, [1.25, 1.5], "1.3s (1.25-1.5s)"),
    (55.0, [50.0, 60.0], "55.0s (50s-1m00s)"),
    (0.00005, [0.0, 0.0001], "50µs (<=100µs)"),
    (0.0011, [0.001, 0.00125], "1.1ms (1-1.25ms)"),
    (300.0, [300.0, None], "5m00s (>5m00s)"),
    (None, None, None),
])
def test_tq_stats_shows_each_percentile_with_its_bucket(value, bounds, shown):
    summary = {"p50": value, "bounds": {"p50": bounds} if bounds else {}}
    assert output.percentile(summary, "p50") == shown
