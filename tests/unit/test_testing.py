"""tq.testing: the eager mode (no Redis, no master) keeps the queue's rules; the in-process
Worker runs tasks against a real Redis with the worker's own code."""

from __future__ import annotations

import pytest

import tq
from tq.handlers import REGISTRY
from tq.testing import (
    EagerClient,
    Worker,
    run_eagerly,
    tq_eager,  # noqa: F401 - the fixture, as a conftest.py would import it
)

calls: list[int] = []


@pytest.fixture(autouse=True)
def handlers():
    calls.clear()

    @tq.handler("t-flaky", max_retries=3)
    def flaky(payload, ctx):
        calls.append(ctx.attempt)
        if ctx.attempt < 3:
            raise tq.Retry("not yet", delay=60)
        payload["seen"] = True   # a copy: the stored payload is not changed
        return {"to": payload["to"], "attempt": ctx.attempt}

    @tq.handler("t-perm", max_retries=5)
    def perm(payload, ctx):
        raise tq.PermanentError("no such user")

    @tq.handler("t-set")
    def bad_result(payload, ctx):
        return {1, 2}

    @tq.handler("t-boom", max_retries=1)
    def boom(payload, ctx):
        raise ValueError("boom")

    @tq.handler("t-signup")
    def signup(payload, ctx):
        return {"welcome": ctx.enqueue("t-flaky", {"to": payload["email"]})}

    @tq.handler("t-async")
    async def later(payload, ctx):
        return payload["n"] * 2

    yield
    for name in ("t-flaky", "t-perm", "t-set", "t-boom", "t-signup", "t-async"):
        REGISTRY.pop(name, None)


def code_under_test(email: str) -> str:
    """What an application does: a plain tq.Client()."""
    with tq.Client() as client:
        return client.enqueue("t-signup", {"email": email})


def test_eager_runs_with_the_queues_rules_and_no_redis(monkeypatch):
    monkeypatch.setenv("TQ_REDIS_URL", "redis://127.0.0.1:1/0")   # nothing listens there
    with run_eagerly() as eager:
        tid = code_under_test("carol@example.com")
        client = tq.Client()
        assert isinstance(client, EagerClient)
        assert client.get(tid).state == "succeeded"
        welcome = client.get(tid).result["welcome"]
        # Retry twice, then success: three attempts, the two errors in its history
        info = client.get(welcome)
        assert (info.state, info.attempts, calls) == ("succeeded", 3, [1, 2, 3])
        assert [h["kind"] for h in info.history] == ["retry", "retry"]
        assert client.wait(welcome) == {"to": "carol@example.com", "attempt": 3}
        assert info.payload == {"to": "carol@example.com"}   # the handler changed a copy
        # what the real queue refuses or buries, eager refuses or buries the same way
        with pytest.raises(tq.PayloadError):
            client.enqueue("t-flaky", {"when": object()})
        with pytest.raises(ValueError):
            client.enqueue("bad name!", {})
        dead = {t: client.get(client.enqueue(t, {})) for t in ("t-perm", "t-set", "t-boom",
                                                              "t-none")}
        assert (dead["t-perm"].error_kind, dead["t-perm"].attempts) == ("permanent", 1)
        assert "not JSON-serialisable" in dead["t-set"].error
        assert (dead["t-boom"].error, dead["t-boom"].attempts) == ("ValueError: boom", 2)
        assert dead["t-none"].error_kind == "unknown_type"
        with pytest.raises(tq.TaskFailed):
            client.wait(dead["t-boom"].id)
        assert client.wait(client.enqueue("t-async", {"n": 21})) == 42
        assert [t.type for t in eager.tasks][:2] == ["t-signup", "t-flaky"]
    assert tq.Client is not EagerClient   # restored


def test_the_pytest_fixture(tq_eager):  # noqa: F811
    tid = code_under_test("dave@example.com")
    assert tq_eager.by_id[tid].state == "succeeded"
    assert len(tq_eager.of_type("t-flaky")) == 1


def test_the_in_process_worker_against_a_real_redis(client):
    ids = [client.enqueue("t-flaky", {"to": f"u{i}@example.com"}) for i in range(3)]
    boom = client.enqueue("t-boom", {})
    worker = Worker(client, queues=["t-flaky", "t-boom"])
    try:
        # first pass: each flaky task asks for a retry in 60 s (scheduled, not waited for)
        assert worker.run_until_empty() == 4
        assert {client.get(i).state for i in ids} == {"failed-will-retry"}
        assert client.run_now(ids, "t-flaky") == 3
        client.run_now([boom], "t-boom")
        worker.run_until_empty()
        client.run_now(ids, "t-flaky")
        worker.run_until_empty()
    finally:
        worker.close()
    assert [client.wait(i, timeout=5)["attempt"] for i in ids] == [3, 3, 3]
    assert client.get(boom).state == "dead" and client.get(boom).attempts == 2


def test_eager_workflows_pass_results_and_follow_the_policy():
    @tq.handler("t-sum")
    def total(payload, ctx):
        return sum(x for x in ctx.inputs if x is not None) + payload.get("n", 0)

    try:
        with run_eagerly() as eager:
            client = tq.Client()
            chord = client.workflow(tq.chord([tq.step("t-async", {"n": i}) for i in range(5)],
                                             tq.step("t-sum")))
            assert client.wait(chord.last) == 20
            assert client.get_workflow(chord.id).state == "succeeded"
            chain = client.workflow(tq.chain(tq.step("t-sum", {"n": 1}), tq.step("t-sum"),
                                             tq.step("t-sum", {"n": 10})))
            assert [client.get(t).result for t in chain.tasks.values()] == [1, 1, 11]
            # "stop": the member after a dead one is dead too, with the cause
            stop = client.workflow(tq.chain(tq.step("t-perm"), tq.step("t-sum")))
            assert eager.by_id[stop.last].error_kind == "upstream_dead"
            assert client.get_workflow(stop.id).state == "failed"
            # "continue": it runs, that input being None
            go_on = client.workflow(tq.chord([tq.step("t-perm"), tq.step("t-async", {"n": 4})],
                                             tq.step("t-sum")), policy="continue")
            assert client.wait(go_on.last) == 8
    finally:
        REGISTRY.pop("t-sum", None)
