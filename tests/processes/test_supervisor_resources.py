"""Resources and faults around the children: memory, task counts, hangs, Redis going away."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest
from master_proc import eventually
from redis_server import RedisServer

import tq

pytestmark = pytest.mark.slow


def test_a_child_over_its_memory_limit_is_replaced_after_its_task(masters, client):
    m = masters("-c", "1", "-A", "procapp", "--max-memory-per-child", "40")
    m.wait_ready(1)
    first = client.wait(client.enqueue("alloc", {"mb": 60}), timeout=10)["pid"]
    m.wait_log("replacing it after its current task")
    eventually(lambda: m.child_pids() and first not in m.child_pids(), what="a new child")
    assert client.wait(client.enqueue("alloc", {"mb": 1}), timeout=10)["pid"] != first
    m.wait_log("exited [memory]")


def test_memory_is_the_childs_own_not_pages_shared_with_the_master(masters, client, tmp_path):
    # A preloaded module holding 80 MB is shared with every child: it must not count.
    (tmp_path / "bigapp.py").write_text(
        "import os, tq\nBIG = os.urandom(80 * 1024 * 1024)\n"
        "@tq.handler('pid')\ndef pid(payload, ctx):\n    return os.getpid()\n")
    m = masters("-c", "1", "-A", "bigapp", "--preload", "--max-memory-per-child", "50",
                cwd=tmp_path)
    m.wait_ready(1)
    first = client.wait(client.enqueue("pid", {}), timeout=10)

    def measured() -> int:   # the child's own memory as the master last measured it
        kids = [c for m_ in client.broker.registry("masters") for c in m_.get("children", [])]
        return kids[0]["uss"] if kids and kids[0]["pid"] == first else 0
    uss = eventually(measured, what="the master to measure the child")
    assert uss < 50 * 2**20   # 80 MB shared with the master do not count
    assert client.wait(client.enqueue("pid", {}), timeout=10) == first
    assert "replacing it" not in m.log()


def test_max_tasks_per_child_recycles_children(masters, client):
    m = masters("-c", "1", "-A", "procapp", "--max-tasks-per-child", "3", "--prefetch", "1")
    m.wait_ready(1)
    pids = [client.wait(client.enqueue("pid", {}), timeout=10) for _ in range(7)]
    assert len(set(pids)) == 3 and pids[0] == pids[2] != pids[3]
    m.wait_log("[max_tasks]")


def test_a_child_hung_while_idle_is_replaced(masters):
    m = masters("-c", "1", "-A", "procapp", "--heartbeat-ttl", "1")
    m.wait_ready(1)
    (child,) = m.child_pids()
    os.kill(child, signal.SIGSTOP)   # frozen: no heartbeat
    m.wait_log("stopped reporting while idle", timeout=10)
    eventually(lambda: m.child_pids() and child not in m.child_pids(), what="a replacement")


def test_redis_stopped_under_load_then_back_loses_nothing(masters, tmp_path):
    # Given a master working through a backlog on a Redis with persistence
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    try:
        c = tq.Client(server.url)
        ids = c.enqueue_many([("work", {"s": 0.02})] * 300)
        m = masters("-c", "2", "-A", "procapp", url=server.url)
        m.wait_ready(2)
        eventually(lambda: c.stats()["total"]["succeeded"] >= 30, what="work under way")
        # When Redis goes away for a while and comes back
        server.stop()
        m.wait_log("Redis unavailable", timeout=10)
        time.sleep(8)
        server.start()
        # Then every task completes, and both children are working again
        for tid in ids:
            c.wait(tid, timeout=60)
        assert c.stats()["total"]["succeeded"] >= 300
        r = server.client()
        r.delete("test:started")
        more = c.enqueue_many([("work", {"s": 0.2})] * 4)
        for tid in more:
            c.wait(tid, timeout=20)
        assert len({e.split(b"|")[1] for e in r.lrange("test:started", 0, -1)}) == 2
        assert m.proc.poll() is None
    finally:
        server.stop()


def test_redis_that_may_evict_keys_is_refused(masters, rconn):
    rconn.config_set("maxmemory-policy", "allkeys-lru")
    m = masters("-c", "1", "-A", "procapp")
    assert m.wait_exit(10) == 1
    assert "maxmemory-policy=allkeys-lru" in m.log()
    m2 = masters("-c", "1", "-A", "procapp", "--allow-eviction")
    m2.wait_ready(1)


def test_process_titles_explain_themselves(masters, client, rconn):
    import psutil

    m = masters("-c", "2", "-A", "procapp")
    m.wait_ready(2)
    eventually(lambda: "children=2/2" in " ".join(psutil.Process(m.pid).cmdline()),
               what="the master's title")
    assert "tq-master: app=procapp" in " ".join(psutil.Process(m.pid).cmdline())
    client.enqueue("work", {"s": 3})
    eventually(lambda: any("busy work" in " ".join(c.cmdline()) for c in m.children()),
               what="a busy child's title")
    eventually(lambda: any("idle" in " ".join(c.cmdline()) for c in m.children()),
               what="the other child's idle title")   # titles render twice a second


def test_pidfile_is_written_and_removed(masters, tmp_path):
    pidfile = tmp_path / "run" / "tq.pid"
    m = masters("-c", "1", "-A", "procapp", "--pidfile", str(pidfile))
    m.wait_ready(1)
    assert int(pidfile.read_text()) == m.pid
    m.signal(signal.SIGTERM)
    assert m.wait_exit() == 0
    assert not pidfile.exists()


def test_a_metrics_port_in_use_stops_the_start_in_one_line(masters, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        m = masters("-c", "1", "-A", "procapp", "--metrics-bind", f"127.0.0.1:{port}",
                    "--pidfile", str(tmp_path / "tq.pid"))
        assert m.wait_exit(20) == 2
    assert f"--metrics-bind 127.0.0.1:{port}: cannot listen there" in m.log()
    assert "Traceback" not in m.log()
    assert not (tmp_path / "tq.pid").exists()   # nothing left behind


def test_a_redis_that_refuses_writes_for_a_while_is_waited_out(masters, client, rconn):
    # OOM under noeviction (or READONLY after a failover) refuses writes: not a reason to die
    m = masters("-c", "2", "-A", "procapp")
    m.wait_ready(2)
    rconn.config_set("maxmemory", "1")
    try:
        m.wait_log("Redis unavailable", timeout=10)
        time.sleep(2)   # let the refusal last a few heartbeats and claims (the outage itself)
        assert m.proc.poll() is None and len(m.child_pids()) == 2
    finally:
        rconn.config_set("maxmemory", "0")
    assert client.wait(client.enqueue("pid", {}), timeout=15) in m.child_pids()
    assert "worker crashed" not in m.log() and "Traceback" not in m.log()


def test_two_masters_do_not_reap_each_other_after_an_outage_longer_than_the_ttl(masters,
                                                                                tmp_path):
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    try:
        c = tq.Client(server.url)
        a = masters("-c", "1", "-A", "procapp", "--heartbeat-ttl", "2", url=server.url)
        b = masters("-c", "1", "-A", "procapp", "--heartbeat-ttl", "2", url=server.url)
        a.wait_ready(1)
        b.wait_ready(1)
        ids = c.enqueue_many([("work", {"s": 6})] * 2)
        eventually(lambda: server.client().llen("test:started") == 2, what="both running")
        server.stop()
        time.sleep(5)   # the outage: longer than the 2 s TTL
        server.start()
        for tid in ids:
            assert c.wait(tid, timeout=30)["attempt"] == 1   # neither was requeued
        assert server.client().llen("test:started") == 2
        for m in (a, b):
            assert "requeued" not in m.log() and "forgetting" not in m.log()
    finally:
        server.stop()


def test_a_handlers_own_result_ttl_is_kept(masters, client, rconn):
    m = masters("-c", "1", "-A", "procapp")
    m.wait_ready(1)
    tid = client.enqueue("brief", {})
    assert client.wait(tid, timeout=10) == "kept for two seconds"
    assert 0 < rconn.pttl(f"tq:{{brief}}:res:{tid}") <= 2000
    other = client.enqueue("pid", {})
    client.wait(other, timeout=10)
    assert rconn.ttl(f"tq:{{pid}}:res:{other}") > 86000   # the master's default, a day
