"""How many tasks a child claims at once (tq.worker.prefetch), and when it sends its acks."""

from __future__ import annotations

import time

from tq.worker.prefetch import ACK_WINDOW, BUDGET, MAX_BATCH, Prefetch


def test_prefetch_is_one_for_slow_tasks_and_grows_for_fast_ones():
    p = Prefetch()
    assert p.size() == 1                   # nothing known yet: one at a time
    for _ in range(20):
        p.observe(0.5)
    assert p.size() == 1
    for _ in range(50):
        p.observe(0.00002)
    assert p.size() == MAX_BATCH
    assert Prefetch(fixed=7).size() == 7
    # tasks of a few ms: a batch of about BUDGET (10 ms) of work; 10 ms or more: one at a time
    p = Prefetch()
    for _ in range(50):
        p.observe(0.002)
    assert p.size() == int(BUDGET / 0.002)
    for _ in range(50):
        p.observe(BUDGET)
    assert p.size() == 1
    now = time.monotonic()
    assert Prefetch.flush_before_next(0.05, now)                        # after a slow task
    assert Prefetch.flush_before_next(0.0001, now - ACK_WINDOW - 0.001)  # acks waited too long
    assert not Prefetch.flush_before_next(0.0001, now - ACK_WINDOW / 2)
