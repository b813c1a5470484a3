"""Workflow and cancellation benchmarks: what a member costs, and how fast a cancel lands.

    python bench/workflows.py [--n 5000] [--reps 3]

`tq-master -c 2 -A wfbenchapp` against a private redis-server, repetitions interleaved
(medians). Baselines run in the same sitting:
- a chord of N no-op members + a callback, vs the same N no-op tasks enqueued as plain tasks
  (enqueue to last one done): members/s, the overhead per member, Redis CPU per member;
- a chain of 200 steps in one queue, and alternating between two queues (every edge a
  hand-off through the master): ms per step, vs the pickup latency of a single task;
- cancelling a running task (a handler in time.sleep): client.cancel() to client.wait()
  raising TaskCancelled, p50 / p99.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _common import RedisServer, print_table, redis_cpu

import tq
from supervisor import Master, latency, pct, wait_succeeded


def plain(srv: RedisServer, client: tq.Client, n: int) -> tuple[float, float]:
    cpu0 = redis_cpu(srv.client())
    before = client.stats()["total"]["succeeded"]
    t0 = time.perf_counter()
    client.enqueue_many([("noop", {})] * n)
    done = wait_succeeded(client, before + n)
    return n / (done - t0), (redis_cpu(srv.client()) - cpu0) / n * 1e6


def chord(srv: RedisServer, client: tq.Client, n: int) -> tuple[float, float]:
    cpu0 = redis_cpu(srv.client())
    t0 = time.perf_counter()
    wf = client.workflow(tq.chord([tq.step("step", queue="noop")] * n,
                                  tq.step("step", queue="noop")))
    client.wait(wf.last, timeout=300)
    took = time.perf_counter() - t0
    return n / took, (redis_cpu(srv.client()) - cpu0) / (n + 1) * 1e6


def chain(client: tq.Client, steps: int, cross: bool) -> float:
    parts = [tq.step("step_other", queue="other") if cross and i % 2 else
             tq.step("step", queue="noop") for i in range(steps)]
    t0 = time.perf_counter()
    wf = client.workflow(tq.chain(*parts))
    assert client.wait(wf.last, timeout=120) == steps
    return (time.perf_counter() - t0) / steps * 1000


def cancels(client: tq.Client, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        tid = client.enqueue("slow", {"s": 30})
        while client.get(tid).state != "running":
            time.sleep(0.005)
        t0 = time.perf_counter()
        client.cancel(tid)
        try:
            client.wait(tid, timeout=30)
        except tq.TaskCancelled:
            out.append((time.perf_counter() - t0) * 1000)
    return sorted(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="members of the chord")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d, RedisServer(Path(d)) as srv:
        client = tq.Client(srv.url)
        m = Master(srv.url, "-c", "2", app="wfbenchapp")
        try:
            m.wait_children(2, client)
            got: dict[str, list[tuple[float, float]]] = {"plain": [], "chord": []}
            steps: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(args.reps):
                got["plain"].append(plain(srv, client, args.n))
                got["chord"].append(chord(srv, client, args.n))
                for cross in (False, True):
                    steps[cross].append(chain(client, 200, cross))
            lat_cancel = cancels(client, 20)
        finally:
            m.stop()
        lat, _, _ = latency(srv, 200, 0.02)
        p_rate = statistics.median(r for r, _ in got["plain"])
        c_rate = statistics.median(r for r, _ in got["chord"])
        p_cpu = statistics.median(c for _, c in got["plain"])
        c_cpu = statistics.median(c for _, c in got["chord"])
        rows = [
            [f"chord of {args.n:,} no-op members: members/s, -c 2", c_rate, p_rate,
             c_rate / p_rate],
            ["  overhead per member (us of wall time)", (1 / c_rate - 1 / p_rate) * 1e6, "", ""],
            ["  Redis CPU per member (us)", c_cpu, p_cpu, c_cpu / p_cpu],
            ["chain of 200 in one queue: ms per step", statistics.median(steps[False]),
             pct(lat, 0.5), statistics.median(steps[False]) / pct(lat, 0.5)],
            ["chain of 200 across two queues (hand-offs): ms per step",
             statistics.median(steps[True]), pct(lat, 0.5),
             statistics.median(steps[True]) / pct(lat, 0.5)],
            ["cancel a running task -> TaskCancelled, p50 / p99 (ms)",
             f"{pct(lat_cancel, 0.5):.2f} / {pct(lat_cancel, 0.99):.2f}", "", ""],
        ]
        print_table(f"workflows and cancellation (redis-server {srv.version()}, median of "
                    f"{args.reps})", ["case", "tq", "baseline", "ratio"], rows)
        print("baselines: the same N no-op tasks enqueued as plain tasks (enqueue_many); for "
              "chains, the pickup latency p50 of one task at idle (ms)")


if __name__ == "__main__":
    main()
