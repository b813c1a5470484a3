"""sd_notify client: exact datagrams on a real unix socket, and silence when disabled."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

import pytest

from tq.supervisor.sdnotify import Notifier


@pytest.fixture
def listener(tmp_path: Path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(2)
    yield str(path), sock
    sock.close()


def _drain(sock: socket.socket) -> list[str]:
    sock.setblocking(False)
    out = []
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except BlockingIOError:
        return out
    finally:
        sock.settimeout(2)


def test_messages_are_exact(listener):
    path, sock = listener
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled and n.watchdog_interval is None

    n.ready("children=2/2 busy=0")
    n.status("children=2/2\nbusy=1 processed=10 failed=0")
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    n.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    n.ready()
    n.stopping()
    n.watchdog()   # no watchdog configured: nothing sent

    got = [sock.recv(4096).decode() for _ in range(5)]
    assert got[0] == "READY=1\nSTATUS=children=2/2 busy=0"
    assert got[1] == "STATUS=children=2/2 busy=1 processed=10 failed=0"
    first, second = got[2].split("\n")
    assert first == "RELOADING=1"
    assert second.startswith("MONOTONIC_USEC=")
    assert before <= int(second.split("=")[1]) <= after
    assert got[3:] == ["READY=1", "STOPPING=1"]
    assert _drain(sock) == []
    n.close()


def test_watchdog_for_this_process(listener):
    path, sock = listener
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000",
                  "WATCHDOG_PID": str(os.getpid())})
    assert n.watchdog_interval == 15.0
    n.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"}).watchdog_interval == 2.0


def test_watchdog_meant_for_another_process_is_ignored(listener):
    path, sock = listener
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000",
                  "WATCHDOG_PID": str(os.getpid() + 1)})
    assert n.watchdog_interval is None
    n.watchdog()
    assert _drain(sock) == []
    assert Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "junk"}).watchdog_interval is None


def test_abstract_socket():
    name = f"tq-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(4096) == b"READY=1"
    finally:
        sock.close()


def test_disabled_without_notify_socket():
    n = Notifier({"WATCHDOG_USEC": "1000000"})
    assert not n.enabled and n.watchdog_interval is None
    for call in (n.ready, n.reloading, n.stopping, n.watchdog, lambda: n.status("x")):
        call()
    assert n._sock is None   # not even a socket was opened
    assert not Notifier({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled


def test_reads_os_environ_by_default(listener, monkeypatch: pytest.MonkeyPatch):
    path, sock = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    Notifier().stopping()
    assert sock.recv(4096) == b"STOPPING=1"


def test_send_errors_never_raise(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with caplog.at_level(logging.DEBUG, logger="tq.supervisor.sdnotify"):
        n.ready()
        n.watchdog()
    assert "sd_notify b'READY=1' failed" in caplog.text
