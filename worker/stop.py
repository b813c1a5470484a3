"""How the child is told to stop: SIGTERM sets a flag, and cuts short a wait that allows it."""

from __future__ import annotations

import time


class Interrupt(BaseException):  # control flow, raised by the SIGTERM handler
    """Breaks a wait (an idle read on Redis, a pause) when the child is told to stop."""


class Stop:
    """Told to stop? The loop looks at `stopping` between tasks; `blocking` is set around the
    waits that SIGTERM may break (Interrupt is raised in them)."""

    def __init__(self) -> None:
        self.stopping = False
        self.blocking = False

    def on_term(self, signum: int, frame: object) -> None:
        # Only a flag (and, while in a wait, a way out of it): the work of stopping happens in
        # the loop, outside the handler.
        self.stopping = True
        if self.blocking:
            raise Interrupt

    def sleep(self, seconds: float) -> None:
        """Sleep, cut short when told to stop."""
        self.blocking = True
        try:
            time.sleep(seconds)
        except Interrupt:
            pass
        finally:
            self.blocking = False
