"""The master's signals: handlers that only record them and wake the loop, which handles them.

    TERM, INT      drain: children finish their task (within drain_timeout), then exit
    INT again      stop now, as QUIT: children are killed, their tasks go back to the queues
    HUP            reload the configuration, replace the children one by one
    TTIN, TTOU     one child more, one fewer
    CHLD           a child exited: only wakes the loop, which reaps every pass
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

SIGNALS = ("TERM", "INT", "QUIT", "HUP", "TTIN", "TTOU", "CHLD")


class SignalQueue:
    """Signals received and not yet handled, and the self-pipe that wakes the loop's select."""

    def __init__(self) -> None:
        self.pending: list[int] = []
        self.reader = self.writer = -1   # the self-pipe, once installed

    def install(self) -> None:
        self.reader, self.writer = os.pipe()
        os.set_blocking(self.reader, False)
        os.set_blocking(self.writer, False)
        signal.set_wakeup_fd(self.writer, warn_on_full_buffer=False)
        for name in SIGNALS:
            signal.signal(getattr(signal, f"SIG{name}"), self._record)

    def _record(self, signum: int, frame: object) -> None:
        # Only record it: logging, forking or reaping inside a handler can deadlock (gunicorn
        # learnt this the hard way); the wake-up fd makes the loop run at once.
        self.pending.append(signum)

    def fds(self) -> list[int]:
        """The self-pipe's ends (a forked child closes them)."""
        return [self.reader, self.writer]

    def clear_wakeups(self) -> None:
        """Empty the self-pipe after select() saw it readable (the signals stay pending)."""
        try:
            while os.read(self.reader, 4096):
                pass
        except BlockingIOError:
            pass

    def received(self) -> Iterator[str]:
        """The pending signals in order of arrival, by lower-case name without SIG: 'term'."""
        while self.pending:
            yield signal.Signals(self.pending.pop(0)).name[3:].lower()
