"""Helpers for the dashboard tests: the dashboard as a real process, and a task runner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis_server import free_port

from tq.broker import Broker
from tq.history import History
from tq.tally import Tally

ROOT = Path(__file__).resolve().parent.parent


def wait_for(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class DashboardProcess:
    """`python -m tq.dashboard` in its own session, on a free loopback port."""

    def __init__(self, redis_url: str, *args: str, token: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "TQ_REDIS_URL": redis_url}
        env.pop("TQ_DASHBOARD_TOKEN", None)
        if token:
            env["TQ_DASHBOARD_TOKEN"] = token
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tq.dashboard", "--bind", f"127.0.0.1:{self.port}", *args],
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
        wait_for(self._answers, 15, "the dashboard to answer")
        return self

    def stop(self) -> int:
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


class Runner(threading.Thread):
    """Runs tasks in this process like one child would (claim, handler, ack/fail), recording
    its tally into the shared history as a master does; for tests that need no supervisor."""

    def __init__(self, url: str, queues: list[str],
                 handlers: dict[str, Callable[[dict[str, Any]], Any]],
                 worker_id: str = "runner-1") -> None:
        super().__init__(daemon=True, name="tq-test-runner")
        self.url, self.queues, self.handlers, self.worker_id = url, queues, handlers, worker_id
        self.halt = threading.Event()
        self.done = 0

    def run(self) -> None:
        broker = Broker(self.url)
        history = History(broker)
        tally, flushed = Tally(), time.monotonic()
        try:
            while not self.halt.is_set():
                for task in broker.fetch(self.worker_id, self.queues, 1, block_seconds=0.05):
                    started = time.time()
                    wait = started - (task.created_at or started)
                    try:
                        result = self.handlers[task.type](task.payload)
                    except Exception as exc:
                        out = broker.fail(self.worker_id, task, str(exc),
                                          traceback=traceback.format_exc())
                        tally.add(task.type, "failed", time.time() - started, wait)
                        tally.add(task.type, "dead" if out.outcome == "dead" else "retried")
                    else:
                        broker.ack(self.worker_id, task, result, started=started)
                        tally.add(task.type, "succeeded", time.time() - started, wait)
                    self.done += 1
                if time.monotonic() - flushed > 0.25:
                    history.record(tally)
                    tally, flushed = Tally(), time.monotonic()
            history.record(tally)
        finally:
            broker.close()

    def stop(self) -> None:
        self.halt.set()
        self.join(10)
