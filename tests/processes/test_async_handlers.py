"""`async def` handlers run on an event loop in the child: results, retries, permanent errors,
and a soft time limit that cancels the coroutine (its finally blocks run)."""

from __future__ import annotations

import asyncio
import json

import pytest
from master_proc import eventually

import tq
from tq.handlers import REGISTRY
from tq.store.broker import Ack, Broker
from tq.task import Task
from tq.worker.runner import Failure, Runner

cleaned: list[str] = []


@pytest.fixture(autouse=True)
def handlers():
    @tq.handler("a-ok")
    async def ok(payload, ctx):
        await asyncio.sleep(0.01)
        return {"got": payload["n"], "attempt": ctx.attempt}

    @tq.handler("a-retry")
    async def again(payload, ctx):
        await asyncio.sleep(0)
        raise tq.Retry("not yet", delay=5)

    @tq.handler("a-perm")
    async def perm(payload, ctx):
        raise tq.PermanentError("no such user")

    @tq.handler("a-slow", timeout=0.2)
    async def slow(payload, ctx):
        try:
            await asyncio.sleep(10)
        finally:
            cleaned.append(ctx.task_id)

    class Fetch(tq.Handler):
        type = "a-class"

        async def handle(self, payload, ctx):
            return "class"

    yield
    for name in ("a-ok", "a-retry", "a-perm", "a-slow", "a-class"):
        REGISTRY.pop(name, None)


def run(ttype: str, payload: dict | None = None):
    runner = Runner(Broker.__new__(Broker), "w-async")
    task = Task.from_body("P7rAAAAAAAAAAAAA", ttype, json.dumps({"p": payload or {}}))
    return runner.run(task, lambda *a: None)


def test_an_async_handler_returns_its_result():
    out, elapsed = run("a-ok", {"n": 7})
    assert isinstance(out, Ack) and elapsed >= 0.01
    assert json.loads(out.record)["r"] == {"got": 7, "attempt": 1}
    out, _ = run("a-class")
    assert isinstance(out, Ack) and json.loads(out.record)["r"] == "class"


def test_retry_and_permanent_errors_raised_by_a_coroutine():
    out, _ = run("a-retry")
    assert isinstance(out, Failure) and (out.kind, out.retry, out.delay) == ("retry", True, 5)
    out, _ = run("a-perm")
    assert isinstance(out, Failure) and (out.kind, out.retry) == ("permanent", False)


def test_the_soft_time_limit_cancels_the_coroutine():
    cleaned.clear()
    out, elapsed = run("a-slow")
    assert isinstance(out, Failure) and out.kind == "timeout" and out.retry
    assert 0.15 <= elapsed < 2.0
    assert cleaned == ["P7rAAAAAAAAAAAAA"]   # cancelled: its finally ran
    # the loop is still usable for the next task
    out, _ = run("a-ok", {"n": 1})
    assert isinstance(out, Ack)


def test_async_handlers_under_a_real_master(client, masters):
    m = masters("-c", "1", "-A", "asyncapp")
    m.wait_ready(1)
    ids = [client.enqueue("fetch", {"url": f"https://example.com/{i}"}) for i in range(5)]
    results = [client.wait(i, timeout=10) for i in ids]
    assert [r["url"] for r in results] == [f"https://example.com/{i}" for i in range(5)]
    assert {r["pid"] for r in results} <= m.child_pids()
    assert "coroutine" not in m.log() and "never awaited" not in m.log()


def test_progress_is_visible_and_cheap_in_a_tight_loop(client, masters, redis_server):
    from click.testing import CliRunner

    from tq.cli import cli

    m = masters("-c", "1", "-A", "asyncapp")
    m.wait_ready(1)
    conn = redis_server.client()
    conn.config_resetstat()
    tid = client.enqueue("resize", {})
    info = eventually(lambda: (lambda i: i if i.progress else None)(client.get(tid)),
                      what="its progress")
    assert info.state == "running" and 0 <= info.progress["fraction"] <= 0.4
    # 100,000 calls in the loop, a handful of writes
    sets = conn.info("commandstats").get("cmdstat_set", {}).get("calls", 0)
    assert sets <= 5, sets
    text = CliRunner().invoke(cli, ["get", tid], env={"TQ_REDIS_URL": client.broker.url})
    assert "progress" in text.output and "%" in text.output
    from tq.worker.runner import TaskContext

    with pytest.raises(ValueError, match="from 0 to 1"):
        TaskContext.progress(TaskContext.__new__(TaskContext), 1.5)
    conn.rpush("test:go-on", "1")
    assert client.wait(tid, timeout=10) == "done"


def most_at_once(results: list[dict]) -> int:
    """The largest number of tasks that were running at the same instant (t0..t1 each)."""
    edges = sorted([(r["t0"], 1) for r in results] + [(r["t1"], -1) for r in results])
    running = most = 0
    for _, step in edges:   # at a tie an end (-1) sorts first: touching is not overlapping
        running += step
        most = max(most, running)
    return most


def test_many_async_tasks_at_once_in_one_child(client, masters):
    # Given one child that runs up to 100 coroutines at once
    m = masters("-c", "1", "-A", "asyncapp", "--queues", "nap,doze",
                "--async-concurrency", "100")
    m.wait_ready(1)
    # When 100 tasks that each sleep 0.1 s are enqueued
    ids = client.enqueue_many([("nap", {"s": 0.1}) for _ in range(100)])
    results = [client.wait(i, timeout=10) for i in ids]
    # Then they ran side by side in that child. Counted from the tasks' own start and end
    # times (the child's clock), not from the wall time they took, so a loaded machine, which
    # stretches every sleep, cannot fail it: one at a time would never overlap, a pool
    # smaller than asked would cap the overlap at its size
    assert len({r["pid"] for r in results}) == 1
    assert most_at_once(results) >= 50, most_at_once(results)
    # A time limit cancels its own coroutine only
    slow = client.enqueue("nap", {"s": 5}, max_retries=0)
    quick = client.enqueue("nap", {"s": 0.05})
    assert client.wait(quick, timeout=5)["t1"] > 0
    with pytest.raises(tq.TaskFailed, match="soft time limit"):
        client.wait(slow, timeout=10)
    # and cancelling one of them (the child's own look, or the master's signal for the task
    # its slot shows) cancels that coroutine, no attempt counted
    first, second = client.enqueue("doze", {}), client.enqueue("doze", {})
    eventually(lambda: client.get(second).state == "running", what="both to run")
    assert client.cancel(second) == "cancelling"
    with pytest.raises(tq.TaskCancelled):
        client.wait(second, timeout=5)
    assert client.get(first).state == "running"
    assert client.cancel(first) == "cancelling"
    with pytest.raises(tq.TaskCancelled):
        client.wait(first, timeout=5)
    assert client.stats()["by_type"]["doze"]["failed"] == 0
