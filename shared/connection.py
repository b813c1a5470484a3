"""Which Redis tq talks to, and the connection to it.

URL precedence: an explicit url, then TQ_REDIS_URL, then the default. The default is decided
in one place, default_url(), so the embedded server can take its place.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from .errors import EvictionPolicyError, RedisUnavailable

ENV_URL = "TQ_REDIS_URL"
CONVENTIONAL_URL = "redis://127.0.0.1:6379/0"

REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def default_url() -> str:
    """The URL used when none is configured."""
    return CONVENTIONAL_URL


def resolve_url(url: str | None = None) -> str:
    """The URL to use: explicit, else TQ_REDIS_URL, else the default."""
    return url or os.environ.get(ENV_URL) or default_url()


def redact(url: str) -> str:
    """The URL with any password replaced by ***, safe to log."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"//[^@/]*@", "//***@", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
        netloc = f"{user}:***@{host}" if user else f"***@{host}"
    query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def connect(url: str, *, socket_timeout: float | None = 10.0, retries: int = 0,
            client_name: str | None = None) -> redis.Redis:
    """A Redis client for `url` (not yet connected). RESP2, bytes replies.

    retries: how many times redis-py may silently repeat a command after a connection error.
    Producers use a few (a restarted Redis is reconnected to transparently); workers use none,
    because a repeated claim whose first reply was lost would hide tasks in their own list.
    """
    try:
        retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), retries) if retries else Retry(
            ExponentialBackoff(), 0)
        tcp = {} if url.startswith("unix:") else {"socket_connect_timeout": 5.0,
                                                  "socket_keepalive": True}
        conn = redis.Redis.from_url(
            url,
            protocol=2,
            socket_timeout=socket_timeout,
            health_check_interval=30,
            **tcp,
            retry=retry,
            retry_on_error=list(REDIS_ERRORS) if retries else [],
            client_name=client_name,
        )
    except ValueError as exc:
        raise RedisUnavailable(redact(url), f"invalid URL ({exc})") from None
    return conn


@contextlib.contextmanager
def translated(url: str) -> Iterator[None]:
    """Turn redis-py's connection errors into RedisUnavailable naming the (redacted) URL."""
    try:
        yield
    except REDIS_ERRORS as exc:
        raise RedisUnavailable(redact(url), exc) from None


def eviction_policy(conn: redis.Redis) -> str:
    """Redis' maxmemory-policy, from CONFIG GET or, where CONFIG is disabled, from INFO."""
    try:
        reply = conn.config_get("maxmemory-policy")
        value = reply.get("maxmemory-policy") or reply.get(b"maxmemory-policy")
        if value is not None:
            return value.decode() if isinstance(value, bytes) else str(value)
    except redis.exceptions.ResponseError:
        pass
    info = conn.info("memory")
    value = info.get("maxmemory_policy", "unknown")
    return value.decode() if isinstance(value, bytes) else str(value)


def check_eviction_policy(conn: redis.Redis, url: str, allow: bool = False) -> str:
    """Refuse a Redis that may evict queue keys, unless `allow` (the user's explicit override)."""
    policy = eviction_policy(conn)
    if policy != "noeviction" and not allow:
        raise EvictionPolicyError(
            f"Redis at {redact(url)} has maxmemory-policy={policy}: under memory pressure it "
            "would silently delete queued tasks. Set `maxmemory-policy noeviction` "
            "(CONFIG SET maxmemory-policy noeviction, and in redis.conf), or pass "
            "--allow-eviction / TQ_ALLOW_EVICTION=1 to run anyway."
        )
    return policy


class Link:
    """The hot path to Redis: one connection per thread, kept out of the pool between calls.

    redis-py's pooled execute_command costs ~40% of a loopback round trip; enqueue and claim
    are round-trip bound, so they go through here. Forked children get fresh connections.
    `retries` repeats a call after a connection error (producers); workers use 0 and recover
    at their own level, because a repeated claim whose reply was lost would hide tasks.
    """

    def __init__(self, client: redis.Redis, retries: int = 0) -> None:
        self.pool = client.connection_pool
        self.retries = retries
        self._local = threading.local()

    def _connection(self) -> redis.connection.AbstractConnection:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():
            conn = local.conn = self.pool.make_connection()
            local.pid = os.getpid()
        return conn

    def call(self, *args: object) -> object:
        for attempt in range(self.retries + 1):
            conn = self._connection()
            try:
                conn.send_command(*args)
                return conn.read_response()
            except REDIS_ERRORS:
                conn.disconnect()
                if attempt >= self.retries:
                    raise
                time.sleep(min(0.05 * 2 ** attempt, 1.0))
        raise AssertionError("unreachable")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.disconnect()
            self._local.conn = None
