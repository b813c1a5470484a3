"""Consumer groups and the global indexes (tq.store.groups, indexes, claims): a claim finds the
queues that hold work without visiting the others; weights, strict order, pause, limits and
delays keep their meaning; the sweep repairs what a crashed process did not tell; a task id
names its queue."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

import tq
from tq.ids import new_id
from tq.store.broker import Broker
from tq.store.claims import Ack, result_record
from tq.store.groups import Group, lua_pattern


def acks_of(tasks: list[tq.Task], worker: str = "w1") -> list[Ack]:
    now = time.time()
    return [Ack(t, result_record(t, "null", worker, now, now)) for t in tasks]


def drain(broker: Broker, group: Group, worker: str = "w1", batch: int = 10) -> list[tq.Task]:
    """Claim (and ack) everything the group's queues hold."""
    out: list[tq.Task] = []
    acks: list[Ack] = []
    for _ in range(1000):
        got = broker.claim_group(worker, group, batch, acks=acks)
        acks = acks_of(got.tasks, worker)
        out.extend(got.tasks)
        if not got.tasks and got.next_due is None:
            break
    broker.claim_group(worker, group, 0, acks=acks)
    return out


@pytest.mark.parametrize("glob, name, matches", [
    ("t-*", "t-1", True), ("t-*", "t-", True), ("t-*", "tx-1", False),
    ("a?c", "abc", True), ("a?c", "ac", False), ("v2/*", "v2/thumbs", True),
    ("[ab]-*", "b-x", True), ("[!ab]-*", "b-x", False), ("x.y", "xzy", False),
    ("a+b@c", "a+b@c", True),
])
def test_globs_become_anchored_lua_patterns_with_fnmatchs_meaning(rconn, redis_url, glob,
                                                                   name, matches):
    found = rconn.eval("return string.find(ARGV[1], ARGV[2]) ~= nil", 0, name,
                       lua_pattern(glob))
    assert bool(found) is matches
    assert Group.of([glob]).consumes(name) is matches


@pytest.mark.cluster_too
def test_a_group_claim_takes_only_from_queues_that_hold_work(broker, client):
    group = Group.of(["t-*"])
    broker.register_group(group)
    broker.register_queues([f"t-{i}" for i in range(40)])   # 40 known queues, 3 with work
    for q in ("t-3", "t-17", "t-31"):
        client.enqueue("noop", {"q": q}, queue=q)
    assert sorted(q for q, _ in broker.group_line(group)) == ["t-17", "t-3", "t-31"]
    got = drain(broker, group)
    assert sorted(t.queue for t in got) == ["t-17", "t-3", "t-31"]
    assert broker.group_line(group) == []


def test_weights_share_claims_and_no_queue_waits_for_another_to_drain(broker, client):
    group = Group.of(["a", "b"], {"a": 5})
    broker.register_group(group)
    client.enqueue_many([{"type": "noop", "queue": "a"}] * 300)
    client.enqueue_many([{"type": "noop", "queue": "b"}] * 300)
    firsts = Counter()
    acks: list[Ack] = []
    for _ in range(60):
        got = broker.claim_group("w1", group, 1, acks=acks)
        acks = acks_of(got.tasks)
        firsts[got.tasks[0].queue] += 1
    assert firsts == {"a": 50, "b": 10}


def test_strict_serves_the_patterns_in_order(broker, client):
    group = Group.of(["urgent", "t-*"], strict=True)
    broker.register_group(group)
    client.enqueue_many([{"type": "noop", "queue": "t-1"}] * 3)
    client.enqueue_many([{"type": "noop", "queue": "urgent"}] * 3)
    got = drain(broker, group, batch=2)
    assert [t.queue for t in got] == ["urgent"] * 3 + ["t-1"] * 3


@pytest.mark.cluster_too
def test_a_queue_that_appears_after_the_group_is_in_line_at_once(broker, client):
    group = Group.of(["tenant-*"])
    broker.register_group(group)
    tid = client.enqueue("noop", {}, queue="tenant-new")
    got = broker.claim_group("w1", group, 5)
    assert [t.id for t in got.tasks] == [tid]


@pytest.mark.cluster_too
def test_a_paused_queue_leaves_the_line_and_its_resume_brings_it_back(broker, client):
    group = Group.of(["p"])
    broker.register_group(group)
    tid = client.enqueue("noop", {}, queue="p")
    client.pause("p")
    assert drain(broker, group) == []
    assert broker.group_line(group) == []
    client.resume("p")
    assert [t.id for t in drain(broker, group)] == [tid]


@pytest.mark.cluster_too
def test_delayed_tasks_enter_the_agenda_and_their_promotion_puts_them_in_line(broker, client):
    group = Group.of(["d"])
    broker.register_group(group)
    tid = client.enqueue("noop", {}, queue="d", delay=0.2)
    now, due, later = broker.agenda()
    assert due == [] and later is not None and 0 < later - now <= 250
    assert drain(broker, group) == []
    deadline = time.monotonic() + 5
    while broker.promote_agenda()[0] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert broker.agenda()[1:] == ([], None)   # nothing left to do for d
    assert [t.id for t in drain(broker, group)] == [tid]


@pytest.mark.cluster_too
def test_the_sweep_puts_back_what_no_one_told_the_indexes(broker, client, rconn):
    group = Group.of(["s-*"])
    broker.register_group(group)
    ready = client.enqueue("noop", {}, queue="s-1")
    client.enqueue("noop", {}, queue="s-2", delay=60)
    # as if the processes that should have told them had died: both indexes lose the queues
    rconn.delete(broker.keys.group_ready(group.id), broker.keys.due)
    assert broker.group_line(group) == [] and broker.agenda()[1:] == ([], None)
    assert broker.sweep("m1", 2.0) == (1, 1)
    assert broker.sweep("m2", 2.0) is None   # one master sweeps at a time
    assert [q for q, _ in broker.group_line(group)] == ["s-1"]
    assert broker.agenda()[2] is not None
    assert [t.id for t in drain(broker, group)] == [ready]


@pytest.mark.cluster_too
def test_an_idle_wait_wakes_on_the_first_enqueue(broker, client):
    group = Group.of(["idle-*"])
    broker.register_group(group)
    assert broker.wait_and_claim_group("w1", group, 0.05, 5).tasks == []
    sent: list[str] = []

    def produce() -> None:
        time.sleep(0.2)
        sent.append(client.enqueue("noop", {}, queue="idle-7"))

    t = threading.Thread(target=produce)
    t.start()
    start = time.monotonic()
    got = broker.wait_and_claim_group("w1", group, 5.0, 5)
    waited = time.monotonic() - start
    t.join()
    assert [x.id for x in got.tasks] == sent
    assert waited < 2.0   # woken by the token, not by the end of the wait


@pytest.mark.cluster_too
def test_a_dead_workers_tasks_go_back_from_the_queues_of_its_procs_set(broker, client):
    group = Group.of(["r-*"])
    broker.register_group(group)
    ids = [client.enqueue("noop", {}, queue=f"r-{i}") for i in range(3)]
    got = broker.claim_group("dead-worker", group, 10)
    assert sorted(t.id for t in got.tasks) == sorted(ids)
    report = broker.requeue_worker("dead-worker")   # no queue list: its procs set says
    assert report.requeued == 3
    assert sorted(t.id for t in drain(broker, group, "w2")) == sorted(ids)


@pytest.mark.cluster_too
def test_a_drained_verdict_spares_a_queue_that_got_work_since_its_pick(broker, client):
    # On a cluster the index and the queue are in two slots: a worker drains a queue, a
    # producer enqueues (the queue joins the line again), then the worker's verdict "drained"
    # reaches the index with its next pick. It must not take the queue out of line.
    group = Group.of(["x"])
    broker.register_group(group)
    first = client.enqueue("noop", {}, queue="x")
    assert [t.id for t in broker.claim_group("w1", group, 5).tasks] == [first]
    second = client.enqueue("noop", {}, queue="x")
    assert [t.id for t in broker.claim_group("w1", group, 5).tasks] == [second]


def test_get_by_id_reads_one_queue_of_a_thousand(broker, client, rconn):
    names = [f"g-{i}" for i in range(1000)]
    broker.register_queues(names)
    tid = client.enqueue("noop", {"n": 1}, queue="g-777")
    client.get(tid)   # the reader's map of hints is made once
    before = rconn.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    assert client.get(tid).queue == "g-777"
    after = rconn.info("commandstats")["cmdstat_evalsha"]["calls"]
    assert after - before == 1


def test_an_id_made_before_the_hint_is_still_found(broker, client):
    old = new_id()   # 16 characters, as tq made them before ids named their queue
    assert client._send("legacy", [[old, '{"p":{}}', 0, "", "", "", "noop"]], []) == [old]
    assert client.get(old).queue == "legacy"
    assert client.get(old).state == "queued"
