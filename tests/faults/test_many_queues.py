"""A thousand queues, children killed while they claim: nothing is lost, and no queue that holds
ready work is left out of its group's line longer than the sweep interval (tq.store.indexes)."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest
from faultkit import wait_all

from tq.store.groups import Group
from tq.supervisor.housekeeping import SWEEP_EVERY

QUEUES = [f"fq-{i:04d}" for i in range(1000)]


def out_of_line(client) -> set[str]:
    """Queues with ready work that no line of the group holds (on the private Redis, the only
    group is the master's)."""
    sizes = client.queue_sizes()
    ready = {q for q, s in sizes.items() if s["ready"] and not s["paused"] and q in QUEUES}
    line = {q for q, _ in client.broker.group_line(Group.of(["fq-*"]), 2000)}
    return ready - line


@pytest.mark.cluster_too
def test_a_thousand_queues_under_sigkills_lose_nothing_and_none_waits_unseen(
        masters, client, runs, table, backend):
    # Given a master on every queue of a pattern, and three short tasks in each of 1,000 queues
    m = masters("-c", "2", "-A", "faultapp", "-Q", "fq-*")
    m.wait_ready(2)
    ids = client.enqueue_many([{"type": "job", "queue": q, "payload": {"n": i, "s": 0.001}}
                               for q in QUEUES for i in range(3)])
    # When a child is SIGKILLed every 150 ms for 3 s, while the queues out of line are sampled
    first_seen: dict[str, float] = {}
    longest = 0.0
    stop = threading.Event()

    def sample() -> None:
        nonlocal longest
        while not stop.is_set():
            now = time.monotonic()
            seen = out_of_line(client)
            for q in list(first_seen):
                if q not in seen:
                    longest = max(longest, now - first_seen.pop(q))
            for q in seen:
                first_seen.setdefault(q, now)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    kills = 0
    end = time.monotonic() + 3
    while time.monotonic() < end:
        time.sleep(0.15)
        kids = m.child_pids()
        if kids:
            os.kill(random.choice(sorted(kids)), signal.SIGKILL)
            kills += 1
    # Then every task runs to the end, and no queue with work waited out of line longer than
    # the sweep interval (with a second's margin for the sampling and a loaded machine)
    states = wait_all(client, ids, 180)
    stop.set()
    sampler.join()
    now = time.monotonic()
    longest = max([longest, *(now - t for t in first_seen.values())])
    lost, dup = runs.lost_and_duplicated(ids)
    table((f"1,000 queues, {kills} SIGKILLs in 3 s during claims ({backend})",
           f"lost {len(lost)}, duplicated {len(dup)}; longest out of line {longest:.2f}s"))
    assert lost == [] and set(states.values()) == {"succeeded"}
    assert longest <= SWEEP_EVERY + 1.0
    # A kill replays at most the finished tasks of its child's batch whose ack had not left
    # (the crash-replay window: 20 ms of work or 64 tasks, README)
    assert len(dup) <= 64 * kills
