"""Run the real tq-master as a subprocess for tests: own session, log file, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import redis

TQ_MASTER = str(Path(sys.executable).with_name("tq-master"))
APPS = Path(__file__).parent / "apps"


def eventually(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
               what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class MasterProcess:
    def __init__(self, redis_url: str, log: Path, *args: str, cwd: Path = APPS,
                 env: dict[str, str] | None = None, wrap: list[str] | None = None) -> None:
        self.log_path = log
        self.args = ["start", *args]
        full_env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        full_env.update({"TQ_REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1", **(env or {})})
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop(), after the process
        # wrap: a command the master runs under (e.g. unshare, for another PID namespace)
        self.proc = subprocess.Popen([*(wrap or []), TQ_MASTER, *self.args], cwd=cwd,
                                     env=full_env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 15.0, count: int = 1) -> None:
        eventually(lambda: self.log().count(text) >= count or self._dead(text), timeout,
                   what=f"{text!r} in the master's log")

    def _dead(self, text: str) -> bool:
        if self.proc.poll() is not None and text not in self.log():
            raise AssertionError(f"master exited ({self.proc.returncode}) before logging "
                                 f"{text!r}:\n{self.log()[-3000:]}")
        return False

    def wait_ready(self, n: int, timeout: float = 20.0) -> None:
        self.wait_log("children are ready", timeout)
        eventually(lambda: len(self.children()) == n, timeout, what=f"{n} children")

    def children(self) -> list[psutil.Process]:
        try:
            return [c for c in psutil.Process(self.pid).children()
                    if c.status() != psutil.STATUS_ZOMBIE]
        except psutil.NoSuchProcess:
            return []

    def child_pids(self) -> set[int]:
        return {c.pid for c in self.children()}

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def kill_group(self) -> None:
        """SIGKILL the master and every child (a crashed machine, as far as tq can tell)."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def wait_exit(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"master still running after {timeout}s:\n"
                                 f"{self.log()[-3000:]}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill_group()
        self._log.close()


def run_master(redis_url: str, tmp_path: Path, *args: str, **kw: Any) -> MasterProcess:
    return MasterProcess(redis_url, tmp_path / f"master-{time.monotonic_ns()}.log", *args, **kw)


def clients(rconn) -> list[dict[str, Any]]:
    """CLIENT LIST of the server, or of every node of a cluster (a RedisCluster)."""
    if isinstance(rconn, redis.RedisCluster):
        return [c for node in rconn.get_nodes()
                for c in node.redis_connection.client_list()]
    return rconn.client_list()
