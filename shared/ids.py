"""Task ids: 17 characters, time-ordered, unique without coordination, naming their queue.

7 characters of millisecond time (42 bits: until the year 2109) in an alphabet that sorts like
the numbers it encodes, then 4 characters of the queue's hint (24 bits of the CRC-32 of its
name), then 6 random characters (36 bits; a clash in the same millisecond and queue is caught
by the enqueue script, which asks for a fresh id). Shorter than a uuid4 (36), which matters
because every queued task stores its id twice in Redis (in a list and as a hash field). The
hint lets `get(id)` find the task's queue without searching every queue (queue_hint; several
queues may share a hint: all of them are looked at). The time comes first and is never zero,
so an id never begins with "-" (which shells and CLIs would read as an option).

Ids made before the hint (16 characters: time, then 9 random) are still read (created_ms)
and found (by a search of every queue).
"""

from __future__ import annotations

import base64
import os
import re
import threading
import time
import zlib

_URLSAFE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_SORTED = b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
_TO_SORTED = bytes.maketrans(_URLSAFE, _SORTED)

ID_LENGTH = 17
OLD_ID_LENGTH = 16   # ids made before the queue hint
_ID_RE = re.compile(r"[A-Za-z0-9_-]{16,17}")   # an id of new_id()'s alphabet, tail included


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


def new_id(now_ms: int | None = None, queue: str | None = None) -> str:
    """A fresh id whose first 7 characters encode the creation time; with `queue`, a task id
    that names its queue's hint (17 characters), else 16 (workflow ids)."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    head = base64.urlsafe_b64encode(ms.to_bytes(6, "big")).translate(_TO_SORTED)[1:]
    if queue is None:
        return (head + base64.urlsafe_b64encode(_random.take7())[:9]).decode("ascii")
    tail = base64.urlsafe_b64encode(_random.take7())[:6]
    return (head + _hint_bytes(queue) + tail).decode("ascii")


_HINTS: dict[str, bytes] = {}


def _hint_bytes(queue: str) -> bytes:
    hint = _HINTS.get(queue)
    if hint is None:
        n = zlib.crc32(queue.encode()) & 0xFFFFFF
        hint = bytes(_SORTED[(n >> shift) & 63] for shift in (18, 12, 6, 0))
        if len(_HINTS) < 100_000:
            _HINTS[queue] = hint
    return hint


def hint_of(queue: str) -> str:
    """The 4 characters a task id of `queue` carries (the low 24 bits of the CRC-32 of its
    UTF-8 name, 6 bits a character in the sorted alphabet, high bits first)."""
    return _hint_bytes(queue).decode("ascii")


def queue_hint(task_id: str) -> str | None:
    """The queue hint a task id carries, or None (an id made before hints, or not tq's)."""
    if len(task_id) != ID_LENGTH or not _ID_RE.fullmatch(task_id):
        return None
    return task_id[7:11]


_DIGIT = {chr(c): i for i, c in enumerate(_SORTED)}   # a character of the time -> 6 bits


def created_ms(task_id: str) -> int | None:
    """The creation time encoded in an id made by new_id(), or None for other ids.

    On every finished task's path (queue wait), so it reads the 7 time characters directly
    (a fifth of a regex match plus a base64 decode)."""
    if len(task_id) != ID_LENGTH and len(task_id) != OLD_ID_LENGTH:
        return None
    digit = _DIGIT
    ms = 0
    try:
        for ch in task_id[:7]:
            ms = (ms << 6) | digit[ch]
    except KeyError:
        return None
    return ms if _ID_RE.fullmatch(task_id) else None
