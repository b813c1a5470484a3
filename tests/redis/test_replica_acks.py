"""replica_acks: a write returns only once a replica has it (WAIT), so a failover keeps it."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest
from redis_server import RedisServer

import tq


@pytest.fixture
def primary_and_replica(tmp_path):
    primary = RedisServer(tmp_path / "primary", extra=["--maxmemory-policy", "noeviction",
                                                      "--repl-diskless-sync-delay", "0"])
    primary.start()
    replica = RedisServer(tmp_path / "replica",
                          extra=["--replicaof", "127.0.0.1", str(primary.port)])
    replica.start()
    deadline = time.monotonic() + 10
    while replica.client().info("replication").get("master_link_status") != "up":
        assert time.monotonic() < deadline, "the replica did not connect"
        time.sleep(0.02)
    yield primary, replica
    replica.stop()
    primary.stop()


def test_an_enqueue_returns_once_the_replica_has_the_task(primary_and_replica):
    primary, replica = primary_and_replica
    r = replica.client()
    # Given a replica that lags (stopped for 0.4 s)
    os.kill(replica.proc.pid, signal.SIGSTOP)
    threading.Timer(0.4, os.kill, (replica.proc.pid, signal.SIGCONT)).start()
    # When a producer with replica_acks=1 enqueues, it returns only once the replica has it
    with tq.Client(primary.url, replica_acks=1) as client:
        t0 = time.monotonic()
        tid = client.enqueue("email", {"to": "a@example.com"})
        assert time.monotonic() - t0 >= 0.3
        assert r.hexists("tq:{email}:tasks", tid)   # read at once: no polling
    # while without it, the same enqueue does not wait for a lagging replica
    os.kill(replica.proc.pid, signal.SIGSTOP)
    try:
        with tq.Client(primary.url, replica_acks=0) as client:
            t0 = time.monotonic()
            client.enqueue("email", {"to": "b@example.com"})
            assert time.monotonic() - t0 < 0.3
    finally:
        os.kill(replica.proc.pid, signal.SIGCONT)


def test_a_missing_replica_costs_the_timeout_and_a_warning_not_the_task(primary_and_replica,
                                                                       caplog):
    primary, replica = primary_and_replica
    replica.stop()
    with tq.Client(primary.url, replica_acks=1) as client, \
            caplog.at_level(logging.WARNING, logger="tq.store.broker"):
        client.broker.replica_timeout_ms = 200
        t0 = time.monotonic()
        tid = client.enqueue("email", {})
        assert 0.15 < time.monotonic() - t0 < 5
        assert client.get(tid).state == "queued"
    assert "only 0 of 1 replica(s) acknowledged a write within 200 ms" in caplog.text


def test_a_master_with_replica_acks_waits_after_its_ack_batches(primary_and_replica, masters):
    primary, _ = primary_and_replica
    with tq.Client(primary.url) as client:
        m = masters("-c", "2", "-A", "procapp", "--queues", "ra", "--replica-acks", "1",
                    url=primary.url)
        m.wait_ready(2)
        ids = client.enqueue_many([{"type": "pid", "queue": "ra", "payload": {}}] * 100)
        for i in ids:
            client.wait(i, timeout=15)
    waits = primary.client().info("commandstats").get("cmdstat_wait", {}).get("calls", 0)
    assert waits >= 1
