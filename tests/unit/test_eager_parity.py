"""The eager client (tq.testing) mirrors tq.Client: every public method, with the same
parameters, answering as Redis would for what ran in-process (the same calls against a real
Redis: tests/redis/test_eager_against_redis.py)."""

from __future__ import annotations

import inspect

import pytest

import tq
from tq.handlers import REGISTRY
from tq.testing import EagerClient, run_eagerly

runs: list[dict] = []


def public_methods(cls: type) -> list[str]:
    return sorted(n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n)))


def test_every_public_method_of_the_client_is_there_with_its_parameters():
    missing = [n for n in public_methods(tq.Client) if not hasattr(EagerClient, n)]
    assert missing == []
    for name in public_methods(tq.Client):
        real = inspect.signature(getattr(tq.Client, name)).parameters.values()
        eager = inspect.signature(getattr(EagerClient, name)).parameters.values()
        assert [(p.name, p.kind, p.default) for p in eager] == \
            [(p.name, p.kind, p.default) for p in real], name


@pytest.fixture(autouse=True)
def handlers():
    runs.clear()

    @tq.handler("p-sync")
    def sync(payload, ctx):
        runs.append(payload)
        return payload.get("n")

    @tq.handler("p-fail", max_retries=0)
    def fail(payload, ctx):
        runs.append(payload)
        if payload.get("fail"):
            raise ValueError("no")
        return "ok"

    @tq.handler("p-limited", rate_limit="10/s")
    def limited(payload, ctx):
        return None

    @tq.handler("p-self-cancel")
    def self_cancel(payload, ctx):
        assert tq.Client().cancel(ctx.task_id) == "cancelling" and ctx.cancelled
        return "ignored"

    yield
    for name in ("p-sync", "p-fail", "p-limited", "p-self-cancel"):
        REGISTRY.pop(name, None)


def test_a_repeated_unique_enqueue_gets_the_first_id_and_runs_once():
    with run_eagerly():
        c = tq.Client()
        first = c.enqueue("p-sync", {"user": 7, "n": 1}, unique_for=60)
        assert c.enqueue("p-sync", {"n": 1, "user": 7}, unique_for=60) == first  # key order
        assert c.enqueue("p-sync", {"user": 8, "n": 1}, unique_for=60) != first
        keyed = c.enqueue("p-sync", {"n": 2}, unique_for=60, unique_key="sync:7")
        assert c.enqueue("p-sync", {"n": 3}, unique_for=60, unique_key="sync:7") == keyed
        assert len(runs) == 3
        with pytest.raises(ValueError, match="unique_key needs unique_for"):
            c.enqueue("p-sync", {}, unique_key="k")
        with pytest.raises(ValueError, match="unique_for"):
            c.enqueue("p-sync", {}, unique_for=0)


def test_a_paused_queue_holds_its_tasks_until_resumed():
    with run_eagerly():
        c = tq.Client()
        c.enqueue("p-sync", {"n": 0})
        with pytest.raises(ValueError, match="unknown queue"):
            c.pause("nosuch")
        c.pause("p-sync")
        low, high = c.enqueue("p-sync", {"n": 1}), c.enqueue("p-sync", {"n": 2}, priority=9)
        assert c.get(low).state == "queued" and runs == [{"n": 0}]
        sizes = c.queue_sizes()["p-sync"]
        assert (sizes["ready"], sizes["by_priority"], sizes["paused"]) == (2, {0: 1, 9: 1}, True)
        with pytest.raises(tq.WaitTimeout):
            c.wait(low, timeout=1)
        assert c.limits("p-sync")["p-sync"]["paused"]
        c.resume("p-sync")
        assert runs == [{"n": 0}, {"n": 2}, {"n": 1}]   # higher priority first
        assert c.wait(low) == 1 and c.wait(high) == 2 and not c.queue_sizes()["p-sync"]["paused"]


def test_cancel_purge_and_delete_queue():
    with run_eagerly():
        c = tq.Client()
        done = c.enqueue("p-sync", {"n": 1})
        c.pause("p-sync")
        waiting = [c.enqueue("p-sync", {"n": i}) for i in range(3)]
        assert [c.cancel(done), c.cancel(waiting[0]), c.cancel("nosuch")] == \
            ["finished", "cancelled", "unknown"]
        with pytest.raises(tq.TaskCancelled):
            c.wait(waiting[0])
        assert c.purge("p-sync") == 2
        with pytest.raises(tq.TaskNotFound):
            c.get(waiting[1])
        assert c.cancel(c.enqueue("p-self-cancel", {})) == "finished"
        assert c.dead() == [] and c.stats()["by_type"]["p-self-cancel"]["succeeded"] == 0
        report = c.delete_queue("p-sync")
        assert report["deleted"] and "p-sync" not in c.queues()


def test_a_task_cancelled_while_it_runs_ends_cancelled():
    with run_eagerly() as store:
        tid = tq.Client().enqueue("p-self-cancel", {})
        assert store.by_id[tid].state == "cancelled" and store.by_id[tid].result is None


def test_workflows_wait_for_a_paused_queue_and_cancel():
    with run_eagerly():
        c = tq.Client()
        c.enqueue("p-fail", {}, queue="hold")
        c.pause("hold")
        wf = c.workflow(tq.chain(tq.step("p-fail", {"a": 1}, queue="hold"),
                                 tq.step("p-sync", {"n": 5})))
        first, last = wf.tasks.values()
        assert (c.get(first).state, c.get(last).state) == ("queued", "waiting")
        c.resume("hold")
        assert c.get_workflow(wf.id).state == "succeeded" and c.wait(last) == 5
        c.pause("hold")
        stuck = c.workflow(tq.chain(tq.step("p-fail", {}, queue="hold"),
                                    tq.step("p-sync", {})))
        assert c.cancel_workflow(stuck.id) == {"cancelled": 2}
        assert c.get_workflow(stuck.id).state == "cancelled"
        with pytest.raises(tq.TaskNotFound):
            c.cancel_workflow("nosuch")


def test_dead_letters_are_listed_retried_and_deleted():
    with run_eagerly():
        c = tq.Client()
        dead = [c.enqueue("p-fail", {"fail": True, "i": i}) for i in range(3)]
        assert sorted(t.id for t in c.dead()) == sorted(dead)   # newest first, by ms
        assert c.queue_sizes()["p-fail"]["dead"] == 3
        assert c.stats()["by_type"]["p-fail"]["dead"] == 3
        assert c.retry_dead([dead[0]], queue="p-fail") == 1 and len(runs) == 4
        assert c.delete_dead([dead[1]]) == 1
        with pytest.raises(tq.TaskNotFound):
            c.get(dead[1])
        assert c.delete_dead("all") == 2 and c.dead() == []
        with pytest.raises(ValueError):
            c.retry_dead("some")


def test_limits_and_what_eager_mode_never_holds():
    with run_eagerly():
        c = tq.Client()
        c.enqueue("p-limited", {})
        eff = c.set_limit("p-limited", concurrency=2)
        assert (str(eff.rate), eff.concurrency) == ("10/s", 2)   # the handler's rate kept
        types = c.limits()["p-limited"]["types"]
        assert types["p-limited"]["override"] == {"c": 2}
        assert c.clear_limit("p-limited").concurrency is None
        with pytest.raises(ValueError):
            c.set_limit("p-limited")
        later = c.enqueue("p-sync", {"n": 1}, delay=60)   # delays are not waited for
        assert c.run_now([later], "p-sync") == 0 and c.delete_scheduled([later], "p-sync") == 0
        assert c.rotate_keys() == dict.fromkeys(c.queues(), 0)
        assert c.repair_queue("p-sync").moved == {}
