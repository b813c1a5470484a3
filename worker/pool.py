"""Many async tasks at once (--async-concurrency): async handlers' tasks share the child's
event loop, up to async_concurrency of them, refilled from the queues as they finish."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from functools import partial
from typing import Any

from tq.store.broker import Broker
from tq.task import Task

from .acks import Acks
from .fetch import Fetcher
from .outage import Outage
from .prefetch import ACK_WINDOW
from .report import Report
from .runner import Runner
from .stop import Stop

POOL_CANCEL_CHECK = 0.5   # s between looks for cancel requests of pooled async tasks
POOL_REFILL = 0.05        # s a pool with room waits before claiming again after finding none

Running = dict[asyncio.Future[Any], tuple[Task, float]]   # each task and when it started


def _no_start(*args: Any) -> None:
    """Pooled async tasks are published by the pool (Report.running), not one by one."""


class Pool:
    def __init__(self, size: int, broker: Broker, runner: Runner, fetcher: Fetcher, acks: Acks,
                 outage: Outage, report: Report, stop: Stop) -> None:
        self.size = size   # async_concurrency
        self.broker = broker
        self.runner = runner
        self.fetcher = fetcher
        self.acks = acks
        self.outage = outage
        self.report = report
        self.stop = stop

    def run(self, first: Task) -> int:
        """Run async handlers' tasks concurrently on this child's loop, up to
        async_concurrency at once, refilled from the queue as they finish; returns how many
        ran. A sync task met meanwhile waits until the pool is empty."""
        return self.runner.loop().run_until_complete(self._run(first))

    async def _run(self, first: Task) -> int:
        n = self.size
        pending = self.fetcher.pending
        running: Running = {}
        waiting: deque[Task] = deque([first])
        later: list[Task] = []     # sync tasks claimed meanwhile: run after the pool
        ran = 0
        next_check = time.monotonic() + POOL_CANCEL_CHECK
        next_claim = 0.0   # after a claim that found nothing, the next one waits POOL_REFILL
        while True:
            while len(running) < n and not self.stop.stopping:
                while not waiting and pending and self.runner.is_async(pending[0]):
                    waiting.append(pending.popleft())
                if not waiting:
                    if pending or later or time.monotonic() < next_claim:
                        break   # a sync task is next (the pool drains first), or too soon
                    got = self.fetcher.claim_more(n - len(running))
                    if not got:
                        next_claim = time.monotonic() + POOL_REFILL
                        break
                    for t in got:
                        (waiting if self.runner.is_async(t) else later).append(t)
                    continue
                task = waiting.popleft()
                inputs = self.outage.call(partial(self.runner.read_inputs, task)) \
                    if task.inputs else None
                future = asyncio.ensure_future(self.runner.run_async(task, _no_start, inputs))
                running[future] = (task, time.time())
            if not running:
                break
            self.report.running(*min(running.values(), key=lambda v: v[1]))
            # room in the pool: look for new tasks again soon (an idle child of the fleet is
            # woken at once; this one picks up within POOL_REFILL)
            timeout = POOL_REFILL if len(running) < n else POOL_CANCEL_CHECK
            done, _ = await asyncio.wait(running, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            for fut in done:
                task, began = running.pop(fut)
                outcome, elapsed = fut.result()
                self.acks.settle(task, outcome, elapsed, began)
                ran += 1
            if self.acks.waiting and time.monotonic() - self.acks.since > ACK_WINDOW:
                self.acks.flush()
            self.report.send_tally()
            if time.monotonic() >= next_check and running:
                next_check = time.monotonic() + POOL_CANCEL_CHECK
                self.outage.call(lambda: self._cancels(running))
        pending.extendleft(reversed([*waiting, *later]))   # not started: first in line
        self.report.done()
        return ran

    def _cancels(self, running: Running) -> None:
        """Cancel requests for pooled tasks (the master only knows the slot's task)."""
        for task_id in self.broker.cancels_requested([t for t, _ in running.values()]):
            self.runner.cancel(task_id)
