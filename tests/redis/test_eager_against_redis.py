"""The eager client answers as tq.Client does against Redis: one scenario run twice — on a real
Redis with the in-process Worker running the tasks, and eagerly — must see the same things."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import tq
from tq.handlers import REGISTRY
from tq.testing import EagerClient, Worker

runs: list[Any] = []


@pytest.fixture(autouse=True)
def handlers():
    @tq.handler("e-sync")
    def sync(payload, ctx):
        runs.append(payload)
        return payload.get("n")

    @tq.handler("e-fail", max_retries=0)
    def fail(payload, ctx):
        raise ValueError("no")

    @tq.handler("e-limited", rate_limit="10/s")
    def limited(payload, ctx):
        return None

    yield
    for name in ("e-sync", "e-fail", "e-limited"):
        REGISTRY.pop(name, None)


def scenario(c: Any, work: Callable[[], None]) -> list[Any]:
    """What a test of application code would look at; `work` runs what is ready."""
    runs.clear()
    seen: list[Any] = []
    first = c.enqueue("e-sync", {"user": 7, "n": 1}, unique_for=60)
    seen.append(c.enqueue("e-sync", {"n": 1, "user": 7}, unique_for=60) == first)
    work()
    seen += [c.wait(first, timeout=5), len(runs), c.cancel(first), c.cancel("P8AAAAAAAAAAAAAA")]
    c.pause("e-sync")
    held = [c.enqueue("e-sync", {"n": n}, priority=p) for n, p in ((2, 0), (3, 9), (4, 0))]
    work()
    sizes = c.queue_sizes()["e-sync"]
    seen += [sizes["ready"], sizes["by_priority"], sizes["paused"], c.get(held[0]).state,
             c.limits("e-sync")["e-sync"]["paused"], c.cancel(held[2])]
    with pytest.raises(tq.TaskCancelled):
        c.wait(held[2], timeout=0.1)
    c.resume("e-sync")
    work()
    seen += [[c.wait(t, timeout=5) for t in held[:2]], [r["n"] for r in runs[1:]]]
    c.pause("e-sync")
    c.enqueue("e-sync", {"n": 5})
    seen += [c.purge("e-sync"), c.queue_sizes()["e-sync"]["ready"]]
    c.resume("e-sync")
    dead = [c.enqueue("e-fail", {"i": i}) for i in range(3)]
    work()
    seen += [sorted(t.id for t in c.dead(queue="e-fail")) == sorted(dead),   # (same ms: by id)
             c.queue_sizes()["e-fail"]["dead"], c.get(dead[0]).error_kind]
    seen.append(c.retry_dead([dead[0]], queue="e-fail"))
    work()
    seen += [c.get(dead[0]).state, c.delete_dead([dead[1]], queue="e-fail")]
    with pytest.raises(tq.TaskNotFound):
        c.get(dead[1])
    seen.append(c.delete_dead("all", queue="e-fail"))
    c.enqueue("e-limited", {})
    work()
    eff = c.set_limit("e-limited", concurrency=2)
    types = c.limits("e-limited")["e-limited"]["types"]
    seen += [eff.describe(), types["e-limited"]["override"], types["e-limited"]["declared"],
             c.clear_limit("e-limited").describe()]
    totals = c.stats()["by_type"]
    seen += [{t: (v["enqueued"], v["succeeded"], v["dead"]) for t, v in totals.items()}]
    seen.append(sorted(c.delete_queue("e-fail")))
    return seen


def test_the_same_calls_see_the_same_things(client: tq.Client):
    worker = Worker(client, ["e-sync", "e-fail", "e-limited"])
    # (as a master's child declares its handlers' limits when it starts)
    worker.broker.declare_limits({"e-limited": {"e-limited": REGISTRY["e-limited"].limits}})
    try:
        against_redis = scenario(client, worker.run_until_empty)
    finally:
        worker.close()
    eagerly = scenario(EagerClient(), lambda: None)
    assert eagerly == against_redis
