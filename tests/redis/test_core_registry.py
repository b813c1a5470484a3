"""The registry of masters and workers against a real Redis (7.x and 6.2): heartbeats,
expiry by Redis time, unregistering, and finding a dead worker's queues."""

from __future__ import annotations

import time

import pytest

from tq.store.keys import Keys

K = Keys("tq")


pytestmark = pytest.mark.cluster_too   # each test: on a standalone Redis, then on a Cluster


def redis_ms(rconn) -> int:
    sec, usec = rconn.time()
    return sec * 1000 + usec // 1000


def test_heartbeat_stamps_a_master_and_its_workers_with_redis_time(any_broker, any_rconn):
    before = redis_ms(any_rconn)
    now = any_broker.heartbeat("m1", {"host": "h", "pid": 1},
                               {"w1": {"queues": ["a"]}, "w2": {"queues": ["b", "c"]}})
    assert before <= now <= redis_ms(any_rconn)
    masters = any_broker.registry("masters")
    assert masters == [{"host": "h", "pid": 1, "id": "m1", "last_seen_ms": now}]
    workers = {w["id"]: w for w in any_broker.registry("workers")}
    assert workers["w2"] == {"queues": ["b", "c"], "id": "w2", "last_seen_ms": now}
    assert any_broker.queues_of("w2") == ["b", "c"]


def test_register_worker_alone(any_broker):
    any_broker.register_worker("w9", {"queues": ["x"], "pid": 9})
    assert [w["id"] for w in any_broker.registry("workers")] == ["w9"]
    assert any_broker.registry("masters") == []


def test_expired_is_decided_by_redis_time(any_broker, any_rconn, monkeypatch):
    any_broker.heartbeat("m-old", {}, {"w-old": {}})
    any_broker.heartbeat("m-new", {}, {"w-new": {}})
    now = redis_ms(any_rconn)
    any_rconn.zadd(K.masters, {"m-old": now - 10_000})
    any_rconn.zadd(K.workers, {"w-old": now - 10_000})
    # a host whose clock is a day off sees the same answer
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 86_400)
    redis_now, masters, workers = any_broker.expired(5)
    assert (masters, workers) == (["m-old"], ["w-old"])
    assert abs(redis_now - now) < 1000
    assert any_broker.expired(20)[1:] == ([], [])


def test_a_heartbeat_expires_after_its_ttl(any_broker):
    any_broker.heartbeat("m", {}, {"w": {}})
    assert any_broker.expired(0.05)[1:] == ([], [])
    deadline = time.monotonic() + 5
    while any_broker.expired(0.05)[1:] != (["m"], ["w"]):
        assert time.monotonic() < deadline
        time.sleep(0.005)
    any_broker.heartbeat("m", {}, {"w": {}})
    assert any_broker.expired(0.05)[1:] == ([], [])


def test_unregister(any_broker, any_rconn):
    any_broker.heartbeat("m", {"a": 1}, {"w1": {}, "w2": {}})
    any_broker.unregister_worker("w1")
    any_broker.unregister_master("m")
    assert [w["id"] for w in any_broker.registry("workers")] == ["w2"]
    assert any_broker.registry("masters") == []
    assert not any_rconn.exists(K.worker("w1"), K.master("m"))


def test_queues_of_falls_back_to_a_scan(any_client, any_broker, any_rconn):
    any_client.enqueue_many([("a", {}), ("b.x", {}), ("c", {})])
    any_broker.claim("w1", ["a", "b.x", "c"], 2)
    any_broker.register_worker("w1", {"queues": ["a", "b.x", "c"]})
    assert any_broker.queues_of("w1") == ["a", "b.x", "c"]
    any_rconn.set(K.worker("w1"), "not json")     # info lost or unreadable: scan the lists
    assert any_broker.queues_of("w1") == ["a", "b.x"]
    any_rconn.delete(K.worker("w1"))
    assert any_broker.queues_of("w1") == ["a", "b.x"]
    assert any_broker.queues_of("nobody") == []


def test_orphaned_workers_hold_tasks_without_a_registry_entry(any_client, any_broker):
    any_client.enqueue_many([("a", {})] * 3)
    any_broker.register_worker("alive", {"queues": ["a"]})
    for w in ("alive", "ghost1", "ghost2"):
        any_broker.claim(w, ["a"])
    assert any_broker.orphaned_workers() == {"ghost1", "ghost2"}
    any_broker.requeue_worker("ghost1")
    assert any_broker.orphaned_workers() == {"ghost2"}
