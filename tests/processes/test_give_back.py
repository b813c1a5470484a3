"""No task waits in a busy child while another child idles: the claimed tasks a child has not
started go back to their queue when the task in hand runs long (worker/giveback.py)."""

from __future__ import annotations

import time

import pytest
from master_proc import eventually

pytestmark = pytest.mark.slow


def succeeded(client, n: int) -> bool:
    return client.stats()["total"]["succeeded"] >= n


@pytest.mark.cluster_too
def test_short_tasks_claimed_behind_a_long_one_run_in_idle_children(masters, client):
    # Given three children that batch (thousands of sub-millisecond tasks taught them to)
    m = masters("-c", "3", "-A", "procapp")
    m.wait_ready(3)
    client.enqueue_many([{"type": "noop"}] * 3000)
    eventually(lambda: succeeded(client, 3000), timeout=60, what="the warm-up tasks")
    # When one 20 s task and seven 10 ms tasks arrive in one call (one child claims them all)
    start = time.monotonic()
    ids = client.enqueue_many([("work", {"s": 20.0})] + [("work", {"s": 0.01})] * 7)
    long_id, short = ids[0], ids[1:]
    # Then the seven finish while the long one still runs: handed back, run by idle children
    for tid in short:
        client.wait(tid, timeout=10)
    took = time.monotonic() - start
    assert client.get(long_id).state == "running"   # (it would have taken 20 s behind it)
    assert took < 10.0
