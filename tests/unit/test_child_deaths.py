"""A child's death, explained and charged (tq.supervisor.children, recovery): the exit status
decoded, the task or the pool blamed, restarts paced; how long a silent child has been silent,
and when an orphan or a dead host's worker is given up."""

from __future__ import annotations

import faulthandler
import os
import signal
import time

import pytest

from tq.channel import BUSY, IDLE, STARTING, ChildState, PipeReader, Slot
from tq.supervisor import children
from tq.supervisor.children import ChildRecord, RestartPacer, account, describe_exit
from tq.supervisor.recovery import reap_of
from tq.worker.watch import orphan_deadline


def _status(code: int | None = None, sig: int | None = None) -> int:
    """A real waitpid status from a real child that exits or is killed."""
    pid = os.fork()
    if pid == 0:
        if sig:
            faulthandler.disable()   # pytest's would print a traceback for the SIGSEGV
            os.kill(os.getpid(), sig)
        os._exit(code or 0)
    _, status = os.waitpid(pid, 0)
    return status


def test_exit_statuses_are_explained():
    assert describe_exit(_status(0)) == (True, "exited")
    assert describe_exit(_status(4)) == (False, "exited with code 4 (handler modules failed "
                                                "to import)")
    clean, why = describe_exit(_status(sig=signal.SIGKILL))
    assert not clean and why == "killed by signal 9 (SIGKILL) - out of memory?"
    assert "segmentation fault" in describe_exit(_status(sig=signal.SIGSEGV))[1]


def _child(state: int = BUSY, task: str = "t1", **marks: str) -> ChildRecord:
    c = ChildRecord(0, 123, "w", 1, Slot(), PipeReader(os.pipe()[0]))
    c.state = ChildState(state, task=task if state == BUSY else "", type="email")
    for k, v in marks.items():
        setattr(c, k, v)
    return c


def test_a_crash_while_busy_is_the_tasks_kill_and_not_the_pools():
    d = account(_child(ready=True), _status(sig=signal.SIGSEGV))
    assert (d.counted, d.kind, d.crashed, d.cause) == ("t1", "died", True, "signal")
    assert d.reason.startswith("worker died: killed by signal 11 (SIGSEGV)")
    assert d.killed and not d.paced   # charged to the task; the replacement forks at once
    exited = account(_child(ready=True), _status(7))   # os._exit in the handler
    assert exited.killed and not exited.paced


@pytest.mark.parametrize("state, ready, status, paced", [
    (IDLE, True, _status(sig=signal.SIGKILL), False),   # killed from outside while idle
    (IDLE, True, _status(1), True),                     # the child's own error, no task
    (IDLE, False, _status(sig=signal.SIGKILL), True),   # died before it was ready
    (STARTING, False, _status(4), True),                # its handlers do not import
])
def test_only_deaths_no_task_explains_back_off(state, ready, status, paced):
    d = account(_child(state, ready=ready), status)
    assert d.counted is None and not d.killed
    assert d.paced == paced


def test_a_stalled_child_fails_its_task_as_stalled_without_a_kill():
    d = account(_child(ready=True, kill_reason="stalled"), _status(sig=signal.SIGKILL))
    assert (d.counted, d.kind, d.crashed, d.killed) == ("t1", "stalled", False, False)


def test_a_hard_timeout_fails_the_task_as_a_timeout_but_is_no_crash():
    d = account(_child(kill_reason="timeout"), _status(sig=signal.SIGKILL))
    assert (d.counted, d.kind, d.crashed, d.cause) == ("t1", "timeout", False, "timeout")
    assert d.reason.startswith("hard time limit exceeded")


@pytest.mark.parametrize("marks", [{"kill_reason": "drain_timeout"}, {"kill_reason": "quit"}])
def test_killing_for_a_drain_or_a_quit_charges_the_task_nothing(marks):
    d = account(_child(**marks), _status(sig=signal.SIGKILL))
    assert d.counted is None and not d.crashed


def test_graceful_exits_count_nothing_and_say_why():
    assert account(_child(IDLE, stop_reason="memory"), _status(0)).note == "memory"
    d = account(_child(IDLE, exited="max_tasks"), _status(0))
    assert (d.counted, d.crashed, d.cause, d.note) == (None, False, "max_tasks", "max_tasks")
    idle_crash = account(_child(IDLE), _status(3))
    assert idle_crash.crashed and idle_crash.counted is None and idle_crash.cause == "exited"


def test_the_fork_rate_is_bounded_whatever_the_cause(monkeypatch):
    now = [50.0]
    monkeypatch.setattr(children.time, "monotonic", lambda: now[0])
    pacer = RestartPacer(max_forks_per_second=4)
    for _ in range(4):
        assert pacer.may_spawn()
        pacer.spawned()
    assert not pacer.may_spawn()     # a fifth fork within the same second waits
    now[0] += 1.0
    assert pacer.may_spawn()


def test_restart_pacing_backs_off_then_resets(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(children.time, "monotonic", lambda: now[0])
    pacer = RestartPacer()
    assert pacer.crashed() == 0.0          # the first crash is replaced at once
    delays = [pacer.crashed() for _ in range(12)]
    assert 0.08 <= delays[0] <= 0.12       # then 100 ms, doubling, with jitter
    assert delays[1] > delays[0] and max(delays) <= children.BACKOFF_CAP * 1.2
    assert not pacer.may_spawn()
    now[0] += children.HEALTHY_AFTER + 1   # a healthy minute
    assert pacer.may_spawn() and pacer.crashed() == 0.0


def test_a_child_that_has_not_beaten_yet_is_as_old_as_its_fork():
    c = _child(STARTING)              # a zeroed slot: it never wrote a sign of life
    assert 0 <= c.silent_for(time.monotonic()) < 1
    c.slot.beat(c.born + 5)
    assert c.silent_for(c.born + 6) == pytest.approx(1.0)


def test_an_orphan_gives_up_at_its_hard_limit_else_after_the_grace():
    assert orphan_deadline(120.0, 100.0, 300.0) == 120.0
    assert orphan_deadline(0.0, 100.0, 300.0) == 400.0


def test_reap_of_an_idle_worker_charges_nothing_and_without_a_record_the_head():
    assert reap_of({"id": "w", "state": "idle", "queues": ["q"]}, "r").count_head is False
    r = reap_of({"id": "w", "state": "starting"}, "r")
    assert r.count_head and r.running is None and r.queues is None
