"""Corrupt keys seen from the producer and admin side: clear errors, never a raw WRONGTYPE."""

from __future__ import annotations

import json

import pytest

import tq
from tq.integrity import diagnose
from tq.keys import Keys

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
