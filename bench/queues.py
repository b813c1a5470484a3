"""Cost against the number of queues: one master consuming N queues, standalone and cluster.

    python bench/queues.py [--quick] [--tasks N] [--sizes 1,10,100,1000] [--no-cluster]
                           [--no-standalone]

For each N, in one run, next to N = 1 of the same run: no-op tasks/s with `-c 2` while one
queue holds all the work (20,000 tasks, --tasks; 10,000 on the cluster) and while the same work is
spread over all N queues; Redis CPU per task (per primary on the cluster) from the children's
first claim to the last ack; the Redis CPU a master spends starting (launch to all children
ready, with the work waiting: registration, the first sweep); the Redis CPU an idle master
`-c 2` costs with N empty queues; the connections the master and its children hold to each
primary; `client.get(id)` without `queue=`, p50. A throwaway run at N = 1 warms the machine
first (the first run of a process reads slow).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import RedisServer, print_table, rate, redis_cpu

import tq
from supervisor import Master

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

IDLE_SECONDS = 5.0


class Target:
    """A Redis to run the cases on: its URL, how to empty it, its primaries."""

    def __init__(self, name: str, url: str, flush: Callable[[], None],
                 primaries: Callable[[], list]) -> None:
        self.name, self.url, self.flush, self.primaries = name, url, flush, primaries

    def cpu(self) -> list[float]:
        return [redis_cpu(p) for p in self.primaries()]

    def connections(self) -> list[int]:
        """Clients of tq's processes (by their client names) on each primary."""
        out = []
        for p in self.primaries():
            out.append(sum(1 for c in p.client_list() if c.get("name", "").startswith("tq-")))
        return out


def names(n: int) -> list[str]:
    return [f"bq-{i:05d}" for i in range(n)]


class Progress:
    """Counts succeeded tasks from the queues' stats hashes, reading only the queues not yet
    done, and how many reads it made: its own Redis CPU is taken out of the figures (measured
    per read beforehand, on the same server)."""

    def __init__(self, client: tq.Client, queues: list[str], per_queue: int) -> None:
        self.client, self.per = client, per_queue
        self.left = {q: 0 for q in queues}
        self.done = 0
        self.reads = 0

    def poll(self) -> int:
        qs = list(self.left)
        pipe = self.client.broker.conn.pipeline(transaction=False)
        for q in qs:
            pipe.hget(self.client.broker.qkeys(q).stats, "noop:succeeded")
        self.reads += len(qs)
        for q, v in zip(qs, pipe.execute(), strict=True):
            if int(v or 0) >= self.per:
                del self.left[q]
                self.done += self.per
        return self.done


def read_cost(t: Target, client: tq.Client) -> list[float]:
    """Redis CPU seconds per stats read of Progress, per primary."""
    qs = names(1000)
    p = Progress(client, qs, 1)
    cpu0 = t.cpu()
    for _ in range(20):
        p.left = dict.fromkeys(qs, 0)
        p.poll()
    return [(b - a) / p.reads for a, b in zip(cpu0, t.cpu(), strict=True)]


def run_master(t: Target, queues: list[str]) -> Master:
    # the queue list through the environment (1,000 names would make a long command line)
    os.environ["TQ_QUEUES"] = ",".join(queues)
    try:
        return Master(t.url, "-c", "2")
    finally:
        del os.environ["TQ_QUEUES"]


def throughput(t: Target, n_queues: int, tasks: int, spread: bool
               ) -> tuple[float, list[float], float]:
    """tasks/s, Redis CPU (us per task, per primary) and the Redis CPU of the master's start
    (ms, all primaries): all the work in the first queue, or spread evenly over all of them."""
    t.flush()
    qs = names(n_queues)
    client = tq.Client(t.url)
    busy = qs if spread else qs[:1]
    per = tasks // len(busy)
    for q in busy:
        client.enqueue_many([{"type": "noop", "queue": q}] * per)
    total = per * len(busy)
    cost = read_cost(t, client)
    progress = Progress(client, busy, per)
    launch = t.cpu()
    m = run_master(t, qs)
    try:
        m.wait_children(2, client)
        cpu0 = t.cpu()
        t0 = time.perf_counter()
        deadline = time.monotonic() + 600
        while progress.poll() < total:
            if time.monotonic() > deadline:
                raise RuntimeError("tasks did not finish")
            time.sleep(0.02)
        done = time.perf_counter()
        cpu1 = t.cpu()   # (before the master's drain and exit: not the tasks' cost)
    finally:
        m.stop()
        client.close()
    cpu = [b - a - progress.reads * c for a, b, c in zip(cpu0, cpu1, cost, strict=True)]
    start = sum(b - a for a, b in zip(launch, cpu0, strict=True)) * 1000
    return rate(total, done - t0), [max(c, 0.0) / total * 1e6 for c in cpu], start


def idle(t: Target, n_queues: int) -> tuple[list[float], list[int], float]:
    """Idle Redis CPU (% of a core, per primary), tq's connections per primary, and get()
    latency (ms, p50) of a task in the last queue, with a master `-c 2` on N empty queues."""
    t.flush()
    qs = names(n_queues)
    client = tq.Client(t.url)
    m = run_master(t, qs)
    try:
        m.wait_children(2, client)
        time.sleep(2.0)   # past start-up: registration, the first promotion pass
        cpu0, t0 = t.cpu(), time.perf_counter()
        time.sleep(IDLE_SECONDS)
        cpu = [(b - a) / (time.perf_counter() - t0) * 100
               for a, b in zip(cpu0, t.cpu(), strict=True)]
        client.close()   # (not counted: the bench's own)
        conns = t.connections()
        tid = client.enqueue("nobody", {}, queue="bq-zz-unserved")  # not consumed: it stays
        reader = tq.Client(t.url)
        reader.get(tid)   # connect, and whatever a first call caches
        samples = []
        for _ in range(50):
            s = time.perf_counter()
            reader.get(tid)
            samples.append((time.perf_counter() - s) * 1000)
        reader.close()
    finally:
        m.stop()
        client.close()
    return cpu, conns, statistics.median(samples)


def per_primary(values: list[float], fmt: str = "{:.1f}") -> str:
    return " / ".join(fmt.format(v) for v in values)


def run(t: Target, sizes: list[int], tasks: int) -> None:
    rows = []
    base: dict[str, float] = {}
    throughput(t, 1, tasks // 4, spread=False)   # warm-up, not shown
    for n in sizes:
        one, one_cpu, start = throughput(t, n, tasks, spread=False)
        allq, all_cpu, _ = throughput(t, n, tasks, spread=True)
        cpu_idle, conns, get_ms = idle(t, n)
        if not base:
            base = {"one": one, "one_cpu": sum(one_cpu), "all": allq,
                    "all_cpu": sum(all_cpu), "get": get_ms}
        rows.append([
            f"{n:,}",
            f"{one:,.0f} ({one / base['one']:.2f}x)",
            f"{per_primary(one_cpu)} ({sum(one_cpu) / base['one_cpu']:.2f}x)",
            f"{allq:,.0f} ({allq / base['all']:.2f}x)",
            f"{per_primary(all_cpu)} ({sum(all_cpu) / base['all_cpu']:.2f}x)",
            f"{start:.0f}",
            per_primary(cpu_idle, "{:.2f}"),
            per_primary(conns, "{:.0f}"),
            f"{get_ms:.2f} ({get_ms / base['get']:.1f}x)",
        ])
    print_table(f"One master -c 2 consuming N queues, {t.name} ({tasks:,} no-op tasks)",
                ["N queues", "tasks/s, one busy", "Redis us/task", "tasks/s, all busy",
                 "Redis us/task", "start Redis ms", "idle Redis %", "tq conns",
                 "get() p50 ms"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer tasks")
    parser.add_argument("--sizes", default="1,10,100,1000")
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks per case, standalone")
    parser.add_argument("--no-cluster", action="store_true")
    parser.add_argument("--no-standalone", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as d:
        if not args.no_standalone:
            srv = RedisServer(Path(d) / "standalone").start()
            try:
                run(Target("standalone redis-server", srv.url,
                           lambda: srv.client().flushall(), lambda: [srv.client()]),
                    sizes, 5_000 if args.quick else args.tasks)
            finally:
                srv.stop()
        if not args.no_cluster:
            from redis_cluster import RedisCluster

            cluster = RedisCluster(Path(d) / "cluster").start()
            try:
                run(Target("3-primary Redis Cluster (+3 replicas)", cluster.url, cluster.flush,
                           lambda: [p.client() for p in cluster.primaries()]),
                    sizes, 3_000 if args.quick else 10_000)
            finally:
                cluster.stop()
    print("Redis us/task and idle %: per primary; start Redis ms: launch to children ready, one "
          "busy queue, all primaries;\n  tq conns: clients named tq-* per primary (the master "
          "and its children); get(): a task id looked up without its queue.")


if __name__ == "__main__":
    main()
