"""Corrupt keys seen from the producer and admin side: clear errors, never a raw WRONGTYPE."""

from __future__ import annotations

import json

import pytest

import tq
from tq.store.integrity import diagnose
from tq.store.keys import Keys

pytestmark = pytest.mark.cluster_too   # each test: on a standalone Redis, then on a Cluster


def test_diagnosis_names_each_corrupt_key(client, rconn):
    client.enqueue("q", {})
    q = Keys().queue("q")
    rconn.delete(q.sched)
    rconn.set(q.sched, "oops")
    rconn.set(q.seq, "x1")
    rconn.hset(q.stats, "q:enqueued", "many")
    problems = {p.key: p.problem for p in diagnose(rconn, q)}
    assert problems == {q.sched: "is a string, not a zset",
                        q.seq: "holds b'x1', not an integer",
                        q.stats: "field b'q:enqueued' holds b'many', not an integer"}


def test_admin_calls_on_a_broken_queue_say_so(client, rconn):
    tid = client.enqueue("q", {})
    rconn.set("tq:{q}:dead", "oops")
    with pytest.raises(tq.QueueBroken, match=r"tq:\{q\}:dead is a string, not a zset"):
        client.retry_dead("all", queue="q")
    with pytest.raises(tq.QueueBroken):
        client.delete_dead([tid], queue="q")
    assert json.loads(rconn.get("tq:{q}:broken"))["key"] == "tq:{q}:dead"
    assert client.queue_sizes()["q"]["broken"]["key"] == "tq:{q}:dead"
    # a repair brings it back, with the task still queued
    report = client.repair_queue("q")
    assert list(report.moved) == ["tq:{q}:dead"] and report.was_marked
    assert client.get(tid).state == "queued" and client.queue_sizes()["q"]["broken"] is None
    assert client.repair_queue("q").moved == {}   # a healthy queue: nothing to do


def test_a_single_enqueue_that_meets_a_corrupt_key_names_it_and_leaves_nothing(client,
                                                                               rconn):
    # (one ready task takes a path of its own: no look at the key types first, its body
    # taken back when the push is refused)
    q = Keys().queue("q")
    client.enqueue("q", {"n": 0}, priority=5)
    tasks = rconn.hgetall(q.tasks)
    # Given a priority-0 ready list overwritten with a string
    rconn.set(q.ready_at(0), "oops")
    # When a task goes to it, the error names the key and its body is not left behind
    with pytest.raises(tq.QueueBroken, match=r"tq:\{q\}:ready:0 is a string, not a list"):
        client.enqueue("q", {"n": 1})
    assert rconn.hgetall(q.tasks) == tasks
    # and a priority-5 task goes in as before
    assert client.get(client.enqueue("q", {"n": 2}, priority=5)).state == "queued"
    # Given the tasks hash itself overwritten: that key is named, nothing is pushed
    rconn.delete(q.ready_at(0))
    rconn.set(q.tasks, "oops")
    with pytest.raises(tq.QueueBroken, match=r"tq:\{q\}:tasks is a string, not a hash"):
        client.enqueue("q", {"n": 3})
    assert rconn.llen(q.ready_at(0)) == 0 and rconn.llen(q.ready_at(5)) == 2


def test_a_batch_that_meets_a_corrupt_key_half_way_is_undone(client, rconn):
    # Given a queue whose priority-0 ready list is overwritten with a string, and a priority-5
    # task and a delayed one already waiting
    before = [client.enqueue("q", {"n": 0}, priority=5),
              client.enqueue("q", {"n": 1}, delay=60)]
    q = Keys().queue("q")
    rconn.set(q.ready_at(0), "oops")
    tasks, ready5, sched = rconn.hgetall(q.tasks), rconn.lrange(q.ready_at(5), 0, -1), \
        rconn.zrange(q.sched, 0, -1, withscores=True)
    # When a batch writes priority-5, delayed and unique tasks before its priority-0 one
    specs = [{"type": "q", "payload": {"n": 2}, "priority": 5},
             {"type": "q", "payload": {"n": 3}, "delay": 30},
             {"type": "q", "payload": {"n": 4}, "priority": 5, "unique_for": 60},
             {"type": "q", "payload": {"n": 5}}]
    with pytest.raises(tq.QueueBroken, match=r"tq:\{q\}:ready:0 is a string, not a list"):
        client.enqueue_many(specs)
    # Then nothing of it stays: bodies, ready list, schedule and unique lock are as before
    assert rconn.hgetall(q.tasks) == tasks
    assert rconn.lrange(q.ready_at(5), 0, -1) == ready5
    assert rconn.zrange(q.sched, 0, -1, withscores=True) == sched
    assert not rconn.keys("tq:{q}:uniq:*")
    # and after a repair the same batch goes in whole
    client.repair_queue("q")
    ids = client.enqueue_many(specs)
    assert len(set(ids)) == 4 and all(client.get(i).state in ("queued", "scheduled")
                                      for i in [*before, *ids])
