"""The dashboard with huge tasks (payloads, errors, results of ~0.9 MB, within tq's payload
limit): every JSON reply bounded in bytes, lists of previews that stay valid JSON and say
what was cut, pages cut short by their size with a cursor that goes on, each value in full
on request, the overview without payloads, and replies that did not change sent as 304."""

from __future__ import annotations

import json
import re

import pytest
from dashboard_support import BIG, MESSAGE, TB_LAST, fail_long, make_huge
from test_dashboard_api import HOST

import tq
from tq import previews
from tq.dashboard import api, tasks, values
from tq.dashboard.app import create_app
from tq.excerpt import ELLIPSIS
from tq.store import peek

ROW = 16 * 1024   # a list's row: 1 KiB of each value, a traceback's head and tail, a history
LIST = tasks.PAGE_BYTES + ROW
TASK_PAGE = 4 * values.PAGE_PREVIEW + values.PAGE_TAIL + 16 * 1024
# every JSON GET of the dashboard, and the most its reply may have with any tasks in Redis
BOUNDS = {
    "/api/overview": 64 * 1024, "/api/stats": 8 * 1024, "/stats": 8 * 1024,
    "/api/queues": 8 * 1024, "/queues": 8 * 1024, "/api/failed": LIST, "/failed": LIST,
    "/api/scheduled": LIST, "/api/masters": 1024, "/api/workers": 1024, "/api/tasks": LIST,
    "/api/series": 16 * 1024, "/api/tasks/<task_id>": TASK_PAGE,
    "/api/workflows/<workflow_id>": LIST, "/api/history": 64 * 1024, "/api/latency": 1024,
}


@pytest.fixture
def web(client: tq.Client):
    return create_app(client).test_client()


def json_gets(app) -> set[str]:
    return {r.rule for r in app.url_map.iter_rules() if "GET" in r.methods
            and r.rule not in ("/", "/login", "/static/<path:filename>")
            and not r.rule.endswith("/value/<part>")}


@pytest.mark.cluster_too
def test_every_json_reply_is_bounded_with_huge_tasks(web, client, broker):
    # Given huge tasks in every state (one reply of each list held 21.6 MB before)
    ids = make_huge(client, broker)
    # Then every JSON GET of the dashboard (a new one must be added here) stays in its bound
    assert json_gets(web.application) == set(BOUNDS)
    sizes = {}
    for rule, bound in BOUNDS.items():
        if rule == "/api/tasks":
            urls = [f"/api/tasks?state={s}&limit=500" for s in tasks.STATES]
        elif "<task_id>" in rule:
            urls = [f"/api/tasks/{ids[k]}" for k in ("dead", "retry", "done", "scheduled",
                                                      "running", "ready")]
        else:
            urls = [rule.replace("<workflow_id>", ids["workflow"]) + "?limit=500"]
        for url in urls:
            reply = web.get(url, headers=HOST)
            assert reply.status_code == 200, (url, reply.get_data()[:300])
            sizes[url] = len(reply.get_data())
            assert sizes[url] <= bound, (url, sizes[url], bound)
    # the lists show every task, each with its values cut
    page = web.get("/api/tasks?state=dead", headers=HOST).get_json()
    assert len(page["items"]) == 2 and not page["cut_short"]
    assert all(set(i["truncated"]) == {"payload", "error", "traceback"} for i in page["items"])
    assert sizes["/api/tasks?state=dead&limit=500"] < 20_000


def test_previews_are_valid_json_and_say_what_was_cut(web, client, broker):
    ids = make_huge(client, broker, n=1)
    (dead,) = web.get("/api/failed", headers=HOST).get_json()
    # the payload: null, and a preview that parses, with its size as stored
    stored = broker.conn.hget(broker.qkeys("huge-dead").tasks, ids["dead"])
    assert dead["payload"] is None
    assert json.loads(dead["payload_preview"]) == {"blob": "x" * len(
        json.loads(dead["payload_preview"])["blob"][:-1]) + ELLIPSIS}
    assert 900 <= len(dead["payload_preview"]) <= tasks.PREVIEW
    assert dead["truncated"]["payload"] == len(json.dumps({"blob": "x" * BIG},
                                                          separators=(",", ":")))
    assert len(stored) > dead["truncated"]["payload"]   # (the body has a header too)
    # the error: its beginning, the traceback: its beginning and its last line
    assert dead["error"].startswith("ValueError: yyy") and dead["error"].endswith(ELLIPSIS)
    assert len(dead["error"]) <= tasks.PREVIEW
    assert dead["traceback"].startswith("Traceback (most recent call last):")
    assert dead["traceback"].endswith(f"\n{TB_LAST}\n")
    assert dead["truncated"]["error"] >= BIG and dead["truncated"]["traceback"] >= BIG
    # a result the same way, and an earlier attempt's error in the history
    (done,) = [i for i in web.get("/api/tasks?state=finished", headers=HOST).get_json()[
        "items"] if i["queue"] == "huge-done"]
    assert done["result"] is None and done["state"] == "succeeded"
    assert json.loads(done["result_preview"])["blob"].startswith("zzz")
    # the task page: the same, with 64 KiB of each value
    retry = web.get(f"/api/tasks/{ids['retry']}", headers=HOST).get_json()
    assert retry["state"] == "failed-will-retry"
    assert 60_000 < len(retry["error"]) <= values.PAGE_PREVIEW
    assert retry["error"].endswith(ELLIPSIS) and retry["traceback"].endswith(TB_LAST + "\n")


def test_a_history_of_long_errors_stays_bounded(web, client, broker):
    # Given a task that failed 22 times with 100 KB messages (it keeps 20 earlier errors)
    tid = client.enqueue("flaky", {"n": 1}, max_retries=30)
    for i in range(22):
        if i:   # its retry is scheduled: run it now
            assert client.run_now([tid], "flaky") == 1
        (task,) = broker.fetch("w-test", ["flaky"], 1)
        fail_long(broker, task, f"ValueError: attempt {i} " + "h" * 100_000, retry=True)
    # Then its page and its row stay bounded, each earlier message cut
    one = web.get(f"/api/tasks/{tid}", headers=HOST)
    assert len(one.get_data()) <= TASK_PAGE
    got = one.get_json()
    assert len(got["history"]) == 20
    assert all(h["message"].startswith(f"ValueError: attempt {i + 1} ") and h["truncated"]
               and h["message"].endswith(ELLIPSIS) for i, h in enumerate(got["history"]))
    row = web.get("/api/tasks?state=scheduled", headers=HOST)
    assert len(row.get_data()) <= ROW


@pytest.mark.cluster_too
def test_each_value_in_full_on_request(web, client, broker, monkeypatch):
    ids = make_huge(client, broker, n=1)
    dead, done = ids["dead"], ids["done"]

    def full(tid: str, part: str, queue: str = "") -> tuple[int, bytes, dict]:
        reply = web.get(f"/api/tasks/{tid}/value/{part}?queue={queue}", headers=HOST)
        return reply.status_code, reply.get_data(), reply.headers

    status, body, headers = full(dead, "payload", "huge-dead")
    assert status == 200 and headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Cache-Control"] == "no-store"
    assert json.loads(body) == {"blob": "x" * BIG}
    status, body, _ = full(dead, "error")   # (the queue found from the id, as tq get does)
    assert status == 200 and body.decode() == MESSAGE
    status, body, _ = full(dead, "traceback")
    assert body.decode().startswith("Traceback") and body.decode().endswith(TB_LAST + "\n")
    assert MESSAGE[-1000:] in body.decode()
    status, body, _ = full(done, "result")
    assert status == 200 and json.loads(body) == {"blob": "z" * BIG}
    # no such value, no such part, no such task
    assert full(done, "traceback")[0] == 404
    assert full(dead, "result")[0] == 404
    assert full(dead, "secrets")[0] == 400
    assert full("P8AnotAtask0000000", "payload")[0] == 404
    # beyond the limit (16 MiB and a header) a value is refused with its size, never read
    monkeypatch.setattr(values, "FULL_LIMIT", 1000)
    status, body, _ = full(dead, "payload")
    assert status == 413 and b"900,0" in body


def test_a_page_cut_short_by_its_size_goes_on_with_its_cursor(web, client, broker,
                                                              monkeypatch):
    # Given 30 dead tasks of 4 KB, and pages of at most ~10 KB
    monkeypatch.setattr(tasks, "PAGE_BYTES", 10_000)
    monkeypatch.setattr(api, "PAGE_BYTES", 10_000)
    for i in range(30):
        client.enqueue("send", {"n": i, "pad": "p" * 4000}, queue="q", max_retries=0)
    for task in broker.fetch("w-test", ["q"], 30):
        fail_long(broker, task, "ValueError: " + "e" * 2000)
    dead = sorted(broker.conn.zrange(broker.qkeys("q").dead, 0, -1))
    # When the list is read page by page
    seen, cursor, sizes = [], "", []
    while True:
        reply = web.get(f"/api/tasks?state=dead&limit=50&cursor={cursor}", headers=HOST)
        page = reply.get_json()
        sizes.append(len(reply.get_data()))
        seen += [i["id"] for i in page["items"]]
        if not page["next"]:
            break
        assert page["cut_short"] and 0 < len(page["items"]) < 50
        cursor = page["next"]
    # Then each page stopped near its budget, and every task showed once
    assert len(sizes) > 3 and max(sizes) <= 10_000 + ROW
    assert sorted(s.encode() for s in seen) == dead
    # and the overview's dead letters say where the next ones start
    reply = web.get("/api/failed?limit=50", headers=HOST)
    assert 0 < len(reply.get_json()) < 30
    assert int(reply.headers["X-Next-Offset"]) == len(reply.get_json())


def test_an_unchanged_reply_is_sent_as_304(web, client, broker):
    make_huge(client, broker, n=1)
    first = web.get("/api/failed?limit=50", headers=HOST)
    etag = first.headers["ETag"]
    again = web.get("/api/failed?limit=50", headers={**HOST, "If-None-Match": etag})
    assert again.status_code == 304 and again.get_data() == b""
    # a change: a full reply with a new tag
    client.enqueue("x", {}, queue="x", max_retries=0)
    (task,) = broker.fetch("w-test", ["x"], 1)
    fail_long(broker, task, "ValueError: new")
    changed = web.get("/api/failed?limit=50", headers={**HOST, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag


def test_the_overview_carries_no_payload(web, client, broker):
    make_huge(client, broker, n=1)
    broker.conn.hset(broker.keys.periodic, "nightly", json.dumps(
        {"schedule": "0 3 * * *", "type": "t", "payload": {"blob": "x" * 1000}, "tz": "UTC"}))
    got = web.get("/api/overview", headers=HOST)
    assert len(got.get_data()) <= BOUNDS["/api/overview"]
    text = got.get_data(as_text=True)
    assert '"payload' not in text and "xxxxxxxx" not in text
    overview = got.get_json()
    assert {s["type"] for s in overview["scheduled"]} >= {"huge-later", "huge-retry"}
    assert overview["periodic"][0]["name"] == "nightly"


def test_encrypted_payloads_previewed_and_opened_in_full(redis_url, client, broker):
    from tq.keyring import new_key

    keys = f"k1:{new_key()}"
    keyed = tq.Client(redis_url, keys=keys)
    try:
        small = keyed.enqueue("secret", {"card": "4111"}, max_retries=0)
        # (sealed, a payload grows by a third: this one's body stays under the 1 MiB limit)
        big = keyed.enqueue("secret", {"card": "4111", "blob": "s" * (BIG // 2)},
                            max_retries=0)
        for web, opened in ((create_app(keyed).test_client(), True),
                            (create_app(client).test_client(), False)):
            rows = {i["id"]: i for i in web.get("/api/tasks?state=ready",
                                                headers=HOST).get_json()["items"]}
            # a short one opened as before (with the keys), a long one too long to open in a
            # preview (authenticated encryption opens all of it or nothing)
            assert rows[small]["payload"] == ({"card": "4111"} if opened else None)
            assert rows[small]["encrypted"] is not opened
            assert rows[big]["payload"] is None and rows[big]["payload_preview"] is None
            assert rows[big]["truncated"]["payload"] > BIG // 2
            assert rows[big]["encrypted"] is not opened
            full = web.get(f"/api/tasks/{big}/value/payload", headers=HOST)
            if opened:
                assert json.loads(full.get_data()) == {"card": "4111", "blob": "s" * (BIG // 2)}
            else:
                assert full.get_data() == b"" and "encrypted" in full.headers["X-TQ-Note"]
            if not opened:
                assert b"4111" not in web.get("/api/tasks?state=ready", headers=HOST).get_data()
    finally:
        keyed.close()


def test_records_tq_did_not_write_cost_a_preview_too(web, client, broker):
    # error records that are not JSON, or JSON with more tokens than a peek may walk: each
    # row still shows, bounded, with what there is to read of them
    ids = client.enqueue_many([("odd", {"n": i}) for i in range(3)])
    for task in broker.fetch("w-test", ["odd"], 3):
        broker.fail("w-test", task, "short", retry=False)
    errors = broker.qkeys("odd").errors
    broker.conn.hset(errors, ids[0], "<html>" + "x" * 500_000)
    broker.conn.hset(errors, ids[1], json.dumps(
        {"kind": "error", "message": "dense " + "m" * 3000,
         "history": [{"message": str(i)} for i in range(100_000)]}))
    reply = web.get("/api/tasks?state=dead&queue=odd", headers=HOST)
    assert reply.status_code == 200 and len(reply.get_data()) <= 3 * ROW
    rows = {i["id"]: i for i in reply.get_json()["items"]}
    assert rows[ids[0]]["error"].startswith("<html>xxx") and rows[ids[0]]["truncated"]
    assert rows[ids[1]]["error"].startswith("dense mmm") and rows[ids[1]]["error"].endswith(
        ELLIPSIS)
    assert rows[ids[2]]["error"] == "short" and rows[ids[2]]["truncated"] == {}
    for tid in ids[:2]:
        page = web.get(f"/api/tasks/{tid}", headers=HOST)
        assert page.status_code == 200 and len(page.get_data()) <= TASK_PAGE


@pytest.mark.parametrize("shape", ["dense", "deep", "wide"])
def test_a_peek_is_bounded_whatever_the_shape_of_a_value(client, broker, shape):
    # a result of many small tokens (more than a peek may walk), nested deep, or with many
    # long members: what Redis sends back stays within a few caps
    value = {"dense": [{"id": i, "name": "a"} for i in range(50_000)],
             "deep": {"a": [{"b": {"c": ["x" * 5000] * 50}}] * 50},
             "wide": {f"k{i}": "v" * 3000 for i in range(500)}}[shape]
    tid = client.enqueue("t", {}, queue="shapes")
    (task,) = broker.fetch("w-test", ["shapes"], 1)
    broker.ack("w-test", task, value)
    (got,) = peek.peek_many(broker, [(tid, "shapes")], 1024, tail=1024)

    def size(node) -> int:
        return sum(size(n) for n in node) if isinstance(node, list) else \
            len(node) if isinstance(node, bytes) else 8
    assert size(got.result) <= 4 * 1024 + 1024 + 4096
    page = create_app(client).test_client().get(f"/api/tasks/{tid}", headers=HOST)
    assert page.status_code == 200 and len(page.get_data()) <= TASK_PAGE
    preview = page.get_json()["result_preview"]
    assert isinstance(json.loads(preview), type(value))
    assert re.match(r'[\[{]', preview)


@pytest.mark.parametrize("indent", [None, 1])
def test_a_peek_reads_the_members_of_a_record_as_json_would(client, broker, indent):
    # quotes after runs of backslashes, brackets and braces inside strings, numbers and
    # literals, whitespace between tokens: each member's value read back is the stored one
    record = {"kind": "error", "message": 'a "q" \\" \\\\" ] } [ { ' + "m" * 200,
              "traceback": "\\" * 7 + '"' + "\\" * 8 + "t" * 200, "at": 1.5e12, "worker": None,
              "ok": True, "history": [{"message": "h]}\"" + str(i) * 50, "at": i}
                                      for i in range(3)]}
    tid = client.enqueue("rec", {})
    (task,) = broker.fetch("w-test", ["rec"], 1)
    broker.fail("w-test", task, "x", retry=False)
    broker.conn.hset(broker.qkeys("rec").errors, tid, json.dumps(record, indent=indent))
    (got,) = peek.peek_many(broker, [(tid, "rec")], 600)
    outline = previews.from_outline(got.error)
    assert isinstance(outline, previews.Outlined)   # (read member by member)
    assert previews._plain(outline) == record


def test_a_message_of_backslashes_is_read_in_steps(web, client, broker):
    # 300,000 backslashes (600,000 escaped) before a closing quote: counted 64 bytes a step
    tid = client.enqueue("slashes", {}, max_retries=0)
    (task,) = broker.fetch("w-test", ["slashes"], 1)
    broker.fail("w-test", task, "\\" * 300_000, kind="permanent", retry=False)
    row = web.get("/api/tasks?state=dead&queue=slashes", headers=HOST).get_json()["items"][0]
    assert row["error"] == "\\" * 511 + ELLIPSIS and row["error_kind"] == "permanent"
    assert row["truncated"]["error"] == 600_002
    full = web.get(f"/api/tasks/{tid}/value/error", headers=HOST)
    assert full.get_data(as_text=True) == "\\" * 300_000
