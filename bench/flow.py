"""Flow control benchmarks: what a limit costs on the claim path.

    python bench/flow.py [--n 20000] [--reps 3]

`tq-master -c 2` through N no-op tasks of one queue, interleaved repetitions (medians):
without limits (the hot path every queue without limits takes), with a rate limit that never
binds (1,000,000/s: every task goes through the GCRA check), with a concurrency limit that
never binds (1,000: a lease per task, and one task of the type per claim), and a queue that
was paused and resumed (its flag stays in the flow hash). Pickup latency at idle with and
without a limit. Compare the first row with `bench/supervisor.py` runs of earlier code.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _common import RedisServer, print_table

import tq
from supervisor import Master, baseline_latency, latency, pct, wait_succeeded
from tq.limits import MAX_CONCURRENCY


def run(srv: RedisServer, n: int, setup) -> float:
    srv.client().flushall()
    client = tq.Client(srv.url)
    client.enqueue("noop", {})   # the queue exists: limits and pause need it
    client.purge("noop")
    setup(client)
    client.enqueue_many([("noop", {})] * n)
    m = Master(srv.url, "-c", "2")
    try:
        m.wait_children(2, client)
        t0 = time.perf_counter()
        done = wait_succeeded(client, n)
    finally:
        m.stop()
        client.close()
    return n / (done - t0)


CASES = {
    "no limits": lambda c: None,
    "rate limit that never binds (1,000,000/s)": lambda c: c.set_limit("noop", "1000000/s"),
    "concurrency limit that never binds (1,000)": lambda c: c.set_limit(
        "noop", concurrency=min(1000, MAX_CONCURRENCY)),
    "paused, then resumed": lambda c: (c.pause("noop"), c.resume("noop")),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d, RedisServer(Path(d)) as srv:
        got: dict[str, list[float]] = {k: [] for k in CASES}
        for _ in range(args.reps):
            for name, setup in CASES.items():
                got[name].append(run(srv, args.n, setup))
        base = statistics.median(got["no limits"])
        rows = [[f"no-op tasks/s, -c 2: {name}", statistics.median(v), base,
                 statistics.median(v) / base] for name, v in got.items()]
        lat, _, _ = latency(srv, 200, 0.02)
        blat = baseline_latency(srv, 200, 0.02)
        rows.append(["pickup latency p50 / p99 (ms), idle, no limits",
                     f"{pct(lat, 0.5):.2f} / {pct(lat, 0.99):.2f}",
                     f"{pct(blat, 0.5):.2f} / {pct(blat, 0.99):.2f}", ""])
        print_table(f"flow control on the claim path (redis-server {srv.version()}, "
                    f"{args.n:,} tasks, median of {args.reps})",
                    ["case", "tq", "baseline", "ratio"], rows)
        print("baseline: the no-limits run of the same sitting; for latency, a forked BLPOP "
              "consumer woken by RPUSH")


if __name__ == "__main__":
    main()
