"""The master's children: fork them, reap them, say why they died, pace their restarts."""

from __future__ import annotations

import logging
import os
import random
import signal
import time
from collections import deque
from dataclasses import dataclass, field

import psutil

from tq import exitcodes
from tq.channel import BUSY, HELD_AT_FORK, ChildState, PipeReader, Slot
from tq.config import Config

# The child's code, imported once here before the first fork: each child would otherwise import
# the worker package after its fork (~50 ms of every start and restart; a child that crashed
# kept its queue's work waiting that long).
from tq.worker.child import ChildSpec, main

log = logging.getLogger("tq.master")

HEALTHY_AFTER = 60.0     # a minute without a crash resets the restart backoff
BACKOFF_FIRST = 0.1
BACKOFF_CAP = 30.0


@dataclass(eq=False)
class ChildRecord:
    """The master's record of one child process."""

    index: int
    pid: int
    worker_id: str
    generation: int
    slot: Slot
    reader: PipeReader
    born: float = field(default_factory=time.monotonic)
    ready: bool = False
    queues: list[str] = field(default_factory=list)
    stop_reason: str | None = None   # asked to stop gracefully: reload, scale_down, memory, drain
    kill_reason: str | None = None   # killed: timeout, heartbeat, drain_timeout, quit, boot
    error: str | None = None         # what the child said before failing (import error)
    state: ChildState = field(default_factory=ChildState)
    uss: int = 0
    rss: int = 0
    cpu: float = 0.0                 # percent of one core since the last measure
    cpu_seconds: float = 0.0         # user + system CPU time used so far
    exited: str = ""                 # how it ended, once reaped
    cancel_task: str = ""            # a running task it was told to cancel (cancels.py)
    cancel_deadline: float = 0.0     # killed if it still runs that task after this

    def signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, reason: str) -> None:
        """Ask the child to finish its current task and exit (SIGTERM)."""
        self.stop_reason = reason
        self.signal(signal.SIGTERM)

    def kill(self, reason: str) -> None:
        """Kill the child now (SIGKILL); the task it runs goes back to its queue."""
        self.kill_reason = reason
        self.signal(signal.SIGKILL)

    def silent_for(self, now: float) -> float:
        """Seconds since the child last showed a sign of life (or was forked, if it has not
        yet: a slot starts zeroed)."""
        return now - max(self.slot.alive(), self.born)

    @property
    def active(self) -> bool:
        """Counts toward the concurrency: not asked to stop, not killed."""
        return self.stop_reason is None and self.kill_reason is None


def describe_exit(status: int) -> tuple[bool, str]:
    """(clean, reason) from a waitpid status, e.g. (False, 'killed by signal 9 (SIGKILL)')."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        hints: dict[int, str] = {signal.SIGKILL: " - out of memory?",
                                 signal.SIGSEGV: " - segmentation fault",
                                 signal.SIGABRT: " - aborted"}
        hint = hints.get(sig, "")
        return False, f"killed by signal {sig} ({name}){hint}"
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    if code == 0:
        return True, "exited"
    what = exitcodes.DESCRIPTIONS.get(code)
    return False, f"exited with code {code}" + (f" ({what})" if what else "")


@dataclass
class Death:
    """What a child's exit means: for its task, the logs and the restart pacing."""

    clean: bool             # exited 0 (a graceful stop)
    how: str                # "killed by signal 9 (SIGKILL) - out of memory?"
    counted: str | None     # the task that failed with it (counts an attempt), if any
    kind: str               # error kind recorded for that task: died | timeout | stalled
    reason: str             # error message recorded for that task
    note: str               # why it ended, for the log: drain, memory, timeout, crashed...
    cause: str              # restart reason for metrics; "exited"/"signal" mean a crash
    crashed: bool           # died without being asked to
    killed: bool = False    # its running task crashed it: charged to the task as a kill
    paced: bool = False     # no task explains it (a boot failure, a bug in the pool): back off


def account(c: ChildRecord, status: int) -> Death:
    """Decide what a child's exit means. Killed for its task's time limit or crashed while
    busy: the running task failed (an attempt counts; a crash also counts as a kill, so a
    poison task is set aside after a few). Killed by us for a drain or a quit: nothing
    counts, the task did nothing wrong.

    Pacing looks at the cause: a crash that a running task explains is that task's, and a
    signal that kills an idle, ready child came from outside (the OOM killer, an operator):
    both are replaced at once. A child that dies before it is ready, or exits with an error
    of its own while no task runs, says the pool is broken (bad import, bad config): those
    back off, so a bad deploy does not fork in a loop."""
    clean, how = describe_exit(status)
    st = c.state
    running = st.task if st.state == BUSY and st.task else None
    counted, kind, reason = None, "died", f"worker died: {how}"
    if c.kill_reason == "timeout":
        counted, kind = running, "timeout"
        reason = f"hard time limit exceeded: worker killed after {time.time() - st.started:.1f}s"
    elif c.kill_reason == "cancelled":
        counted, kind = running, "cancelled"
        reason = "cancelled: the handler did not stop within cancel_grace, its worker was killed"
    elif c.kill_reason == "stalled":
        counted, kind = running, "stalled"
        reason = f"worker stopped making progress and was killed: {how}"
    elif c.kill_reason in (None, "heartbeat", "boot") and not clean:
        counted = running
    note = c.kill_reason or c.stop_reason or c.exited or ("" if clean else "crashed")
    cause = c.kill_reason or c.stop_reason or ("max_tasks" if c.exited == "max_tasks" else "")
    crashed = not cause and not clean
    if crashed:
        cause = "exited" if os.WIFEXITED(status) else "signal"
    killed = crashed and counted is not None
    paced = crashed and not killed and (not c.ready or os.WIFEXITED(status))
    return Death(clean, how, counted, kind, reason, note, cause or "exited", crashed,
                 killed, paced)


class RestartPacer:
    """When the next child may be forked: exponential backoff with jitter for crashes that
    no task explains, and a bound on the fork rate whatever the cause."""

    def __init__(self, max_forks_per_second: float = 10.0) -> None:
        self.crashes = 0
        self.last_crash = 0.0
        self.not_before = 0.0
        self.max_rate = max_forks_per_second
        self._forks: deque[float] = deque()

    def crashed(self) -> float:
        """Record an unexplained crash; returns the delay before the next spawn."""
        now = time.monotonic()
        if now - self.last_crash > HEALTHY_AFTER:
            self.crashes = 0
        self.crashes += 1
        self.last_crash = now
        if self.crashes == 1:
            delay = 0.0   # one crash: replace at once
        else:
            delay = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (self.crashes - 2))
            delay *= 0.8 + 0.4 * random.random()
        self.not_before = now + delay
        return delay

    def may_spawn(self) -> bool:
        now = time.monotonic()
        if now < self.not_before:
            return False
        forks = self._forks
        while forks and now - forks[0] >= 1.0:
            forks.popleft()
        return len(forks) < self.max_rate

    def spawned(self) -> None:
        self._forks.append(time.monotonic())


def fork_child(index: int, worker_id: str, generation: int, master_pid: int, config: Config,
               close_fds: list[int], preloaded: bool) -> ChildRecord:
    """Fork a child running tq.worker.child.main; returns the master's record of it."""
    r, w = os.pipe()
    slot = Slot()
    held = signal.pthread_sigmask(signal.SIG_BLOCK, HELD_AT_FORK)   # see HELD_AT_FORK
    pid = os.fork()
    if pid == 0:   # the child: never returns; it lets them in once it has its handlers
        os.close(r)
        main(ChildSpec(index, worker_id, master_pid, config, slot, w, tuple(close_fds),
                       preloaded))
    signal.pthread_sigmask(signal.SIG_SETMASK, held)
    os.close(w)
    return ChildRecord(index, pid, worker_id, generation, slot, PipeReader(r))


def process_state(pid: int) -> str:
    """The kernel's word for a process, for logs: 'stopped (SIGSTOP?)', 'running', ..."""
    try:
        status = psutil.Process(pid).status()
    except psutil.Error:
        return "gone"
    return "stopped (SIGSTOP?)" if status in (psutil.STATUS_STOPPED,
                                              psutil.STATUS_TRACING_STOP) else status


def reap() -> list[tuple[int, int]]:
    """Every exited child as (pid, status), without blocking."""
    out = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        out.append((pid, status))
    return out
