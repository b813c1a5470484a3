"""Supervisor benchmarks: tq-master end to end against a local redis-server.

    python bench/supervisor.py [--quick]

Cases (issue 3): no-op tasks/s with -c 2 (20,000 queued, default settings) and with a handler
that makes one Redis round trip (INCR); CPU-bound ~20 ms tasks, -c 2 vs -c 1; pickup latency at
idle (enqueue -> handler start, 300 tasks 20 ms apart); a mixed batch (seven 10 ms tasks
claimed with a 20 s one, -c 3: the time until the seven are done); recovery after SIGKILL of
a busy child;
memory of the master and of an idle child. Baselines run in this process on the same server.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from _common import RedisServer, print_table, rate

import tq
from tq.store.connection import connect

HERE = Path(__file__).resolve().parent
TQ_MASTER = str(Path(sys.executable).with_name("tq-master"))
PEERS_NOOP = "Celery prefork 968, RQ 103, Dramatiq 3,193, Huey ~2,900"
PEERS_LATENCY = "Celery 2.9/3.8, RQ 13/16, Dramatiq 9.5/552, Huey 1.3/2.9"


class Master:
    def __init__(self, url: str, *args: str, app: str = "benchapp") -> None:
        env = {**os.environ, "TQ_REDIS_URL": url, "TQ_LOG_LEVEL": "WARNING"}
        self.proc = subprocess.Popen([TQ_MASTER, "start", "-A", app, *args], cwd=HERE,
                                     env=env, start_new_session=True)

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children()

    def wait_children(self, n: int, client: tq.Client) -> None:
        deadline = time.monotonic() + 30
        while len(client.broker.registry("workers")) < n or len(self.children()) < n:
            if time.monotonic() > deadline:
                raise RuntimeError("children did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def wait_succeeded(client: tq.Client, n: int, timeout: float = 300) -> float:
    deadline = time.monotonic() + timeout
    while client.stats()["total"]["succeeded"] < n:
        if time.monotonic() > deadline:
            raise RuntimeError("tasks did not finish")
        # not faster: each poll costs Redis and this process CPU the spike does not pay
        # (20 ms is 1 % of a 20,000-task run at 10,000/s)
        time.sleep(0.02)
    return time.perf_counter()


def throughput(srv: RedisServer, task: str, n: int, workers: int, payload: dict) -> float:
    srv.client().flushall()
    client = tq.Client(srv.url)
    client.enqueue_many([(task, payload)] * n)
    m = Master(srv.url, "-c", str(workers))
    try:
        m.wait_children(workers, client)
        # the children start on the backlog as soon as they are up: time from the first claim
        t0 = time.perf_counter()
        done = wait_succeeded(client, n)
        started = client.stats()["total"]["started"]
        assert started >= n
    finally:
        m.stop()
        client.close()
    return rate(n, done - t0)


def baseline_consumers(srv: RedisServer, n: int, workers: int, incr: bool = False) -> float:
    """The least a consumer can do: LPOP one message and drop it, in `workers` processes."""
    srv.client().flushall()
    r = srv.client()
    r.rpush("baseline", *([b'{"p":{}}'] * n))
    t0 = time.perf_counter()
    pids = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            c = srv.client()
            while c.lpop("baseline") is not None:
                if incr:
                    c.incr("baseline:counter")
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    return rate(n, time.perf_counter() - t0)


SPIKE_CLAIM = """
-- ack the previous batch (drop the processing list), then claim up to ARGV[1] ids
redis.call('DEL', KEYS[2])
local ids = redis.call('LPOP', KEYS[1], ARGV[1])
if not ids then return {} end
redis.call('RPUSH', KEYS[2], unpack(ids))
return ids
"""


def spike(srv: RedisServer, n: int, workers: int, incr: bool = False) -> float:
    """The ceiling of a reliable consumer (issue 12): `workers` forked processes, each claiming
    32 ids per Lua call into its own processing list and acking the batch with the next claim,
    the handler's INCR on its own connection, made as benchapp's handler makes it (the same
    client, so the same INCR). No bodies, no bookkeeping, no supervision."""
    srv.client().flushall()
    r = srv.client()
    r.rpush("spike:ready", *(str(i) for i in range(n)))
    sha = r.script_load(SPIKE_CLAIM)
    t0 = time.perf_counter()
    pids = []
    for w in range(workers):
        pid = os.fork()
        if pid == 0:
            c, h = srv.client(), connect(srv.url)
            while ids := c.evalsha(sha, 2, "spike:ready", f"spike:proc:{w}", 32):
                for _ in ids:
                    if incr:
                        h.incr("spike:counter")
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    return rate(n, time.perf_counter() - t0)


def calibrate(ms: float) -> int:
    loops = 100_000
    while True:
        t = time.perf_counter()
        n = 0
        for i in range(loops):
            n += i * i
        took = time.perf_counter() - t
        if took > 0.05:
            return int(loops * ms / 1000 / took)
        loops *= 2


def latency(srv: RedisServer, count: int, gap: float) -> tuple[list[float], float, float]:
    srv.client().flushall()
    client = tq.Client(srv.url)
    m = Master(srv.url, "-c", "2")
    try:
        m.wait_children(2, client)
        time.sleep(0.5)   # idle: both children blocked on Redis
        ids = []
        for _ in range(count):
            ids.append(client.enqueue("latency", {"t": time.time()}))
            time.sleep(gap)
        lat = sorted(client.wait(i, timeout=10) * 1000 for i in ids)
        mem_master = psutil.Process(m.proc.pid).memory_info().rss
        from tq.supervisor.memory import own_memory
        uss = [own_memory(c.pid)[0] for c in m.children()]
    finally:
        m.stop()
        client.close()
    return lat, mem_master / 2**20, statistics.mean(uss) / 2**20


def baseline_latency(srv: RedisServer, count: int, gap: float) -> list[float]:
    """BLPOP consumer in a forked process: RPUSH -> BLPOP wake-up, same machine."""
    r = srv.client()
    r.flushall()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        c = srv.client()
        out = []
        for _ in range(count):
            _, v = c.blpop(["baseline"])
            out.append(time.time() - float(v))
        os.write(write, ("\n".join(str(x) for x in out)).encode())
        os._exit(0)
    time.sleep(0.3)
    for _ in range(count):
        r.rpush("baseline", str(time.time()))
        time.sleep(gap)
    os.waitpid(pid, 0)
    data = os.read(read, 1 << 20).decode().split()
    return sorted(float(x) * 1000 for x in data)


def mixed_batch(srv: RedisServer) -> tuple[float, str]:
    """Seconds from enqueue_many of one 20 s task and seven 10 ms tasks to the last of the
    seven done, -c 3 after 3,000 no-op tasks (the children batch); and the long one's state
    then ('running': the short ones did not wait behind it)."""
    srv.client().flushall()
    client = tq.Client(srv.url)
    m = Master(srv.url, "-c", "3", "--drain-timeout", "1")
    try:
        m.wait_children(3, client)
        client.enqueue_many([{"type": "noop"}] * 3000)
        wait_succeeded(client, 3000)
        t0 = time.perf_counter()
        ids = client.enqueue_many([("slow", {"s": 20.0})] + [("slow", {"s": 0.01})] * 7)
        for tid in ids[1:]:
            client.wait(tid, timeout=30)
        took = time.perf_counter() - t0
        state = client.get(ids[0]).state
    finally:
        m.stop()
        client.close()
    return took, state


def recovery(srv: RedisServer) -> float:
    srv.client().flushall()
    r = srv.client()
    client = tq.Client(srv.url)
    m = Master(srv.url, "-c", "2")
    try:
        m.wait_children(2, client)
        client.enqueue("slow", {"s": 2.0})
        while r.llen("bench:started") < 1:
            time.sleep(0.001)
        first = r.lindex("bench:started", 0).decode().split("|")
        killed = time.time()
        os.kill(int(first[1]), signal.SIGKILL)
        while r.llen("bench:started") < 2:
            time.sleep(0.001)
        again = float(r.lindex("bench:started", 1).decode().split("|")[0])
    finally:
        m.stop()
        client.close()
    return (again - killed) * 1000


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    parser.add_argument("--reps", type=int, default=3,
                        help="repetitions of each tq-vs-spike case (median ratio)")
    args = parser.parse_args()
    if args.quick:
        args.reps = 1
    n = 5000 if args.quick else 20_000
    n_cpu = 60 if args.quick else 300
    with tempfile.TemporaryDirectory() as d, RedisServer(Path(d)) as srv:
        rows = []
        noop = throughput(srv, "noop", n, 2, {})
        base = baseline_consumers(srv, n, 2)
        rows.append([f"no-op tasks/s, -c 2, {n:,} queued", noop, base, noop / base])
        # tq against the spike: interleaved repetitions, the median of the per-run ratios
        for task, label, incr in (("noop", "no-op", False), ("incr", "one INCR", True),
                                  ("incr_ctx", "the INCR through ctx.redis", True)):
            mine, ceilings, ratios = [], [], []
            for _ in range(args.reps):
                mine.append(throughput(srv, task, n, 2, {}))
                ceilings.append(spike(srv, n, 2, incr=incr))
                ratios.append(mine[-1] / ceilings[-1])
            rows.append([f"  {label} vs the spike, -c 2 (median of {args.reps})",
                         statistics.median(mine), statistics.median(ceilings),
                         statistics.median(ratios)])
            if task == "noop":
                inc = throughput(srv, "incr", n, 2, {})
                base = baseline_consumers(srv, n, 2, incr=True)
                rows.append(["one INCR per task, tasks/s, -c 2", inc, base, inc / base])
        loops = calibrate(20)
        c1 = throughput(srv, "cpu", n_cpu, 1, {"loops": loops})
        c2 = throughput(srv, "cpu", n_cpu, 2, {"loops": loops})
        rows.append(["20 ms CPU-bound tasks/s, -c 1", c1, "", ""])
        rows.append(["20 ms CPU-bound tasks/s, -c 2", c2, "", f"{c2 / c1:.2f} x -c 1"])
        took, state = mixed_batch(srv)
        rows.append(["mixed batch: 7 x 10 ms behind a 20 s task, -c 3 (s)", took, "",
                     f"the long one {state}"])
        lat, master_mb, child_mb = latency(srv, 300, 0.02)
        blat = baseline_latency(srv, 300, 0.02)
        rows.append(["pickup latency p50 (ms), idle", pct(lat, 0.5), pct(blat, 0.5),
                     pct(lat, 0.5) / pct(blat, 0.5)])
        rows.append(["pickup latency p99 (ms), idle", pct(lat, 0.99), pct(blat, 0.99),
                     pct(lat, 0.99) / pct(blat, 0.99)])
        rows.append(["recovery: SIGKILL busy child -> task runs again (ms)", recovery(srv), "",
                     ""])
        rows.append(["master RSS (MB)", master_mb, "", ""])
        rows.append(["child USS at idle (MB)", child_mb, "", ""])
        print_table(f"tq-master end to end (redis-server {srv.version()}, TCP loopback)",
                    ["case", "tq", "baseline", "tq / baseline"], rows)
        print(f"\npeers on the same machine (issue 3): no-op tasks/s with 2 processes: "
              f"{PEERS_NOOP};\n  pickup latency p50/p99 ms: {PEERS_LATENCY}")
        print("baselines: no bookkeeping at all - forked processes LPOP (and INCR) until the "
              "list is empty;\n  the spike: the same processes claiming 32 ids per Lua call "
              "into a processing list, acked with the next claim;\n  latency: a forked BLPOP "
              "consumer woken by RPUSH")


if __name__ == "__main__":
    main()
