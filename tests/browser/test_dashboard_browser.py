"""The dashboard in a real browser (Debian's headless Chromium, driven by Selenium), watching a
real tq-master (tests/apps/dashboard_app.py) run tasks.

The page loads, its numbers move while tasks run, the master and its children show, a task
whose payload and error carry HTML shows them as text, a dead task is retried from the page,
a queue is purged after confirming, paused and resumed, and a screenshot is saved. (The docs'
screenshots come from a real run of the example app: `python -m examples.screenshot`.)
"""

from __future__ import annotations

import os
import re
import signal
import threading
from pathlib import Path

import pytest
from dashboard_support import DashboardProcess, click, read_rows
from master_proc import eventually
from needs import unavailable

import tq

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
XSS_PAYLOAD = "<script>window.__tqxss = 1</script><img src=x onerror=\"window.__tqxss = 2\">"
XSS_ERROR = "<img src=y onerror=\"window.__tqxss = 3\"> refused"


def _need_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        unavailable(f"{', '.join(missing)} missing (apt-get install chromium chromium-driver)")


@pytest.fixture
def browser(tmp_path: Path):
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,2200",
                 "--force-prefers-reduced-motion"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


class Producer(threading.Thread):
    """Enqueues a few tasks a second, so the page has something live to show (bounded)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.client = tq.Client(url)
        self.halt = threading.Event()

    def run(self) -> None:
        for i in range(2000):
            if self.halt.wait(0.02):
                break
            self.client.enqueue("work", {"i": i, "s": 0.02}, priority=i % 3)

    def stop(self) -> None:
        self.halt.set()
        self.join(5)
        self.client.close()


def text(driver, css: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css).text


def toast(driver) -> str:
    """The last message, even once it has faded out (Selenium's .text is empty then)."""
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "toast").get_attribute("textContent")


def number(driver, css: str) -> float | None:
    raw = text(driver, css).replace(",", "")
    try:
        return float(raw)
    except ValueError:
        return None


def test_watch_tasks_run_and_fix_failures_from_the_browser(browser, masters, redis_url,
                                                           client, broker, tmp_path):
    from selenium.webdriver.common.by import By

    def wait_for(check, timeout: float, what: str):
        return eventually(check, timeout, what=what)

    # Given a master with two children, a stream of tasks, one that dies with HTML in its
    # payload and error, and a queue nobody consumes
    xss_id = client.enqueue("flaky", {"html": XSS_PAYLOAD, "error": XSS_ERROR})
    for i in range(6):
        client.enqueue("bulk", {"i": i}, priority=i % 2 * 7, delay=3600 if i > 3 else None)
    master = masters("-c", "2", "-A", "dashboard_app")
    master.wait_ready(2)
    producer = Producer(redis_url)
    dashboard = DashboardProcess(redis_url).start()
    producer.start()
    try:
        # When the page is open
        browser.get(dashboard.url + "/")
        wait_for(lambda: "live" in text(browser, "#status"), 15, "the first poll")

        # Then its numbers move while tasks run
        first = wait_for(lambda: number(browser, "#total-succeeded"), 10, "a succeeded count")
        wait_for(lambda: (number(browser, "#total-succeeded") or 0) > first + 5, 10,
                 "the succeeded count to grow")
        wait_for(lambda: (number(browser, "#rate-processed") or 0) > 0, 10, "a rate")
        wait_for(lambda: browser.find_element(By.ID, "line-processed").get_attribute(
            "points").count(",") == 3600, 10, "the chart")
        wait_for(lambda: "work" in text(browser, "#latency"), 10, "latency of work")
        # each percentile with the histogram bucket it lies in, under the figure
        bounds = browser.find_elements(By.CSS_SELECTOR, '#latency small.bound')
        assert len(bounds) >= 6 and all(re.fullmatch(r"[\u2264>] .+|.+\u2013.+", b.text)
                                        for b in bounds), [b.text for b in bounds]
        # the chart has a y axis, time labels and a tooltip under the mouse
        from selenium.webdriver.common.action_chains import ActionChains

        assert number(browser, "#throughput .ymax") >= 1
        assert len(browser.find_elements(By.CSS_SELECTOR, "#chart-axis span")) == 5
        ActionChains(browser).move_to_element(browser.find_element(By.ID, "chart")).perform()
        wait_for(lambda: "processed" in text(browser, "#chart-tip"), 5, "the tooltip")
        # a day per minute, and one queue's own chart
        browser.find_element(By.ID, "range-day").click()
        wait_for(lambda: browser.find_element(By.ID, "line-processed").get_attribute(
            "points").count(",") == 1440, 10, "the day chart")
        assert text(browser, "#chart-unit") == "minute"
        from selenium.webdriver.support.ui import Select

        browser.find_element(By.ID, "range-hour").click()
        Select(browser.find_element(By.ID, "chart-queue")).select_by_value("work")
        wait_for(lambda: browser.find_element(By.ID, "line-processed").get_attribute(
            "points").count(",") == 60, 10, "the queue's hour, per minute")
        wait_for(lambda: browser.find_element(By.ID, "line-p50").get_attribute("d"), 10,
                 "the run time chart")
        # the newest minute (at the right edge) ran tasks: its tooltip gives each figure's bucket
        runtime = browser.find_element(By.ID, "latency-chart")
        ActionChains(browser).move_to_element_with_offset(
            runtime, runtime.size["width"] // 2 - 2, 0).perform()
        wait_for(lambda: re.search(r"p50 \S+ \S+ \(.+\) · p99", text(browser, "#latency-tip")),
                 5, "the run time tooltip with each figure's bucket")
        # the last 15 minutes, per second
        Select(browser.find_element(By.ID, "chart-queue")).select_by_value("")
        browser.find_element(By.ID, "range-15m").click()
        wait_for(lambda: browser.find_element(By.ID, "line-processed").get_attribute(
            "points").count(",") == 900, 10, "15 minutes per second")
        browser.find_element(By.ID, "range-hour").click()
        Select(browser.find_element(By.ID, "chart-queue")).select_by_value("")
        wait_for(lambda: browser.find_element(By.ID, "line-processed").get_attribute(
            "points").count(",") == 3600, 10, "the hour per second again")
        bulk = '#queues tr[data-queue="bulk"]'
        assert text(browser, bulk).split()[:2] == ["bulk", "4"]
        # and the master with its two children
        wait_for(lambda: f"pid {master.pid}" in text(browser, "#masters"), 10, "the master")
        rows = browser.find_elements(By.CSS_SELECTOR, "#masters table.children tbody tr")
        assert len(rows) == 2

        # And the dead task shows its payload and error as text, never as markup
        item = f'article.dead-item[data-id="{xss_id}"]'
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, item), 10, "the dead task")
        assert XSS_PAYLOAD.replace('"', '\\"') in text(browser, f"{item} pre.payload")
        assert text(browser, f"{item} pre.error") == f"ValueError: {XSS_ERROR}"
        click(browser, f"{item} summary")
        assert "ValueError" in text(browser, f"{item} pre.traceback")
        assert browser.execute_script("return window.__tqxss") is None
        assert not browser.find_elements(By.CSS_SELECTOR, "#dead img, #dead script")

        shot = tmp_path / "dashboard.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000

        # When the operator retries it from the page, it runs again (and succeeds this time)
        click(browser, f"{item} button.retry")
        wait_for(lambda: client.get(xss_id).state == "succeeded", 10, "the retried task")
        wait_for(lambda: "Retried 1" in toast(browser), 5, "the toast")
        wait_for(lambda: not browser.find_elements(By.CSS_SELECTOR, item), 5, "the row to go")

        # And purging a queue asks first: cancel keeps it, confirm empties it
        click(browser, f"{bulk} button.purge")
        wait_for(lambda: browser.find_element(By.ID, "confirm").is_displayed(), 5, "dialog")
        assert "bulk" in text(browser, "#confirm-text")
        browser.find_element(By.ID, "confirm-cancel").click()
        wait_for(lambda: not browser.find_element(By.ID, "confirm").is_displayed(), 5,
                 "the dialog to close")
        assert client.queue_sizes()["bulk"]["ready"] == 4
        click(browser, f"{bulk} button.purge")
        wait_for(lambda: browser.find_element(By.ID, "confirm").is_displayed(), 5, "dialog")
        browser.find_element(By.ID, "confirm-ok").click()
        wait_for(lambda: "Purged 6" in toast(browser), 5, "the purge")
        sizes = client.queue_sizes()["bulk"]
        assert sizes["ready"] == sizes["scheduled"] == 0

        # And a queue is paused after confirming, then resumed, from its row
        click(browser, f"{bulk} button.pause")
        wait_for(lambda: browser.find_element(By.ID, "confirm").is_displayed(), 5, "dialog")
        assert "Pause queue" in text(browser, "#confirm-text")
        browser.find_element(By.ID, "confirm-ok").click()
        wait_for(lambda: "Paused bulk" in toast(browser), 5, "the pause")
        assert client.queue_sizes()["bulk"]["paused"]
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, f"{bulk} button.resume"), 5,
                 "the Resume button")
        assert "PAUSED" in text(browser, bulk)
        click(browser, f"{bulk} button.resume")
        wait_for(lambda: "Resumed bulk" in toast(browser), 5, "the resume")
        assert not client.queue_sizes()["bulk"]["paused"]
        assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        producer.stop()
        dashboard.stop()
    master.signal(signal.SIGTERM)
    assert master.wait_exit() == 0


def test_log_in_with_the_token_in_a_real_browser_and_act(browser, redis_url, client, tmp_path):
    from selenium.webdriver.common.by import By

    # Given a dashboard started with a token, and a dead task to act on
    token = "a-long-enough-dashboard-token"
    dead = client.enqueue("flaky", {}, max_retries=0)
    broker = tq.store.broker.Broker(redis_url)
    task = broker.claim("w-test", ["flaky"], 1).tasks[0]
    broker.fail("w-test", task, "boom", retry=False)
    broker.close()
    dashboard = DashboardProcess(redis_url, token=token).start()
    try:
        # When the operator opens it, they land on the login form
        browser.get(dashboard.url + "/")
        eventually(lambda: browser.find_elements(By.ID, "token"), 10, what="the login form")
        # a wrong token is refused with a message
        browser.find_element(By.ID, "token").send_keys("not-the-token-at-all")
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        eventually(lambda: "not the one" in browser.page_source, 10, what="the refusal")
        # and the right one gets in (the form posts from this very origin)
        browser.find_element(By.ID, "token").send_keys(token)
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        eventually(lambda: browser.find_elements(By.ID, "status"), 10, what="the dashboard")
        eventually(lambda: "live" in text(browser, "#status"), 15, what="the first poll")
        # Then the operator can act: retry the dead task from the page
        item = f'article.dead-item[data-id="{dead}"]'
        eventually(lambda: browser.find_elements(By.CSS_SELECTOR, item), 10,
                   what="the dead task")
        click(browser, f"{item} button.retry")
        eventually(lambda: client.get(dead).state == "queued", 10, what="the retried task")
        browser.save_screenshot(str(tmp_path / "dashboard-auth.png"))
        severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert all("/login" in e["message"] and "403" in e["message"] for e in severe)
    finally:
        dashboard.stop()


def test_a_workflow_page_shows_members_and_cancels_them(browser, redis_url, client):
    from selenium.webdriver.common.by import By

    # Given a chain of three waiting to run (no worker), its first step claimed ("running")
    token = "a-long-enough-dashboard-token"
    wf = client.workflow(tq.chain(tq.step("resize", {"n": 1}), tq.step("upload"),
                                  tq.step("notify")))
    broker = tq.store.broker.Broker(redis_url)
    broker.claim("w-test", ["resize"], 1)
    broker.close()
    dashboard = DashboardProcess(redis_url, token=token).start()
    try:
        browser.get(dashboard.url + "/")
        eventually(lambda: browser.find_elements(By.ID, "token"), 10, what="the login form")
        browser.find_element(By.ID, "token").send_keys(token)
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        eventually(lambda: browser.find_elements(By.ID, "status"), 10, what="the dashboard")
        # When the operator opens the workflow's page
        browser.get(f"{dashboard.url}/#/workflow/{wf.id}")
        rows = "#workflow-members tbody tr"
        eventually(lambda: len(browser.find_elements(By.CSS_SELECTOR, rows)) == 3, 10,
                   what="the members")
        # Then each member shows with its state and what it waits for
        states = read_rows(browser, rows, "e.cells[3].innerText.trim()")
        assert states == ["running", "waiting", "waiting"]
        assert text(browser, "#workflow-state") == "running"
        # and cancelling it (after confirming) cancels the members not started and asks the
        # running one's worker to stop
        click(browser, "#workflow-actions button.cancel")
        browser.find_element(By.ID, "confirm-ok").click()
        eventually(lambda: "2 cancelled, 1 interrupted" in toast(browser), 10, what="the toast")
        assert client.get(wf.last).state == "cancelled"
        assert client.get(wf.tasks["0.resize"]).state == "cancelling"
        # A member's page links back to its workflow
        browser.get(f"{dashboard.url}/#/task/{wf.tasks['0.resize']}")
        link = f'#task-fields a[href="#/workflow/{wf.id}"]'
        eventually(lambda: browser.find_elements(By.CSS_SELECTOR, link), 10, what="the link")
    finally:
        dashboard.stop()
