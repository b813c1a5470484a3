"""The dashboard's JSON API and actions, on the real Redis (the app called in-process)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
from dashboard_support import DashboardProcess, make_dead
from redis_server import free_port

import tq
from tq.dashboard.app import create_app
from tq.store.history import History
from tq.tally import Tally

HOST = {"Host": "127.0.0.1:8080"}


pytestmark = pytest.mark.cluster_too   # each test: on a standalone Redis, then on a Cluster


@pytest.fixture
def app(client: tq.Client):
    return create_app(client)


@pytest.fixture
def web(app):
    return app.test_client()


@pytest.fixture
def csrf(app) -> dict[str, str]:
    """Headers of a same-origin POST from the page (its CSRF token is in a meta tag)."""
    page = app.test_client().get("/", headers=HOST).get_data(as_text=True)
    value = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    return {**HOST, "X-CSRF-Token": value, "Origin": "http://127.0.0.1:8080"}


def test_overview_reads_everything_the_page_shows(web, client, broker):
    # Given queued tasks at two priorities, a delayed one, a dead one and some history
    client.enqueue("send", {"n": 1}, queue="email", priority=9)
    client.enqueue("send", {"n": 2}, queue="email", priority=9)
    client.enqueue("send", {"n": 3}, queue="email")
    client.enqueue("resize", {"w": 64}, queue="images", delay=30)
    make_dead(broker, client, queue="outbox")
    history = History(broker)
    done = Tally()
    for _ in range(4):
        done.add("send", "succeeded", 0.004, 0.001)
    history.record(done, now=history.now() - 2)
    broker.heartbeat("m1", {"host": "web-1", "pid": 42, "status": "running",
                            "children": [{"index": 0, "pid": 43, "state": "busy",
                                          "task": "T1", "type": "send",
                                          "since": history.now() - 3.0, "rss": 1 << 20}]}, {})

    got = web.get("/api/overview", headers=HOST).get_json()

    assert got["queues"]["email"]["by_priority"] == {"9": 2, "0": 1}
    assert got["queues"]["images"]["scheduled"] == 1
    assert got["dead"] == 1
    assert got["stats"]["enqueued"] == 5 and got["stats"]["dead"] == 1
    assert sum(got["history"]["processed"]) == 4
    assert len(got["history"]["processed"]) == 3600
    assert got["latency"]["send"]["duration"]["p50"] == pytest.approx(0.0035)
    assert got["latency"]["send"]["duration"]["bounds"]["p50"] == [0.003, 0.004]
    (master,) = got["masters"]
    assert master["host"] == "web-1" and not master["stale"]
    assert 2.5 < master["children"][0]["task_age"] < 10
    (sched,) = got["scheduled"]
    assert sched["type"] == "resize" and "payload" not in sched   # (polled: no payloads)
    (sched,) = web.get("/api/scheduled", headers=HOST).get_json()
    assert sched["payload"] == {"w": 64} and sched["truncated"] == {}
    # Then a poll with `since` only gets the seconds after it
    last = got["history"]["start"] + len(got["history"]["processed"]) - 1
    newer = web.get(f"/api/overview?since={last}", headers=HOST).get_json()["history"]
    assert len(newer["processed"]) <= 2


def test_the_articles_endpoints_and_task_lookup(web, client, broker):
    (dead_id,) = make_dead(broker, client, message="<b>bold</b> refused")
    waiting = client.enqueue("send", {"to": "a@example.com"}, queue="email")
    assert web.get("/stats", headers=HOST).get_json()["total"]["enqueued"] == 2
    assert web.get("/queues", headers=HOST).get_json()["email"]["ready"] == 1
    (failed,) = web.get("/failed", headers=HOST).get_json()
    assert failed["id"] == dead_id and failed["error"] == "<b>bold</b> refused"
    assert "ConnectionRefusedError" in failed["traceback"]
    task = web.get(f"/api/tasks/{waiting}", headers=HOST)
    assert task.get_json()["state"] == "queued" and task.get_json()["payload"]["to"]
    assert web.get("/api/tasks/nope", headers=HOST).status_code == 404
    assert web.get("/api/failed?limit=x", headers=HOST).status_code == 400


def test_masters_without_a_recent_heartbeat_are_stale(web, broker, rconn):
    broker.heartbeat("m-old", {"host": "gone", "pid": 1, "children": []}, {})
    keys = broker.keys
    rconn.zadd(keys.masters, {"m-old": (History(broker).now() - 60) * 1000})
    (master,) = web.get("/api/masters", headers=HOST).get_json()
    assert master["stale"] and master["age"] > 59


def test_retry_and_delete_one_and_all(web, csrf, client, broker):
    ids = make_dead(broker, client, n=4)
    r = web.post("/api/failed/retry", json={"ids": [ids[0]], "queue": "email"}, headers=csrf)
    assert r.get_json() == {"retried": 1}
    assert client.get(ids[0]).state == "queued"
    r = web.post("/api/failed/delete", json={"ids": [ids[1]]}, headers=csrf)
    assert r.get_json() == {"deleted": 1}
    with pytest.raises(tq.TaskNotFound):
        client.get(ids[1])
    assert web.post("/api/failed/retry", json={"all": True}, headers=csrf).get_json() == {
        "retried": 2}
    make_dead(broker, client, n=2, queue="other")
    assert web.post("/api/failed/delete", json={"all": True, "queue": "other"},
                    headers=csrf).get_json() == {"deleted": 2}
    assert web.post("/api/failed/retry", json={"ids": "x"}, headers=csrf).status_code == 400


def test_purge_needs_the_queue_name_as_confirmation(web, csrf, client):
    for i in range(3):
        client.enqueue("send", {"n": i}, queue="email")
    client.enqueue("send", {"n": 9}, queue="email", delay=60)
    refused = web.post("/api/queues/email/purge", json={}, headers=csrf)
    assert refused.status_code == 400
    assert client.queue_sizes()["email"]["ready"] == 3
    done = web.post("/api/queues/email/purge", json={"confirm": "email"}, headers=csrf)
    assert done.get_json() == {"purged": 4}
    assert client.queue_sizes()["email"]["ready"] == 0


@pytest.mark.parametrize("name", ["mail/eu", "/lead", "a//b/", "x@y+z.1-2_3", "purge/purge"])
def test_purge_a_queue_whose_name_has_slashes(web, csrf, client, name):
    """Queue names may hold "/" (and @ +); the page sends them with encodeURIComponent."""
    for i in range(2):
        client.enqueue("send", {"n": i}, queue=name)
    client.enqueue("send", {"n": 9}, queue="other")
    url = f"/api/queues/{quote(name, safe='')}/purge"   # encodeURIComponent(name)

    refused = web.post(url, json={"confirm": "other"}, headers=csrf)
    assert refused.status_code == 400 and "confirm" in refused.get_json()["error"]
    done = web.post(url, json={"confirm": name}, headers=csrf)

    assert done.status_code == 200, done.get_data(as_text=True)
    assert done.get_json() == {"purged": 2}
    assert client.queue_sizes()[name]["ready"] == 0
    assert client.queue_sizes()["other"]["ready"] == 1


def test_purge_refuses_a_name_tq_does_not_allow(web, csrf):
    reply = web.post("/api/queues/a%3Ab/purge", json={"confirm": "a:b"}, headers=csrf)
    assert reply.status_code == 404
    long = "q" * 201
    reply = web.post(f"/api/queues/{long}/purge", json={"confirm": long}, headers=csrf)
    assert reply.status_code == 400 and "longer than 200" in reply.get_json()["error"]


def test_the_page_encodes_the_queue_name_in_the_purge_url():
    from tq.dashboard import app as app_module

    script = (Path(app_module.__file__).parent / "static" / "dashboard.js").read_text()
    assert "`/api/queues/${encodeURIComponent(name)}/purge`" in script


def test_the_real_server_purges_a_queue_with_a_slash(redis_url, client):
    client.enqueue("send", {"n": 1}, queue="mail/eu")
    proc = DashboardProcess(redis_url).start()
    try:
        with urllib.request.urlopen(proc.url + "/", timeout=5) as reply:
            page = reply.read().decode()
        token = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        req = urllib.request.Request(
            f"{proc.url}/api/queues/{quote('mail/eu', safe='')}/purge", method="POST",
            data=json.dumps({"confirm": "mail/eu"}).encode(),
            headers={"Content-Type": "application/json", "X-CSRF-Token": token,
                     "Origin": proc.url})
        with urllib.request.urlopen(req, timeout=5) as reply:
            assert json.loads(reply.read()) == {"purged": 1}
    finally:
        assert proc.stop() == 0


@pytest.mark.parametrize("query", [
    "/api/failed?offset=99999999999999999999", "/api/failed?offset=9223372036854775807",
    "/api/failed?offset=1000000001", "/api/failed?offset=-1", "/api/failed?offset=1.5",
    "/api/failed?limit=99999999999999999999", "/api/failed?limit=501", "/api/failed?limit=0",
    "/failed?limit=x", "/api/failed?limit=" + "9" * 5000,
    "/api/scheduled?limit=99999999999999999999", "/api/scheduled?limit=0",
    "/api/overview?since=99999999999999999999", "/api/history?since=-5",
    "/api/history?span=99999999999999999999", "/api/latency?window=99999999999999999999",
])
def test_out_of_range_numbers_answer_400(web, client, broker, query):
    make_dead(broker, client, n=2)
    client.enqueue("send", {}, queue="email", delay=60)
    reply = web.get(query, headers=HOST)
    assert reply.status_code == 400, reply.get_data(as_text=True)[:500]
    name = query.split("?")[1].split("=")[0]
    assert reply.get_json()["error"].startswith(f"{name} must be an integer from ")


def test_numbers_at_the_bounds_are_served(web, client, broker):
    ids = make_dead(broker, client, n=3)
    page = web.get("/api/failed?limit=500&offset=1", headers=HOST).get_json()
    assert len(page) == 2 and {t["id"] for t in page} < set(ids)
    assert web.get("/api/failed?offset=1000000000", headers=HOST).get_json() == []
    assert len(web.get("/api/failed?limit=1", headers=HOST).get_json()) == 1
    assert web.get("/api/history?span=86400&since=0", headers=HOST).status_code == 200


def test_history_and_latency_endpoints(web, broker):
    history = History(broker)
    t = Tally()
    t.add("resize", "succeeded", 0.2, 0.01)
    t.add("resize", "failed", 0.3, 0.01)   # as a child tallies a run that failed for good
    t.add("resize", "dead")
    history.record(t, now=history.now() - 1)
    got = web.get("/api/history?span=60", headers=HOST).get_json()
    assert sum(got["processed"]) == 2 and sum(got["failed"]) == 1 and got["step"] == 1
    minutes = web.get("/api/history?resolution=m&span=3600", headers=HOST).get_json()
    assert minutes["step"] == 60
    assert web.get("/api/history?resolution=h", headers=HOST).status_code == 400
    lat = web.get("/api/latency?window=120", headers=HOST).get_json()
    assert lat["resize"]["outcomes"]["dead"] == 1
    assert lat["resize"]["duration"]["p99"] == pytest.approx(0.299)   # in (0.25, 0.3]
    assert lat["resize"]["duration"]["bounds"]["p99"] == [0.25, 0.3]


def test_redis_down_answers_503(redis_url):
    down = tq.Client(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=1)
    web = create_app(down).test_client()
    reply = web.get("/api/queues", headers=HOST)
    assert reply.status_code == 503 and "unavailable" in reply.get_json()["error"]
    down.close()


def test_pause_and_resume_a_queue_and_see_its_limits(web, csrf, client):
    client.enqueue("send", {}, queue="email")
    client.set_limit("send", "5/s", queue="email")
    assert web.post("/api/queues/email/pause", json={}).status_code in (400, 403)   # no CSRF
    assert not client.queue_sizes()["email"]["paused"]
    done = web.post("/api/queues/email/pause", json={}, headers=csrf)
    assert done.get_json() == {"queue": "email", "paused": True}
    row = web.get("/api/overview").get_json()["queues"]["email"]
    assert row["paused"] is True
    assert row["limits"] == {"send": {"limits": "5/s", "running": 0, "held": 0,
                                      "set_by": "operator"}}
    assert web.post("/api/queues/email/resume", json={}, headers=csrf).get_json()[
        "paused"] is False
    assert not client.queue_sizes()["email"]["paused"]
    unknown = web.post("/api/queues/nosuch/pause", json={}, headers=csrf)
    assert unknown.status_code == 400 and "unknown queue" in unknown.get_json()["error"]


def test_cancel_a_waiting_task(web, csrf, client):
    tid = client.enqueue("send", {}, queue="email", delay=60)
    assert web.post(f"/api/tasks/{tid}/cancel", json={"queue": "email"}).status_code in (400, 403)
    done = web.post(f"/api/tasks/{tid}/cancel", json={"queue": "email"}, headers=csrf)
    assert done.get_json() == {"id": tid, "outcome": "cancelled"}
    assert web.get(f"/api/tasks/{tid}", headers=csrf).get_json()["state"] == "cancelled"
    again = web.post(f"/api/tasks/{tid}/cancel", json={}, headers=csrf)
    assert again.get_json()["outcome"] == "finished"


def test_a_workflow_and_its_cancel(web, csrf, client):
    wf = client.workflow(tq.chain(tq.step("email", {"to": "a@example.com"}), tq.step("email")))
    got = web.get(f"/api/workflows/{wf.id}").get_json()
    assert got["state"] == "running" and [m["state"] for m in got["members"]] == [
        "queued", "waiting"]
    assert got["members"][1]["after"] == [got["members"][0]["name"]]
    assert web.get("/api/workflows/nope").status_code == 404
    # an action: POST with the CSRF token only
    assert web.post(f"/api/workflows/{wf.id}/cancel", json={}).status_code in (400, 403)
    done = web.post(f"/api/workflows/{wf.id}/cancel", json={}, headers=csrf).get_json()
    assert done == {"id": wf.id, "cancelled": 2}
    assert web.get(f"/api/workflows/{wf.id}").get_json()["state"] == "cancelled"
