"""Redis Cluster benchmarks: tq-master on a 3-primary cluster vs a standalone redis-server.

    python bench/cluster.py [--quick]

Same 2 cores, same run: no-op tasks/s with -c 2 on one queue and on 3 queues spread over the 3
shards; pickup latency at idle (enqueue -> handler start) on one queue and on 3 queues (where
a child blocks on 3 wake lists of 3 slots at once); Redis CPU per task on each shard.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import RedisServer, print_table, rate, redis_cpu
from redis_cluster import RedisCluster

import tq
from supervisor import Master, pct, wait_succeeded


class Target:
    """A Redis to run the cases on: its URL, how to empty it, its primaries."""

    def __init__(self, name: str, url: str, flush, primaries) -> None:
        self.name, self.url, self.flush, self.primaries = name, url, flush, primaries

    def cpu(self) -> list[float]:
        return [redis_cpu(p) for p in self.primaries()]


def spread_queues(client: tq.Client, n: int) -> list[str]:
    """n queue names whose slots are on n different primaries (any names on a standalone)."""
    conn = client.broker.conn
    if not client.broker.cluster:
        return [f"q{i}" for i in range(n)]
    seen: dict[str, str] = {}
    i = 0
    while len(seen) < n:
        q = f"q{i}"
        node = conn.nodes_manager.get_node_from_slot(conn.keyslot(client.broker.qkeys(q).tasks))
        seen.setdefault(node.name, q)
        i += 1
    return list(seen.values())


def throughput(t: Target, n: int, queues: int) -> tuple[float, list[float]]:
    t.flush()
    client = tq.Client(t.url)
    names = spread_queues(client, queues)
    for q in names:
        client.enqueue_many([{"type": "noop", "queue": q}] * (n // queues))
    total = n // queues * queues
    cpu0 = t.cpu()
    m = Master(t.url, "-c", "2", "-Q", ",".join(names))
    try:
        m.wait_children(2, client)
        t0 = time.perf_counter()
        done = wait_succeeded(client, total)
    finally:
        m.stop()
        cpu = [b - a for a, b in zip(cpu0, t.cpu(), strict=True)]
        client.close()
    return rate(total, done - t0), [c / total * 1e6 for c in cpu]


def latency(t: Target, count: int, gap: float, queues: int) -> list[float]:
    t.flush()
    client = tq.Client(t.url)
    names = spread_queues(client, queues)
    m = Master(t.url, "-c", "2", "-Q", ",".join(names))
    try:
        m.wait_children(2, client)
        time.sleep(0.5)   # idle: both children blocked on Redis
        ids = []
        for i in range(count):
            ids.append(client.enqueue("latency", {"t": time.time()}, queue=names[i % queues]))
            time.sleep(gap)
        return sorted(client.wait(i, timeout=10) * 1000 for i in ids)
    finally:
        m.stop()
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    args = parser.parse_args()
    n = 6000 if args.quick else 30_000
    count = 100 if args.quick else 300
    with tempfile.TemporaryDirectory() as d:
        # both with one replica per primary, on the same 2 cores: replication costs the same
        srv = RedisServer(Path(d) / "standalone").start()
        replica = RedisServer(Path(d) / "replica", extra=[
            "--replicaof", "127.0.0.1", str(srv.port)]).start()
        cluster = RedisCluster(Path(d) / "cluster").start()
        try:
            targets = [
                Target("standalone", srv.url, lambda: srv.client().flushall(),
                       lambda: [srv.client()]),
                Target("cluster", cluster.url, cluster.flush,
                       lambda: [p.client() for p in cluster.primaries()]),
            ]
            rows = []
            for queues in (1, 3):
                got = {t.name: throughput(t, n, queues) for t in targets}
                s, c = got["standalone"][0], got["cluster"][0]
                rows.append([f"no-op tasks/s, -c 2, {queues} queue(s)", s, c, c / s])
                cpu = "/".join(f"{x:.0f}" for x in got["cluster"][1])
                rows.append([f"  Redis CPU us/task ({queues} queue(s)); cluster: per shard",
                             got["standalone"][1][0], cpu, ""])
            for queues in (1, 3):
                lat = {t.name: latency(t, count, 0.02, queues) for t in targets}
                for q, label in ((0.5, "p50"), (0.99, "p99")):
                    s, c = pct(lat["standalone"], q), pct(lat["cluster"], q)
                    rows.append([f"pickup latency {label} (ms), idle, {queues} queue(s)",
                                 s, c, c / s])
            print_table(f"tq-master on a Redis Cluster (3 primaries + 3 replicas) vs standalone "
                        f"+ 1 replica (redis-server {srv.version()}, TCP loopback)",
                        ["case", "standalone", "cluster", "cluster / standalone"], rows)
            print("queues: with 3, each lives on another primary; the children claim each in "
                  "turn and block\n  on the 3 wake lists at once (one connection per slot)")
        finally:
            cluster.stop()
            replica.stop()
            srv.stop()


if __name__ == "__main__":
    main()
