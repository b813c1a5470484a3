"""The master keeps every task when processes die: children, itself, or a whole host."""

from __future__ import annotations

import os
import signal
import time

import pytest
from master_proc import eventually

import tq
from tq.config import BY_NAME

HEARTBEAT_TTL = BY_NAME["heartbeat_ttl"].default

pytestmark = [pytest.mark.slow,
              pytest.mark.cluster_too]   # each test: on a standalone Redis, then on a Cluster


def started(rconn, task_id: str) -> list[int]:
    return [int(e.split(b"|")[1]) for e in rconn.lrange("test:started", 0, -1)
            if e.split(b"|")[0].decode() == task_id]


def test_sigkill_child_mid_task_runs_the_task_again_elsewhere(masters, client, rconn):
    # Given a master with two children and a task running in one of them
    m = masters("-c", "2", "-A", "procapp")
    m.wait_ready(2)
    tid = client.enqueue("work", {"s": 1.0})
    first = eventually(lambda: started(rconn, tid), what="the task to start")[0]
    # When that child is killed mid-task
    os.kill(first, signal.SIGKILL)
    # Then the task starts again in another child, requeued by its master as the child died
    # (under a second when idle), not by a reaper once the heartbeat expired: a fifth of the
    # heartbeat TTL (15 s) tells the two apart on any machine, however loaded
    eventually(lambda: len(started(rconn, tid)) == 2, timeout=HEARTBEAT_TTL / 5,
               what="the task to run again")
    result = client.wait(tid, timeout=10)
    assert result["pid"] != first
    assert result["attempt"] == 2   # the death counted as a failed attempt
    info = client.get(tid)
    assert info.state == "succeeded"
    m.wait_ready(2)   # the dead child was replaced


def test_sigkill_master_and_children_then_a_new_master_runs_everything(masters, client, rconn):
    # Given tasks in flight (running and prefetched) and more waiting
    m = masters("-c", "2", "-A", "procapp")
    m.wait_ready(2)
    ids = client.enqueue_many([("work", {"s": 0.5})] * 6)
    eventually(lambda: rconn.llen("test:started") >= 2, what="tasks to start")
    # When the master and its children are all SIGKILLed (the machine died, as tq sees it)
    m.kill_group()
    # Then a new master on the same host recovers them at once and all of them finish
    restarted = time.monotonic()
    m2 = masters("-c", "2", "-A", "procapp")
    for tid in ids:
        assert client.wait(tid, timeout=20)["pid"]
    # at once, not after the heartbeat TTL (15 s): the dead pids are on this very host
    assert time.monotonic() - restarted < 8
    assert "requeued" in m2.log()
    assert client.queue_sizes()["work"]["running"] == 0


def test_a_task_that_segfaults_every_time_ends_dead_after_max_retries(masters, client, rconn):
    m = masters("-c", "2", "-A", "procapp")
    m.wait_ready(2)
    tid = client.enqueue("segv", {})
    with pytest.raises(tq.TaskFailed) as err:
        client.wait(tid, timeout=20)
    assert "SIGSEGV" in str(err.value)
    assert len(started(rconn, tid)) == 3   # max_retries=2: three runs, three dead children
    info = client.get(tid)
    # the third death is also the third worker it killed: set aside as a poison task
    assert info.state == "dead" and info.error_kind == "killed-worker"
    assert "killed 3 workers" in info.error
    m.wait_log("task is dead: its run ended with its worker")   # one ERROR line, with its id
    # and the master is still healthy, with its children replaced
    m.wait_ready(2)
    assert client.wait(client.enqueue("pid", {}), timeout=10)


def test_hard_timeout_kills_a_hung_child_and_fails_the_task(masters, client, rconn):
    m = masters("-c", "1", "-A", "procapp")
    m.wait_ready(1)
    before = m.child_pids()
    tid = client.enqueue("hang", {})
    with pytest.raises(tq.TaskFailed) as err:
        client.wait(tid, timeout=15)
    assert "hard time limit" in str(err.value)
    assert client.get(tid).error_kind == "timeout"
    eventually(lambda: m.child_pids() and m.child_pids() != before, what="a new child")
    assert client.wait(client.enqueue("pid", {}), timeout=10) in m.child_pids()


def test_a_handler_module_that_fails_to_import_stops_the_first_start(masters, tmp_path):
    (tmp_path / "brokenapp.py").write_text("import tq\nraise RuntimeError('bad deploy')\n")
    m = masters("-c", "2", "-A", "brokenapp", cwd=tmp_path)
    code = m.wait_exit(20)
    assert code == 5
    log = m.log()
    assert "bad deploy" in log and "cannot import handler module 'brokenapp'" in log


def test_two_masters_one_killed_the_other_recovers_its_tasks(masters, client, rconn):
    # Given two masters on one Redis (as on two hosts), short heartbeat TTL for the test
    a = masters("-c", "1", "-A", "procapp", "--heartbeat-ttl", "1")
    b = masters("-c", "1", "-A", "procapp", "--heartbeat-ttl", "1")
    a.wait_ready(1)
    b.wait_ready(1)
    ids = client.enqueue_many([("work", {"s": 1.5})] * 2)
    eventually(lambda: rconn.llen("test:started") == 2, what="both tasks to start")
    owner = {int(e.split(b"|")[1]): e.split(b"|")[0].decode()
             for e in rconn.lrange("test:started", 0, -1)}
    victim = a if a.child_pids() & set(owner) else b
    survivor = b if victim is a else a
    # When one whole master dies
    victim.kill_group()
    # Then the other requeues the dead master's task once its heartbeat expires, and runs it
    for tid in ids:
        assert client.wait(tid, timeout=30)["pid"] in survivor.child_pids()
    survivor.wait_log("requeued 1 task(s)")
    assert rconn.llen("test:started") == 3   # exactly one task ran twice, nothing three times
