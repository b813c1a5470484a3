"""Cancelling running tasks (client.cancel / tq cancel / the dashboard on a running task).

cancel.lua marks the running task's claim (a '|x' suffix in its queue's `run` hash) and pushes
the queue's
`soon` token, which wakes the masters serving the queue. A master that runs the task in one of
its children names it in the child's slot and sends SIGUSR1: the child raises tq.Cancelled in
the handler (an async handler's coroutine is cancelled), which ends the task cancelled, no
attempt counted (fail.lua). A handler that does not stop within cancel_grace (stuck in C code,
or it swallowed the exception) has its child killed as for a hard time limit; the requeue of
its claims then ends that task cancelled (requeue.lua), again without an attempt. Masters also
look every second, so a token lost with a connection only delays a cancel.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterable

from tq.channel import BUSY
from tq.store.broker import Broker

from .children import ChildRecord

log = logging.getLogger("tq.master")


class Cancels:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def check(self, children: Iterable[ChildRecord], grace: float) -> None:
        """Signal the children whose running task was cancelled (once per task)."""
        busy = [c for c in children if c.state.state == BUSY and c.state.task
                and c.state.queue and not c.kill_reason]
        if not busy:
            return
        cancelled = self.broker.cancel_requested([(c.state.queue, c.state.task) for c in busy])
        now = time.monotonic()
        for c, flag in zip(busy, cancelled, strict=True):
            task = c.state.task
            if flag and c.cancel_task != task:
                log.info("%s task cancelled while it runs: interrupting worker[%d] (killed "
                         "if it has not stopped in %gs)", c.state.type, c.index, grace,
                         extra={"worker": c.worker_id, "task": task})
                c.cancel_task, c.cancel_deadline = task, now + grace
                c.slot.request_cancel(task)
                c.signal(signal.SIGUSR1)

    @staticmethod
    def overdue(c: ChildRecord, now: float) -> bool:
        """Is `c` still running a cancelled task after the grace?"""
        st = c.state
        return bool(c.cancel_task) and st.state == BUSY and st.task == c.cancel_task \
            and now > c.cancel_deadline
