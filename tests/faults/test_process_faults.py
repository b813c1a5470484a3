"""Processes dying, stopping or crashing under load: every run counted on the recorder."""

from __future__ import annotations

import os
import random
import shutil
import signal
import statistics
import subprocess
import threading
import time

import psutil
from faultkit import jobs, wait_all
from master_proc import eventually
from needs import unavailable

from tq.store.broker import Broker
from tq.task import encode_body


def live_children(m) -> int:
    """Children of the master that are alive and not stopped (zombies do not count)."""
    n = 0
    for c in m.children():
        try:
            if c.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_STOPPED):
                n += 1
        except psutil.Error:
            pass
    return n


def test_a_sigkill_storm_keeps_the_pool_populated_and_loses_nothing(masters, client, runs, table):
    # Given two children working through 400 tasks of 20 ms
    m = masters("-c", "2", "-A", "faultapp", "--queues", "a")
    m.wait_ready(2)
    ids = client.enqueue_many([{"type": "job", "queue": "a", "payload": {"n": i, "s": 0.02}}
                               for i in range(400)])
    # When a child is SIGKILLed every 250 ms for 4 s, while the pool is sampled every 20 ms
    samples: list[int] = []
    kills = 0
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(live_children(m))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    end = time.monotonic() + 4
    while time.monotonic() < end:
        time.sleep(0.25)
        kids = m.child_pids()
        if kids:
            os.kill(random.choice(sorted(kids)), signal.SIGKILL)
            kills += 1
    stop.set()
    sampler.join()
    # Then the pool stayed at least 80 % populated, and every task ran to the end
    occupancy = statistics.mean(samples) / 2
    states = wait_all(client, ids, 60)
    lost, dup = runs.lost_and_duplicated(ids)
    table(("SIGKILL storm (16 kills in 4 s, -c 2)",
           f"pool occupancy {occupancy:.0%}; lost {len(lost)}, duplicated {len(dup)}"))
    assert occupancy >= 0.8
    assert lost == [] and set(states.values()) == {"succeeded"}
    # A kill between a handler's return and its (batched) ack runs that task again: at least
    # once is the contract for a worker killed then. Each kill can do that to at most the
    # tasks its child had finished and not yet acked (one, with 20 ms tasks).
    assert len(dup) <= kills


def test_poison_pills_cost_ordinary_work_little(masters, client, runs, table):
    # Given a master, the time 300 ordinary tasks take alone
    m = masters("-c", "2", "-A", "faultapp", "--queues", "a")
    m.wait_ready(2)

    def batch(pills: int) -> tuple[float, list[str], list[str]]:
        specs = [{"type": "job", "queue": "a", "payload": {"n": i, "s": 0.01}}
                 for i in range(300)]
        poison = [{"type": "pill", "queue": "a", "payload": {"how": how}}
                  for how in ["exit", "segv", "exit"][:pills]]
        for i, p in enumerate(poison):   # spread among the ordinary ones
            specs.insert(50 + 100 * i, p)
        t0 = time.monotonic()
        ids = client.enqueue_many(specs)
        ordinary = [i for i, s in zip(ids, specs, strict=True) if s["type"] == "job"]
        wait_all(client, ordinary, 120)
        took = time.monotonic() - t0
        pill_ids = [i for i, s in zip(ids, specs, strict=True) if s["type"] == "pill"]
        return took, ordinary, pill_ids

    alone, first, _ = batch(0)
    # When three tasks that kill their worker (os._exit, a segfault) are among them
    mixed, second, pills = batch(3)
    # Then each pill is dead after killing 3 workers, whatever its retries (it has 10)
    for pid in pills:
        eventually(lambda pid=pid: client.get(pid).state == "dead", timeout=30,
                   what="the pill to be dead")
        info = client.get(pid)
        assert info.error_kind == "killed-worker" and "killed 3 workers" in info.error
        assert len(runs.pids(pid)) == 3
    # and the ordinary tasks took at most 1.5 times as long, none lost or run twice
    lost, dup = runs.lost_and_duplicated(first + second)
    ratio = mixed / alone
    table(("3 poison pills among 300 tasks (-c 2)",
           f"{alone:.2f}s alone, {mixed:.2f}s with pills: {ratio:.2f}x; lost {len(lost)}, "
           f"duplicated {len(dup)}"))
    assert ratio <= 1.5
    assert lost == [] and dup == []
    assert "keep crashing" not in m.log()   # the pills' deaths never slowed the forks


def test_master_killed_alone_runs_nothing_twice(masters, client, runs, table):
    # Given two children each running a 4 s task, and more tasks waiting; a short TTL, so a
    # reaper would requeue the running tasks quickly if nobody vouched for them
    m = masters("-c", "2", "-A", "faultapp", "--queues", "a", "--heartbeat-ttl", "2")
    m.wait_ready(2)
    long = client.enqueue_many([{"type": "job", "queue": "a", "payload": {"n": i, "s": 4}}
                                for i in range(2)])
    eventually(lambda: sum(runs.started().values()) == 2, what="both long tasks to start")
    short = client.enqueue_many(jobs(10, "a"))
    orphans = m.child_pids()
    # When only the master is SIGKILLed (not its process group) and a new one starts at once
    os.kill(m.pid, signal.SIGKILL)
    m.proc.wait(10)
    m2 = masters("-c", "2", "-A", "faultapp", "--queues", "a", "--heartbeat-ttl", "2")
    # Then the orphans finish their tasks and exit, nothing is requeued under them
    states = wait_all(client, long + short, 40)
    eventually(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status()
                               != psutil.STATUS_ZOMBIE for p in orphans),
               timeout=15, what="the orphans to exit")
    lost, dup = runs.lost_and_duplicated(long + short)
    started = runs.started()
    table(("master-only kill -9 + restart, 2 x 4 s tasks",
           f"lost {len(lost)}, duplicated {len(dup)}, long tasks started "
           f"{[started[i] for i in long]} times"))
    assert set(states.values()) == {"succeeded"}
    assert lost == [] and dup == []
    assert [started[i] for i in long] == [1, 1]
    assert m2.proc.poll() is None


def test_a_stopped_busy_child_without_timeout_is_replaced(masters, client, runs, table):
    # Given a child running a task that has no time limit
    m = masters("-c", "1", "-A", "faultapp", "--queues", "a", "--stall-timeout", "2")
    m.wait_ready(1)
    tid = client.enqueue("job", {"s": 1.5}, queue="a")
    pid = eventually(lambda: runs.pids(tid), what="the task to start")[0]
    # When that child is stopped (SIGSTOP)
    stopped_at = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    # Then the master kills it after the stall timeout, and the task runs again elsewhere
    m.wait_log("showed no sign of life", timeout=10)
    noticed = time.monotonic() - stopped_at
    assert client.wait(tid, timeout=20) is None
    assert "stopped" in m.log()
    pids = runs.pids(tid)
    lost, dup = runs.lost_and_duplicated([tid])
    table(("SIGSTOP of a busy child, no timeout (--stall-timeout 2)",
           f"noticed after {noticed:.1f}s; runs started {len(pids)}, lost {len(lost)}, "
           f"duplicated {len(dup)}"))
    assert len(pids) == 2 and pids[1] != pid
    assert lost == [] and dup == []
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_stuck_orphan_is_killed_before_its_task_is_requeued(masters, client, runs, table):
    # Given a child running a task, stopped (it cannot beat its registry entry any more)
    m = masters("-c", "1", "-A", "faultapp", "--queues", "a", "--heartbeat-ttl", "2")
    m.wait_ready(1)
    tid = client.enqueue("job", {"s": 2}, queue="a")
    pid = eventually(lambda: runs.pids(tid), what="the task to start")[0]
    os.kill(pid, signal.SIGSTOP)
    # When its master dies alone, and a new master starts on the same host
    os.kill(m.pid, signal.SIGKILL)
    m.proc.wait(10)
    m2 = masters("-c", "1", "-A", "faultapp", "--queues", "a", "--heartbeat-ttl", "2")
    # Then, once its heartbeat expires, the new master kills it first and only then requeues
    # its task: the stuck process can never finish it a second time
    m2.wait_log("stopped heartbeating but still runs", timeout=20)
    assert client.wait(tid, timeout=20) is None
    eventually(lambda: not psutil.pid_exists(pid)
               or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, what="the orphan gone")
    lost, dup = runs.lost_and_duplicated([tid])
    table(("stopped orphan of a killed master",
           f"killed, then requeued; runs started {len(runs.pids(tid))}, lost {len(lost)}, "
           f"duplicated {len(dup)}"))
    assert lost == [] and dup == [] and len(runs.pids(tid)) == 2


def test_a_claim_whose_reply_never_came_back_is_handed_back(masters, client, rconn, runs,
                                                             table):
    # Given an idle child
    m = masters("-c", "1", "-A", "faultapp", "--queues", "a")
    m.wait_ready(1)
    wid = eventually(lambda: [w["id"] for w in client.broker.registry("workers")],
                     what="the child's registry entry")[0]
    # When a claim is made in its name that it never hears of (as a claim delivered late, after
    # a network cut and the child's own hand-back, would be): the task sits in its list
    tid = "late" + "0" * 12
    rconn.hset("tq:{a}:tasks", tid, encode_body("job", "a", '{"n":1}'))
    rconn.rpush("tq:{a}:ready:0", tid)
    late = Broker(client.url)
    got = late.claim(wid, ["a"], 1)
    late.close()
    assert [t.id for t in got.tasks] == [tid]
    claimed_at = time.monotonic()
    # Then the child's next claim finds it and hands it back, and it runs exactly once
    eventually(lambda: runs.finished()[tid] == 1, timeout=10, what="the task to run")
    took = time.monotonic() - claimed_at
    m.wait_log("never came back: handed back")
    table(("a claim in a live worker's name, reply lost",
           f"handed back and run {took:.1f}s later; started {runs.started()[tid]} time(s)"))
    assert runs.started()[tid] == 1 and took < 5


def test_masters_with_one_hostname_in_two_pid_namespaces_leave_each_other_alone(
        masters, client, runs, table):
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "--pid", "--fork", "--mount-proc", "true"],
            capture_output=True).returncode != 0:
        unavailable("cannot create a PID namespace here (unshare --pid refused: run as root)")
    # Given a master on this host running a task
    a = masters("-c", "1", "-A", "faultapp", "--queues", "a")
    a.wait_ready(1)
    tid = client.enqueue("job", {"s": 3}, queue="a")
    eventually(lambda: runs.started()[tid] == 1, what="the task to start")
    # When a second master starts with the same hostname in another PID namespace (a container):
    # there the first one's pids mean nothing, or another process
    b = masters("-c", "1", "-A", "faultapp", "--queues", "a",
                wrap=["unshare", "--pid", "--fork", "--mount-proc"])
    b.wait_log("children are ready")
    # Then it does not reap the first master's live worker: the task runs once
    assert client.wait(tid, timeout=15) is None
    assert runs.started()[tid] == 1 and runs.finished()[tid] == 1
    assert "requeued" not in b.log()
    table(("two masters, one hostname, two PID namespaces",
           f"task started {runs.started()[tid]} time(s); nothing requeued"))
