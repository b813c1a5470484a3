"""The operator CLI's consistency: JSON errors, `tq status QUEUE`, `--watch`, `tq queue delete`,
and masters forgetting queues nobody uses (tq.supervisor.forget)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from master_proc import eventually
from metrics_scrape import scrape
from redis_server import free_port

import tq
from tq.cli import cli
from tq.store.broker import Broker
from tq.supervisor.forget import Forgetter

TQ = str(Path(sys.executable).with_name("tq"))

pytestmark = pytest.mark.cluster_too


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


# -- errors under --json ------------------------------------------------------------------
@pytest.mark.parametrize(("args", "code", "kind", "says"), [
    (["get", "no-such-id", "--json"], 1, "failure", "no task with id 'no-such-id'"),
    (["enqueue", "bad:name", "--json"], 2, "bad_value", "type"),
    (["dead", "list", "--limit", "0", "--json"], 2, "usage", "--limit"),
    (["--json-less-typo"], 2, None, None),
    (["status", "no:such", "--json"], 2, "bad_value", "queue"),
    (["status", "nosuch", "--json"], 1, "failure", "no queue named 'nosuch'"),
    (["queue", "delete", "nosuch", "--json"], 1, "failure", "no queue named"),
])
def test_errors_are_json_under_json_with_the_documented_codes(client: tq.Client, args, code,
                                                               kind, says):
    client.enqueue("email", {})
    result = run(*args)
    assert result.exit_code == code, result.output
    if kind is None:   # no --json given: click's usage text
        assert "Error: No such option" in result.output
        return
    doc = json.loads(result.stdout)
    assert doc["exit_code"] == code and doc["kind"] == kind
    assert says in doc["error"]


# -- tq status QUEUE ----------------------------------------------------------------------
def test_status_of_one_queue(client: tq.Client, broker: Broker):
    client.enqueue("email", {}, priority=9)
    client.enqueue("email", {})
    client.enqueue("email", {}, delay=600)
    broker.heartbeat("m1", {"id": "m1", "host": "web-1", "pid": 1, "queues": ["email"],
                            "children": [{"id": "m1-0"}]}, {})
    doc = json.loads(run("status", "email", "--json").stdout)
    assert (doc["queue"], doc["ready"], doc["scheduled"], doc["dead"]) == ("email", 2, 1, 0)
    assert doc["by_priority"] == {"9": 1, "0": 1}
    assert doc["counters"]["enqueued"] == 3
    assert 0 <= doc["oldest_ready_age"] < 60
    assert 590 < doc["next_due"] - time.time() <= 600
    assert doc["consumers"] == [{"master": "m1", "host": "web-1", "children": 1}]

    text = run("status", "email").stdout
    lines = dict(line.split(None, 1) for line in text.splitlines() if "  " in line
                 and not line.startswith(("oldest", "next", "consumed")))
    assert lines["ready"].strip() == "2 (9:1 0:1)" and lines["scheduled"].strip() == "1"
    assert "m1 on web-1 (1 children)" in text and "in 9m" in text


def test_status_watch_redraws_until_interrupted(client: tq.Client, redis_url: str):
    client.enqueue("email", {})
    proc = subprocess.Popen([TQ, "-q", "status", "--watch", "0.2", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(proc.stdout.readline())
        assert first["queues"]["email"]["ready"] == 1
        client.enqueue("email", {})
        # each frame is read afresh: the second task shows within a few frames
        eventually(lambda: json.loads(proc.stdout.readline())["queues"]["email"]["ready"] == 2,
                   10, what="a later frame with two tasks")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()


# -- tq queue delete ----------------------------------------------------------------------
def test_queue_delete(client: tq.Client, broker: Broker):
    ids = [client.enqueue("report", {"n": i}) for i in range(3)]
    client.enqueue("report", {}, delay=600)
    task = broker.fetch("w-test", ["report"], max_tasks=1)[0]
    client.enqueue("email", {})

    # a queue with a running task is kept, unless --force
    result = run("queue", "delete", "report", "--yes")
    assert result.exit_code == 1 and "1 running task(s)" in result.output
    assert client.queue_sizes()["report"]["ready"] == 2
    # without --yes it asks, and "no" keeps it
    assert run("queue", "delete", "report", "--force", input="n\n").exit_code == 1
    assert "report" in client.queues()

    doc = json.loads(run("queue", "delete", "report", "--force", "--yes", "--json").stdout)
    assert doc == {"queue": "report", "deleted": True, "ready": 2, "scheduled": 1,
                   "running": 1, "dead": 0}
    assert client.queues() == ["email"]
    assert [k for k in _keys(broker) if "{report}" in k] == []
    assert not broker.ack("w-test", task)   # its ack is refused: nothing is left to ack
    with pytest.raises(tq.TaskNotFound):
        client.get(ids[0])
    # the name comes back with the next task
    client.enqueue("report", {})
    assert client.queues() == ["email", "report"]


def _keys(broker: Broker) -> list[str]:
    conn = broker.conn
    return [k.decode() for k in conn.keys("*")]


# -- forgetting idle queues ---------------------------------------------------------------
def test_a_master_forgets_empty_unserved_idle_queues(client: tq.Client, broker: Broker):
    for q in ("gone", "kept-dead", "kept-served", "kept-ready"):
        client.enqueue(q, {})
    client.purge("gone")
    client.purge("kept-served")
    task = broker.fetch("w-test", ["kept-dead"], max_tasks=1)[0]
    broker.fail("w-test", task, "boom", retry=False)
    broker.heartbeat("m1", {"id": "m1", "queues": ["kept-served"]}, {})
    forgetter = Forgetter(broker)
    try:
        # the first pass only notes since when a queue is empty and unserved
        assert forgetter.run(3600, []) == []
        assert forgetter.run(3600, []) == []          # not idle long enough
        assert forgetter.run(0, []) == ["gone"]       # idle long enough
        assert client.queues() == ["kept-dead", "kept-ready", "kept-served"]
        assert [k for k in _keys(broker) if "{gone}" in k] == []
        # a producer that had already registered the name puts it back with its next task
        client.enqueue("gone", {})
        assert "gone" in client.queues() and client.queue_sizes()["gone"]["ready"] == 1
        # a queue with work again is idle anew
        assert forgetter.run(0, []) == []
        assert broker.conn.hkeys(broker.keys.idle) == []
    finally:
        forgetter.close()


def test_forgotten_queues_leave_the_metrics(masters, client: tq.Client):
    client.enqueue("short-lived", {})
    port = free_port()
    master = masters("-c", "1", "-A", "procapp", "--metrics-bind", f"127.0.0.1:{port}",
                     "--forget-queues-after", "1")
    master.wait_ready(1)

    def depth() -> dict:
        return scrape(("127.0.0.1", port)).get("tq_queue_depth", {})

    eventually(lambda: depth().get((("queue", "short-lived"), ("state", "ready"))) == 1, 10,
               what="the queue's series")
    client.purge("short-lived")
    eventually(lambda: not [k for k in depth() if ("queue", "short-lived") in k], 20,
               what="the forgotten queue's series to go")
    assert "short-lived" not in client.queues()
    assert (("queue", "work"), ("state", "ready")) in depth()   # its handlers' queue stays
    master.signal(signal.SIGTERM)
    assert master.wait_exit() == 0
