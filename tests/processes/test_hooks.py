"""Middleware around each task, in a real master's children (tests/apps/hookapp.py)."""

from __future__ import annotations

import json
import signal

import pytest
from master_proc import eventually

import tq


def events(rconn) -> list[dict]:
    return [json.loads(e) for e in rconn.lrange("test:hooks", 0, -1)]


def test_hooks_see_every_run_and_a_broken_one_changes_nothing(masters, client: tq.Client,
                                                              rconn):
    # Given a master whose app adds a recording middleware and one that always raises
    ok = client.enqueue("fine", {"n": 21})
    doomed = client.enqueue("doomed", {})
    unknown = client.enqueue("nobody-handles-this", {}, queue="fine")
    master = masters("-c", "1", "-A", "hookapp")
    master.wait_ready(1)
    # Then the tasks run as if no middleware were there
    assert client.wait(ok, timeout=20) == {"double": 42}
    eventually(lambda: client.get(doomed).state == "dead", 20, what="doomed to die")
    eventually(lambda: client.get(unknown).state == "dead", 20, what="the unknown type")
    eventually(lambda: len(events(rconn)) >= 8, 10, what="eight hook calls")
    by_task: dict[str, list[dict]] = {}
    for e in events(rconn):
        by_task.setdefault(e["id"], []).append(e)
    # And the recorder saw each run: before/after around a success
    assert [(e["hook"], e.get("result")) for e in by_task[ok]] == [
        ("before", None), ("after", {"double": 42})]
    assert by_task[ok][0]["payload"] == {"n": 21}
    # two failed runs, the first retried, the second dead, with the exception and traceback
    assert [(e["hook"], e["attempt"], e.get("will_retry")) for e in by_task[doomed]] == [
        ("before", 1, None), ("on_failure", 1, True),
        ("before", 2, None), ("on_failure", 2, False), ("on_dead", 2, None)]
    fail = by_task[doomed][3]
    assert fail["exc"] == "ValueError" and fail["traceback"] is True
    assert by_task[doomed][4]["error"] == "ValueError: no luck on attempt 2"
    # a task that could not run at all: on_dead only
    (only,) = by_task[unknown]
    assert only["hook"] == "on_dead" and "no handler for task type" in only["error"]
    # and the broken middleware was logged, not fatal (the child never restarted)
    master.signal(signal.SIGTERM)
    assert master.wait_exit() == 0
    assert "middleware Broken.before failed (ignored)" in master.log()


def test_add_middleware_wants_an_instance():
    with pytest.raises(TypeError, match=r"tq\.Middleware instance"):
        tq.add_middleware(object())   # type: ignore[arg-type]


def test_ctx_redis_is_one_connection_per_worker(masters, client: tq.Client, rconn):
    ids = [client.enqueue("counted", {}) for _ in range(20)]
    master = masters("-c", "2", "-A", "hookapp")
    master.wait_ready(2)
    results = [client.wait(i, timeout=20) for i in ids]
    assert sorted(r["n"] for r in results) == list(range(1, 21))
    assert {r["name"] for r in results} == {"tq-handler"} and all(r["same"] for r in results)
    # at most one such connection per child, whatever the number of tasks
    handlers = [c for c in rconn.client_list() if c.get("name") == "tq-handler"]
    assert 1 <= len(handlers) <= 2
    master.signal(signal.SIGTERM)
    assert master.wait_exit() == 0
