"""Workflows (chains, groups, chords, DAGs) and the cancellation of running tasks.

The bookkeeping is tested step by step through the broker (claim, ack, fail as a worker does),
then end to end under a real tq-master (tests/apps/wfapp.py); the chord under SIGKILLs is in
tests/faults/test_workflow_faults.py."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner
from master_proc import eventually

import tq
from tq.cli import cli
from tq.store.broker import Ack, result_record
from tq.workflow import compile_workflow


def ack(broker, task, result):
    broker.claim("w", [task.queue], 0,
                 acks=[Ack(task, result_record(task, json.dumps(result), "w", 1, 2))])


def claim_all(broker, queue="wf.num"):
    return broker.claim("w", [queue], 100).tasks


# -- building -------------------------------------------------------------------------------
def test_compile_shapes():
    a, b, c, d = (tq.step("wf.num", {"n": i}) for i in range(4))
    members = compile_workflow(tq.chain(a, tq.group(b, c), d))
    assert [m.deps for m in members] == [[], [0], [0], [1, 2]]
    members = compile_workflow(tq.chord([a, b, c], d))
    assert [m.deps for m in members] == [[], [], [], [0, 1, 2]]
    dag = compile_workflow({"d": tq.step("x", after=["b", "c"]), "b": tq.step("x", after="a"),
                            "c": tq.step("x", after="a"), "a": tq.step("x")})
    order = [m.name for m in dag]
    assert order.index("a") < order.index("b") < order.index("d")
    assert order.index("c") < order.index("d")
    with pytest.raises(ValueError, match="cycle"):
        compile_workflow({"a": tq.step("x", after="b"), "b": tq.step("x", after="a")})
    with pytest.raises(ValueError, match="not a member"):
        compile_workflow({"a": tq.step("x", after="zz")})
    with pytest.raises(ValueError, match="at least one step"):
        compile_workflow({})


def test_chain_runs_in_order_and_passes_results(client, broker):
    wf = client.workflow(tq.chain(tq.step("wf.num", {"n": 1}), tq.step("wf.num", {"n": 10}),
                                  tq.step("wf.num", {"n": 100})))
    first, = claim_all(broker)          # only the first step is ready
    assert client.get(wf.last).state == "waiting"
    assert first.workflow == wf.id and first.inputs == 0
    from tq.worker.runner import Runner
    Runner(broker, "w").services.write_progress("wf.num", first.id, 0.5, "half way")
    running = client.get_workflow(wf.id).members[0]
    assert running["state"] == "running" and running["progress"]["message"] == "half way"
    ack(broker, first, 1)
    second, = claim_all(broker)
    assert second.inputs == 1
    runner_inputs = broker.conn.hmget("tq:{wf.num}:wf", f"i:{second.id}:0")
    assert json.loads(runner_inputs[0])[2]["r"] == 1
    ack(broker, second, 11)
    third, = claim_all(broker)
    assert third.id == wf.last
    ack(broker, third, 111)
    info = client.get_workflow(wf.id)
    assert info.state == "succeeded" and info.counts == {"succeeded": 3}
    assert [m["result"] for m in info.members] == [1, 11, 111]
    assert client.get(wf.last).workflow == wf.id   # a finished member still says whose it is
    # nothing of the bookkeeping is left behind
    assert broker.conn.hlen("tq:{wf.num}:wf") == 0


@pytest.mark.cluster_too
def test_chord_callback_gets_results_in_group_order(client, broker):
    wf = client.workflow(tq.chord([tq.step("wf.num", {"n": i}) for i in range(20)],
                                  tq.step("wf.collect", queue="wf.num")))
    header = claim_all(broker)
    assert len(header) == 20
    for t in reversed(header):   # finishing out of order
        ack(broker, t, t.payload["n"] * 2)
    cb, = claim_all(broker)
    assert cb.id == wf.last and cb.inputs == 20
    from tq.worker.runner import Runner
    assert Runner(broker, "w").read_inputs(cb) == [i * 2 for i in range(20)]


def test_diamond_waits_for_both_and_policies(client, broker):
    dag = {"a": tq.step("wf.num"), "b": tq.step("wf.num", after="a"),
           "c": tq.step("wf.num", after="a"), "d": tq.step("wf.num", after=["b", "c"])}
    wf = client.workflow(dag)
    a, = claim_all(broker)
    ack(broker, a, 1)
    b, c = claim_all(broker)
    ack(broker, b, 2)
    assert claim_all(broker) == []          # d waits for c too
    ack(broker, c, 3)
    d, = claim_all(broker)
    assert d.id == wf.tasks["d"]

    # "stop": b dies, so d is dead-lettered with the cause, and never runs
    wf = client.workflow(dag)
    a, = claim_all(broker)
    ack(broker, a, 1)
    b, c = claim_all(broker)
    broker.fail("w", b, "boom", retry=False)
    info = client.get(wf.tasks["d"])
    assert info.state == "dead" and info.error_kind == "upstream_dead"
    assert b.id in info.error
    ack(broker, c, 3)
    assert claim_all(broker) == []
    got = client.get_workflow(wf.id)
    assert got.state == "failed" and got.counts == {"succeeded": 2, "dead": 2}

    # "continue": d runs, the dead member's input being None
    wf = client.workflow(dag, policy="continue")
    a, = claim_all(broker)
    ack(broker, a, 1)
    b, c = claim_all(broker)
    broker.fail("w", b, "boom", retry=False)
    ack(broker, c, 3)
    d, = claim_all(broker)
    from tq.worker.runner import Runner
    assert Runner(broker, "w").read_inputs(d) == [None, 3]


def test_cancel_workflow_cancels_pending_members(client, broker, rconn):
    wf = client.workflow(tq.chain(tq.step("wf.num"), tq.step("wf.num"), tq.step("wf.num")))
    first, = claim_all(broker)
    assert client.cancel_workflow(wf.id) == {"cancelled": 2, "cancelling": 1}
    info = client.get_workflow(wf.id)
    assert [m["state"] for m in info.members] == ["cancelling", "cancelled", "cancelled"]
    ack(broker, first, 1)     # it finished before the master interrupted it
    assert claim_all(broker) == []
    assert client.get_workflow(wf.id).state == "cancelled"
    assert rconn.hlen("tq:{wf.num}:wf") == 0
    # a member cancelled alone: under "stop" its downstream members are dead-lettered
    wf = client.workflow(tq.chain(tq.step("wf.num"), tq.step("wf.num")))
    assert client.cancel(wf.tasks["0.wf.num"]) == "cancelled"
    assert client.get(wf.last).error_kind == "upstream_cancelled"


def test_purge_and_unknown_workflow(client, broker):
    with pytest.raises(ValueError, match="policy"):
        client.workflow(tq.step("wf.num"), policy="sometimes")
    wf = client.workflow(tq.chain(tq.step("wf.num"), tq.step("wf.num")))
    assert client.purge("wf.num") == 1
    assert client.get(wf.last).state == "dead"
    with pytest.raises(tq.TaskNotFound):
        client.get_workflow("nope")


# -- end to end ------------------------------------------------------------------------------
@pytest.mark.cluster_too   # a cross-queue edge: another slot, a hand-off through the master
def test_workflows_under_a_master(client, masters, redis_url):
    m = masters("-A", "wfapp", "-c", "2", "--queues", "wf.num,wf.collect,wf-other")
    m.wait_ready(2)
    chain = client.workflow(tq.chain(*(tq.step("wf.num", {"n": 1}) for _ in range(10))))
    assert client.wait(chain.last, timeout=20) == 10
    # a chord whose callback lives in another queue (a hand-off through the master)
    chord = client.workflow(tq.chord([tq.step("wf.num", {"n": i}) for i in range(50)],
                                     tq.step("wf.other", queue="wf-other")))
    assert client.wait(chord.last, timeout=20) == {"other": list(range(50))}
    info = client.wait_workflow(chord.id, timeout=10)
    assert info.state == "succeeded" and info.counts == {"succeeded": 51}
    env = {**os.environ, "TQ_REDIS_URL": redis_url}
    shown = CliRunner().invoke(cli, ["workflow", "show", chord.id], env=env)
    assert shown.exit_code == 0, shown.output
    assert "succeeded" in shown.output and "wf.other" in shown.output
    as_json = CliRunner().invoke(cli, ["workflow", "show", chord.id, "--json"], env=env)
    assert json.loads(as_json.output)["counts"] == {"succeeded": 51}


def test_cancel_a_running_task(client, masters, rconn):
    m = masters("-A", "wfapp", "-c", "1", "--queues", "wf.block,wf.stuck",
                "--cancel-grace", "1")
    m.wait_ready(1)
    tid = client.enqueue("wf.block")
    assert rconn.blpop(["test:started"], timeout=10)[1].decode() == tid
    assert client.cancel(tid) == "cancelling"
    with pytest.raises(tq.TaskCancelled):
        client.wait(tid, timeout=10)
    assert rconn.lrange("test:cleaned", 0, -1) == [f"{tid}:True".encode()]
    info = client.get(tid)
    assert info.state == "cancelled" and info.attempts == 1
    assert client.stats()["by_type"]["wf.block"]["failed"] == 0
    pids = m.child_pids()
    # a handler that never sees the signal: its child is killed after the grace
    tid = client.enqueue("wf.stuck")
    assert rconn.blpop(["test:started"], timeout=10)[1].decode() == tid
    assert client.cancel(tid) == "cancelling"
    with pytest.raises(tq.TaskCancelled):
        client.wait(tid, timeout=10)
    m.wait_log("did not stop within 1s")
    assert client.stats()["by_type"]["wf.stuck"].get("failed", 0) == 0
    eventually(lambda: m.child_pids() and m.child_pids() != pids, what="a new child")


def test_a_workflow_with_encrypted_payloads_and_results(redis_url):
    from tq.handlers import REGISTRY
    from tq.keyring import new_key
    from tq.testing import Worker

    @tq.handler("wf-secret")
    def secret(payload, ctx):
        return {"total": payload["n"] + sum(i["total"] for i in ctx.inputs)}

    try:
        keyed = tq.Client(redis_url, keys=f"k1:{new_key()}")
        wf = keyed.workflow(tq.chord([tq.step("wf-secret", {"n": i}) for i in range(3)],
                                     tq.step("wf-secret", {"n": 100})))
        # inputs handed downstream are the sealed result records, opened by the worker
        assert Worker(keyed, ["wf-secret"]).run_until_empty() == 4
        assert keyed.wait(wf.last, timeout=1) == {"total": 103}
        raw = keyed.broker.conn.get(f"tq:{{wf-secret}}:res:{wf.last}")
        assert b"total" not in raw and b'"x":' in raw
    finally:
        REGISTRY.pop("wf-secret", None)


@pytest.mark.cluster_too   # two queues, two slots
def test_a_cross_queue_hand_off_is_applied_once(client, broker):
    from tq.supervisor.handoff import Handoffs

    # a chord whose callback lives in another queue: its edges go through `out`
    wf = client.workflow(tq.chord([tq.step("wf.num", {"n": 1}), tq.step("wf.num", {"n": 2})],
                                  tq.step("wf.other", queue="wf-other")))
    first, second = claim_all(broker)
    ack(broker, first, 1)
    out = broker.qkeys("wf.num").out
    entry = broker.conn.lrange(out, 0, -1)
    assert len(entry) == 1
    handoffs = Handoffs(broker)
    assert handoffs.run(["wf.num"]) == 1 and broker.conn.llen(out) == 0
    # a master that died after applying, before deleting: the entry is applied again
    broker.conn.rpush(out, *entry)
    assert handoffs.run(["wf.num"]) == 1
    assert client.get(wf.last).extra["waiting_for"] == 1   # still one to go, not zero
    ack(broker, second, 2)
    handoffs.run(["wf.num"])
    cb, = claim_all(broker, "wf-other")
    assert cb.id == wf.last and claim_all(broker, "wf-other") == []
    from tq.worker.runner import Runner
    assert Runner(broker, "w").read_inputs(cb) == [1, 2]


def test_a_corrupt_workflow_key_sets_the_queue_aside_and_repair_brings_it_back(client, broker,
                                                                               rconn):
    wf = client.workflow(tq.chain(tq.step("wf.num", {"n": 1}), tq.step("wf.num")))
    rconn.set("tq:{wf.num}:out", "oops")     # a mistaken write over the hand-off list
    from tq.supervisor.handoff import Handoffs
    assert Handoffs(broker).run(["wf.num"]) == 0   # a master's pass finds it and says so
    assert client.queue_sizes()["wf.num"]["broken"]["key"] == "tq:{wf.num}:out"
    report = client.repair_queue("wf.num")
    assert list(report.moved) == ["tq:{wf.num}:out"]
    # the first step is still queued, the second still waits for it
    first, = claim_all(broker)
    ack(broker, first, 1)
    assert client.get(wf.last).state == "queued"
