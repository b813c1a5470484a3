"""Which Redis tq talks to, and the connection to it.

URL precedence: an explicit url, then TQ_REDIS_URL, then redis_url in the config file, then the
embedded Redis (tq.store.embedded), decided in one place: resolve_url().
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import redis
import redis.sentinel
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from ..config import BY_NAME, config_path, read_file
from ..errors import EvictionPolicyError, NoPermission, RedisUnavailable
from . import cluster, embedded
from .grants import explain, refused_within
from .link import REDIS_ERRORS, not_permitted, refused
from .urls import is_cluster_url, is_sentinel_url, parse_multi_host, redact

ENV_URL = "TQ_REDIS_URL"


class NotRunning(RedisUnavailable):
    """No Redis URL is configured and no embedded Redis runs in the state folder."""

    def __init__(self, server: embedded.EmbeddedRedis) -> None:
        super().__init__(server.url, (
            f"no Redis URL is configured (--redis-url, {ENV_URL}, tq.toml) and no embedded "
            f"redis-server runs at {server.socket} (state folder from "
            f"{embedded.home_origin()}); nothing was started. Point tq at the Redis your "
            f"masters use: --redis-url URL or {ENV_URL}, or --home DIR / TQ_HOME for an "
            f"embedded one (a systemd master's: `sudo -u tq tq --home /var/lib/tq status`)"))


log = logging.getLogger(__name__)
_announced: set[str] = set()   # URLs this process has logged (forked children inherit it)


def _announce(url: str, text: str) -> None:
    """Log once per process which Redis it uses."""
    if url not in _announced:
        _announced.add(url)
        log.info("using %s", text)


def default_url(start: bool = True) -> str:
    """The embedded Redis of the state folder (tq.store.embedded.home()): started by the first
    producer or master, then reused. start=False (read-only commands): when none runs, raise
    NotRunning saying where tq looked and how to point it elsewhere, instead of starting an
    empty one that nobody else uses."""
    server = embedded.EmbeddedRedis()
    if not start and not server.running():
        raise NotRunning(server)
    status = server.ensure()   # one INFO on its socket when it runs already
    _announce(status.url, f"embedded redis-server {status.version} at "
              f"{embedded.display_path(server.socket)} "
              f"({'started' if status.started else 'reused'})")
    return status.url


def resolve_url(url: str | None = None, *, config_file: str | None = None,
                start: bool = True) -> str:
    """The URL to use: explicit, TQ_REDIS_URL, the config file's redis_url, else the embedded
    (started if need be, unless start=False: see default_url).

    The config file is config_file, else TQ_CONFIG, else ./tq.toml (tq.config.config_path).
    """
    # Callers pass on a URL from --redis-url, TQ_REDIS_URL or a config file alike.
    origin = ENV_URL if url and url == os.environ.get(ENV_URL) else "configured"
    if not url and os.environ.get(ENV_URL):
        url, origin = os.environ[ENV_URL], ENV_URL
    if not url:
        path = config_path(config_file, os.environ)
        value = read_file(path).get("redis_url") if path is not None else None
        if value:
            url, origin = BY_NAME["redis_url"].parse(value), f"config file {path}"
    if not url:
        return default_url(start)
    _announce(url, f"Redis at {redact(url)} ({origin})")
    return url


def connect(url: str, *, socket_timeout: float | None = 10.0, retries: int = 0,
            client_name: str | None = None,
            single_connection: bool = False) -> Any:   # a redis.Redis or redis.RedisCluster
    """A Redis client for `url` (not yet connected). RESP2, bytes replies.

    retries: how many times redis-py may silently repeat a command after a connection error.
    Producers use a few (a restarted Redis is reconnected to transparently); workers use none,
    because a repeated claim whose first reply was lost would hide tasks in their own list.
    single_connection: one dedicated connection instead of a pool (standalone and unix URLs;
    no pool checkout and pid check per command), for a single-threaded user such as a handler.
    """
    try:
        retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), retries) if retries else Retry(
            ExponentialBackoff(), 0)
        tcp = {} if url.startswith("unix:") else {"socket_connect_timeout": 5.0,
                                                  "socket_keepalive": True}
        options: dict[str, Any] = dict(
            protocol=2,
            socket_timeout=socket_timeout,
            health_check_interval=30,
            **tcp,
            retry=retry,
            retry_on_error=list(REDIS_ERRORS) if retries else [],
            client_name=client_name,
        )
        if is_sentinel_url(url):
            return sentinel_master(url, options)
        if is_cluster_url(url):
            try:
                return cluster.cluster_client(url, options)
            except redis.exceptions.RedisClusterException as exc:   # it read the slot map
                cause = refused_within(exc)
                if cause is None:
                    raise
                raise NoPermission(redact(url), explain(str(cause))) from None
        conn = redis.Redis.from_url(url, single_connection_client=single_connection, **options)
    except ValueError as exc:
        raise RedisUnavailable(redact(url), f"invalid URL ({exc})") from None
    return conn


def sentinel_master(url: str, options: dict[str, Any]) -> redis.Redis:
    """A client of the primary a set of Sentinels names, for
    redis+sentinel://[user:pass@]host:port[,host:port...]/SERVICE[/DB][?query]
    (rediss+sentinel:// for TLS to the data nodes). The user and password are the data nodes';
    sentinel_username / sentinel_password in the query authenticate to the Sentinels, and the
    other query parameters (ssl_ca_certs...) go to the data nodes' connections as in
    redis-py's URLs. Every new connection asks the Sentinels where the primary is, and a
    READONLY reply (a demoted primary) drops the connection, so a failover reads to tq as a
    short outage that its loops already ride out."""
    parsed = parse_multi_host(url, "sentinel")
    parts = parsed.path
    if not parts or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise ValueError("the path must be /SERVICE or /SERVICE/DB")
    params = parsed.params
    sentinel_kwargs: dict[str, Any] = {k: params.pop(f"sentinel_{k}")
                                       for k in ("username", "password")
                                       if f"sentinel_{k}" in params}
    sentinel_kwargs["socket_timeout"] = options.get("socket_timeout") or 5.0
    sentinel_kwargs["socket_connect_timeout"] = 5.0
    if parsed.tls:
        options["ssl"] = True
    manager = redis.sentinel.Sentinel(parsed.hosts, sentinel_kwargs=sentinel_kwargs)
    return manager.master_for(parts[0], redis_class=redis.Redis,
                              db=int(parts[1]) if len(parts) == 2 else 0,
                              username=parsed.username, password=parsed.password,
                              **options, **params)   # type: ignore[arg-type]


@contextlib.contextmanager
def translated(url: str) -> Iterator[None]:
    """Turn connection errors and refusals into RedisUnavailable naming the (redacted) URL."""
    try:
        yield
    except (*REDIS_ERRORS, redis.exceptions.RedisClusterException,
            redis.exceptions.ResponseError) as exc:
        better = translation(url, exc)
        if better is None:
            raise
        raise better from None


def translation(url: str, exc: Exception) -> Exception | None:
    """What translated() raises instead of `exc` (None: `exc` itself). For hot paths that
    cannot afford a context manager per call."""
    if isinstance(exc, REDIS_ERRORS):
        return RedisUnavailable(redact(url), exc)
    if isinstance(exc, redis.exceptions.RedisClusterException):
        return RedisUnavailable(redact(url), exc) if cluster.unreachable_cluster(exc) else None
    if isinstance(exc, redis.exceptions.ResponseError):
        if refused(exc):
            return RedisUnavailable(redact(url), f"it refused the command: {exc}")
        if not_permitted(exc):
            return NoPermission(redact(url), explain(str(exc)))
    return None


UNKNOWN_POLICY = "unknown"


def eviction_policy(conn: redis.Redis) -> str:
    """Redis' maxmemory-policy, from INFO or, where INFO is refused or renamed, from CONFIG
    GET; UNKNOWN_POLICY when the user may run neither (an ACL user without +info,
    +config|get). INFO first: the documented ACL grants it (CONFIG GET would show secrets),
    so a refusal is not logged in Redis' ACL LOG at every start."""
    try:
        value = conn.info("memory").get("maxmemory_policy")
        if value is not None:
            return value.decode() if isinstance(value, bytes) else str(value)
    except redis.exceptions.ResponseError:
        pass   # NOPERM, or INFO renamed away
    try:
        reply = conn.config_get("maxmemory-policy")
    except redis.exceptions.ResponseError:   # renamed or disabled CONFIG, or NOPERM
        return UNKNOWN_POLICY
    raw: dict[Any, Any] = dict(reply)
    value = raw.get("maxmemory-policy") or raw.get(b"maxmemory-policy")
    if value is None:
        return UNKNOWN_POLICY
    return value.decode() if isinstance(value, bytes) else str(value)


def check_eviction_policy(conn: redis.Redis, url: str, allow: bool = False) -> str:
    """Refuse a Redis that may evict queue keys, unless `allow` (the user's explicit override).
    A policy that cannot be read (ACL) is refused too, saying what to grant. On a Redis
    Cluster every primary is checked (the first that may evict decides)."""
    if isinstance(conn, redis.RedisCluster):
        policies = [eviction_policy(n.redis_connection) for n in conn.get_primaries()]
        policy = next((p for p in policies if p != "noeviction"), "noeviction")
    else:
        policy = eviction_policy(conn)
    if policy == UNKNOWN_POLICY:
        if allow:
            log.warning("cannot read Redis' maxmemory-policy at %s (this user may not run "
                        "CONFIG GET or INFO): going on because eviction is allowed; make sure "
                        "it is noeviction", redact(url))
            return policy
        raise EvictionPolicyError(
            f"cannot read maxmemory-policy of Redis at {redact(url)}: this user may run "
            "neither CONFIG GET nor INFO. Grant one of them (ACL: +config|get or +info), or, "
            "once you made sure the policy is noeviction, pass --allow-eviction / "
            "TQ_ALLOW_EVICTION=1.")
    if policy != "noeviction" and not allow:
        raise EvictionPolicyError(
            f"Redis at {redact(url)} has maxmemory-policy={policy}: under memory pressure it "
            "would silently delete queued tasks. Set `maxmemory-policy noeviction` "
            "(CONFIG SET maxmemory-policy noeviction, and in redis.conf), or pass "
            "--allow-eviction / TQ_ALLOW_EVICTION=1 to run anyway."
        )
    return policy
