"""A real tq-master feeds its metrics and the shared history: scraped, read back, and shown."""

from __future__ import annotations

import signal

import pytest
from master_proc import eventually
from metrics_scrape import scrape
from redis_server import free_port

from tq.dashboard.api import Board

pytestmark = pytest.mark.cluster_too   # each test: on a standalone Redis, then on a Cluster


def test_a_running_master_exports_metrics_and_records_history(masters, client):
    port = free_port()
    ids = [client.enqueue("work", {"i": i, "s": 0}) for i in range(50)]
    dead = client.enqueue("flaky", {"error": "no luck"})
    master = masters("-c", "2", "-A", "dashboard_app", "--metrics-bind", f"127.0.0.1:{port}")
    master.wait_ready(2)
    for tid in ids:
        client.wait(tid, timeout=20)
    eventually(lambda: client.get(dead).state == "dead", 10, what="the flaky task to die")

    def tasks() -> dict:
        return scrape(("127.0.0.1", port)).get("tq_tasks_total", {})

    eventually(lambda: tasks().get((("outcome", "succeeded"), ("type", "work"))) == 50, 10,
               what="50 succeeded work tasks in /metrics")
    got = scrape(("127.0.0.1", port))
    assert got["tq_tasks_total"][(("outcome", "failed"), ("type", "flaky"))] == 1
    assert got["tq_tasks_total"][(("outcome", "dead"), ("type", "flaky"))] == 1
    assert got["tq_task_duration_seconds_count"][(("type", "work"),)] == 50
    assert sum(v for k, v in got["tq_children"].items()) == 2
    assert all(v > 1_000_000 for v in got["tq_child_rss_bytes"].values())
    assert got["tq_queue_depth"][(("queue", "flaky"), ("state", "dead"))] == 1

    board = Board(client)
    eventually(lambda: sum(board.history.series(120)["processed"]) == 51, 10,
               what="the master's history to reach Redis")
    (m,) = board.masters()
    assert m["pid"] == master.pid and len(m["children"]) == 2 and not m["stale"]
    assert board.history.latency(120)["work"]["duration"]["n"] == 50
    master.signal(signal.SIGTERM)
    assert master.wait_exit() == 0
