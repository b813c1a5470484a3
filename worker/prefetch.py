"""How many tasks a child claims per round trip.

Slow tasks: one at a time, so a child never holds tasks another idle child could run.
Sub-millisecond tasks: a batch worth about BUDGET seconds of work, so the round trip (ack of
the last batch + claim of the next, one script call) is shared by many tasks.
"""

from __future__ import annotations

import time

BUDGET = 0.001      # seconds of expected work one claim may hold
MAX_BATCH = 32
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
        oldest has waited 2 budgets. Finished tasks whose ack waits would run again if the child
        died, so this bounds that to about 2 ms of work."""
        return last_run > BUDGET or time.monotonic() - oldest_ack > 2 * BUDGET
