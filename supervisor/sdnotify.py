"""sd_notify: tell systemd about readiness, reloads, shutdown, status and liveness.

Speaks the datagram protocol of sd_notify(3) on $NOTIFY_SOCKET (a path, or "@name" for an
abstract socket). Everything is a no-op when the socket is not set, and a failed send is
logged at DEBUG and forgotten: systemd being away must never stop the master.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


def _address(value: str | None) -> str | None:
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]   # abstract namespace
    if value.startswith("/"):
        return value
    log.debug("NOTIFY_SOCKET=%r: unsupported address, sd_notify disabled", value)
    return None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds between pings: half of WATCHDOG_USEC, if the watchdog is meant for this pid."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid.strip() != str(os.getpid())):
        return None
    return usec / 2 / 1_000_000


class Notifier:
    """An sd_notify client for the master."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = _address(env.get("NOTIFY_SOCKET"))
        self.enabled = self.address is not None
        self.watchdog_interval = _watchdog_interval(env) if self.enabled else None
        self._sock: socket.socket | None = None

    def __repr__(self) -> str:
        where = repr(self.address) if self.enabled else "disabled"
        return f"<Notifier {where} watchdog={self.watchdog_interval}>"

    def _send(self, *fields: str) -> None:
        if self.address is None:
            return
        message = "\n".join(fields).encode()
        try:
            if self._sock is None:
                # CLOEXEC: forked children must not inherit the master's channel to systemd.
                self._sock = socket.socket(socket.AF_UNIX,
                                           socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message, self.address)
        except OSError as exc:
            log.debug("sd_notify %r failed: %s", message, exc)

    def ready(self, status: str | None = None) -> None:
        """READY=1: start-up (or a reload) is complete."""
        self._send("READY=1", *([_status(status)] if status else []))

    def reloading(self) -> None:
        """RELOADING=1 with the monotonic time, so systemd can tell this reload from the next."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        """STOPPING=1: the drain has begun."""
        self._send("STOPPING=1")

    def status(self, text: str) -> None:
        """STATUS=: the one line `systemctl status` shows."""
        self._send(_status(text))

    def watchdog(self) -> None:
        """WATCHDOG=1, when systemd watches this process; call it only while healthy."""
        if self.watchdog_interval is not None:
            self._send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status(text: str) -> str:
    return "STATUS=" + " ".join(text.split())   # one line: a newline would end the field
