"""Two hosts as network namespaces: one master in a namespace of its own, reaching Redis over
a veth link, one on this host. The link is cut mid-load, then brought back."""

from __future__ import annotations

import random
import subprocess
import time
from types import SimpleNamespace

import pytest
from faultkit import Runs, wait_all
from master_proc import eventually
from needs import unavailable
from redis_server import RedisServer

import tq


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _link(ns: str, here: str, there: str, net: str) -> None:
    """A veth pair: NET.1 on this host, NET.2 in the namespace."""
    _ip("link", "add", here, "type", "veth", "peer", "name", there)
    _ip("link", "set", there, "netns", ns)
    _ip("addr", "add", f"{net}.1/30", "dev", here)
    _ip("link", "set", here, "up")
    _ip("netns", "exec", ns, "ip", "addr", "add", f"{net}.2/30", "dev", there)
    _ip("netns", "exec", ns, "ip", "link", "set", there, "up")


@pytest.fixture
def other_host(tmp_path):
    """A network namespace (the other host) with two links to this one: one to the Redis
    under test (10.231.N.0/30, the one the test cuts) and one to the recorder (10.232.N.0/30,
    the measuring device, never cut); each server listens on loopback and its link."""
    if subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                      capture_output=True).returncode != 0:
        unavailable("cannot create a PID namespace here (unshare --pid refused: run as root)")
    n = random.randint(1, 250)
    ns = f"tq-host{n}"
    try:
        _ip("netns", "add", ns)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        unavailable(f"cannot create a network namespace here (ip netns add refused: {exc}; "
                    "run as root, apt-get install iproute2)")
    servers: list[RedisServer] = []
    try:
        _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        _link(ns, f"tqh{n}", f"tqn{n}", f"10.231.{n}")
        _link(ns, f"tqrh{n}", f"tqrn{n}", f"10.232.{n}")
        for name, net in (("redis", f"10.231.{n}"), ("recorder", f"10.232.{n}")):
            servers.append(RedisServer(tmp_path / name, extra=[
                "--bind", "127.0.0.1", f"{net}.1", "--protected-mode", "no"]).start())
        server, recorder = servers
        yield SimpleNamespace(
            ns=ns, link=f"tqh{n}", server=server, recorder=recorder,
            remote_url=f"redis://10.231.{n}.1:{server.port}/0",
            remote_recorder=f"redis://10.232.{n}.1:{recorder.port}/0")
    finally:
        for s in servers:
            s.stop()
        for link in (f"tqh{n}", f"tqrh{n}"):
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_a_host_cut_off_mid_load_loses_nothing_and_holds_nothing_after(other_host, masters,
                                                                       table, monkeypatch):
    host, server = other_host, other_host.server
    link = host.link
    monkeypatch.setenv("TQ_TEST_RECORDER_URL", host.recorder.url)
    runs = Runs(host.recorder.client())
    ttl = 3
    # Given 400 tasks and two masters on two hosts working through them
    client = tq.Client(server.url)
    ids = client.enqueue_many([{"type": "job", "queue": "a", "payload": {"n": i, "s": 0.05}}
                               for i in range(400)])
    common = ("-c", "2", "-A", "faultapp", "--queues", "a", "--heartbeat-ttl", str(ttl))
    # the other host: its own network and its own PID namespace (else this host would know
    # its processes for its own, by boot id and PID namespace, and kill them when they fall
    # silent, as it should for a worker of its own machine)
    cut_host = masters(*common, url=host.remote_url, env={
        "TQ_TEST_RECORDER_URL": host.remote_recorder}, wrap=[
        "ip", "netns", "exec", host.ns, "unshare", "--pid", "--fork", "--mount-proc"])
    other = masters(*common, url=server.url)
    cut_host.wait_log("children are ready")   # its pids are another namespace's
    other.wait_ready(2)
    eventually(lambda: sum(runs.finished().values()) >= 60 and len(
        {pid for i in ids[:100] for pid in runs.pids(i)}) == 4, timeout=30,
               what="60 tasks to finish before the cut, on both hosts")
    # When the cut host's link goes down mid-load
    _ip("link", "set", link, "down")
    cut = time.monotonic()
    # Then the other host requeues what the cut host's workers held, within the TTL + a reap
    other.wait_log("requeued", timeout=ttl + 15)
    requeued_after = time.monotonic() - cut
    # and when the link comes back, the cut host goes on without holding anything it does not
    # run (stale acks refused, late claims handed back)
    time.sleep(2)   # the fault's length, not a wait for something: the cut lasts 2 s more
    _ip("link", "set", link, "up")
    states = wait_all(client, ids, 120)
    lost, dup = runs.lost_and_duplicated(ids)

    def holding() -> dict[str, int]:
        conn = server.client()
        held = {k.decode(): conn.llen(k) for k in conn.scan_iter("tq:{a}:proc:*")}
        return {k: n for k, n in held.items() if n} | (
            {"run": conn.hlen("tq:{a}:run")} if conn.hlen("tq:{a}:run") else {})

    # every task ended; nothing stays claimed ("running") on any live worker afterwards
    eventually(lambda: holding() == {}, timeout=15, what="no claimed task left anywhere")
    table(("two hosts (netns), one cut off for ttl+2 s",
           f"its tasks requeued {requeued_after:.1f}s after the cut (ttl {ttl}s); lost "
           f"{len(lost)}, duplicated {len(dup)} (tasks that ran on the cut host and ran again "
           f"on the other: unavoidable, their acks could not reach Redis)"))
    assert lost == [] and set(states.values()) == {"succeeded"}
    if dup:   # a task the cut host finished during the cut: its ack came back stale, refused
        cut_host.wait_log("stale claim")
    assert requeued_after <= ttl + 5 + 2
    assert cut_host.proc.poll() is None and "Traceback" not in cut_host.log()
    assert other.proc.poll() is None and "Traceback" not in other.log()
    client.close()
