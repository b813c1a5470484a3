"""Cost per task in instructions, counted by valgrind: tq against the spike, enqueue against RPUSH.

    python bench/cost.py [--n 3000]

This VM moves throughput by 10-30 % from one run to the next, which hides a change of a few per
cent; a count of instructions does not move (the same code on the same input: within ~1 %).
Each case runs twice under callgrind at once: a redis-server, and a Python process whose
counting is switched on only around the measured loop. Counted: user-space instructions, in
the process that claims (or enqueues) and in redis-server; not the kernel's work (system
calls, scheduling), which a round trip costs both sides alike.

Cases (N tasks each, one queue):
  - no-op handler: one child's loop (worker/child.py, as tq-master runs it, in this process,
    in batches of prefetch.MAX_BATCH: what the adaptive prefetch takes for fast tasks) against
    the spike of bench/supervisor.py (32 ids per Lua call into a processing list, acked with
    the next call);
  - one INCR per task on the handler's own client (benchapp's), against the spike doing the
    same INCR on the same kind of client;
  - enqueue one at a time against redis-py's RPUSH of the same payload.
Needs valgrind (Debian: apt-get install valgrind).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CASES = ("tq-noop", "spike-noop", "tq-incr", "spike-incr", "tq-enqueue", "rpush")
PAYLOAD = {"to": "user123@example.com", "subject": "Welcome"}


def _total(path: str) -> int:
    text = Path(path).read_text()
    m = re.search(r"^totals: (\d+)", text, re.M)
    if m is None:
        raise RuntimeError(f"no totals in {path}")
    return int(m.group(1))


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, stdout=subprocess.DEVNULL)


def measure(case: str, n: int, out: Path) -> dict[str, float]:
    """Runs inside valgrind (see main): a case against a redis-server under callgrind."""
    import redis

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/redis.out",
         "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        raw = redis.Redis(port=port, protocol=2)
        deadline = time.monotonic() + 120
        while True:
            try:
                raw.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        os.environ["TQ_REDIS_URL"] = url
        for k, measured in ((min(n, 200), False), (n, True)):   # warm first: scripts, caches
            run = _prepare(case, k, url, port)   # (enqueues what a child case will run)
            if measured:
                _control("-z", str(server.pid))
                _control("-i", "on", str(os.getpid()))
            run()
        _control("-i", "off", str(os.getpid()))
        _control("-d", str(os.getpid()))
        _control("-d", str(server.pid))
        mine = sorted(out.glob("client.out.*"))
        theirs = sorted(out.glob("redis.out.*"))
        return {"client": _total(str(mine[-1])) / n, "redis": _total(str(theirs[-1])) / n}
    finally:
        server.terminate()
        server.wait(60)


def _prepare(case: str, k: int, url: str, port: int) -> Callable[[], None]:
    """Set up k tasks of a case (not counted); returns the loop that is counted."""
    import redis

    import tq
    from tq.store.connection import connect

    raw = redis.Redis(port=port, protocol=2)
    if case in ("tq-noop", "tq-incr"):
        task = case[3:]
        tq.Client(url).enqueue_many([(task, {})] * k)
        return _child(task, k).run
    if case.startswith("spike-"):
        from supervisor import SPIKE_CLAIM
        sha = raw.script_load(SPIKE_CLAIM)
        raw.rpush("spike:ready", *(str(i) for i in range(k)))
        c, h = redis.Redis(port=port, protocol=2, socket_timeout=5), connect(url)
        c.ping()
        h.ping()
        incr = case == "spike-incr"

        def spike() -> None:
            while ids := c.evalsha(sha, 2, "spike:ready", "spike:proc:0", 32):
                for _ in ids:
                    if incr:
                        h.incr("spike:counter")
        return spike
    if case == "tq-enqueue":
        client = tq.Client(url)
        client.enqueue("email", PAYLOAD)

        def enqueue() -> None:
            for _ in range(k):
                client.enqueue("email", PAYLOAD)
        return enqueue
    body = json.dumps(PAYLOAD, separators=(",", ":"))
    raw.ping()

    def rpush() -> None:
        for _ in range(k):
            raw.rpush("baseline", body)
    return rpush


def _child(task: str, k: int) -> Any:
    """A child (worker/child.py) that runs k tasks of `task`'s queue in this process."""
    from tq import config
    from tq.channel import Slot
    from tq.worker import prefetch
    from tq.worker.child import ChildSpec, WorkerProcess
    # Under valgrind everything runs ~50x slower: the time-based ack rules are stretched
    # alike, else acks would leave in more, smaller calls than at full speed.
    prefetch.ACK_WINDOW, prefetch.BUDGET = 50 * prefetch.ACK_WINDOW, 50 * prefetch.BUDGET
    cfg = config.load({"app": ["benchapp"], "max_tasks_per_child": k, "queues": [task],
                       "prefetch": prefetch.MAX_BATCH})
    r, w = os.pipe()
    threading.Thread(target=lambda: [None for _ in iter(lambda: os.read(r, 65536), b"")],
                     daemon=True).start()   # the master's end of its pipe: read and dropped
    return WorkerProcess(ChildSpec(0, f"cost-{k}", os.getppid(), cfg, Slot(), w))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="tasks per case")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:   # inside valgrind
        print(json.dumps(measure(args.case, args.n, Path(args.out))), flush=True)
        return
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing (Debian: apt-get install valgrind)")
    from _common import print_table
    got: dict[str, dict[str, float]] = {}
    for case in CASES:
        with tempfile.TemporaryDirectory() as d:
            proc = subprocess.run(
                ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                 f"--callgrind-out-file={d}/client.out", sys.executable, __file__,
                 "--case", case, "--n", str(args.n), "--out", d],
                cwd=HERE, capture_output=True, text=True, timeout=1800)
            lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
            if proc.returncode or not lines:
                sys.exit(f"{case} failed:\n{proc.stdout}\n{proc.stderr[-3000:]}")
            got[case] = json.loads(lines[-1])

    def row(label: str, mine: str, base: str) -> list[object]:
        a, b = got[mine], got[base]
        return [label, f"{a['client']:,.0f} + {a['redis']:,.0f}",
                f"{b['client']:,.0f} + {b['redis']:,.0f}",
                (b["client"] + b["redis"]) / (a["client"] + a["redis"])]

    print_table(f"instructions per task: worker (or producer) + redis-server, {args.n:,} tasks",
                ["case", "tq", "baseline", "baseline / tq"],
                [row("no-op handler vs the spike", "tq-noop", "spike-noop"),
                 row("one INCR per task vs the spike", "tq-incr", "spike-incr"),
                 row("enqueue one at a time vs RPUSH", "tq-enqueue", "rpush")])
    print("baselines: the spike of bench/supervisor.py (32 ids per Lua call, acked with the "
          "next), in one process;\n  RPUSH of the same payload through redis-py. User-space "
          "instructions only (callgrind): the kernel's part of a round trip is not counted.")


if __name__ == "__main__":
    main()
