"""Signals to the master: drain, stop now, reload, scale."""

from __future__ import annotations

import signal
import textwrap

import pytest
from master_proc import eventually

pytestmark = pytest.mark.slow


def runs(rconn, event: str) -> list[str]:
    return [e.split(b"|")[0].decode() for e in rconn.lrange(f"test:{event}", 0, -1)]


def test_sigterm_lets_running_tasks_finish_and_leaves_the_queue_intact(masters, client, rconn):
    m = masters("-c", "2", "-A", "procapp", "--prefetch", "1")
    m.wait_ready(2)
    ids = client.enqueue_many([("work", {"s": 0.6})] * 6)
    eventually(lambda: len(runs(rconn, "started")) == 2, what="two tasks running")
    m.signal(signal.SIGTERM)
    assert m.wait_exit(15) == 0
    running = runs(rconn, "started")
    assert sorted(runs(rconn, "finished")) == sorted(running)   # both finished, none more
    for tid in running:
        assert client.get(tid).state == "succeeded"
    sizes = client.queue_sizes()["work"]
    assert sizes["ready"] == 4 and sizes["running"] == 0
    assert {client.get(t).state for t in ids if t not in running} == {"queued"}
    assert "draining (SIGTERM)" in m.log()


def test_sigterm_requeues_a_task_longer_than_the_drain_timeout(masters, client, rconn):
    m = masters("-c", "1", "-A", "procapp", "--drain-timeout", "0.5")
    m.wait_ready(1)
    tid = client.enqueue("work", {"s": 30})
    eventually(lambda: runs(rconn, "started"), what="the task to start")
    m.signal(signal.SIGTERM)
    assert m.wait_exit(15) == 0
    info = client.get(tid)
    assert info.state == "queued"
    assert info.attempts == 0   # a drain is not the task's fault: no attempt counted
    assert "drain timeout" in m.log()


def test_second_sigint_stops_at_once_and_requeues(masters, client, rconn):
    m = masters("-c", "1", "-A", "procapp")
    m.wait_ready(1)
    tid = client.enqueue("work", {"s": 30})
    eventually(lambda: runs(rconn, "started"), what="the task to start")
    m.signal(signal.SIGINT)
    m.wait_log("draining (SIGINT)")
    m.signal(signal.SIGINT)
    assert m.wait_exit(10) == 0
    assert client.get(tid).state == "queued" and client.get(tid).attempts == 0


def test_sigquit_stops_at_once_and_requeues(masters, client, rconn):
    m = masters("-c", "2", "-A", "procapp")
    m.wait_ready(2)
    ids = client.enqueue_many([("work", {"s": 30})] * 2)
    eventually(lambda: len(runs(rconn, "started")) == 2, what="tasks to start")
    m.signal(signal.SIGQUIT)
    assert m.wait_exit(10) == 0
    assert [client.get(t).state for t in ids] == ["queued", "queued"]


def test_sigttin_and_sigttou_add_and_remove_a_child(masters):
    m = masters("-c", "2", "-A", "procapp")
    m.wait_ready(2)
    m.signal(signal.SIGTTIN)
    eventually(lambda: len(m.child_pids()) == 3, what="a third child")
    m.signal(signal.SIGTTOU)
    m.wait_log("one child fewer: 2")   # the same signal sent twice at once arrives once (POSIX)
    m.signal(signal.SIGTTOU)
    eventually(lambda: len(m.child_pids()) == 1, what="one child left")


def write_app(path, version: int) -> None:
    path.write_text(textwrap.dedent(f"""
        import time
        import tq
        VERSION = {version}

        @tq.handler("version")
        def version(payload, ctx):
            time.sleep(payload.get("s", 0))
            return VERSION
    """))


def hup_master(masters, tmp_path, concurrency: int):
    """A master on version 1 of hupapp, configured by tq.toml in tmp_path, children ready."""
    write_app(tmp_path / "hupapp.py", 1)
    (tmp_path / "tq.toml").write_text(f'app = "hupapp"\nconcurrency = {concurrency}\n')
    m = masters(cwd=tmp_path)
    m.wait_ready(concurrency)
    return m


def test_sighup_reloads_code_and_concurrency_without_losing_a_task(masters, client, tmp_path):
    # Given a master running version 1 of the app with one child (from its config file)
    m = hup_master(masters, tmp_path, 1)
    assert client.wait(client.enqueue("version", {}), timeout=10) == 1
    old = m.child_pids()
    busy = client.enqueue_many([("version", {"s": 0.3})] * 6)
    # When the code and the concurrency change and the master gets SIGHUP
    write_app(tmp_path / "hupapp.py", 2)
    (tmp_path / "tq.toml").write_text('app = "hupapp"\nconcurrency = 3\n')
    m.signal(signal.SIGHUP)
    m.wait_log("reload done", timeout=30)
    # Then three new children run the new code, the master kept its pid, nothing failed
    eventually(lambda: len(m.child_pids()) == 3, what="three children")
    assert not (m.child_pids() & old)
    assert m.proc.poll() is None
    assert client.wait(client.enqueue("version", {}), timeout=10) == 2
    for tid in busy:
        assert client.wait(tid, timeout=20) in (1, 2)
        assert client.get(tid).attempts == 1


def test_sighup_with_a_broken_module_keeps_the_old_children(masters, client, tmp_path):
    m = hup_master(masters, tmp_path, 2)
    old = m.child_pids()
    (tmp_path / "hupapp.py").write_text("raise ImportError('half-deployed')\n")
    m.signal(signal.SIGHUP)
    m.wait_log("reload failed, the running children stay")
    assert "half-deployed" in m.log()
    assert m.child_pids() == old
    assert client.wait(client.enqueue("version", {}), timeout=10) == 1


def test_sighup_with_an_invalid_config_keeps_running(masters, client, tmp_path):
    m = hup_master(masters, tmp_path, 1)
    (tmp_path / "tq.toml").write_text('app = "hupapp"\nconcurrency = "many"\n')
    m.signal(signal.SIGHUP)
    m.wait_log("reload: invalid configuration, keeping the current one")
    assert client.wait(client.enqueue("version", {}), timeout=10) == 1


def test_sighup_with_a_config_file_that_is_not_utf8_keeps_running(masters, client, tmp_path):
    m = hup_master(masters, tmp_path, 1)
    (tmp_path / "tq.toml").write_bytes(b'# caf\xe9\napp = "hupapp"\n')
    m.signal(signal.SIGHUP)
    m.wait_log("is not UTF-8 text")
    assert m.proc.poll() is None
    assert client.wait(client.enqueue("version", {}), timeout=10) == 1
