"""The hot path's connection to Redis: one per thread, outside redis-py's pools; packing of
commands; and which failures mean "Redis is away for now" (an outage) rather than "wrong".
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence

import redis

from ..errors import RedisUnavailable

# redis-py's classes the other layers name (they import them from here, not redis-py):
RedisError = redis.exceptions.RedisError          # anything redis-py raises
ResponseError = redis.exceptions.ResponseError    # an error reply (a refusal, a corrupt key)
Connection = redis.connection.AbstractConnection  # a connection a caller blocks on

# Redis unreachable: a connection failed or timed out; on a cluster also "the cluster is down"
# or "no node serves that slot" (a primary lost, its replica not yet promoted).
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                redis.exceptions.ClusterError, redis.exceptions.SlotNotCoveredError)
# Redis unreachable, raw (redis-py) or translated at our boundary: what outage loops catch.
OUTAGE = (*REDIS_ERRORS, RedisUnavailable)


def not_permitted(exc: BaseException) -> bool:
    """An ACL refusal, of a command sent or of one inside a script."""
    return isinstance(exc, redis.exceptions.NoPermissionError) or (
        isinstance(exc, redis.exceptions.ResponseError)
        and ("NOPERM" in str(exc) or "can't run this command" in str(exc)))


# Replies that mean "not now" rather than "wrong": out of memory (noeviction), a replica after
# a failover, a failed RDB save, a long script, a master down. Outage loops wait them out.
_REFUSALS = (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError,
             redis.exceptions.TryAgainError)
_REFUSAL_CODES = ("MISCONF", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "OOM", "READONLY")


def refused(exc: BaseException) -> bool:
    """A Redis error reply that will go away by itself (see _REFUSAL_CODES)."""
    return isinstance(exc, _REFUSALS) or (
        isinstance(exc, redis.exceptions.ResponseError)
        and str(exc).split(" ", 1)[0] in _REFUSAL_CODES)


def dedicated(pool: redis.ConnectionPool) -> redis.connection.AbstractConnection:
    """A connected connection of the pool's kind that the pool does not count (or cap at 100).

    Connected here, through connect(): a Sentinel-managed connection asks the Sentinels for
    the primary there, while redis-py's send path would connect a fresh one to its default
    host (localhost:6379) without asking. Raises the connection's errors.
    """
    conn = pool.connection_class(**pool.connection_kwargs)
    conn.connect()
    return conn



try:   # hiredis (a dependency) packs a whole command in C; redis-py's packer adds a
    # Python pass over the arguments first (half the cost of a claim's 170 arguments)
    from hiredis import pack_command as _hiredis_pack

    def _pack(args: tuple[object, ...]) -> list[bytes]:
        try:
            return [_hiredis_pack(args)]   # type: ignore[arg-type]  # (it checks itself)
        except TypeError as exc:
            raise redis.exceptions.DataError(str(exc)) from None
except ImportError:  # pragma: no cover - hiredis is installed with tq
    _packer = redis.connection.PythonRespSerializer(
        6000, redis.connection.Encoder("utf-8", "strict", False).encode)

    def _pack(args: tuple[object, ...]) -> list[bytes]:
        return _packer.pack(*args)


def pack_items(items: Sequence[object]) -> bytes:
    """Arguments packed as RESP bulk strings without the command's "*N" header, so a caller
    can pack the arguments that never change once (the claim's queue keys: half of its
    packing) and send them with others: see Link.call_packed."""
    packed = b"".join(_pack(tuple(items)))
    return packed[packed.index(b"\r\n") + 2:]


class Link:
    """The hot path to Redis: one connection per thread, kept out of the pool between calls.

    redis-py's pooled execute_command costs ~40% of a loopback round trip; enqueue and claim
    are round-trip bound, so they go through here. Forked children get fresh connections.
    `retries` repeats a call after a connection error (producers); workers use 0 and recover
    at their own level, because a repeated claim whose reply was lost would hide tasks.
    """

    def __init__(self, client: redis.Redis, retries: int = 0, safe_url: str = "Redis") -> None:
        self.pool = client.connection_pool
        self.retries = retries
        self.safe_url = safe_url
        self.connects = 0   # connections made: a change means Redis may have lost its state
        self._local = threading.local()

    def _connection(self) -> redis.connection.AbstractConnection:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():
            # Not pool.make_connection(): the pool counts those for good and refuses the 101st,
            # so a process that reconnected 100 times would lose Redis for ever.
            local.conn = None
            conn = local.conn = dedicated(self.pool)
            local.pid = os.getpid()
            self.connects += 1
        return conn

    def call(self, *args: object) -> object:
        return self._call(_pack(args))

    def call_packed(self, count: int, parts: list[bytes]) -> object:
        """call() of a command whose `count` arguments are already packed (pack_items)."""
        return self._call([b"*%d\r\n" % count, *parts])

    def _call(self, packed: list[bytes]) -> object:
        for attempt in range(self.retries + 1):
            conn = None
            try:
                conn = self._connection()
                conn.send_packed_command(packed)
                return conn.read_response()
            except REDIS_ERRORS:
                if conn is not None:
                    conn.disconnect()
                self._local.conn = None   # the next call counts a new connection
                if attempt >= self.retries:
                    raise
                time.sleep(min(0.05 * 2 ** attempt, 1.0))
            except redis.exceptions.ResponseError as exc:
                if refused(exc):
                    raise RedisUnavailable(self.safe_url, f"it refused the command: {exc}") \
                        from None
                raise
        raise AssertionError("unreachable")

    def call_pipelined(self, *commands: tuple[object, ...]) -> list[object]:
        """Send commands in one write, read every reply; error replies are returned, not raised.

        No retries: a reply lost after the server ran a command cannot be told from one it never
        ran, so the caller recovers (as for call() with retries=0).
        """
        conn = self._connection()
        try:
            conn.send_packed_command(conn.pack_commands(commands))
            replies: list[object] = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except redis.exceptions.ResponseError as exc:
                    replies.append(exc)
            return replies
        except REDIS_ERRORS:
            conn.disconnect()
            self._local.conn = None
            raise

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.disconnect()
            self._local.conn = None
