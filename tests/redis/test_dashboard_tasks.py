"""Finding tasks through the dashboard's API: lists by state across queues with counts and
paging, filters, bulk actions, scheduled tasks run now or deleted, attempt history, per-queue
series, and browser sessions that expire and end at logout (the app called in-process)."""

from __future__ import annotations

import time
import traceback

import pytest
from test_dashboard_api import HOST, csrf, make_dead  # noqa: F401 - fixtures

import tq
from tq.dashboard.app import create_app
from tq.dashboard.security import SESSION_COOKIE, Guard
from tq.dashboard.tasks import Filter, Lister
from tq.store.history import History
from tq.tally import Tally

cluster_too = pytest.mark.cluster_too   # on a standalone Redis, then on a Cluster


@pytest.fixture
def app(client: tq.Client):
    return create_app(client)


@pytest.fixture
def web(app):
    return app.test_client()


def pages(web, query: str, limit: int = 50) -> list[dict]:
    """Every page of a list, following the cursors; returns the pages' replies."""
    out, cursor = [], ""
    while True:
        reply = web.get(f"/api/tasks?{query}&limit={limit}&cursor={cursor}", headers=HOST)
        assert reply.status_code == 200, reply.get_json()
        page = reply.get_json()
        out.append(page)
        if not page["next"]:
            return out
        cursor = page["next"]


@cluster_too
def test_dead_letters_page_through_two_queues_newest_first(web, client, broker):
    # Given 130 dead tasks in one queue and 70 in another, dying in turns
    a = make_dead(broker, client, 130, queue="email")
    b = make_dead(broker, client, 70, queue="sms")
    # When the operator pages through all of them, 50 at a time
    got = pages(web, "state=dead")
    # Then the pages hold each dead task exactly once, with counts per queue
    ids = [t["id"] for p in got for t in p["items"]]
    assert len(got) == 4 and [len(p["items"]) for p in got] == [50, 50, 50, 50]
    assert sorted(ids) == sorted(a + b)
    assert got[0]["total"] == 200 and got[0]["counts"] == {"email": 130, "sms": 70}
    died = [t["finished_at"] for p in got for t in p["items"]]
    assert died == sorted(died, reverse=True)
    first = got[0]["items"][0]
    assert first["state"] == "dead" and first["error"] == "smtp refused"
    assert "ConnectionRefusedError" in first["traceback"]
    # and one queue alone
    only = pages(web, "state=dead&queue=sms", limit=30)
    assert sorted(t["id"] for p in only for t in p["items"]) == sorted(b)
    assert only[0]["total"] == 70


@cluster_too
def test_filters_by_type_and_error_text_scan_at_bounded_cost(web, client, broker,
                                                            monkeypatch):
    import tq.dashboard.tasks as tasks_module

    make_dead(broker, client, 30, queue="email", message="smtp refused")
    odd = make_dead(broker, client, 3, queue="email", message="mailbox full")
    page = web.get("/api/tasks?state=dead&text=MAILBOX", headers=HOST).get_json()
    assert sorted(t["id"] for t in page["items"]) == sorted(odd)
    assert page["total"] is None and page["scanned"] == 33 and page["next"] is None
    assert web.get("/api/tasks?state=dead&type=nope", headers=HOST).get_json()["items"] == []
    # a filtered page examines at most SCAN_BUDGET tasks, then hands out a cursor
    monkeypatch.setattr(tasks_module, "SCAN_BUDGET", 10)
    page = web.get("/api/tasks?state=dead&text=mailbox", headers=HOST).get_json()
    assert page["scanned"] == 10 and page["next"]
    found = [t["id"] for p in pages(web, "state=dead&text=mailbox") for t in p["items"]]
    assert sorted(found) == sorted(odd)


@cluster_too
def test_every_state_has_its_list(web, client, broker):
    ready = [client.enqueue("send", {"n": i}, queue="email", priority=i % 2 * 9)
             for i in range(4)]
    later = client.enqueue("send", {}, queue="email", delay=600)
    sooner = client.enqueue("send", {}, queue="sms", delay=60)
    running = client.enqueue("send", {}, queue="jobs")
    (claimed,) = broker.fetch("w-test", ["jobs"], 1)
    done = client.enqueue("send", {"ok": 1}, queue="jobs")
    (task,) = broker.fetch("w-test", ["jobs"], 1)
    broker.ack("w-test", task)

    def ids(state: str, queue: str = "") -> list[str]:
        page = web.get(f"/api/tasks?state={state}&queue={queue}", headers=HOST).get_json()
        return [t["id"] for t in page["items"]]

    # ready: priority 9 first, FIFO within a level
    assert ids("ready", "email") == [ready[1], ready[3], ready[0], ready[2]]
    assert ids("scheduled") == [sooner, later]   # soonest first, across queues
    assert ids("running") == [running] and claimed.id == running
    assert ids("finished") == [done]
    # unknown states and bad cursors are refused
    assert web.get("/api/tasks?state=lost", headers=HOST).status_code == 400
    assert web.get("/api/tasks?state=dead&cursor=xyz", headers=HOST).status_code == 400


@cluster_too
def test_run_now_and_delete_scheduled_tasks(web, client, csrf):  # noqa: F811
    first = client.enqueue("send", {}, queue="email", delay=3600)
    second = client.enqueue("send", {}, queue="email", delay=3600)
    reply = web.post("/api/scheduled/run", json={"ids": [first], "queue": "email"}, headers=csrf)
    assert reply.get_json() == {"ran": 1}
    assert client.get(first).state == "queued"
    assert client.get(second).state == "scheduled"
    reply = web.post("/api/scheduled/delete", json={"ids": [second, "gone"], "queue": "email"},
                     headers=csrf)
    assert reply.get_json() == {"deleted": 1}
    with pytest.raises(tq.TaskNotFound):
        client.get(second)
    # ids need their queue
    assert web.post("/api/scheduled/run", json={"ids": [first]}, headers=csrf).status_code == 400


@cluster_too
def test_bulk_actions_follow_the_filter(web, client, broker, csrf):  # noqa: F811
    smtp = make_dead(broker, client, 5, queue="email", message="smtp refused")
    full = make_dead(broker, client, 2, queue="email", message="mailbox full")
    other = make_dead(broker, client, 3, queue="sms", message="smtp refused")
    # retry what matches the text in one queue
    reply = web.post("/api/tasks/bulk", json={"state": "dead", "action": "retry",
                                              "queue": "email", "text": "smtp"}, headers=csrf)
    assert reply.get_json()["done"] == 5
    assert {client.get(i).state for i in smtp} == {"queued"}
    assert {client.get(i).state for i in full + other} == {"dead"}
    # delete a whole queue's dead letters
    reply = web.post("/api/tasks/bulk", json={"state": "dead", "action": "delete",
                                              "queue": "sms"}, headers=csrf)
    assert reply.get_json()["done"] == 3
    # run every scheduled task of a type now
    later = [client.enqueue("send", {}, queue="email", delay=600) for _ in range(3)]
    keep = client.enqueue("other", {}, queue="email", delay=600)
    reply = web.post("/api/tasks/bulk", json={"state": "scheduled", "action": "run",
                                              "type": "send"}, headers=csrf)
    assert reply.get_json()["done"] == 3
    assert {client.get(i).state for i in later} == {"queued"}
    assert client.get(keep).state == "scheduled"
    bad = web.post("/api/tasks/bulk", json={"state": "ready", "action": "delete"}, headers=csrf)
    assert bad.status_code == 400


@cluster_too
def test_a_dead_task_keeps_the_history_of_its_attempts(web, client, broker):
    tid = client.enqueue("send", {}, queue="email", max_retries=2)
    for attempt in range(3):
        if attempt:   # its retry is scheduled: run it now
            assert client.run_now([tid], "email") == 1
        (task,) = broker.fetch("w-test", ["email"], 1)
        try:
            raise TimeoutError(f"attempt {attempt + 1} timed out")
        except TimeoutError as exc:
            broker.fail("w-test", task, str(exc), traceback=traceback.format_exc(), delay=0)
    info = web.get(f"/api/tasks/{tid}", headers=HOST).get_json()
    assert info["state"] == "dead" and info["error"] == "attempt 3 timed out"
    assert [h["message"] for h in info["history"]] == ["attempt 1 timed out",
                                                       "attempt 2 timed out"]
    assert all(h["worker"] == "w-test" and h["at"] > 0 for h in info["history"])


@cluster_too
def test_series_per_queue_and_per_day(web, client):
    client.enqueue("resize", {}, queue="images")
    history = History(client.broker)
    now = history.now()
    for back, n in ((90, 4), (30, 6)):
        t = Tally()
        for _ in range(n):
            t.add("resize", "succeeded", 0.02, 0.001)
            t.add("send", "succeeded", 0.5, 0.001)
        history.record(t, now=now - back)
    day = web.get("/api/series?span=86400&queue=images", headers=HOST).get_json()
    assert day["step"] == 60 and len(day["processed"]) == 1440 and day["types"] == ["resize"]
    assert sum(day["processed"]) == 10
    # 20 ms runs: in the (15, 20] ms bucket, interpolated within it, the bucket given too
    assert 0.015 < max(x or 0 for x in day["p99"]) <= 0.02
    assert [b for b in day["p99_bounds"] if b] == [[0.015, 0.02]] * 2
    everything = web.get("/api/series?span=3600", headers=HOST).get_json()
    assert len(everything["processed"]) == 60 and sum(everything["processed"]) == 20
    assert web.get("/api/series?span=5", headers=HOST).status_code == 400


def test_lister_pages_cost_the_page_not_the_depth(client, broker, rconn):
    """With 5,000 dead letters a page reads its 50 and a few counters, however deep."""
    make_dead(broker, client, 10, queue="email")
    conn = broker.conn
    key = broker.qkeys("email").dead
    conn.zadd(key, {f"fake-{i}": i for i in range(5000)})
    rconn.config_resetstat()
    Lister(client).page(Filter("dead", ["email"]), None, 50)
    stats = rconn.info("commandstats")
    zrange = stats.get("cmdstat_zrevrange", {}).get("calls", 0)
    assert zrange == 1   # one window of FETCH entries, not the whole set


# -- sessions -----------------------------------------------------------------------------
def test_a_session_expires_and_ends_at_logout(client):
    token = "a-long-enough-dashboard-token"
    app = create_app(client, token, session_ttl=60)
    web = app.test_client()
    reply = web.post("/login", data={"token": token}, headers=HOST)
    assert reply.status_code == 302
    cookie = web.get_cookie(SESSION_COOKIE, domain="127.0.0.1").value
    assert web.get("/api/overview", headers=HOST).status_code == 200
    # the cookie is signed: a changed expiry is refused
    expires, nonce, mac = cookie.split(".")
    forged = f"{int(expires) + 10**6}.{nonce}.{mac}"
    other = app.test_client()
    other.set_cookie(SESSION_COOKIE, forged, domain="127.0.0.1")
    assert other.get("/api/overview", headers=HOST).status_code == 401
    # logging out ends this session, even for a copy of its cookie
    page = web.get("/", headers=HOST).get_data(as_text=True)
    csrf_value = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    copy = app.test_client()
    copy.set_cookie(SESSION_COOKIE, cookie, domain="127.0.0.1")
    out = web.post("/logout", data={"csrf": csrf_value}, headers=HOST)
    assert out.status_code == 302 and out.location.endswith("/login")
    assert web.get_cookie(SESSION_COOKIE, domain="127.0.0.1") is None
    assert copy.get("/api/overview", headers=HOST).status_code == 401
    assert copy.get("/", headers=HOST).location.endswith("/login?expired=1")
    # a logout without the page's CSRF token is refused
    assert app.test_client().post("/logout", headers=HOST).status_code == 403


def test_sessions_expire():
    guard = Guard("a-long-enough-dashboard-token", session_ttl=10)
    now = time.time()
    cookie = guard.new_session(now)
    assert guard.session_valid(cookie, now + 9)
    assert not guard.session_valid(cookie, now + 11)
    assert not guard.session_valid("garbage", now)
    assert not Guard("another-long-enough-token!", 10).session_valid(cookie, now)


def test_the_recently_finished_list_stays_bounded(client, broker):
    client.enqueue_many([("send", {"n": i}) for i in range(1150)])
    while tasks := broker.fetch("w-test", ["send"], max_tasks=100):
        for t in tasks:
            broker.ack("w-test", t)
    kept = broker.conn.llen(broker.qkeys("send").done)
    assert 1000 <= kept <= 1100
    page = Lister(client).page(Filter("finished", ["send"]), None, 50)
    assert len(page["items"]) == 50 and page["items"][0]["state"] == "succeeded"


def test_a_success_after_failures_keeps_their_errors(client, broker):
    tid = client.enqueue("send", {}, queue="email", max_retries=3)
    for attempt in range(2):
        if attempt:
            client.run_now([tid], "email")
        (task,) = broker.fetch("w-test", ["email"], 1)
        broker.fail("w-test", task, f"attempt {attempt + 1}: smtp busy", delay=0)
    client.run_now([tid], "email")
    (task,) = broker.fetch("w-test", ["email"], 1)
    assert broker.ack("w-test", task, {"sent": 1.1})
    info = client.get(tid)
    assert info.state == "succeeded" and info.result == {"sent": 1.1} and info.attempts == 3
    assert [h["message"] for h in info.history] == ["attempt 1: smtp busy",
                                                    "attempt 2: smtp busy"]
