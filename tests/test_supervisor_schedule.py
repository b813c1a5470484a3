"""Delayed tasks and retries start on time: idle children sleep exactly until the next one is
due (their blocking read on Redis times out then), and the master promotes due tasks too."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.slow


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


def test_a_delayed_task_enqueued_while_children_sleep_longer_is_not_late(masters, client):
    # A child blocked until a far-away task is due must wake for an earlier one enqueued later.
    m = masters("-c", "1", "-A", "procapp")
    m.wait_ready(1)
    client.enqueue("stamp", {}, delay=30)
    time.sleep(0.2)   # let the child go back to sleep until that one
    at = time.time()
    tid = client.enqueue("stamp", {}, delay=0.4)
    assert client.wait(tid, timeout=5) - (at + 0.4) < 0.05
