"""Delayed tasks and retries start on time: idle children sleep exactly until the next one is
due (their blocking read on Redis times out then), and the master promotes due tasks too."""

from __future__ import annotations

import statistics
import time

import pytest
from master_proc import clients, eventually

from tq.supervisor.schedule import IDLE_RECHECK

pytestmark = [pytest.mark.slow,
              pytest.mark.cluster_too]   # each test: on a standalone Redis, then on a Cluster


def ready_latencies(client, n: int) -> list[float]:
    """How long this machine takes, now, to start a task that is ready at once: from before
    its enqueue to its handler's first line (the same path a due task takes once promoted)."""
    took = []
    for _ in range(n):
        at = time.time()
        took.append(client.wait(client.enqueue("stamp", {}), timeout=10) - at)
    return took


def test_delayed_tasks_start_at_their_due_time_as_promptly_as_ready_ones(masters, client):
    m = masters("-c", "2", "-A", "procapp")
    m.wait_ready(2)
    ready = ready_latencies(client, 5)
    late = []
    for delay in (0.3, 0.7, 1.1, 0.5, 0.9, 0.4, 0.8, 0.6):
        at = time.time()
        late.append((client.enqueue("stamp", {}, delay=delay), at + delay))
    lateness = [client.wait(tid, timeout=10) - due for tid, due in late]
    ready += ready_latencies(client, 5)
    # Never early: the delay counts from Redis' receipt of the enqueue, after `at`
    assert min(lateness) >= -0.005, lateness
    # As prompt as a ready task, measured in the same run on the same machine, so a loaded
    # machine slows both alike: the master's select() wakes at the due time and promotes, and
    # the child claims as it would a ready task. Medians, so one scheduling hiccup does not
    # decide; a wake-up on Redis' own timer (hz 10: 0-100 ms late) would add ~50 ms to the
    # median, which the 30 ms margin does not hide.
    assert statistics.median(lateness) <= statistics.median(ready) + 0.03, (lateness, ready)
    # and no task waits for the master's periodic look (IDLE_RECHECK)
    assert max(lateness) < IDLE_RECHECK / 2, lateness


def blocked(rconn, name: str) -> int:
    return sum(1 for c in clients(rconn) if c.get("name") == name and c.get("cmd") == "blpop"
               and "b" in c.get("flags", ""))


def test_a_delayed_task_enqueued_while_children_sleep_longer_is_not_late(masters, client,
                                                                          rconn, backend):
    # A child blocked until a far-away task is due must wake for an earlier one enqueued later.
    m = masters("-c", "1", "-A", "procapp")
    m.wait_ready(1)
    client.enqueue("stamp", {}, delay=30)
    # both asleep again: the child on its group's wake-up list, the master on the agenda's
    # soon list (one BLPOP each, on a cluster too: whatever the number of queues)
    eventually(lambda: blocked(rconn, "tq-worker") == 1 and blocked(rconn, "tq-master") == 1,
               what="the child and the master blocked on Redis")
    at = time.time()
    tid = client.enqueue("stamp", {}, delay=0.4)
    late = client.wait(tid, timeout=5) - (at + 0.4)
    # Had the new, earlier due time not woken them, the first to wake would be the master at
    # its periodic look, IDLE_RECHECK (1 s) after it blocked: 0.6 s or more after this due
    # time. Half of that gap tells the two apart with room for a loaded machine.
    assert late < (IDLE_RECHECK - 0.4) / 2, f"started {late:.3f}s after its due time"
