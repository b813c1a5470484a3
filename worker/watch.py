"""The child's watch thread: its process title, its sign of life, and the stand-in for a dead
master (see Watch)."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING

from setproctitle import setproctitle

from tq import exitcodes
from tq.channel import BUSY

if TYPE_CHECKING:
    from .child import Child

log = logging.getLogger("tq.worker")


class Watch(threading.Thread):
    """The child's second thread, twice a second: keeps `ps` honest ('tq-worker[3]: busy
    image_processing 3f2a9c1e… 1.4s' or 'idle'), tells the master the interpreter still runs
    (the slot's sign of life: a stopped or wedged child stops it, busy or not), and, once the
    master is gone, stands in for it: beats this worker's registry entry so no reaper takes
    the task it finishes, and ends the process if that task overruns its time."""

    def __init__(self, child: Child) -> None:
        super().__init__(name="tq-watch", daemon=True)
        self.child = child
        self.prefix = f"tq-worker[{child.spec.index}]"
        self.state = "starting"
        self.task: tuple[str, str, float] | None = None
        self._shown = ""
        self.orphaned_at: float | None = None
        self._next_beat = 0.0

    def run(self) -> None:
        while True:
            now = time.monotonic()
            self.child.slot.beat(now)
            self._title(now)
            if self.orphaned_at is None and os.getppid() != self.child.spec.master_pid:
                self.orphaned_at = now
            if self.orphaned_at is not None:
                self._orphan(now)
            time.sleep(0.5)

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
        child = self.child
        st = child.slot.state
        busy = st.state == BUSY and st.task
        if busy and orphan_deadline(st.deadline, self.orphaned_at or now,
                                    child.config.orphan_grace) < now:
            log.error("master gone and the task overran its time: exiting; the task goes "
                      "back to its queue", extra={**child.extra, "task": st.task})
            flush_logs()
            os._exit(exitcodes.FAILURE)
        broker = getattr(child, "broker", None)
        if broker is None or child.leaving or now < self._next_beat:
            return
        self._next_beat = now + 1.0
        try:
            broker.register_worker(child.wid, child.registry_info(
                state="busy" if busy else "stopping", task=st.task if busy else None,
                type=st.type if busy else None, orphan=True))
        except Exception:   # Redis away: the registry entry simply ages
            pass


def orphan_deadline(hard_deadline: float, orphaned_at: float, grace: float) -> float:
    """When an orphan must give up its task: its own hard limit, else orphan_grace."""
    return hard_deadline if hard_deadline else orphaned_at + grace


def flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:   # exiting anyway
            pass
