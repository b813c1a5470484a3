"""The Redis boundary: an unreachable or restarted server, and the eviction-policy check."""

from __future__ import annotations

import pytest
from redis_server import RedisServer, free_port

import tq
from tq.errors import EvictionPolicyError, RedisUnavailable
from tq.store.broker import Broker
from tq.store.urls import redact


def test_unreachable_redis_names_the_url_without_its_password():
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    with tq.Client(url) as c:
        for call in (lambda: c.enqueue("t", {}), lambda: c.get("x"), c.stats):
            with pytest.raises(RedisUnavailable) as err:
                call()
            assert "s3cret" not in str(err.value) and "***" in str(err.value)
            assert err.value.url == redact(url)
    b = Broker(url)
    with pytest.raises(RedisUnavailable, match=r"redis://\*\*\*@127\.0\.0\.1"):
        b.fetch("w", ["t"], 1, block_seconds=0.1)
    with pytest.raises(ConnectionError):   # RedisUnavailable is a ConnectionError too
        b.ping()


def test_a_bad_url_is_reported_the_same_way():
    with pytest.raises(RedisUnavailable, match="invalid URL"):
        tq.Client("nosuchscheme://:pw@host/0")


@pytest.mark.slow
def test_the_client_reconnects_after_a_redis_restart(tmp_path):
    server = RedisServer(tmp_path / "r").start()
    try:
        with tq.Client(server.url) as c:
            c.enqueue("t", {})
            # Given Redis restarted (empty: no persistence) while the client was idle
            server.stop()
            server.start()
            # Then the client carries on without an error: scripts reloaded, queue known again
            tid = c.enqueue("t", {"after": "restart"})
            assert c.get(tid).payload == {"after": "restart"}
            assert c.queues() == ["t"]
            assert c.stats()["total"]["enqueued"] == 1
            # And while Redis is down it says so, then works again once Redis is back
            server.stop()
            with pytest.raises(RedisUnavailable):
                c.enqueue("t", {})
            server.start()
            assert c.get(c.enqueue("t", {})).state == "queued"
            assert c.queue_sizes()["t"]["ready"] == 1   # (the restart lost the earlier one)
    finally:
        server.stop()


def test_an_evicting_redis_is_refused_unless_allowed(any_redis_url, any_rconn):
    b = Broker(any_redis_url)
    assert b.check_eviction_policy() == "noeviction"
    any_rconn.config_set("maxmemory-policy", "allkeys-lru")
    with pytest.raises(EvictionPolicyError, match="maxmemory-policy=allkeys-lru") as err:
        b.check_eviction_policy()
    assert any_redis_url in str(err.value) and "noeviction" in str(err.value)
    assert b.check_eviction_policy(allow=True) == "allkeys-lru"
    b.close()


@pytest.mark.slow
def test_the_policy_is_read_from_info_where_config_is_disabled(tmp_path):
    server = RedisServer(tmp_path / "r", extra=["--rename-command", "CONFIG", "",
                                                "--maxmemory-policy", "volatile-lru"]).start()
    try:
        b = Broker(server.url)
        with pytest.raises(EvictionPolicyError, match="volatile-lru"):
            b.check_eviction_policy()
        b.close()
    finally:
        server.stop()


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
