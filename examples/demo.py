"""The demo behind `make run`: the article's app end to end, on the embedded Redis.

Starts `tq-master start -A examples.app` (one child per CPU), runs the article's producer,
waits for every task, prints a summary like the article's load-test block, then stops the
master with SIGTERM (a graceful drain) and checks that it exits 0.

    python -m examples.demo [--short] [-c N]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

import tq

from .producer import produce

log = logging.getLogger("examples.demo")

FULL = {"emails": 100, "images": 10, "max_delay": 5.0, "timeout": 180.0}
SHORT = {"emails": 20, "images": 3, "max_delay": 1.5, "timeout": 90.0}
START_TIMEOUT = 60.0
DRAIN_TIMEOUT = 10.0


def master_command() -> list[str]:
    """tq-master from this interpreter's environment (the venv), else from PATH."""
    beside = Path(sys.executable).with_name("tq-master")
    found = str(beside) if beside.exists() else shutil.which("tq-master")
    if not found:
        raise SystemExit("tq-master is not installed (pip install -e .)")
    return [found]


def start_master(concurrency: int | None) -> subprocess.Popen[bytes]:
    args = [*master_command(), "start", "-A", "examples.app",
            "--drain-timeout", str(DRAIN_TIMEOUT)]
    if concurrency:
        args += ["-c", str(concurrency)]
    # The master finds -A modules from its working directory: this one, where examples/ is.
    return subprocess.Popen(args, cwd=os.getcwd())


def wait_for_children(client: tq.Client, master: subprocess.Popen[bytes]) -> dict[str, Any]:
    """The master's registry entry, once all its children are idle or busy."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if master.poll() is not None:
            raise SystemExit(f"tq-master exited with {master.returncode} before it was ready")
        for info in client.broker.registry("masters"):
            kids = info.get("children") or []
            if info.get("pid") == master.pid and info.get("status") == "running" and kids and \
                    len(kids) == info.get("concurrency") and \
                    all(k.get("state") in ("idle", "busy") for k in kids):
                return info
        if time.monotonic() > deadline:
            raise SystemExit(f"tq-master's children were not ready after {START_TIMEOUT:.0f}s")
        time.sleep(0.05)


def wait_for_tasks(client: tq.Client, ids: list[str], timeout: float) -> list[tq.TaskInfo]:
    """Block until every task succeeded or died (or the time is up); what is known of each."""
    deadline = time.monotonic() + timeout
    with click.progressbar(ids, label="processing", file=sys.stderr, show_pos=True) as bar:
        for task_id in bar:
            try:
                client.wait(task_id, timeout=max(deadline - time.monotonic(), 0.001))
            except tq.TaskFailed:
                pass   # dead: counted in the summary
            except tq.WaitTimeout:
                break
    return [client.get(task_id) for task_id in ids]


def summary(infos: list[tq.TaskInfo], elapsed: float, children: int) -> str:
    """The article's load-test block, measured."""
    done = [i for i in infos if i.state == "succeeded"]
    dead = [i for i in infos if i.state == "dead"]
    processed = len(done) + len(dead)
    retried = [i for i in infos if i.attempts > 1]
    times = [i.finished_at - i.started_at for i in done if i.finished_at and i.started_at]
    lines = [
        f"Tasks Enqueued: {len(infos)}",
        f"Tasks Processed: {processed}",
        f"Success Rate: {100 * len(done) / max(processed, 1):.2f}%",
        f"Average Processing Time: {1000 * statistics.fmean(times) if times else 0:.0f}ms",
        f"Failed Tasks: {_count(sum(i.attempts - 1 for i in retried), 'failed attempt')} in "
        f"{_count(len(retried), 'task')} ({_retry_outcome(retried)})",
    ]
    for ttype in sorted({i.type for i in infos}):
        mine = [i.finished_at - i.started_at for i in done
                if i.type == ttype and i.finished_at and i.started_at]
        lines.append(f"  {ttype}: {len(mine)} succeeded, average "
                     f"{1000 * statistics.fmean(mine) if mine else 0:.0f}ms")
    lines.append(f"Wall time: {elapsed:.1f}s with {children} child processes")
    if len(infos) - processed:
        lines.append(f"Unfinished: {len(infos) - processed}")
    return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _retry_outcome(retried: list[tq.TaskInfo]) -> str:
    if not retried:
        return "none needed"
    ok = sum(i.state == "succeeded" for i in retried)
    return "all retried successfully" if ok == len(retried) else \
        f"{ok} retried successfully, {len(retried) - ok} not"


def stop_master(master: subprocess.Popen[bytes]) -> int:
    master.send_signal(signal.SIGTERM)
    try:
        return master.wait(DRAIN_TIMEOUT + 20)
    except subprocess.TimeoutExpired:
        master.kill()
        master.wait()
        return -signal.SIGKILL


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="fewer tasks, shorter delays (CI)")
    parser.add_argument("-c", "--concurrency", type=int, default=None,
                        help="child processes (default: one per CPU)")
    args = parser.parse_args(argv)
    plan = SHORT if args.short else FULL
    logging.basicConfig(level=logging.INFO, format="demo: %(message)s")

    client = tq.Client()   # no URL configured: starts (or reuses) the embedded Redis
    master = start_master(args.concurrency)
    try:
        info = wait_for_children(client, master)
        log.info("tq-master %d is up with %d children; enqueuing the article's tasks",
                 master.pid, len(info["children"]))
        started = time.monotonic()
        ids = produce(client, plan["emails"], plan["images"], plan["max_delay"])
        all_ids = ids["email"] + ids["image_processing"]
        infos = wait_for_tasks(client, all_ids, plan["timeout"])
        elapsed = time.monotonic() - started
    except BaseException:
        stop_master(master)
        raise
    print()
    print(summary(infos, elapsed, len(info["children"])))
    code = stop_master(master)
    print(f"\ntq-master drained and exited with {code}")
    finished = all(i.state in ("succeeded", "dead") for i in infos)
    client.close()
    return 0 if code == 0 and finished else 1


if __name__ == "__main__":
    sys.exit(main())
