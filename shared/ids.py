"""Task ids: 16 characters, time-ordered, unique without coordination.

7 characters of millisecond time (42 bits: until the year 2109) in an alphabet that sorts like
the numbers it encodes, then 9 random characters (54 bits). Shorter than a uuid4 (36), which
matters because every queued task stores its id twice in Redis (in a list and as a hash
field). The time comes first and is never zero, so an id never begins with "-" (which shells
and CLIs would read as an option).
"""

from __future__ import annotations

import base64
import os
import re
import threading
import time

_URLSAFE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_SORTED = b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
_TO_SORTED = bytes.maketrans(_URLSAFE, _SORTED)

ID_LENGTH = 16
_ID_RE = re.compile(r"[A-Za-z0-9_-]{16}")   # an id of new_id()'s alphabet, random tail included


_RANDOM_CHUNK = 7 * 256   # os.urandom() once per 256 ids: a syscall per id shows in enqueue


class _Random:
    """Random bytes for ids, read from the OS in chunks; thread-safe, and never shared with a
    forked child (two processes must not hand out the same bytes)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.buf = b""
        self.pos = 0

    def take7(self) -> bytes:
        with self.lock:
            pos = self.pos
            if pos + 7 > len(self.buf):
                self.buf, pos = os.urandom(_RANDOM_CHUNK), 0
            self.pos = pos + 7
            return self.buf[pos:pos + 7]


_random = _Random()


def _forget_random() -> None:
    global _random
    _random = _Random()


os.register_at_fork(after_in_child=_forget_random)


def new_id(now_ms: int | None = None) -> str:
    """A fresh task id whose first 7 characters encode the creation time."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    head = base64.urlsafe_b64encode(ms.to_bytes(6, "big")).translate(_TO_SORTED)[1:]
    tail = base64.urlsafe_b64encode(_random.take7())[:9]
    return (head + tail).decode("ascii")


_DIGIT = {chr(c): i for i, c in enumerate(_SORTED)}   # a character of the time -> 6 bits


def created_ms(task_id: str) -> int | None:
    """The creation time encoded in an id made by new_id(), or None for other ids.

    On every finished task's path (queue wait), so it reads the 7 time characters directly
    (a fifth of a regex match plus a base64 decode)."""
    if len(task_id) != ID_LENGTH:
        return None
    digit = _DIGIT
    ms = 0
    try:
        for ch in task_id[:7]:
            ms = (ms << 6) | digit[ch]
    except KeyError:
        return None
    return ms if _ID_RE.fullmatch(task_id) else None
