"""Finding and fixing tasks in a real browser (Debian's headless Chromium) with auth on: log in,
search a task by id, read its traceback, page through 200 dead letters, filter by queue, retry
in bulk, run a scheduled task now, log out; a session that expires; the pages at 390 px;
huge tasks shown as previews, with each reply the page gets bounded.

Each run saves its screenshots under test-artifacts/dashboard/ (TQ_TEST_ARTIFACTS moves it).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from dashboard_support import (
    BIG,
    ROOT,
    TB_LAST,
    DashboardProcess,
    click,
    make_dead,
    make_huge,
    read_rows,
)
from master_proc import eventually
from test_dashboard_browser import browser, toast  # noqa: F401 - the fixture

TOKEN = "a-long-enough-dashboard-token"
DASH = "\u2013"   # the page writes ranges as 1\u201350
ARTIFACTS = Path(os.environ.get("TQ_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "dashboard"


@pytest.fixture
def shots(request: pytest.FixtureRequest):
    """save(name): a screenshot of the browser under the artefacts folder."""
    folder = ARTIFACTS / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()

    def save(driver, name: str) -> Path:
        path = folder / f"{len(list(folder.glob('*.png'))):02d}-{name}.png"
        driver.save_screenshot(str(path))
        assert path.stat().st_size > 5_000
        return path

    return save


def css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def text(driver, selector: str) -> str:
    found = css(driver, selector)
    return found[0].text if found else ""


def log_in(driver, url: str) -> None:
    driver.get(url + "/")
    eventually(lambda: css(driver, "#token"), 10, what="the login form")
    css(driver, "#token")[0].send_keys(TOKEN)
    css(driver, "form button[type=submit]")[0].click()
    eventually(lambda: "live" in text(driver, "#status"), 15, what="the first poll")


def confirm(driver) -> None:
    eventually(lambda: css(driver, "#confirm")[0].is_displayed(), 5, what="the dialog")
    css(driver, "#confirm-ok")[0].click()


def no_sideways_scroll(driver) -> bool:
    return driver.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth")


def test_find_page_filter_and_fix_tasks_with_auth_on(browser, redis_url, client, broker,  # noqa: F811
                                                    shots):
    # Given 150 dead letters in email, 50 in sms, and a task scheduled for an hour from now
    email_dead = make_dead(broker, client, 150, queue="email")
    sms_dead = make_dead(broker, client, 50, queue="sms", message="no route to carrier")
    later = client.enqueue("send", {"to": "later@example.com"}, queue="email", delay=3600)
    dashboard = DashboardProcess(redis_url, token=TOKEN).start()
    try:
        # When the operator logs in with the token
        log_in(browser, dashboard.url)
        shots(browser, "overview")

        # Then a task is found by its id, with its traceback and attempts
        target = sms_dead[7]
        search = css(browser, "#search-id")[0]
        search.send_keys(target)
        css(browser, "#search button")[0].click()
        eventually(lambda: text(browser, "#task-state") == "dead", 10, what="the task page")
        assert text(browser, "#task-id") == target
        assert "ConnectionRefusedError: no route to carrier" in text(browser, "#task-traceback")
        assert "no route to carrier" in text(browser, "#task-history")
        assert "sms" in text(browser, "#task-fields")
        shots(browser, "task-page")
        # an unknown id says so
        browser.get(dashboard.url + "/#/task/no-such-task")
        eventually(lambda: "No task with id no-such-task" in text(browser, "#task-missing"), 10,
                   what="the missing task")

        # And the 200 dead letters page by 50, each seen once
        browser.get(dashboard.url + "/#/tasks?state=dead")
        eventually(lambda: text(browser, "#page-info") == f"1{DASH}50 of 200", 10, what="page 1")
        seen = []
        for page in range(4):
            seen += read_rows(browser, "#task-list tbody tr", "e.dataset.id")
            if page < 3:
                css(browser, "#page-next")[0].click()
                want = f"{page * 50 + 51}{DASH}{page * 50 + 100} of 200"
                eventually(lambda w=want: text(browser, "#page-info") == w, 10, what=want)
        assert sorted(seen) == sorted(email_dead + sms_dead)
        assert not css(browser, "#page-next")[0].is_enabled()
        shots(browser, "dead-page-4")

        # And filtering by queue narrows the list
        from selenium.webdriver.support.ui import Select

        Select(css(browser, "#filter-queue")[0]).select_by_value("sms")
        eventually(lambda: text(browser, "#page-info") == f"1{DASH}50 of 50", 10, what="sms only")
        assert set(read_rows(browser, "#task-list tbody tr", "e.dataset.queue")) == {"sms"}
        shots(browser, "filtered-sms")

        # When the operator retries everything the filter matches
        css(browser, "#bulk-retry")[0].click()
        confirm(browser)
        eventually(lambda: "Retry: 50 task(s)" in toast(browser), 10, what="the bulk retry")
        assert {client.get(i).state for i in sms_dead} == {"queued"}
        assert client.queue_sizes()["email"]["dead"] == 150
        eventually(lambda: text(browser, "#page-info") == "0 of 0", 10, what="an empty list")

        # And runs the scheduled task now from its list
        css(browser, '#state-tabs button[data-state="scheduled"]')[0].click()
        Select(css(browser, "#filter-queue")[0]).select_by_value("")
        row = f'#task-list tr[data-id="{later}"] button.run-now'
        click(browser, row)   # once the scheduled task's row is there
        eventually(lambda: client.get(later).state == "queued", 10, what="it to be ready")
        eventually(lambda: "Made 1 task(s) ready" in toast(browser), 5, what="the toast")

        # Then every page fits a 390 px phone screen
        browser.set_window_size(390, 844)
        for path, ready in (("/#/", "#total-dead"), ("/#/tasks?state=dead", "#page-info"),
                            (f"/#/task/{email_dead[0]}", "#task-traceback")):
            browser.get(dashboard.url + path)
            eventually(lambda r=ready: text(browser, r), 10, what=f"{path} at 390 px")
            eventually(lambda: no_sideways_scroll(browser), 5, what=f"{path} to fit 390 px")
            shots(browser, "phone-" + (re.sub(r"\W+", "-", path.strip("/#")) or "overview"))
        browser.set_window_size(1400, 2200)

        # And logging out ends the session
        browser.get(dashboard.url + "/")
        eventually(lambda: css(browser, "#logout"), 10, what="the logout button")
        css(browser, "#logout")[0].click()
        eventually(lambda: css(browser, "#token"), 10, what="the login form again")
        browser.get(dashboard.url + "/")
        eventually(lambda: css(browser, "#token"), 10, what="no way back without the token")
        severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert all("/login" in e["message"] or "/api/tasks/no-such-task" in e["message"]
                   for e in severe), severe
    finally:
        dashboard.stop()


def test_an_expired_session_sends_the_page_back_to_the_login(browser, redis_url, client,  # noqa: F811
                                                             shots):
    dashboard = DashboardProcess(redis_url, "--session-ttl", "3", token=TOKEN).start()
    try:
        log_in(browser, dashboard.url)
        # the page polls; once the session is over the poll is refused and the page says why
        eventually(lambda: css(browser, "#expired"), 20, what="the session to expire")
        assert "/login" in browser.current_url
        assert "session ended" in text(browser, "#expired")
        shots(browser, "expired")
        log_in(browser, dashboard.url)   # and a new login works
    finally:
        dashboard.stop()


def test_huge_tasks_show_as_previews_and_an_idle_page_downloads_little(
        browser, redis_url, client, broker, shots):  # noqa: F811
    # Given tasks whose payloads, errors and results are ~0.9 MB in every state (the overview
    # tab of an operator downloaded 73 MB in 12 s with such tasks before previews)
    ids = make_huge(client, broker)
    dashboard = DashboardProcess(redis_url, token=TOKEN).start()
    try:
        log_in(browser, dashboard.url)
        item = f'article.dead-item[data-id="{ids["dead"]}"]'
        eventually(lambda: css(browser, item), 10, what="the dead letters")
        # Then the dead letters show previews of their payload and error, with their size
        payload = text(browser, f"{item} pre.payload")
        assert payload.startswith('{\n "blob": "xxxx') and payload.endswith('\u2026"\n}')
        assert len(payload) < 1100
        assert text(browser, f"{item} pre.error").endswith("\u2026")
        notes = read_rows(browser, f"{item} p.cut", "e.dataset.part")
        assert notes == ["error", "payload", "traceback"]
        shots(browser, "huge-overview")

        # And every reply the page gets stays small, whatever the tasks hold
        def replies() -> list[dict]:
            return browser.execute_script(
                "return performance.getEntriesByType('resource').filter("
                "e => e.name.includes('/api/')).map(e => ({name: e.name, body: "
                "e.encodedBodySize, sent: e.transferSize}))")
        browser.execute_script("performance.setResourceTimingBufferSize(10000);"
                               "performance.clearResourceTimings();")
        # (the overview polls each second and asks for the dead letters every 5 s)
        eventually(lambda: sum("/api/failed" in r["name"] for r in replies()) >= 2, 15,
                   what="the dead letters asked for twice")
        idle = replies()
        assert all(r["body"] < 64 * 1024 for r in idle), idle
        failed = [r for r in idle if "/api/failed" in r["name"]]
        assert all(r["body"] == 0 for r in failed), failed   # unchanged: 304, no body
        assert sum(r["sent"] for r in idle) < 30 * 1024 * len(idle), idle

        # And a task's page shows 64 KiB of each value with a link to the full one
        browser.get(f"{dashboard.url}/#/task/{ids['dead']}")
        eventually(lambda: text(browser, "#task-state") == "dead", 10, what="the task page")
        assert text(browser, "#task-traceback").endswith(TB_LAST)
        assert "full value" in text(browser, "#task-payload-cut")
        assert css(browser, "#task-result-cut")[0].is_displayed() is False
        link = css(browser, "#task-payload-cut a")[0].get_attribute("href")
        assert link.endswith(f"/api/tasks/{ids['dead']}/value/payload?queue=huge-dead")
        shots(browser, "huge-task-page")
        # the full value: the payload as stored, text (with the session, as the page has it)
        browser.get(link)
        body = eventually(lambda: text(browser, "body"), 10, what="the full payload")
        assert len(body) > BIG and body.startswith('{"blob":"xxx') and body.endswith('"}')

        # And the lists show each task with its values cut, their sizes beside them
        browser.get(f"{dashboard.url}/#/tasks?state=finished")
        eventually(lambda: text(browser, "#page-info").endswith("of 3"), 10,
                   what="the finished list")
        cells = read_rows(browser, "#task-list td.detail", "e.innerText")
        assert all(c.startswith('{"blob":"zzz') for c in cells), cells
        assert all(re.search(r"\u2026\"\} 87\d\.\d KiB$", c) for c in cells), cells
        shots(browser, "huge-finished-list")
        # (the plain-text value names no icon: Chromium asked for /favicon.ico)
        severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"
                  and "/login" not in e["message"] and "/favicon.ico" not in e["message"]]
        assert not severe, severe
    finally:
        dashboard.stop()
