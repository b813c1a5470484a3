"""Payload protection benchmarks: what encryption and signing cost, same run (ratios).

    python bench/security.py [--n 20000] [--reps 3]

One-at-a-time enqueue and enqueue_many, `tq-master -c 2` no-op throughput, and Redis bytes per
queued task, with keys off, signing and encryption (AES-256-GCM), interleaved repetitions
(medians). The payload is a small e-mail job (~80 bytes of JSON).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from _common import RedisServer, print_table, rate

import tq
from supervisor import Master, wait_succeeded
from tq.keyring import KeyRing, new_key

PAYLOAD = {"to": "user123@example.com", "subject": "Welcome", "template": "welcome-v2",
           "user_id": 123456}
KEY = new_key()
MODES = {"off": None, "sign": KeyRing.parse(f"k1:{KEY}", "sign"),
         "encrypt": KeyRing.parse(f"k1:{KEY}", "encrypt")}


def enqueue_rate(srv: RedisServer, keys: KeyRing | None, n: int) -> float:
    srv.client().flushall()
    client = tq.Client(srv.url, keys=keys or "")
    client.enqueue("noop", PAYLOAD)
    t = time.perf_counter()
    for _ in range(n):
        client.enqueue("noop", PAYLOAD)
    r = rate(n, time.perf_counter() - t)
    client.close()
    return r


def bytes_per_task(srv: RedisServer, keys: KeyRing | None, n: int) -> float:
    raw = srv.client()
    raw.flushall()
    client = tq.Client(srv.url, keys=keys or "")
    client.enqueue("noop", PAYLOAD)
    client.purge("noop")
    before = raw.info("memory")["used_memory"]
    client.enqueue_many([("noop", PAYLOAD)] * n)
    per = (raw.info("memory")["used_memory"] - before) / n
    client.close()
    return per


def throughput(srv: RedisServer, mode: str, keys: KeyRing | None, n: int) -> float:
    srv.client().flushall()
    client = tq.Client(srv.url, keys=keys or "")
    client.enqueue_many([("noop", PAYLOAD)] * n)
    env = {"TQ_KEYS": f"k1:{KEY}", "TQ_PROTECT": mode} if keys else {}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        m = Master(srv.url, "-c", "2")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        m.wait_children(2, client)
        t0 = time.perf_counter()
        done = wait_succeeded(client, n)
        assert client.stats()["total"].get("dead", 0) == 0
    finally:
        m.stop()
        client.close()
    return rate(n, done - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d, RedisServer(Path(d)) as srv:
        enq = {m: [] for m in MODES}
        run = {m: [] for m in MODES}
        for _ in range(args.reps):
            for mode, keys in MODES.items():
                enq[mode].append(enqueue_rate(srv, keys, args.n // 4))
                run[mode].append(throughput(srv, mode, keys, args.n))
        size = {mode: bytes_per_task(srv, keys, 20_000) for mode, keys in MODES.items()}
        rows = []
        for label, data in (("enqueue one at a time, tasks/s", enq),
                            ("no-op tasks/s, tq-master -c 2", run)):
            base = statistics.median(data["off"])
            for mode in MODES:
                v = statistics.median(data[mode])
                rows.append([f"{label}: {mode}", v, base, v / base])
        for mode in MODES:
            rows.append([f"Redis bytes per queued task: {mode}", size[mode], size["off"],
                         size[mode] / size["off"]])
        print_table(f"payload protection (redis-server {srv.version()}, median of "
                    f"{args.reps})", ["case", "tq", "keys off", "ratio"], rows)


if __name__ == "__main__":
    main()
