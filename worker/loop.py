"""The child's loop: claim -> run -> settle, one task at a time (or the async pool), until told
to stop, the master is gone or max_tasks_per_child ran."""

from __future__ import annotations

import os
import time
from functools import partial

from tq.task import Task

from .acks import Acks
from .fetch import Fetcher
from .outage import Outage
from .pool import Pool
from .prefetch import Prefetch
from .report import Report
from .runner import Runner
from .stop import Stop

PARENT_CHECK = 0.1   # s between getppid() checks in the loop (PR_SET_PDEATHSIG is first)


class Loop:
    def __init__(self, master_pid: int, max_tasks: int | None, stop: Stop, fetcher: Fetcher,
                 acks: Acks, runner: Runner, pool: Pool | None, outage: Outage,
                 report: Report, prefetch: Prefetch) -> None:
        self.master_pid = master_pid
        self.max_tasks = max_tasks   # None: no limit
        self.stop = stop
        self.fetcher = fetcher
        self.acks = acks
        self.runner = runner
        self.pool = pool   # None: async tasks run one at a time, like the others
        self.outage = outage
        self.report = report
        self.prefetch = prefetch
        self.exit_reason = "stopped"
        self.last_run = 0.0   # how long the last task ran (s)

    def run(self) -> None:
        fetcher = self.fetcher
        done = 0
        next_parent_check = 0.0
        while not self.stop.stopping:
            # PR_SET_PDEATHSIG tells a child its master died at once (Linux); this check is the
            # fallback, and a syscall per task would show in a profile: ten times a second.
            now = time.monotonic()
            if now >= next_parent_check:
                next_parent_check = now + PARENT_CHECK
                if os.getppid() != self.master_pid:
                    self.exit_reason = "master gone"
                    break
            if not fetcher.pending and not fetcher.fetch():
                continue
            task = fetcher.next_task()
            if self.pool is not None and self.runner.is_async(task):
                done += self.pool.run(task)
            else:
                self._run(task)
                done += 1
            if self.max_tasks and done >= self.max_tasks:
                self.exit_reason = "max_tasks"
                break
        if self.stop.stopping and self.exit_reason == "stopped":
            self.exit_reason = "told to stop"

    def _run(self, task: Task) -> None:
        acks = self.acks
        if acks.waiting and self.prefetch.flush_before_next(self.last_run, acks.since):
            acks.flush()
        started = time.time()
        inputs = self.outage.call(partial(self.runner.read_inputs, task)) if task.inputs \
            else None
        outcome, elapsed = self.runner.run(task, self.report.started, inputs)
        self.last_run = elapsed
        self.prefetch.observe(elapsed)
        acks.settle(task, outcome, elapsed, started)
        self.report.done()
        self.report.send_tally()
