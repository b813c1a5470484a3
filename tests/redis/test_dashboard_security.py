"""Who may read and act: loopback without a token, the token otherwise, CSRF on every POST."""

from __future__ import annotations

import urllib.request

import pytest
from click.testing import CliRunner
from dashboard_support import DashboardProcess

import tq
from tq.dashboard.app import create_app
from tq.dashboard.cli import dashboard
from tq.dashboard.security import is_loopback

LOCAL = {"Host": "127.0.0.1:8080"}
TOKEN = "s3cret-token-for-tests-0123456789"


def csrf_of(web, headers) -> str:
    page = web.get("/", headers=headers).get_data(as_text=True)
    return page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]


@pytest.fixture
def dead_id(client: tq.Client, broker) -> str:
    tid = client.enqueue("send", {"n": 1}, queue="email", max_retries=0)
    (task,) = broker.fetch("w", ["email"], 1)
    broker.fail("w", task, "boom")
    return tid


def test_loopback_without_token_reads_freely_but_posts_need_csrf(client, dead_id):
    web = create_app(client).test_client()
    assert web.get("/api/queues", headers=LOCAL).status_code == 200
    token = csrf_of(web, LOCAL)
    url, body = "/api/failed/retry", {"ids": [dead_id]}
    # no token, a wrong token, a right token from another origin: all refused
    assert web.post(url, json=body, headers=LOCAL).status_code == 403
    assert web.post(url, json=body, headers={**LOCAL, "X-CSRF-Token": "x" * 64}).status_code \
        == 403
    evil = {**LOCAL, "X-CSRF-Token": token, "Origin": "http://evil.example"}
    assert web.post(url, json=body, headers=evil).status_code == 403
    assert web.post(url, json=body, headers={**LOCAL, "X-CSRF-Token": token,
                                             "Origin": "null"}).status_code == 403
    assert client.get(dead_id).state == "dead"
    # a GET never changes anything
    assert web.get(url, headers=LOCAL).status_code == 405
    ok = web.post(url, json=body, headers={**LOCAL, "X-CSRF-Token": token,
                                           "Origin": "http://127.0.0.1:8080"})
    assert ok.status_code == 200 and client.get(dead_id).state == "queued"


def test_dns_rebinding_host_is_refused_without_a_token(client):
    web = create_app(client).test_client()
    for host in ("evil.example:8080", "evil.example", "10.0.0.5:8080"):
        assert web.get("/api/queues", headers={"Host": host}).status_code == 403
    for host in ("localhost:8080", "127.0.0.1", "[::1]:8080", "127.1.2.3:80"):
        assert web.get("/api/queues", headers={"Host": host}).status_code == 200


def test_token_guards_pages_and_api(client, dead_id):
    web = create_app(client, token=TOKEN).test_client()
    host = {"Host": "tq.internal.example:8080"}   # a token makes any host name acceptable
    page = web.get("/", headers=host)
    assert page.status_code == 302 and page.headers["Location"].endswith("/login")
    assert web.get("/api/overview", headers=host).status_code == 401
    assert web.get("/failed", headers=host).status_code == 401
    assert web.get("/api/queues", headers={**host, "Authorization": "Bearer wrong"}
                   ).status_code == 401
    bearer = {**host, "Authorization": f"Bearer {TOKEN}"}
    assert web.get("/api/queues", headers=bearer).status_code == 200
    # a bearer request needs no CSRF token: browsers never send that header by themselves
    assert web.post("/api/failed/retry", json={"ids": [dead_id]}, headers=bearer
                    ).get_json() == {"retried": 1}


def test_login_sets_a_strict_httponly_session_and_posts_still_need_csrf(client, dead_id):
    web = create_app(client, token=TOKEN).test_client()
    host = {"Host": "tq.internal.example:8080", "Origin": "http://tq.internal.example:8080"}
    wrong = web.post("/login", data={"token": "nope"}, headers=host)
    assert wrong.status_code == 403 and "not the one" in wrong.get_data(as_text=True)
    assert web.get("/api/queues", headers=host).status_code == 401
    cross = web.post("/login", data={"token": TOKEN},
                     headers={**host, "Origin": "http://evil.example"})
    assert cross.status_code == 403
    ok = web.post("/login", data={"token": TOKEN}, headers=host)
    assert ok.status_code == 302
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    assert web.get("/api/queues", headers=host).status_code == 200
    assert web.post("/api/failed/retry", json={"ids": [dead_id]}, headers=host
                    ).status_code == 403
    token = csrf_of(web, host)
    assert web.post("/api/failed/retry", json={"ids": [dead_id]},
                    headers={**host, "X-CSRF-Token": token}).get_json() == {"retried": 1}
    # a dashboard started with another token does not accept this session
    other = create_app(client, token=TOKEN + "-rotated").test_client(use_cookies=False)
    session = cookie.split(";", 1)[0]
    assert other.get("/api/queues", headers={**host, "Cookie": session}).status_code == 401
    same = create_app(client, token=TOKEN).test_client(use_cookies=False)   # a shared token
    assert same.get("/api/queues", headers={**host, "Cookie": session}).status_code == 200


def test_every_reply_carries_the_hardening_headers(client):
    web = create_app(client).test_client()
    for path in ("/", "/api/overview", "/static/dashboard.js"):
        h = web.get(path, headers=LOCAL).headers
        assert "script-src 'self'" in h["Content-Security-Policy"]
        assert "unsafe-inline" not in h["Content-Security-Policy"]
        assert h["X-Frame-Options"] == "DENY" and h["X-Content-Type-Options"] == "nosniff"
    assert web.get("/api/overview", headers=LOCAL).headers["Cache-Control"] == "no-store"


def test_the_page_never_embeds_task_data(client, broker):
    # Task data reaches the browser only as JSON, inserted as text by the script (the browser
    # test checks the rendering); the HTML itself carries none of it.
    client.enqueue("send", {"html": "<script>alert(1)</script>"}, queue="email")
    page = create_app(client).test_client().get("/", headers=LOCAL).get_data(as_text=True)
    assert "alert(1)" not in page and "<script>" not in page.replace(
        '<script src="/static/dashboard.js" defer></script>', "")


@pytest.mark.parametrize("bind", ["0.0.0.0:8089", "192.0.2.10:8089", "[::]:8089",
                                  "example.com:8089"])
def test_cli_refuses_a_non_loopback_bind_without_a_token(bind, redis_url, monkeypatch):
    monkeypatch.delenv("TQ_DASHBOARD_TOKEN", raising=False)
    got = CliRunner().invoke(dashboard, ["--bind", bind])
    # a host name: refused for want of a token, or first because it does not resolve here
    assert got.exit_code == 2 and ("without --auth-token" in got.output
                                   or "cannot resolve host" in got.output)


def test_cli_refuses_a_short_token_and_a_bad_bind(redis_url):
    got = CliRunner().invoke(dashboard, ["--bind", "0.0.0.0:8089", "--auth-token", "short"])
    assert got.exit_code == 2 and "at least 16" in got.output
    got = CliRunner().invoke(dashboard, ["--bind", "nowhere"])
    assert got.exit_code == 2 and "HOST:PORT" in got.output


def test_cli_reports_an_unreachable_redis(monkeypatch):
    from redis_server import free_port

    got = CliRunner().invoke(dashboard, ["--bind", "127.0.0.1:8089"],
                             obj={"redis_url": f"redis://127.0.0.1:{free_port()}/0",
                                  "namespace": "tq", "config_file": None})
    assert got.exit_code == 1 and "unavailable" in got.output


def test_loopback_names():
    assert all(map(is_loopback, ["127.0.0.1", "localhost", "::1", "[::1]", "127.9.9.9"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.1.1.1", "example.com", ""]))


def test_the_real_process_serves_with_a_token_from_the_environment(redis_url):
    proc = DashboardProcess(redis_url, token=TOKEN).start()
    try:
        req = urllib.request.Request(proc.url + "/api/queues",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=5) as reply:
            assert reply.status == 200
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(proc.url + "/api/queues", timeout=5)
        assert refused.value.code == 401
    finally:
        assert proc.stop() == 0


def test_wrong_tokens_are_rate_limited_per_address_and_never_read_from_the_url(client):
    from tq.dashboard.security import LOGIN_FAILURES

    web = create_app(client, token=TOKEN).test_client()
    host = {"Host": "tq.internal.example:8080", "Origin": "http://tq.internal.example:8080"}
    # the token in a URL is no login (it would end in logs and browser history)
    assert web.get(f"/?token={TOKEN}", headers=host).status_code == 302
    assert web.get(f"/api/queues?token={TOKEN}", headers=host).status_code == 401
    # a few wrong guesses (form and bearer alike), then 429 with Retry-After, even for the
    # right token: guessing takes a minute per five tries
    for i in range(LOGIN_FAILURES):
        if i % 2:
            assert web.post("/login", data={"token": f"guess-{i}"}, headers=host
                            ).status_code == 403
        else:
            assert web.get("/api/queues", headers={**host, "Authorization": f"Bearer g{i}"}
                           ).status_code == 401
    blocked = web.post("/login", data={"token": TOKEN}, headers=host)
    assert blocked.status_code == 429 and 0 < int(blocked.headers["Retry-After"]) <= 61
    assert web.get("/api/queues", headers={**host, "Authorization": f"Bearer {TOKEN}"}
                   ).status_code == 429
    # another address is not held back by this one's guesses
    other = web.post("/login", data={"token": TOKEN}, headers=host,
                     environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert other.status_code == 302


def test_the_lockout_ends_when_the_failures_age_out():
    from tq.dashboard.security import LOGIN_FAILURES, LOGIN_WINDOW, Guard

    guard = Guard(TOKEN)
    for i in range(LOGIN_FAILURES):
        guard.failed("1.2.3.4", now=1000.0 + i)
    assert guard.locked_out("1.2.3.4", now=1010.0) == pytest.approx(LOGIN_WINDOW - 10)
    assert guard.locked_out("1.2.3.4", now=1000.0 + LOGIN_WINDOW + 1) == 0.0
    assert guard.locked_out("5.6.7.8", now=1010.0) == 0.0
