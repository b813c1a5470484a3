"""The dashboard as a real process (`tq dashboard`), and dead letters (and huge tasks) to show,
for the dashboard's tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import traceback
import urllib.error
import urllib.request
from pathlib import Path

from master_proc import eventually
from redis_server import free_port

import tq
from tq.store.broker import Broker

ROOT = Path(__file__).resolve().parent.parent
TQ = str(Path(sys.executable).with_name("tq"))


class DashboardProcess:
    """`tq dashboard` in its own session, on a free loopback port."""

    def __init__(self, redis_url: str, *args: str, token: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "TQ_REDIS_URL": redis_url}
        env.pop("TQ_DASHBOARD_TOKEN", None)
        if token:
            env["TQ_DASHBOARD_TOKEN"] = token
        self.proc = subprocess.Popen(
            [TQ, "dashboard", "--bind", f"127.0.0.1:{self.port}", *args],
            cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            out = self.proc.stdout.read().decode() if self.proc.stdout else ""
            raise AssertionError(f"dashboard exited with {self.proc.returncode}: {out}")
        try:
            with urllib.request.urlopen(self.url + "/static/dashboard.css", timeout=1):
                return True
        except (urllib.error.URLError, ConnectionError):
            return False

    def start(self) -> DashboardProcess:
        eventually(self._answers, 15, what="the dashboard to answer")
        return self

    def stop(self) -> int:
        """Ctrl-C, as an operator would; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        return self.proc.returncode


def make_dead(broker: Broker, client: tq.Client, n: int = 1, queue: str = "email",
              message: str = "smtp refused") -> list[str]:
    """Enqueue n tasks and fail each for good, as a worker would."""
    ids = [client.enqueue("send", {"n": i}, queue=queue, max_retries=0) for i in range(n)]
    for _ in ids:
        (task,) = broker.fetch("w-test", [queue], 1)
        try:
            raise ConnectionRefusedError(message)
        except ConnectionRefusedError as exc:
            broker.fail("w-test", task, str(exc), traceback=traceback.format_exc())
    return ids


BIG = 900_000   # characters of a huge value: a payload within tq's 1 MiB default limit
MESSAGE = "ValueError: " + "y" * BIG
TB_LAST = "ValueError: the last line of the traceback"


def fail_long(broker: Broker, task, message: str = MESSAGE, retry: bool = False) -> None:
    """Fail a claimed task with `message`, its traceback holding it and ending in TB_LAST."""
    try:
        raise ValueError(message[len("ValueError: "):])
    except ValueError:
        tb = traceback.format_exc() + f"{TB_LAST}\n"
    broker.fail("w-test", task, message, traceback=tb, retry=retry, delay=3600)


def make_huge(client: tq.Client, broker: Broker, n: int = 2) -> dict[str, str]:
    """n tasks of every state whose payload, error and result are BIG characters each (dead,
    a retry, succeeded, running, scheduled, ready) and a workflow; an id of each kind."""
    big = {"blob": "x" * BIG}
    ids: dict[str, str] = {}
    for state in ("dead", "retry", "done", "running"):
        q = f"huge-{state}"
        client.enqueue_many([{"type": q, "payload": big, "max_retries": 0 if state == "dead"
                              else 3} for _ in range(n)])
        for task in broker.fetch("w-test", [q], max_tasks=n):
            ids[state] = task.id
            if state == "done":
                broker.ack("w-test", task, {"blob": "z" * BIG})
            elif state != "running":
                fail_long(broker, task, retry=state == "retry")
    ids["scheduled"] = client.enqueue_many([{"type": "huge-later", "payload": big,
                                             "delay": 60 + i} for i in range(n)])[0]
    ids["ready"] = client.enqueue_many([{"type": "huge-ready", "payload": big}] * n)[0]
    wf = client.workflow(tq.chain(tq.step("huge-wf", big), tq.step("huge-wf", big)))
    (first,) = broker.fetch("w-test", ["huge-wf"], max_tasks=1)
    broker.ack("w-test", first, {"blob": "z" * BIG})
    ids["workflow"] = wf.id
    return ids


def read_rows(driver, selector: str, what: str) -> list:
    """`what` (a JavaScript expression of `e`) of every element `selector` matches, read in
    one script: the page may re-render a list between two WebDriver calls (a stale element
    under load), never in the middle of a script."""
    return driver.execute_script(
        f"return Array.from(document.querySelectorAll(arguments[0]), e => {what});", selector)


def click(driver, selector: str, timeout: float = 10.0) -> None:
    """Click the first element `selector` matches once it is there, again if the page
    re-rendered it between the find and the click (a stale element: nothing was clicked)."""
    from master_proc import eventually
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def attempt() -> bool:
        found = driver.find_elements(By.CSS_SELECTOR, selector)
        if not found:
            return False
        try:
            found[0].click()
        except StaleElementReferenceException:
            return False
        return True

    eventually(attempt, timeout, what=f"{selector} to click")
