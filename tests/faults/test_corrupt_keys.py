"""A key of one queue written with the wrong type: that queue is set aside, the others run."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from faultkit import jobs, wait_all
from master_proc import eventually
from redis_server import free_port

import tq

TQ = str(Path(sys.executable).with_name("tq"))

# (key suffix of queue a, how to corrupt it): each a mistaken write an operator could make
CORRUPTIONS = {
    "ready:0": ("SET", "oops"),
    "tasks": ("SET", "oops"),
    "run": ("SET", "oops"),
    "sched": ("SET", "oops"),
    "wake": ("SET", "oops"),
    "stats": ("SET", "oops"),
    "seq": ("SET", "not-a-number"),
    "fails": ("LPUSH", "oops"),
}


SELF_HEALING = {"wake"}


def tq_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TQ, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("suffix", list(CORRUPTIONS))
def test_a_wrong_typed_key_is_contained_to_its_queue(suffix, masters, client, rconn, runs,
                                                      table):
    # Given a master serving queues a and b, and queue a holding tasks
    port = free_port()
    m = masters("-c", "2", "-A", "faultapp", "--queues", "a,b", "--metrics-bind",
                f"127.0.0.1:{port}")
    m.wait_ready(2)
    before = client.enqueue_many(jobs(20, "a"))
    wait_all(client, before, 20)
    waiting = client.enqueue_many(jobs(10, "a", delay=0.5))
    # When one key of queue a is overwritten with the wrong type
    cmd, value = CORRUPTIONS[suffix]
    key = f"tq:{{a}}:{suffix}"
    rconn.delete(key)
    rconn.execute_command(cmd, key, value)
    try:   # a producer is told when the key it writes is the corrupt one, and nothing is stored
        later_a = client.enqueue_many(jobs(10, "a"))
    except tq.QueueBroken as exc:
        assert key in str(exc) and "tq queue repair a" in str(exc)
        later_a = []
    # Then queue b keeps running at once, and the master stays up
    ids_b = client.enqueue_many(jobs(50, "b"))
    wait_all(client, ids_b, 20)
    assert m.proc.poll() is None
    if suffix in SELF_HEALING:
        # the claim script DELetes a wake list when it finds nothing to claim: the corrupt value
        # may be gone before anyone trips on it. Either way nothing is lost (checked below).
        eventually(lambda: rconn.exists("tq:{a}:broken") or rconn.type(key) != b"string",
                   timeout=15, what="queue a marked broken or healed")
        if not rconn.exists("tq:{a}:broken"):
            states = wait_all(client, later_a + waiting, 30)
            lost, dup = runs.lost_and_duplicated(later_a + waiting + ids_b)
            table((f"corrupt {suffix}", f"healed by the next empty claim; queue b "
                   f"{len(ids_b)}/{len(ids_b)}; lost {len(lost)}, duplicated {len(dup)}"))
            assert lost == [] and dup == [] and set(states.values()) == {"succeeded"}
            return
    eventually(lambda: rconn.exists("tq:{a}:broken"), timeout=15, what="queue a marked broken")
    mark = json.loads(rconn.get("tq:{a}:broken"))
    assert mark["key"] == key
    assert "BROKEN" in tq_cli("status").stdout
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    assert b'tq_queue_broken{queue="a"} 1.0' in metrics
    assert b'tq_queue_broken{queue="b"} 0.0' in metrics
    # The operator repairs it: the readable tasks of queue a run, none twice
    repaired = tq_cli("queue", "repair", "a", "--json")
    assert repaired.returncode == 0, repaired.stderr
    report = json.loads(repaired.stdout)
    if suffix in SELF_HEALING and not report["moved"]:
        # healed between the mark and the repair (an empty claim already in flight DELetes
        # the wake list): nothing left to move, the repair only clears the mark
        assert rconn.type(key) != b"string"
    else:
        assert key in report["moved"]
    assert not rconn.exists("tq:{a}:broken")
    readable = later_a + waiting if suffix != "tasks" else []
    if suffix == "tasks":   # the bodies went with the corrupt hash: each id says so, none is silent
        def kinds() -> set[str | None]:
            try:
                return {client.get(i).error_kind for i in waiting}
            except tq.TaskNotFound:   # still scheduled, body gone: promotion will bury it
                return set()
        eventually(lambda: kinds() == {"malformed"}, timeout=30, what="malformed dead letters")
    states = wait_all(client, readable, 30)
    lost, dup = runs.lost_and_duplicated(readable + ids_b)
    table((f"corrupt {suffix}", f"queue b {len(ids_b)}/{len(ids_b)} done; queue a after repair "
           f"{sum(s == 'succeeded' for s in states.values())}/{len(readable)}; lost {len(lost)}, "
           f"duplicated {len(dup)}"))
    assert lost == [] and dup == []
    assert m.proc.poll() is None
    # and b was never held up by a: the master logged the queue once, not a crash loop
    assert "crashed" not in m.log()
