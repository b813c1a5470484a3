"""Periodic tasks: schedules checked at declaration, ticks computed in their time zone, and
each tick enqueued exactly once by a fleet of masters (real tq-master processes)."""

from __future__ import annotations

import signal
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from master_proc import eventually

import tq
from tq.periodic_tasks import make


def test_schedules_are_checked_when_declared():
    for bad, why in [("* * *", "not a cron expression"), ("61 * * * *", "not a cron"),
                     (0, "1 s to a year"), (float("nan"), "1 s to a year"),
                     (True, "cron expression or seconds")]:
        with pytest.raises(ValueError, match=why):
            make(bad, "report")
    with pytest.raises(ValueError, match="unknown time zone"):
        make("0 3 * * *", "report", tz="Mars/Olympus")
    with pytest.raises(ValueError, match="missed must be"):
        make("0 3 * * *", "report", missed="twice")
    with pytest.raises(tq.PayloadError):
        make(60, "report", {"when": object()})


def test_ticks_in_a_time_zone_and_on_an_interval():
    paris = make("0 3 * * *", "backup", tz="Europe/Paris")
    # 2026-03-29: Paris moves to summer time at 02:00; 03:00 is then 01:00 UTC
    noon = datetime(2026, 3, 29, 12, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    assert datetime.fromtimestamp(paris.latest(noon), ZoneInfo("UTC")).hour == 1
    assert paris.following(noon) - paris.latest(noon) == 86400
    every = make(30, "beat")
    assert every.latest(1000.0) == 990.0 and every.following(1000.0) == 1020.0
    assert every.name == "beat@every 30"


def beats(rconn) -> int:
    return rconn.llen("cron:beats")


def test_two_masters_enqueue_each_tick_once_and_a_restart_doubles_none(masters, client,
                                                                        rconn):
    # Given two masters whose app declares a 1-second periodic task
    fleet = [masters("-c", "1", "-A", "cronapp") for _ in range(2)]
    for m in fleet:
        m.wait_ready(1)
    eventually(lambda: beats(rconn) >= 1, timeout=5, what="the first beat")
    start, t0 = beats(rconn), time.monotonic()
    # When they run for ~6 s, one of them restarting in the middle
    time.sleep(3)   # the length of the run being measured, not a synchronisation
    fleet[0].signal(signal.SIGTERM)
    assert fleet[0].wait_exit() == 0
    again = masters("-c", "1", "-A", "cronapp")
    again.wait_ready(1)
    time.sleep(max(0.0, t0 + 6 - time.monotonic()))   # (the same: ~6 s in all)
    elapsed, got = time.monotonic() - t0, beats(rconn) - start
    # Then each tick ran once: as many runs as seconds (+-1 at the edges), none twice
    assert abs(got - elapsed) <= 1.5, (got, elapsed)
    enqueued = client.stats()["by_type"]["beat"]["enqueued"]
    assert enqueued == beats(rconn) or enqueued == beats(rconn) + 1   # one may be in flight
    info = tq.Client(client.broker.url).broker.conn.hget("tq:periodic", "beat@every 1")
    assert b'"last"' in info and b'"next"' in info
    # and they show in tq status and the dashboard's overview
    from click.testing import CliRunner

    from tq.cli import cli
    from tq.dashboard.app import create_app

    text = CliRunner().invoke(cli, ["status"], env={"TQ_REDIS_URL": client.broker.url}).output
    assert "PERIODIC" in text and "beat@every 1" in text
    overview = create_app(client).test_client().get(
        "/api/overview", headers={"Host": "127.0.0.1:8080"}).get_json()
    assert [p["name"] for p in overview["periodic"]] == ["beat@every 1"]


def test_missed_ticks_follow_their_policy(client, rconn):
    from tq.supervisor.periodic import Scheduler

    now = 1_800_000_030.0   # 30 s after a whole minute
    for missed, want in (("skip", 0), ("run_once", 1)):
        entry = make(60, f"job-{missed}", missed=missed)
        # the last tick any master ran was three minutes ago (no master ran since)
        client.broker.conn.hset("tq:periodic", entry.name,
                                f'{{"last": {entry.latest(now) - 180}}}')
        s = Scheduler(lambda: tq.Client(client.broker.url))
        s.add([entry])
        assert s.run(now) == want
        assert s.run(now + 1) == 0            # the same tick is never enqueued twice
        assert s.run(now + 31) == 1           # the next one is
        s.close()
        assert client.stats()["by_type"][entry.type]["enqueued"] == want + 1
