"""The channel between the master and one child: a pipe for events, a shared slot for state.

    master ──fork──► child
      ▲  pipe (JSON lines): ready, error, tally, exiting   (a few messages a second at most)
      └─ slot (shared memory, seqlock): idle/busy, current task, its deadline, heartbeat, counts

Per-task state goes through the slot, not the pipe: a no-op task takes ~50 µs, and a pipe
message per start and finish would cost the child two syscalls and the master a wake-up each
(measured in bench/supervisor.py). The master reads every slot on its tick, which is also how it
knows which task a child was running when it died.
"""

from __future__ import annotations

import json
import mmap
import os
import signal
import struct
from dataclasses import dataclass
from typing import Any

# The signals the master sends a child (stop, cancel), held from before the fork until the child
# has its own handlers: one sent earlier would reach the master's handler in the child's copy
# of it and be lost (a TTOU just after a TTIN would never stop the new child).
HELD_AT_FORK = frozenset({signal.SIGTERM, signal.SIGUSR1})

STARTING, IDLE, BUSY, STOPPING, RECONNECTING = range(5)
STATE_NAMES = ("starting", "idle", "busy", "stopping", "reconnecting")

# seq, state, heartbeat (monotonic), started (unix), deadline (monotonic, 0 = none),
# processed, failed, max_retries (-1 = unknown), task id, type, queue
_LAYOUT = struct.Struct("<QB7xdddQQq32s64s64s")
SLOT_SIZE = _LAYOUT.size
# After the seqlocked state, written by another thread of the child: the last monotonic time
# the child's interpreter ran at all (one aligned 8-byte store: never torn on the platforms
# tq runs on). A stopped or wedged child stops moving it, busy or not.
_ALIVE = struct.Struct("<d")
# Then, written by the master: the id of a running task to cancel (see supervisor/cancels.py),
# read by the child when SIGUSR1 comes. A child that moved on to another task ignores it.
_CANCEL = struct.Struct("<32s")
_CANCEL_AT = SLOT_SIZE + _ALIVE.size


@dataclass(slots=True)
class ChildState:
    state: int = STARTING
    heartbeat: float = 0.0
    started: float = 0.0
    deadline: float = 0.0
    processed: int = 0
    failed: int = 0
    max_retries: int = -1
    task: str = ""
    type: str = ""
    queue: str = ""

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.state] if 0 <= self.state < len(STATE_NAMES) else "?"


def _enc(s: str, n: int) -> bytes:
    return s.encode("utf-8", "replace")[:n]


_NAMES: dict[str, bytes] = {}   # a child's few task types and queues, encoded once


def _name(s: str) -> bytes:
    """A type or queue name as the slot stores it (struct truncates it to its field)."""
    b = s.encode("utf-8", "replace")
    if len(_NAMES) < 1000:
        _NAMES[s] = b
    return b


def _dec(b: bytes) -> str:
    return b.rstrip(b"\0").decode("utf-8", "replace")


class Slot:
    """A child's state in shared memory: the child writes, the master reads (seqlock)."""

    def __init__(self) -> None:
        # anonymous, MAP_SHARED: survives fork
        self._mem = mmap.mmap(-1, SLOT_SIZE + _ALIVE.size + _CANCEL.size)
        self._seq = 0
        self.state = ChildState()

    def publish(self) -> None:
        """Write self.state (child side). An odd sequence number marks a write in progress."""
        s = self.state
        self._seq += 1
        # One pack writes the odd number first, then the fields, in that order (a reader that
        # sees the state half-written sees the odd number too); the even number last.
        names = _NAMES
        _LAYOUT.pack_into(self._mem, 0, self._seq, s.state, s.heartbeat, s.started, s.deadline,
                          s.processed, s.failed, s.max_retries, s.task.encode("utf-8", "replace"),
                          names.get(s.type) or _name(s.type), names.get(s.queue) or _name(s.queue))
        self._seq += 1
        struct.pack_into("<Q", self._mem, 0, self._seq)

    def beat(self, now: float) -> None:
        """Child side, from its watch thread: the child is alive and scheduled."""
        _ALIVE.pack_into(self._mem, SLOT_SIZE, now)

    def alive(self) -> float:
        """Master side: when the child last showed a sign of life (monotonic seconds)."""
        return max(_ALIVE.unpack_from(self._mem, SLOT_SIZE)[0], self.read().heartbeat)

    def request_cancel(self, task_id: str) -> None:
        """Master side: name the task to cancel (then SIGUSR1 the child)."""
        _CANCEL.pack_into(self._mem, _CANCEL_AT, _enc(task_id, 32))

    def cancel_target(self) -> str:
        """Child side: the task the master asks to cancel."""
        return _dec(_CANCEL.unpack_from(self._mem, _CANCEL_AT)[0])

    def read(self) -> ChildState:
        """A consistent copy of the child's state (master side)."""
        for _ in range(100):
            raw = _LAYOUT.unpack_from(self._mem, 0)
            seq_after = struct.unpack_from("<Q", self._mem, 0)[0]
            if raw[0] % 2 == 0 and raw[0] == seq_after:
                return ChildState(raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], raw[7],
                                  _dec(raw[8]), _dec(raw[9]), _dec(raw[10]))
        return self.state   # a child writing continuously: the last copy we had is close enough

    def close(self) -> None:
        self._mem.close()


# -- pipe messages (child -> master): one JSON object per line ------------------------------

def encode(event: str, **fields: Any) -> bytes:
    return json.dumps({"e": event, **fields}, separators=(",", ":")).encode() + b"\n"


class PipeReader:
    """Master side of a child's pipe: non-blocking reads split into messages."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self._buf = b""
        self.eof = False

    def fileno(self) -> int:
        return self.fd

    def read(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                self.eof = True
                break
            if not chunk:
                self.eof = True
                break
            self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict):
                out.append(msg)
        return out

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


class PipeWriter:
    """Child side: whole messages in one write (atomic below PIPE_BUF)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, event: str, **fields: Any) -> None:
        data = encode(event, **fields)
        try:
            while data:
                n = os.write(self.fd, data)
                data = data[n:]
        except OSError:
            pass   # the master is gone; the child notices through getppid()
