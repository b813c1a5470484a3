"""The child's watch thread: its process title, its sign of life, and the stand-in for a dead
master (see Watch)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from setproctitle import setproctitle

from tq import exitcodes
from tq.channel import BUSY, Slot

log = logging.getLogger("tq.worker")
PERIOD = 0.5   # s between the watch thread's rounds (its duty may ask for sooner)


class Watch(threading.Thread):
    """The child's second thread, twice a second: keeps `ps` honest ('tq-worker[3]: busy
    image_processing 3f2a9c1e… 1.4s' or 'idle'), tells the master the interpreter still runs
    (the slot's sign of life: a stopped or wedged child stops it, busy or not), and, once the
    master is gone, stands in for it: beats this worker's registry entry so no reaper takes
    the task it finishes, and ends the process if that task overruns its time."""

    def __init__(self, index: int, worker_id: str, master_pid: int, slot: Slot,
                 orphan_grace: float, orphan_beat: Callable[..., bool]) -> None:
        """orphan_beat(**fields) writes this worker's registry entry as an orphan's (fields:
        its state and task); False when it has none to keep (not registered yet, or leaving)."""
        super().__init__(name="tq-watch", daemon=True)
        self.prefix = f"tq-worker[{index}]"
        self.worker_id = worker_id
        self.master_pid = master_pid
        self.slot = slot
        self.orphan_grace = orphan_grace
        self.orphan_beat = orphan_beat
        self.state = "starting"
        self.task: tuple[str, str, float] | None = None
        self._shown = ""
        self.orphaned_at: float | None = None
        self._next_beat = 0.0
        # one more duty (the hand-back of a batch behind a long task, giveback.py): called each
        # round, it says how soon it wants the next (sooner than PERIOD)
        self.duty: Callable[[float], float] | None = None

    def run(self) -> None:
        while True:
            now = time.monotonic()
            self.slot.beat(now)
            self._title(now)
            if self.orphaned_at is None and os.getppid() != self.master_pid:
                self.orphaned_at = now
            if self.orphaned_at is not None:
                self._orphan(now)
            wait = PERIOD
            if self.duty is not None and self.orphaned_at is None:
                wait = min(PERIOD, max(0.005, self.duty(now)))
            time.sleep(wait)

    def _title(self, now: float) -> None:
        task = self.task
        if task is not None:
            text = f"{self.prefix}: busy {task[0]} {task[1][-8:]} {now - task[2]:.1f}s"
        else:
            text = f"{self.prefix}: {self.state}"
        if text != self._shown:
            setproctitle(text)
            self._shown = text

    def _orphan(self, now: float) -> None:
        st = self.slot.state
        busy = st.state == BUSY and st.task
        if busy and orphan_deadline(st.deadline, self.orphaned_at or now,
                                    self.orphan_grace) < now:
            log.error("master gone and the task overran its time: exiting; the task goes "
                      "back to its queue", extra={"worker": self.worker_id, "task": st.task})
            flush_logs()
            os._exit(exitcodes.FAILURE)
        if now < self._next_beat:
            return
        fields: dict[str, Any] = {"state": "busy" if busy else "stopping",
                                  "task": st.task if busy else None,
                                  "type": st.type if busy else None, "orphan": True}
        try:
            if not self.orphan_beat(**fields):
                return
        except Exception:   # Redis away: the registry entry simply ages
            pass
        self._next_beat = now + 1.0


def orphan_deadline(hard_deadline: float, orphaned_at: float, grace: float) -> float:
    """When an orphan must give up its task: its own hard limit, else orphan_grace."""
    return hard_deadline if hard_deadline else orphaned_at + grace


def flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:   # exiting anyway
            pass
