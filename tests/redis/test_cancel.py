"""Cancelling a task that has not started: queued, scheduled, retrying or held for a lease; it
never runs, no attempt is counted, waiters are told; running and finished tasks say so."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

import tq
from tq.cli import cli
from tq.store.broker import Ack, result_record


def test_cancel_queued_scheduled_retrying_and_held_tasks(client, broker, rconn):
    queued = client.enqueue("email", {"n": 1}, priority=7)
    later = client.enqueue("email", {"n": 2}, delay=600)
    kept = client.enqueue("email", {"n": 3})
    assert client.cancel(queued) == "cancelled"
    assert client.cancel(later, queue="email") == "cancelled"
    for tid in (queued, later):
        info = client.get(tid)
        assert (info.state, info.attempts, info.type) == ("cancelled", 0, "email")
        with pytest.raises(tq.TaskCancelled):
            client.wait(tid, timeout=1)
    # the other task is untouched, and only it is claimed
    got = broker.claim("w", ["email"], 10).tasks
    assert [t.id for t in got] == [kept]
    # running: a cancel request (the master interrupts it); a task that finishes first wins
    # and its request is gone with it; once finished: "finished"; unknown ids: "unknown"
    assert client.cancel(kept) == "cancelling"
    assert client.get(kept).state == "cancelling"
    assert rconn.hget("tq:{email}:run", kept).endswith(b"|x")   # marked on its claim
    broker.claim("w", ["email"], 0, acks=[Ack(got[0], result_record(got[0], "1", "w", 1, 2))])
    assert client.get(kept).state == "succeeded"
    assert client.cancel(kept) == "finished"
    assert client.cancel("P7rAAAAAAAAAAAAA") == "unknown"
    # a task waiting for its retry, and one held for a concurrency lease
    retrying = client.enqueue("sms", {})
    t, = broker.claim("w", ["sms"], 1).tasks
    broker.fail("w", t, "boom", delay=60)
    assert client.cancel(retrying) == "cancelled" and client.get(retrying).attempts == 0
    client.set_limit("render", concurrency=1)
    client.enqueue("render", {})
    held = client.enqueue("render", {})
    assert len(broker.claim("w", ["render"], 10).tasks) == 1
    assert client.cancel(held) == "cancelled"
    assert client.limits("render")["render"]["types"]["render"]["held"] == 0
    assert client.stats()["by_type"]["email"]["cancelled"] == 2
    assert not rconn.hexists("tq:{email}:tasks", queued)


def test_tq_cancel(client, redis_url):
    tid = client.enqueue("email", {}, delay=60)
    env = {**os.environ, "TQ_REDIS_URL": redis_url}
    ok = CliRunner().invoke(cli, ["cancel", tid], env=env)
    assert ok.exit_code == 0 and f"cancelled {tid}" in ok.output
    again = CliRunner().invoke(cli, ["cancel", tid], env=env)
    assert again.exit_code == 1 and "has finished" in again.output
    assert "cancelled" in CliRunner().invoke(cli, ["get", tid], env=env).output
