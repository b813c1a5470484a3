"""Handing back the rest of a batch while one of its tasks runs long, so that no task waits in a
busy child while another child idles.

A child claims a batch of tasks while they take well under BUDGET each (prefetch.py): one round
trip for many. When a task of the batch turns out long (a huge image among thumbnails), the
claimed tasks not yet started would wait behind it. Once the task in hand has run GIVE_BACK_AFTER,
the watch thread takes them out of the child's queue and hands them back to the front of their
queues (unclaim.lua: fenced by their claim tokens, no attempt counted), where idle children
are woken for them. Once per task: what the child claims after it is its own business again.
"""

from __future__ import annotations

import logging
import time

from tq.channel import BUSY, Slot
from tq.store.broker import Broker
from tq.store.link import OUTAGE

from .fetch import Fetcher
from .prefetch import BUDGET

log = logging.getLogger("tq.worker")
GIVE_BACK_AFTER = 5 * BUDGET   # s a task may run before the rest of its batch goes back


class GiveBack:
    def __init__(self, broker: Broker, worker_id: str, slot: Slot, fetcher: Fetcher) -> None:
        self.broker = broker
        self.worker_id = worker_id
        self.slot = slot
        self.fetcher = fetcher
        self.extra = {"worker": worker_id}
        self.done_for = ""   # the task whose batch was handed back (once per task)

    def check(self, now: float) -> float:
        """Hand back the unstarted rest of the batch if the running task outlived
        GIVE_BACK_AFTER; returns how soon to look again (the watch thread's next wake-up)."""
        st = self.slot.state
        if st.state != BUSY or not st.task or st.task == self.done_for \
                or not self.fetcher.pending:
            return GIVE_BACK_AFTER
        ran = time.time() - st.started
        if ran < GIVE_BACK_AFTER:
            return GIVE_BACK_AFTER - ran
        self.done_for = st.task
        tasks = self.fetcher.take_unstarted()
        if not tasks:
            return GIVE_BACK_AFTER
        try:
            back = self.broker.give_back(self.worker_id, tasks)
        except (*OUTAGE, Exception) as exc:   # (never let the watch thread die)
            # Their claims may stand: the loop's next look for strays hands them back.
            self.fetcher.unsure = True
            log.warning("could not hand back %d claimed task(s) behind a long one (%s): "
                        "they go back with the next look for strays", len(tasks), exc,
                        extra=self.extra)
            return GIVE_BACK_AFTER
        log.debug("task %s runs long: handed back %d claimed task(s) it had not started",
                  st.task, len(back), extra=self.extra)
        return GIVE_BACK_AFTER
