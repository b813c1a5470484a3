"""What replica_acks costs: enqueue and end-to-end throughput with and without WAIT.

    python bench/replication.py [--quick]

A primary and one replica on this machine (loopback, so WAIT costs about one replication
round trip; across hosts it costs the network's). Same process, same servers, both settings
alternated, the best of `--reps` runs of each.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import RedisServer, print_table, rate

import tq
from supervisor import Master, wait_succeeded


def enqueue_rate(url: str, n: int, replica_acks: int) -> float:
    with tq.Client(url, replica_acks=replica_acks) as client:
        client.enqueue("noop", {})   # connect and load scripts outside the timing
        t0 = time.perf_counter()
        for _ in range(n):
            client.enqueue("noop", {})
        return rate(n, time.perf_counter() - t0)


def master_rate(srv: RedisServer, n: int, replica_acks: int) -> float:
    srv.client().flushall()
    client = tq.Client(srv.url)
    client.enqueue_many([("noop", {})] * n)
    m = Master(srv.url, "-c", "2", "--replica-acks", str(replica_acks))
    try:
        m.wait_children(2, client)
        t0 = time.perf_counter()
        done = wait_succeeded(client, n)
    finally:
        m.stop()
        client.close()
    return rate(n, done - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    parser.add_argument("--reps", type=int, default=3)
    a = parser.parse_args()
    n_enqueue, n_tasks = (1000, 5000) if a.quick else (3000, 20000)
    with tempfile.TemporaryDirectory() as d:
        primary = RedisServer(Path(d) / "p", extra=["--repl-diskless-sync-delay", "0"]).start()
        replica = RedisServer(Path(d) / "r", extra=["--replicaof", "127.0.0.1",
                                                    str(primary.port)]).start()
        try:
            while replica.client().info("replication").get("master_link_status") != "up":
                time.sleep(0.02)
            rows = []
            enq = {0: [], 1: []}
            run = {0: [], 1: []}
            for _ in range(a.reps):
                for acks in (0, 1):
                    primary.client().flushall()
                    enq[acks].append(enqueue_rate(primary.url, n_enqueue, acks))
                    run[acks].append(master_rate(primary, n_tasks, acks))
            rows.append(["enqueue one at a time, tasks/s", max(enq[0]), max(enq[1]),
                         max(enq[1]) / max(enq[0])])
            rows.append([f"no-op end to end, -c 2, {n_tasks:,} tasks/s", max(run[0]),
                         max(run[1]), max(run[1]) / max(run[0])])
            print_table("replica_acks cost (1 replica, loopback)",
                        ["case", "replica_acks=0", "replica_acks=1", "ratio"], rows)
        finally:
            replica.stop()
            primary.stop()


if __name__ == "__main__":
    main()
