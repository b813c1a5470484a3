"""Queue-core benchmarks: enqueue, enqueue_many, fetch+ack, Redis memory and CPU per task.

Each figure is printed next to a plain redis-py baseline doing the least Redis work the same
job needs (RPUSH / LPOP of the same bytes), run in the same process against the same server,
so the ratio compares across noisy machines.

    python bench/core.py [--n 20000] [--memory-n 100000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import tq
from _common import RedisServer, print_table, rate, redis_cpu
from tq.broker import Ack, Broker, result_record

PAYLOAD = {"to": "user123@example.com", "subject": "Welcome"}
PAYLOAD_JSON = json.dumps(PAYLOAD, separators=(",", ":"))


def bench_enqueue(srv: RedisServer, n: int) -> list[list[object]]:
    rows = []
    raw = srv.client()
    raw.flushall()
    t = time.perf_counter()
    for _ in range(n):
        raw.rpush("baseline", PAYLOAD_JSON)
    base = rate(n, time.perf_counter() - t)

    raw.flushall()
    client = tq.Client(srv.url)
    client.enqueue("email", PAYLOAD)   # warm: scripts loaded, queue registered
    cpu0 = redis_cpu(raw)
    t = time.perf_counter()
    for _ in range(n):
        client.enqueue("email", PAYLOAD)
    tq_rate = rate(n, time.perf_counter() - t)
    cpu = (redis_cpu(raw) - cpu0) / n * 1e6
    rows.append(["enqueue, one at a time", tq_rate, base, tq_rate / base, cpu])

    raw.flushall()
    t = time.perf_counter()
    pipe = raw.pipeline(transaction=False)
    for i in range(n):
        pipe.rpush("baseline", PAYLOAD_JSON)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
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


def bench_fetch_ack(srv: RedisServer, n: int, batch: int) -> list[object]:
    raw = srv.client()
    raw.flushall()
    raw.rpush("baseline", *([PAYLOAD_JSON] * n))
    t = time.perf_counter()
    while raw.lpop("baseline", batch):
        pass
    base = rate(n, time.perf_counter() - t)

    raw.flushall()
    client = tq.Client(srv.url)
    client.enqueue_many([("email", PAYLOAD)] * n)
    broker = Broker(srv.url)
    worker = "bench-worker"
    broker.register_worker(worker, {"queues": ["email"]})
    cpu0 = redis_cpu(raw)
    t = time.perf_counter()
    acks: list[Ack] = []
    done = 0
    while True:
        got = broker.claim(worker, ["email"], batch, acks=acks)
        done += len(acks)
        if not got.tasks:
            break
        now = time.time()
        acks = [Ack(task, result_record(task, "null", worker, now, now)) for task in got.tasks]
    tq_rate = rate(done, time.perf_counter() - t)
    cpu = (redis_cpu(raw) - cpu0) / max(done, 1) * 1e6
    assert done == n, (done, n)
    client.close()
    return [f"fetch+ack, batches of {batch}", tq_rate, base, tq_rate / base, cpu]


def bench_memory(srv: RedisServer, n: int) -> list[list[object]]:
    raw = srv.client()
    raw.flushall()
    before = raw.info("memory")["used_memory"]
    pipe = raw.pipeline(transaction=False)
    for i in range(n):
        pipe.rpush("baseline", PAYLOAD_JSON)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    base = (raw.info("memory")["used_memory"] - before) / n

    raw.flushall()
    client = tq.Client(srv.url)
    client.enqueue("email", PAYLOAD)
    client.broker.conn.delete(*client.broker.block("email")[:-1])
    before = raw.info("memory")["used_memory"]
    client.enqueue_many([("email", PAYLOAD)] * n)
    per_task = (raw.info("memory")["used_memory"] - before) / n
    client.close()
    return [["Redis memory per queued task (bytes)", per_task, base, per_task / base, ""]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--memory-n", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d, RedisServer(Path(d)) as srv:
        rows = bench_enqueue(srv, args.n)
        rows.append(bench_fetch_ack(srv, args.n, 1))
        rows.append(bench_fetch_ack(srv, args.n, 16))
        rows.append(bench_fetch_ack(srv, args.n, 64))
        rows += bench_memory(srv, args.memory_n)
        print_table(f"tq queue core (redis-server {srv.version()}, TCP loopback)",
                    ["case", "tq", "redis-py baseline", "tq / baseline", "Redis CPU us/task"],
                    rows)


if __name__ == "__main__":
    main()
