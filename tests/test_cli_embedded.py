"""`tq embedded status|start|stop`, and tq commands on the embedded default."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from tq.cli import cli


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
    assert "state    running" in text and ".tq/redis.sock" in text

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
    result = run("-q", "status")
    assert result.exit_code == 0 and "using embedded" not in result.output
