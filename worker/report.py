"""What the child shows the master: its slot (idle, busy with which task, reconnecting...) and
the statistics it sends over its pipe; the process title follows (Watch)."""

from __future__ import annotations

import time

from tq.channel import BUSY, PipeWriter, Slot
from tq.tally import Tally
from tq.task import Task

from .watch import Watch

TALLY_EVERY = 0.25       # seconds between statistics messages to the master


class Report:
    def __init__(self, slot: Slot, pipe: PipeWriter, watch: Watch) -> None:
        self.slot = slot
        self.pipe = pipe
        self.watch = watch
        self.tally = Tally()   # what finished since the last message
        self.tally_sent = time.monotonic()

    def state(self, state: int) -> None:
        """Not busy: idle, reconnecting or stopping."""
        s = self.slot.state
        s.state, s.heartbeat = state, time.monotonic()
        if state != BUSY:
            s.task = s.type = s.queue = ""
            s.deadline = 0.0
        self.slot.publish()

    def started(self, task: Task, hard_deadline: float, max_retries: int) -> None:
        """A task starts (the runner's on_start): the master kills the child past
        hard_deadline (monotonic; 0: none) and counts a death against the task."""
        s = self.slot.state
        s.state, s.task, s.type, s.queue = BUSY, task.id, task.type, task.queue
        s.started, s.deadline, s.max_retries = time.time(), hard_deadline, max_retries
        self._busy(task)

    def running(self, task: Task, started: float) -> None:
        """The oldest task of the async pool: the slot names it (the master's cancel and death
        accounting); pooled tasks have no hard limit (their time limit cancels the coroutine)."""
        s = self.slot.state
        if s.state != BUSY or s.task != task.id:
            s.state, s.task, s.type, s.queue = BUSY, task.id, task.type, task.queue
            s.started, s.deadline, s.max_retries = started, 0.0, -1
        self._busy(task)

    def _busy(self, task: Task) -> None:
        s = self.slot.state
        s.heartbeat = time.monotonic()
        self.slot.publish()
        self.watch.task = (task.type, task.id, s.heartbeat)

    def done(self) -> None:
        """No task runs now (the title says so; the slot follows with the next state)."""
        self.watch.task = None

    def send_tally(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.tally and (force or now - self.tally_sent >= TALLY_EVERY):
            self.pipe.send("tally", d=self.tally.to_wire())
            self.tally = Tally()
            self.tally_sent = now
