"""How many tasks a child claims per round trip, and when it sends the acks it holds.

Slow tasks (BUDGET or more each): one at a time, so a child never holds a task another idle
child could run, and each ack goes at once. Faster ones: a batch worth about BUDGET of work
(at most MAX_BATCH tasks), so the round trip (the acks of the last batch + the claim of the
next, one script call) is shared by many tasks. Acks wait for the next claim at most
ACK_WINDOW: if the child dies, the finished tasks whose ack had not left run again, at most
ACK_WINDOW of work (or MAX_BATCH tasks).
"""

from __future__ import annotations

import time

BUDGET = 0.010      # seconds of expected work one claim may hold
ACK_WINDOW = 0.020  # seconds a finished task's ack may wait for the next claim
MAX_BATCH = 64
_ALPHA = 0.2        # EWMA weight of the newest task


class Prefetch:
    def __init__(self, fixed: int | None = None) -> None:
        self.fixed = fixed
        self.ewma: float | None = None

    def observe(self, seconds: float) -> None:
        self.ewma = seconds if self.ewma is None else (
            _ALPHA * seconds + (1 - _ALPHA) * self.ewma)

    def size(self) -> int:
        if self.fixed is not None:
            return self.fixed
        if self.ewma is None or self.ewma >= BUDGET:
            return 1
        return max(1, min(MAX_BATCH, int(BUDGET / max(self.ewma, 1e-6))))

    @staticmethod
    def flush_before_next(last_run: float, oldest_ack: float) -> bool:
        """Send waiting acks now rather than with the next claim: after a slow task, or once the
        oldest has waited ACK_WINDOW (what a crash could make run again)."""
        return last_run > BUDGET or time.monotonic() - oldest_ack > ACK_WINDOW
