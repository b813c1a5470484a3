"""Redis Cluster mode: the client, and the hot path's routing over redis-py's slot map.

    redis+cluster://[user:pass@]host:port[,host:port...][?query]   (rediss+cluster:// for TLS)

Any one reachable node is enough: redis-py's RedisCluster reads the slot map from it. The
operator paths (status, dead letters, dashboard) use that client as they use redis.Redis. The
hot path (enqueue, claim, ack) goes through ClusterLink instead: one connection per node per
thread, kept out of redis-py's pools (the same reason as link.Link), routed by the slot
of the command's first key through redis-py's slot map. A MOVED or ASK reply (a failover, a
resharding) refreshes the map and sends the command to the new owner; it did not run, so this
is safe. A connection error marks the map stale and is raised as usual: the caller's outage
loop retries, and the next call asks the cluster where the slot lives now.

Every tq script touches one queue's keys, all under the queue's {hash tag}, so one slot; the
registry, the queue set and the history live under one tag of their own (keys.GLOBAL_TAG).
"""

from __future__ import annotations

import os
import select
import threading
import time
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster

from ..errors import RedisUnavailable
from . import link
from .urls import is_cluster_url, parse_multi_host

MAX_REDIRECTS = 5
__all__ = ["ClusterLink", "cluster_client", "is_cluster", "is_cluster_url", "unreachable_cluster"]

def is_cluster(conn: object) -> bool:
    return isinstance(conn, RedisCluster)


def cluster_client(url: str, options: dict[str, Any]) -> RedisCluster:
    """A RedisCluster for redis+cluster://[user:pass@]h1:p1[,h2:p2...][?query]. The query takes
    redis-py's connection parameters (ssl_ca_certs, ssl_certfile...), as in its URLs."""
    parsed = parse_multi_host(url, "cluster node")
    if parsed.path not in ([], ["0"]):
        raise ValueError("a Redis Cluster has only database 0")
    nodes = [ClusterNode(host, port) for host, port in parsed.hosts]
    params: dict[str, Any] = dict(parsed.params)
    if parsed.tls:
        params["ssl"] = True
    options = dict(options)
    retry_on_error = options.pop("retry_on_error", None)
    options.pop("retry", None)
    return RedisCluster(
        startup_nodes=nodes, username=parsed.username, password=parsed.password,
        # A slot map without full coverage (a primary down, its replica not yet promoted) must
        # not fail every call: the other slots are served on.
        require_full_coverage=False,
        retry=redis.retry.Retry(redis.backoff.ExponentialBackoff(cap=1.0, base=0.05),
                                3 if retry_on_error else 0),
        **options, **params)


def unreachable_cluster(exc: BaseException) -> bool:
    """redis-py's "no startup node answers" (it has no exception class of its own)."""
    return isinstance(exc, redis.exceptions.RedisClusterException) and \
        "cannot be connected" in str(exc)


def _first_key(args: tuple[Any, ...]) -> Any:
    """The key a command is routed by: EVALSHA/EVAL's first key, else the first argument."""
    name = args[0].upper() if isinstance(args[0], str) else args[0]
    if name in ("EVALSHA", "EVAL", b"EVALSHA", b"EVAL"):
        return args[3] if int(args[2]) > 0 else None
    if name in ("WAIT", "SCRIPT", "PING", b"WAIT", b"SCRIPT", b"PING") or len(args) < 2:
        return None
    return args[1]


class ClusterLink:
    """link.Link's interface over a cluster: per-thread connections to each primary,
    commands routed by the slot of their first key (keyless ones go to the node of the last
    keyed command: SCRIPT LOAD after a NOSCRIPT, WAIT after a write)."""

    def __init__(self, client: RedisCluster, retries: int = 0, safe_url: str = "Redis") -> None:
        self.client = client
        self.retries = retries
        self.safe_url = safe_url
        self.connects = 0
        self._local = threading.local()
        self._stale = False   # a connection failed: ask the cluster for the slot map again
        self._map_lock = threading.Lock()

    # -- connections ------------------------------------------------------------------------
    def _conns(self) -> dict[str, Any]:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.conns, local.pid, local.last = {}, os.getpid(), None
            local.idle = {}   # wait_any's connections whose BLPOP answered, by key
        return local.conns

    def _refresh(self) -> None:
        """Read the slot map again; no reachable node reads as a connection error."""
        with self._map_lock:
            try:
                self.client.nodes_manager.initialize()
            except redis.exceptions.RedisClusterException as exc:
                if not unreachable_cluster(exc):
                    raise
                raise redis.exceptions.ConnectionError(str(exc)) from None
            self._stale = False

    def _node(self, key: Any) -> Any:
        if self._stale:
            self._refresh()
        if key is None:
            last = self._local.last
            if last is not None:
                return last
            return self.client.get_default_node()
        slot = self.client.keyslot(key)
        return self.client.nodes_manager.get_node_from_slot(slot)

    def _connection(self, node: Any) -> Any:
        conns = self._conns()
        conn = conns.get(node.name)
        if conn is None:
            conn = conns[node.name] = link.dedicated(node.redis_connection.connection_pool)
            self.connects += 1
        self._local.last = node
        return conn

    def _drop(self, node: Any) -> None:
        conn = self._conns().pop(node.name, None)
        if conn is not None:
            conn.disconnect()
        self._stale = True

    # -- calls ------------------------------------------------------------------------------
    def call(self, *args: object) -> object:
        self._conns()
        key = _first_key(args)
        attempt = redirects = 0
        asking = None
        while True:
            node = asking or self._node(key)
            try:
                conn = self._connection(node)
                if asking is not None:
                    conn.send_packed_command(conn.pack_commands([("ASKING",), args]))
                    conn.read_response()
                    asking = None
                else:
                    conn.send_command(*args)
                return conn.read_response()
            except redis.exceptions.AskError as exc:
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise
                # ASK: the slot is migrating and this key is on the target already (ASKING
                # lets the next command in there); MOVED: the slot has a new owner.
                if not isinstance(exc, redis.exceptions.MovedError):
                    asking = self.client.nodes_manager.get_node(exc.host, exc.port)
                if asking is None:
                    self._refresh()
            except link.REDIS_ERRORS:
                self._drop(node)
                if attempt >= self.retries:
                    raise
                time.sleep(min(0.05 * 2 ** attempt, 1.0))
                attempt += 1
            except redis.exceptions.ResponseError as exc:
                if link.refused(exc):
                    self._stale = True   # CLUSTERDOWN, READONLY, TRYAGAIN: the map moves
                    raise RedisUnavailable(self.safe_url, f"it refused the command: {exc}") \
                        from None
                raise

    def call_pipelined(self, *commands: tuple[object, ...]) -> list[object]:
        """link.Link.call_pipelined on the node of the first command's key (every command
        of one call is about one queue, so one slot)."""
        self._conns()
        key = _first_key(commands[0])
        for _ in range(MAX_REDIRECTS):
            node = self._node(key)
            try:
                conn = self._connection(node)
                conn.send_packed_command(conn.pack_commands(commands))
                replies: list[object] = []
                for _ in commands:
                    try:
                        replies.append(conn.read_response())
                    except redis.exceptions.ResponseError as exc:
                        replies.append(exc)
            except link.REDIS_ERRORS:
                self._drop(node)
                raise
            if isinstance(replies[0], redis.exceptions.AskError):
                # Not on this node (it moved, or is moving): the keyed commands did not run.
                self._refresh()
                if not isinstance(replies[0], redis.exceptions.MovedError):
                    return [self.call(*c) for c in commands]
                continue
            return replies
        raise redis.exceptions.ClusterError("too many redirections")

    def connection_for(self, key: Any) -> Any:
        """A new connection to the primary of `key`'s slot, for the caller to block on."""
        conn = link.dedicated(self._node(key).redis_connection.connection_pool)
        self.connects += 1
        return conn

    def wait_any(self, keys: list[Any], timeout: float) -> list[Any]:
        """BLPOP on several lists of different slots at once: one connection per list, all
        in one select(). Returns the keys a token came from (none: timed out). The reads still
        open when one fires are cancelled by closing their connections (Redis then pops
        nothing for them); those that answered are kept for the next wait."""
        self._conns()
        idle: dict[Any, Any] = self._local.idle
        block = round(max(timeout, 0.001), 3)
        pending: dict[Any, Any] = {}
        try:
            for key in keys:
                conn = idle.pop(key, None) or self.connection_for(key)
                pending[key] = conn
                conn.send_command("BLPOP", key, block)
            deadline = time.monotonic() + block + 1.0
            got: list[Any] = []
            while pending and not got:
                ready = [k for k, c in pending.items() if c.can_read(0)]
                if not ready:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise redis.exceptions.TimeoutError("no reply to a BLPOP in time")
                    socks = {c._sock.fileno(): k for k, c in pending.items()}
                    r, _, _ = select.select(list(socks), [], [], left)
                    ready = [socks[f] for f in r]
                for key in ready:
                    conn = pending[key]
                    try:
                        reply = conn.read_response()
                    except redis.exceptions.ResponseError:
                        self._stale = True   # MOVED: the list lives elsewhere now
                        raise
                    idle[key] = pending.pop(key)
                    if reply is not None:
                        got.append(key)
            return got
        except link.REDIS_ERRORS:
            self._stale = True
            raise
        finally:
            for conn in pending.values():   # still blocked, or failed: cancel by closing
                conn.disconnect()

    def close(self) -> None:
        for name in ("conns", "idle"):
            conns = getattr(self._local, name, None)
            if conns:
                for conn in conns.values():
                    conn.disconnect()
                conns.clear()

