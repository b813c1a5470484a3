"""Regressions from the code review: each of these failed before its fix."""

from __future__ import annotations

import math

import pytest
from master_proc import eventually

import tq
from tq.config import load
from tq.errors import ConfigError, RedisUnavailable
from tq.handlers import HandlerSpec
from tq.store.broker import Broker
from tq.store.urls import redact
from tq.supervisor.pidfile import Pidfile
from tq.supervisor.recovery import Recovery, reap_of
from tq.worker.runner import backoff


def test_a_client_survives_more_reconnects_than_the_pools_cap(client):
    # redis-py caps a pool at 100 connections it made; the hot path must not count against it
    for _ in range(120):
        client.broker.link.close()
        client.enqueue("t", {})
    assert client.queue_sizes()["t"]["ready"] == 120


def test_a_refusal_such_as_oom_is_a_clear_tq_error_and_nothing_half_written(client, rconn):
    rconn.config_set("maxmemory", "1")
    try:
        with pytest.raises(RedisUnavailable, match="refused the command"):
            client.enqueue("t", {"x": 1})
        with pytest.raises(RedisUnavailable, match="refused"):
            client.broker.register_queues(["other"])
    finally:
        rconn.config_set("maxmemory", "0")
    assert rconn.hlen("tq:{t}:tasks") == 0
    assert client.enqueue("t", {"x": 1})


@pytest.mark.parametrize("kwargs", [
    {"unique_for": 1e16}, {"delay": math.inf}, {"delay": math.nan}, {"timeout": math.inf},
    {"eta": 1e300}, {"delay": 11 * 365 * 86400},
])
def test_absurd_durations_are_refused_before_anything_is_written(client, rconn, kwargs):
    with pytest.raises(ValueError):
        client.enqueue("t", {}, **kwargs)
    assert rconn.exists("tq:{t}:tasks") == 0


@pytest.mark.parametrize("flags", [{"heartbeat_ttl": "inf"}, {"result_ttl": "nan"},
                                   {"drain_timeout": "inf"}, {"max_memory_per_child": "inf"}])
def test_settings_must_be_finite(flags):
    with pytest.raises(ConfigError, match="finite"):
        load(flags, env={})


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path):
    f = tmp_path / "tq.toml"
    f.write_bytes(b"# caf\xe9\nconcurrency = 2\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load({}, config_file=str(f), env={})


@pytest.mark.parametrize("delay", [math.nan, math.inf, -1, "60", True])
def test_retry_delay_must_be_a_finite_number(delay):
    with pytest.raises(ValueError, match="finite number"):
        tq.Retry(delay=delay)
    assert tq.Retry(delay=0).delay == 0


@pytest.mark.parametrize("bad", [lambda n: math.nan, lambda n: -5, lambda n: "soon",
                                 lambda n: 1 / 0])
def test_a_handlers_broken_backoff_falls_back_to_the_default(bad):
    spec = HandlerSpec("t", lambda p, c: None, "t", backoff=bad)
    assert 0 < backoff(spec, 1) < 10


@pytest.mark.parametrize("url,secret", [
    ("redis://u:p#w@host:6379/0", "p#w"), ("redis://:s/ec?ret@host/0", "s/ec?ret"),
    ("rediss://user:pa@ss@host:6380", "pa@ss"), ("redis://host/0?password=hunter2", "hunter2"),
])
def test_passwords_never_survive_redaction(url, secret):
    assert secret not in redact(url) and "***" in redact(url)


def test_a_pidfile_that_cannot_be_written_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot write pidfile"):
        Pidfile("/proc/nope/tq.pid").create()


def test_a_dead_hosts_running_task_is_charged_not_the_first_claimed(client, redis_url):
    # Given a worker on another host with a finished-but-unacked task ahead of the running one
    b = Broker(redis_url)
    first, running = client.enqueue("t", {"n": 1}), client.enqueue("t", {"n": 2})
    info = {"id": "far.1.x-1", "host": "far", "pid": 1, "queues": ["t"], "state": "busy",
            "task": running}
    b.register_worker("far.1.x-1", info)
    assert [t.id for t in b.claim("far.1.x-1", ["t"], 2).tasks] == [first, running]
    # When its heartbeat has expired and a master reaps it
    eventually(lambda: "far.1.x-1" in b.expired(0.01)[2], what="the heartbeat to expire")
    Recovery(b, "here", set()).expired(0.01)
    # Then the task its master last saw running counts the attempt, the other does not
    assert client.get(running).attempts == 1 and client.get(running).error_kind == "died"
    assert client.get(first).attempts == 0 and client.get(first).state == "queued"
    b.close()


def test_reap_of_an_idle_worker_charges_nothing_and_without_a_record_the_head():
    assert reap_of({"id": "w", "state": "idle", "queues": ["q"]}, "r").count_head is False
    r = reap_of({"id": "w", "state": "starting"}, "r")
    assert r.count_head and r.running is None and r.queues is None
