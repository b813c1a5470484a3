"""History in Redis: masters add into shared buckets, readers see the sum, buckets expire."""

from __future__ import annotations

import math
import random

import pytest
from redis_server import RedisServer

from tq.errors import RedisUnavailable
from tq.store.broker import Broker
from tq.store.history import MINUTE_TTL, SECOND_TTL, History
from tq.tally import Tally

MINUTE = 1_699_999_980.0   # a minute boundary (divisible by 60)


pytestmark = pytest.mark.cluster_too   # each test: on a standalone Redis, then on a Cluster


def tally(succeeded: int = 0, dead: int = 0, retried: int = 0, ttype: str = "email",
          duration: float = 0.003, wait: float = 0.0002) -> Tally:
    """As a child tallies: each run succeeded or failed; a failed one then retried or dead."""
    t = Tally()
    for _ in range(succeeded):
        t.add(ttype, "succeeded", duration, wait)
    for fate, n in (("dead", dead), ("retried", retried)):
        for _ in range(n):
            t.add(ttype, "failed", duration, wait)
            t.add(ttype, fate)
    return t


@pytest.fixture
def two_masters(any_redis_url: str):
    """Two masters' History on one Redis (each test runs on Redis 7+ and on 6.2)."""
    a, b = Broker(any_redis_url), Broker(any_redis_url)
    yield History(a), History(b)
    a.close()
    b.close()


def test_two_masters_add_into_the_same_buckets(two_masters):
    one, two = two_masters
    # Given two masters recording in the same second, one of them twice
    one.record(tally(succeeded=5, dead=1), now=MINUTE + 1.2)
    two.record(tally(succeeded=3, retried=2), now=MINUTE + 1.7)
    one.record(tally(succeeded=1), now=MINUTE + 2.1)
    # Then any reader sees the sum, per second and per type
    got = two.series(span=10, now=MINUTE + 3.5)
    assert got["step"] == 1
    by_second = dict(zip(range(got["start"], got["start"] + len(got["processed"])),
                         zip(got["processed"], got["failed"], strict=True), strict=True))
    assert by_second[int(MINUTE) + 1] == (11, 3)
    assert by_second[int(MINUTE) + 2] == (1, 0)
    assert sum(got["processed"]) == 12
    lat = one.latency(window=60, now=MINUTE + 3.5)
    assert lat["email"]["outcomes"] == {"succeeded": 9, "failed": 3, "retried": 2, "dead": 1}
    assert lat["email"]["duration"]["n"] == 12
    # 3 ms runs fall in the (2.5, 3] ms bucket: the median is interpolated halfway in it
    assert lat["email"]["duration"]["p50"] == pytest.approx(0.00275)
    assert lat["email"]["duration"]["bounds"]["p50"] == [0.0025, 0.003]
    assert lat["email"]["wait"]["bounds"]["p99"] == [0.00015, 0.0002]
    assert lat["email"]["duration"]["mean"] == pytest.approx(0.003)


def test_series_excludes_the_current_second_and_honours_since(two_masters):
    h, _ = two_masters
    for s in range(5):
        h.record(tally(succeeded=s + 1), now=MINUTE + s + 0.5)
    full = h.series(span=60, now=MINUTE + 4.9)     # second 4 is still filling
    assert full["processed"][-4:] == [1, 2, 3, 4]
    newer = h.series(span=60, since=int(MINUTE) + 2, now=MINUTE + 5.0)
    assert newer["start"] == int(MINUTE) + 3
    assert newer["processed"] == [4, 5]
    assert h.series(span=60, since=int(MINUTE) + 4, now=MINUTE + 5.0)["processed"] == []


def test_per_minute_series_and_percentiles_per_type(two_masters):
    h, _ = two_masters
    h.record(tally(succeeded=90, ttype="resize", duration=0.02, wait=0.001), now=MINUTE + 5)
    h.record(tally(succeeded=9, ttype="resize", duration=4.0, wait=2.0), now=MINUTE + 65)
    h.record(tally(succeeded=1, ttype="resize", duration=40.0, wait=0.001), now=MINUTE + 70)
    minutes = h.series(span=3 * 60, resolution="m", now=MINUTE + 130)
    assert minutes["step"] == 60 and minutes["processed"][-2:] == [90, 10]
    lat = h.latency(window=180, now=MINUTE + 130)["resize"]
    # 90 runs in (15, 20] ms, 9 in (3, 4] s, one in (30, 40] s: interpolated within them
    d = lat["duration"]
    assert (d["p50"], d["p90"], d["p99"]) == pytest.approx((0.015 + 0.005 * 50 / 90, 0.02, 4.0))
    assert d["bounds"] == {"p50": [0.015, 0.02], "p90": [0.015, 0.02], "p99": [3.0, 4.0]}
    assert lat["wait"]["p99"] == pytest.approx(1.5 + 0.5 * 8 / 9)   # 9 waits in (1.5, 2] s
    # a window of one minute only sees the current minute
    assert h.latency(window=60, now=MINUTE + 70)["resize"]["duration"]["n"] == 10


def test_rates_per_second_over_a_window(two_masters):
    h, _ = two_masters
    now = h.now()
    for back in range(1, 11):   # 10 complete seconds of 6 processed, 2 of them failed
        h.record(tally(succeeded=4, dead=2), now=now - back)
    rates = h.rates(window=10)
    assert rates["processed"] == pytest.approx(6.0, abs=0.7)
    assert rates["failed"] == pytest.approx(2.0, abs=0.3)
    assert h.rates(window=60)["processed"] == pytest.approx(1.0, abs=0.2)


def test_buckets_expire(two_masters, any_rconn):
    h, _ = two_masters
    h.record(tally(succeeded=1), now=MINUTE + 1)
    keys = sorted(k.decode() for k in any_rconn.keys("tq:history:*"))
    assert keys == [f"tq:history:m:{int(MINUTE) // 60}", f"tq:history:s:{int(MINUTE) + 1}"]
    assert SECOND_TTL - 5 < any_rconn.ttl(keys[1]) <= SECOND_TTL
    assert MINUTE_TTL - 5 < any_rconn.ttl(keys[0]) <= MINUTE_TTL


def test_empty_tally_costs_nothing(two_masters, any_rconn):
    h, _ = two_masters
    h.record(Tally(), now=MINUTE)
    assert any_rconn.keys("tq:history:*") == []


def test_a_tally_that_could_not_be_sent_goes_with_the_next(tmp_path):
    with RedisServer(tmp_path) as server:
        broker = Broker(server.url)
        h = History(broker)
        port = server.port
        server.stop()
        with pytest.raises(RedisUnavailable):
            h.record(tally(succeeded=2), now=MINUTE + 1)
        restarted = RedisServer(tmp_path, port=port).start()
        try:
            h.record(tally(succeeded=3), now=MINUTE + 2)
            assert h.series(span=10, now=MINUTE + 5)["processed"][-4:] == [0, 5, 0, 0]
        finally:
            broker.close()
            restarted.stop()


def test_percentiles_of_two_masters_lie_in_their_stated_bucket(two_masters, any_rconn):
    # Given e-mails of the example app (100-500 ms) finished under two masters in one minute
    rng = random.Random(28)
    runs = [rng.uniform(0.1, 0.5) for _ in range(2_000)]
    for history, half in zip(two_masters, (runs[:1000], runs[1000:]), strict=True):
        t = Tally()
        for seconds in half:
            t.add("email", "succeeded", seconds, 0.001)
        history.record(t, now=MINUTE + 5)
    # When the dashboard reads them back
    got = two_masters[0].latency(window=60, now=MINUTE + 30)["email"]["duration"]
    # Then each percentile's bucket holds the true one, and the figure is close to it
    ordered = sorted(runs)
    assert got["n"] == 2000 and got["mean"] == pytest.approx(sum(runs) / 2000)
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        true = ordered[math.ceil(q * 2000) - 1]
        low, high = got["bounds"][name]
        assert low < true <= high and high - low <= 0.25 * high + 1e-12
        assert got[name] == pytest.approx(true, rel=0.02)
    # the buckets are named by their bound, not by their position
    fields = {f.decode() for f in any_rconn.hkeys(f"tq:history:m:{int(MINUTE) // 60}")}
    assert {"dur:email:0.3", "dur:email:0.5", "dur_sum:email"} <= fields


def test_a_bound_of_other_buckets_lands_in_the_one_that_holds_it(two_masters, any_rconn):
    h, _ = two_masters
    key = f"tq:history:m:{int(MINUTE) // 60}"
    any_rconn.hset(key, mapping={
        "dur:report:0.35": 4,          # another version's bound: in (0.3, 0.4]
        "dur:report:+Inf": 1,
        "dur:report:junk": 9,          # not a bound: passed over
        "d:report:9": 100,             # the coarse fields of before 0.2.0: not read
        "ds:report": 10**9})
    got = h.latency(window=60, now=MINUTE + 30)["report"]["duration"]
    assert got["n"] == 5
    assert got["bounds"]["p50"] == [0.3, 0.4]
    assert got["bounds"]["p99"] == [300.0, None] and got["p99"] == 300.0   # "> 300 s"
