"""Queue-core benchmarks: enqueue, enqueue_many, fetch+ack, Redis memory and CPU per task.

Each figure is printed next to a plain redis-py baseline doing the least Redis work the same
job needs (RPUSH / LPOP of the same bytes), run in the same process against the same server,
so the ratio compares across noisy machines. Every case runs over TCP loopback and over a
unix socket (what the embedded default Redis uses).

    python bench/core.py [--n 20000] [--memory-n 100000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import redis
from _common import RedisServer, print_table, rate, redis_cpu

import tq
from tq.store.broker import Ack, Broker, result_record
from tq.store.link import Link

PAYLOAD = {"to": "user123@example.com", "subject": "Welcome"}
PAYLOAD_JSON = json.dumps(PAYLOAD, separators=(",", ":"))


def script_usec(raw: redis.Redis) -> float:
    """Total server time spent in EVALSHA so far (INFO commandstats), in microseconds."""
    return float(raw.info("commandstats").get("cmdstat_evalsha", {}).get("usec", 0))


def rpush_pipelined(raw: redis.Redis, n: int) -> None:
    """The baseline bulk load: RPUSH of the payload, 1,000 commands per pipeline."""
    pipe = raw.pipeline(transaction=False)
    for i in range(n):
        pipe.rpush("baseline", PAYLOAD_JSON)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()


def bench_enqueue(url: str, raw: redis.Redis, n: int, reps: int = 3) -> list[list[object]]:
    """One at a time: tq's enqueue against a bare RPUSH of the same payload through redis-py's
    client and through a dedicated connection like tq's own (Link), interleaved, medians."""
    rows = []
    client = tq.Client(url)
    link = Link(raw)
    pool_rates, link_rates, tq_rates, cpus = [], [], [], []
    for _ in range(reps):
        raw.flushall()
        t = time.perf_counter()
        for _ in range(n):
            raw.rpush("baseline", PAYLOAD_JSON)
        pool_rates.append(rate(n, time.perf_counter() - t))
        raw.flushall()
        t = time.perf_counter()
        for _ in range(n):
            link.call("RPUSH", "baseline", PAYLOAD_JSON)
        link_rates.append(rate(n, time.perf_counter() - t))
        raw.flushall()
        client.enqueue("email", PAYLOAD)   # warm: scripts loaded, queue registered
        cpu0 = redis_cpu(raw)
        t = time.perf_counter()
        for _ in range(n):
            client.enqueue("email", PAYLOAD)
        tq_rates.append(rate(n, time.perf_counter() - t))
        cpus.append((redis_cpu(raw) - cpu0) / n * 1e6)
    link.close()
    tq_rate, cpu = statistics.median(tq_rates), statistics.median(cpus)
    base, floor = statistics.median(pool_rates), statistics.median(link_rates)
    rows.append([f"enqueue, one at a time (median of {reps})", tq_rate, base, tq_rate / base, cpu])
    rows.append(["  vs RPUSH on a dedicated connection", tq_rate, floor, tq_rate / floor, ""])

    raw.flushall()
    t = time.perf_counter()
    rpush_pipelined(raw, n)
    base = rate(n, time.perf_counter() - t)

    raw.flushall()
    specs = [("email", PAYLOAD)] * n
    cpu0 = redis_cpu(raw)
    t = time.perf_counter()
    client.enqueue_many(specs)
    tq_rate = rate(n, time.perf_counter() - t)
    cpu = (redis_cpu(raw) - cpu0) / n * 1e6
    rows.append(["enqueue_many (1,000 per call)", tq_rate, base, tq_rate / base, cpu])
    client.close()
    return rows


def drain(broker: Broker, worker: str, batch: int) -> int:
    """Claim and ack everything in 'email', acks riding on the next claim; returns how many."""
    acks: list[Ack] = []
    done = 0
    while True:
        got = broker.claim(worker, ["email"], batch, acks=acks)
        done += len(acks)
        if not got.tasks:
            return done
        now = time.time()
        acks = [Ack(task, result_record(task, "null", worker, now, now)) for task in got.tasks]


def bench_fetch_ack(url: str, raw: redis.Redis, n: int, batch: int) -> list[object]:
    raw.flushall()
    raw.rpush("baseline", *([PAYLOAD_JSON] * n))
    t = time.perf_counter()
    while raw.lpop("baseline", batch):
        pass
    base = rate(n, time.perf_counter() - t)

    raw.flushall()
    client = tq.Client(url)
    client.enqueue_many([("email", PAYLOAD)] * n)
    broker = Broker(url)
    broker.register_worker("bench-worker", {"queues": ["email"]})
    cpu0 = redis_cpu(raw)
    t = time.perf_counter()
    done = drain(broker, "bench-worker", batch)
    tq_rate = rate(done, time.perf_counter() - t)
    cpu = (redis_cpu(raw) - cpu0) / max(done, 1) * 1e6
    assert done == n, (done, n)
    client.close()
    broker.close()
    return [f"fetch+ack, batches of {batch}", tq_rate, base, tq_rate / base, cpu]


def bench_cpu(url: str, raw: redis.Redis, n: int) -> list[list[object]]:
    """Redis CPU per task over its whole life: enqueue one at a time, fetch+ack in 16s."""
    raw.flushall()
    cpu0 = redis_cpu(raw)
    for _ in range(n):
        raw.rpush("baseline", PAYLOAD_JSON)
    while raw.lpop("baseline", 16):
        pass
    base = (redis_cpu(raw) - cpu0) / n * 1e6

    raw.flushall()
    client = tq.Client(url)
    broker = Broker(url)
    client.enqueue("email", PAYLOAD)
    drain(broker, "bench-worker", 1)
    cpu0, lua0 = redis_cpu(raw), script_usec(raw)
    for _ in range(n):
        client.enqueue("email", PAYLOAD)
    assert drain(broker, "bench-worker", 16) == n
    cpu = (redis_cpu(raw) - cpu0) / n * 1e6
    lua = (script_usec(raw) - lua0) / n
    client.close()
    broker.close()
    return [["Redis CPU us/task, enqueue+fetch+ack (all)", cpu, base, cpu / base, ""],
            ["  of which in the Lua scripts (commandstats)", lua, "", "", ""]]


def bench_memory(raw: redis.Redis, url: str, n: int) -> list[object]:
    raw.flushall()
    before = raw.info("memory")["used_memory"]
    rpush_pipelined(raw, n)
    base = (raw.info("memory")["used_memory"] - before) / n

    raw.flushall()
    client = tq.Client(url)
    client.enqueue("email", PAYLOAD)
    client.broker.conn.delete(*client.broker.block("email")[:-1])
    before = raw.info("memory")["used_memory"]
    client.enqueue_many([("email", PAYLOAD)] * n)
    per_task = (raw.info("memory")["used_memory"] - before) / n
    client.close()
    return ["Redis memory per queued task (bytes)", per_task, base, per_task / base, ""]


def suite(url: str, raw: redis.Redis, n: int) -> list[list[object]]:
    rows = bench_enqueue(url, raw, n)
    rows += [bench_fetch_ack(url, raw, n, b) for b in (1, 16, 64)]
    rows += bench_cpu(url, raw, n)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--memory-n", type=int, default=100_000)
    args = parser.parse_args()
    header = ["case", "tq", "redis-py baseline", "tq / baseline", "Redis CPU us/task"]
    with tempfile.TemporaryDirectory() as d:
        sock = Path(d) / "redis.sock"
        extra = ["--unixsocket", str(sock), "--unixsocketperm", "700"]
        with RedisServer(Path(d), extra=extra) as srv:
            tcp = srv.client()
            unix = redis.Redis(unix_socket_path=str(sock), protocol=2)
            rows = suite(srv.url, tcp, args.n)
            rows.append(bench_memory(tcp, srv.url, args.memory_n))
            print_table(f"tq queue core (redis-server {srv.version()}, TCP loopback)",
                        header, rows)
            print_table(f"tq queue core (redis-server {srv.version()}, unix socket)",
                        header, suite(f"unix://{sock}?db=0", unix, args.n))


if __name__ == "__main__":
    main()
