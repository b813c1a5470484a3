"""The real tq-master speaks sd_notify: start, reload (SIGHUP), drain (SIGTERM), watchdog."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from master_proc import APPS, TQ_MASTER, eventually


class Listener:
    """NOTIFY_SOCKET as systemd binds it: a unix datagram socket; keeps every message."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []
        self.pings: list[float] = []   # when each WATCHDOG=1 arrived (monotonic)

    def poll(self) -> list[str]:
        while True:
            try:
                message = self.sock.recv(4096).decode()
            except BlockingIOError:
                return self.messages
            self.messages.append(message)
            if message == "WATCHDOG=1":
                self.pings.append(time.monotonic())

    def events(self) -> list[str]:
        """The state changes in order, without the periodic STATUS and WATCHDOG lines."""
        return [m.split("\n")[0] for m in self.poll()
                if not m.startswith(("STATUS=", "WATCHDOG=1"))]

    def has(self, *events: str) -> bool:
        return self.events() == list(events)


def test_master_notifies_start_reload_drain_and_watchdog(redis_url: str, tmp_path: Path):
    listener = Listener(tmp_path / "notify")
    env = {**os.environ, "TQ_REDIS_URL": redis_url, "NOTIFY_SOCKET": str(tmp_path / "notify"),
           "WATCHDOG_USEC": "2000000"}   # WATCHDOG_PID unset: the master's pid is not known yet
    with open(tmp_path / "master.log", "wb") as log:
        master = subprocess.Popen([TQ_MASTER, "start", "-c", "2", "-A", "procapp"], cwd=APPS,
                                  env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        eventually(lambda: listener.has("READY=1"), 20, what="READY=1")
        # Watchdog pings keep coming from the main loop, never further apart than WATCHDOG_USEC
        # and not flooding either (the loop wakes far more often than it pings).
        eventually(lambda: listener.poll() and len(listener.pings) >= 4, 10, what="4 pings")
        gaps = [b - a for a, b in zip(listener.pings, listener.pings[1:], strict=False)]
        assert all(0.1 < gap < 2.0 for gap in gaps), gaps
        # STATUS= lines summarise the children about once a second.
        status = eventually(lambda: [m for m in listener.poll() if m.startswith("STATUS=")
                                     and "children=2/2" in m], 10, what="STATUS")
        assert status[-1].startswith("STATUS=children=2/2 busy=0 processed=")

        master.send_signal(signal.SIGHUP)
        eventually(lambda: listener.has("READY=1", "RELOADING=1", "READY=1"), 30,
                   what="RELOADING=1 then READY=1")
        reloading = next(m for m in listener.messages if m.startswith("RELOADING=1"))
        usec = int(reloading.split("\n")[1].removeprefix("MONOTONIC_USEC="))
        assert usec > 0

        master.send_signal(signal.SIGTERM)
        assert master.wait(30) == 0
        assert listener.has("READY=1", "RELOADING=1", "READY=1", "STOPPING=1")
    finally:
        if master.poll() is None:
            os.killpg(master.pid, signal.SIGKILL)
            master.wait()
        listener.sock.close()
