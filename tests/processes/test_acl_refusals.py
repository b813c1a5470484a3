"""A Redis user short of a grant: a master says at start which grants to add and exits 1; one
whose grant is taken away while it runs logs the refusal once, retries, and recovers when it
is granted again (the refusal is no crash, like an outage)."""

from __future__ import annotations

import os
import signal

import pytest
from acl_users import AclUsers, documented_rules
from master_proc import eventually

import tq


@pytest.fixture
def users(redis_url, redis_server):
    made = AclUsers([redis_server], cluster=False)
    yield made
    made.remove()


def master_rule() -> str:
    return documented_rules()["tq"]


@pytest.mark.parametrize(("change", "told"), [
    ("-@scripting", "grant +@scripting"),
    ("-hsetnx -blpop", "grant +blpop +hsetnx"),
    ("resetkeys ~other:*", "grant +@read ~tq:* +@write"),
])
def test_a_master_short_of_a_grant_exits_1_naming_it(users, masters, change, told):
    url = users.make("tq", f"{master_rule()} {change}")
    m = masters("-c", "1", "-A", "procapp", url=url)
    assert m.wait_exit(20) == 1
    log = m.log()
    assert told in log and "which a master and its children need" in log, log
    assert "Traceback" not in log and "s3cret" not in log


def test_a_cluster_user_without_the_slot_map_is_told_to_grant_it(redis_cluster, masters):
    users = AclUsers(redis_cluster.live(), cluster=True)
    try:
        url = users.make("tq", master_rule(), cluster_grant=False)
        with pytest.raises(tq.NoPermission, match=r"grant \+cluster\|slots"):
            tq.Client(url)
        m = masters("-c", "1", "-A", "procapp", url=url)
        assert m.wait_exit(20) == 1
        assert "grant +cluster|slots" in m.log() and "Traceback" not in m.log()
    finally:
        users.remove()


def test_a_grant_taken_away_while_it_runs_is_said_once_and_waited_for(users, masters):
    # Given a master of the documented user, one child running a task
    url = users.make("tq", master_rule())
    m = masters("-c", "2", "-A", "aclapp", url=url)
    m.wait_ready(2)
    with tq.Client(url) as client:
        tid = client.enqueue("acl.slow", {"s": 30})
        eventually(lambda: client.get(tid).state == "running", what="the task to run")
        pid = next(w["pid"] for w in client.broker.registry("workers")
                   if w["id"] == client.get(tid).worker)
        # When its user may no longer run scripts, and the child running the task dies
        users.change("tq", "-evalsha")
        os.kill(pid, signal.SIGKILL)
        # Then the master goes on, retrying its bookkeeping and the requeue (Redis refused
        # many calls) while it said so once, naming the grant
        eventually(lambda: sum(e["count"] for e in users.refusals("tq")) >= 20, 20,
                   what="refusals retried")
        assert m.proc.poll() is None
        said = [line for line in m.log().splitlines() if "grant +evalsha" in line]
        assert len([line for line in said if " master[" in line]) == 1, said
        assert "Traceback" not in m.log()
        # and once it may again, the dead child's task is requeued and runs
        users.change("tq", "+evalsha")
        assert client.wait(tid, timeout=30) == 2
    m.signal(signal.SIGTERM)
    assert m.wait_exit(30) == 0
    assert "Traceback" not in m.log()
