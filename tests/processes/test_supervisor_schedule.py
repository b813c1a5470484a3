"""Delayed tasks and retries start on time: idle children sleep exactly until the next one is
due (their blocking read on Redis times out then), and the master promotes due tasks too."""

from __future__ import annotations

import time

import pytest
from master_proc import clients, eventually

pytestmark = [pytest.mark.slow,
              pytest.mark.cluster_too]   # each test: on a standalone Redis, then on a Cluster


def test_delayed_tasks_start_within_50ms_of_their_due_time(masters, client):
    m = masters("-c", "2", "-A", "procapp")
    m.wait_ready(2)
    late = []
    for delay in (0.3, 0.7, 1.1, 0.5):
        at = time.time()
        tid = client.enqueue("stamp", {}, delay=delay)
        late.append((tid, at + delay))
    for tid, due in late:
        started = client.wait(tid, timeout=10)
        assert -0.005 <= started - due < 0.05, f"started {started - due:+.3f}s from its due time"


def blocked(rconn, name: str) -> int:
    return sum(1 for c in clients(rconn) if c.get("name") == name and c.get("cmd") == "blpop"
               and "b" in c.get("flags", ""))


def test_a_delayed_task_enqueued_while_children_sleep_longer_is_not_late(masters, client,
                                                                          rconn, backend):
    # A child blocked until a far-away task is due must wake for an earlier one enqueued later.
    m = masters("-c", "1", "-A", "procapp")
    m.wait_ready(1)
    client.enqueue("stamp", {}, delay=30)
    # both asleep again: the child on its wake-up list, the master on its soon lists (in one
    # BLPOP each; on a cluster, where each queue's lists live in their own slot, one per queue)
    (worker,) = client.broker.registry("workers")
    n = 1 if backend == "standalone" else len(worker["queues"])
    eventually(lambda: blocked(rconn, "tq-worker") == n and blocked(rconn, "tq-master") == n,
               what="the child and the master blocked on Redis")
    at = time.time()
    tid = client.enqueue("stamp", {}, delay=0.4)
    assert client.wait(tid, timeout=5) - (at + 0.4) < 0.05
