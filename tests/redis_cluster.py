"""A private Redis Cluster for tests: 3 primaries + 3 replicas on free ports, built with plain
cluster commands (CLUSTER ADDSLOTSRANGE / MEET / REPLICATE), so no redis-cli is needed."""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path

import redis
from redis_server import RedisServer

SLOTS = 16384


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except redis.exceptions.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"cluster: {what} did not happen within {timeout:.0f} s")
        time.sleep(0.05)


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too (so port <= 55535)."""
    while True:
        port = random.randint(20000, 45000)
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port


class RedisCluster:
    """Six redis-servers forming one cluster; nodes can be killed and restarted."""

    def __init__(self, directory: Path, primaries: int = 3, replicas: int = 1,
                 node_timeout_ms: int = 2000) -> None:
        self.node_timeout_ms = node_timeout_ms
        self.nodes = [
            RedisServer(directory / f"node{i}", port=cluster_port(), extra=[
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(node_timeout_ms),
                # a replica may be promoted however long it lost its primary
                "--cluster-replica-validity-factor", "0",
                "--appendonly", "no"])
            for i in range(primaries * (1 + replicas))]
        self.n_primaries = primaries

    @property
    def url(self) -> str:
        seeds = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:self.n_primaries])
        return f"redis+cluster://{seeds}"

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        first = self.nodes[0].client()
        for node in self.nodes[1:]:
            first.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        per = SLOTS // self.n_primaries
        for i, node in enumerate(self.nodes[:self.n_primaries]):
            lo, hi = i * per, (SLOTS - 1 if i == self.n_primaries - 1 else (i + 1) * per - 1)
            node.client().execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
        ids = [n.client().execute_command("CLUSTER", "MYID").decode() for n in self.nodes]
        _wait(lambda: all(len(n.client().execute_command("CLUSTER", "NODES").splitlines())
                          == len(self.nodes) for n in self.nodes), 20, "every node meeting")
        for i, node in enumerate(self.nodes[self.n_primaries:]):
            node.client().execute_command("CLUSTER", "REPLICATE",
                                          ids[i % self.n_primaries])
        self.wait_ok()
        return self

    def wait_ok(self, timeout: float = 30) -> None:
        """Every live node says cluster_state:ok and every primary has its replica in sync."""
        def ok() -> bool:
            for n in self.live():
                info = n.client().execute_command("CLUSTER", "INFO").decode()
                if "cluster_state:ok" not in info:
                    return False
            primaries = self.primaries()
            return len(primaries) == self.n_primaries and all(
                self._synced(p) for p in primaries)
        _wait(ok, timeout, "cluster_state:ok with replicas in sync")

    def _synced(self, node: RedisServer) -> bool:
        info = node.client().info("replication")
        if len(self.live()) < len(self.nodes):
            return True   # a killed node's replica need not be back
        return info.get("connected_slaves", 0) >= 1 and all(
            v.get("state") == "online" for k, v in info.items()
            if k.startswith("slave") and isinstance(v, dict))

    def live(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.proc is not None]

    def primaries(self) -> list[RedisServer]:
        out = []
        for n in self.live():
            if n.client().info("replication").get("role") == "master":
                out.append(n)
        return out

    def primary_of(self, key: str) -> RedisServer:
        """The live node serving `key`'s slot, as the cluster says now."""
        any_node = self.live()[0].client()
        slot = any_node.execute_command("CLUSTER", "KEYSLOT", key)
        for lo, hi, owner, *_ in any_node.execute_command("CLUSTER", "SLOTS"):
            if lo <= slot <= hi:
                return next(n for n in self.live() if n.port == int(owner[1]))
        raise RuntimeError(f"no primary serves the slot of {key!r}")

    def replica_of(self, primary: RedisServer) -> RedisServer:
        pid = primary.client().execute_command("CLUSTER", "MYID").decode()
        for n in self.live():
            if n is primary:
                continue
            for line in n.client().execute_command("CLUSTER", "NODES").decode().splitlines():
                parts = line.split()
                if "myself" in parts[2] and "slave" in parts[2] and parts[3] == pid:
                    return n
        raise RuntimeError("no replica of that primary")

    def flush(self) -> None:
        for n in self.primaries():
            n.client().flushall()

    def client(self) -> redis.RedisCluster:
        n = self.live()[0]
        return redis.RedisCluster(host="127.0.0.1", port=n.port, protocol=2)

    def stop(self) -> None:
        for n in self.nodes:
            n.stop(kill=True)
