"""The tq operator CLI against the test Redis: every command, its --json and its error paths."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from redis_server import free_port

import tq
from tq.cli import LAZY_COMMANDS, cli
from tq.store.broker import Broker

TQ = str(Path(sys.executable).with_name("tq"))


pytestmark = pytest.mark.cluster_too   # each test: on a standalone Redis, then on a Cluster


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def run_json(*args: str) -> object:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def fields(text: str) -> dict[str, str]:
    """`name  value` lines (render_task's output) as a dict."""
    return dict(re.split(r"\s{2,}", line, maxsplit=1) for line in text.splitlines()
                if re.search(r"\S\s{2,}\S", line))


def make_dead(broker: Broker, client: tq.Client, n: int, task_type: str = "email") -> list[str]:
    """n tasks claimed by a worker and failed for good, with an error and a traceback."""
    ids = [client.enqueue(task_type, {"n": i}) for i in range(n)]
    for task in broker.fetch("w-test", [task_type], max_tasks=n):
        broker.fail("w-test", task, f"boom {task.payload['n']}", retry=False,
                    traceback="Traceback (most recent call last):\nValueError: boom")
    assert all(client.get(i).state == "dead" for i in ids)
    return ids


# -- enqueue --------------------------------------------------------------------------------
def test_enqueue_one(client: tq.Client):
    result = run("enqueue", "email", "--payload", '{"to": "a@example.com"}', "--priority", "7",
                 "--queue", "mail", "--max-retries", "2")
    assert result.exit_code == 0, result.output
    info = client.get(result.stdout.strip())
    assert (info.type, info.queue, info.priority, info.state) == ("email", "mail", 7, "queued")
    assert info.payload == {"to": "a@example.com"} and info.max_retries == 2

    doc = run_json("enqueue", "report", "--delay", "60")
    assert client.get(doc["id"]).state == "scheduled"


@pytest.mark.parametrize("args, message", [
    (["email", "--payload", "{not json"], "not valid JSON"),
    (["email", "--payload", "[1, 2]"], "must be a JSON object"),
    (["email", "--priority", "10"], "10 is not in the range 0<=x<=9"),
    (["email", "--delay", "-1"], "-1"),
    ([], "give a TYPE"),
])
def test_enqueue_usage_errors_exit_2(client: tq.Client, args: list[str], message: str):
    result = run("enqueue", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert client.queue_sizes() == {}


def test_enqueue_rejected_by_the_client_exits_2(client: tq.Client):
    result = run("enqueue", "email", "--queue", "bad queue name")
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and "queue" in result.output


def test_enqueue_file_of_payloads_in_chunks(client: tq.Client, tmp_path: Path):
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps({"to": f"u{i}@example.com"}) + "\n" for i in range(2500)))

    doc = run_json("enqueue", "email", "--file", str(path), "--priority", "3")

    assert doc["enqueued"] == 2500 and len(set(doc["ids"])) == 2500
    assert client.queue_sizes()["email"]["by_priority"] == {3: 2500}
    assert client.get(doc["ids"][1234]).payload == {"to": "u1234@example.com"}


def test_enqueue_file_of_specs_from_stdin(client: tq.Client):
    lines = [{"type": "email", "payload": {"to": "a"}, "priority": 9},
             {"type": "image_processing", "payload": {"n": 1}, "delay": 30}]
    result = run("enqueue", "--file", "-", input="\n".join(map(json.dumps, lines)) + "\n\n")
    assert result.exit_code == 0, result.output
    ids = result.stdout.split()
    assert [client.get(i).state for i in ids] == ["queued", "scheduled"]
    assert client.get(ids[0]).priority == 9
    assert "enqueued 2 tasks" in result.output


def test_enqueue_file_with_invalid_json_writes_nothing(client: tq.Client, tmp_path: Path):
    path = tmp_path / "tasks.jsonl"
    path.write_text('{"type": "email"}\n{"type": oops}\n')
    result = run("enqueue", "--file", str(path))
    assert result.exit_code == 2
    assert f"Error: {path}: line 2: invalid JSON" in result.output
    assert client.queue_sizes() == {}

    path.write_text('{"payload": {}}\n')
    result = run("enqueue", "--file", str(path))
    assert result.exit_code == 2 and 'no "type"' in result.output


@pytest.mark.parametrize("bad, message", [
    ({"priority": 42}, "priority must be an integer from 0 to 9, not 42"),
    ({"payload": [1]}, "payload must be a JSON object"),
    ({"queue": "bad queue"}, "queue"),
    ({"delay": -1}, "delay must not be negative"),
    ({"colour": "red"}, "unknown options ['colour']"),
])
def test_enqueue_file_with_a_bad_line_after_the_first_chunk_writes_nothing(
        client: tq.Client, tmp_path: Path, bad: dict[str, object], message: str):
    """Every line is checked before any is sent: else the lines before the bad one would be
    enqueued, and a rerun of the fixed file would enqueue them twice."""
    path = tmp_path / "tasks.jsonl"
    specs = [{"type": "email", "payload": {"n": i}} for i in range(1500)]
    good = specs[1200]
    specs[1200] = {**good, **bad}
    path.write_text("".join(json.dumps(s) + "\n" for s in specs))

    result = run("enqueue", "--file", str(path))

    assert result.exit_code == 2
    assert result.output.splitlines()[-1].startswith(f"Error: {path}: line 1201: "), \
        result.output
    assert message in result.output
    assert client.queue_sizes() == {}

    specs[1200] = good   # the fixed file, run again: each task once
    path.write_text("".join(json.dumps(s) + "\n" for s in specs))
    assert run_json("enqueue", "--file", str(path))["enqueued"] == 1500
    assert client.queue_sizes()["email"]["ready"] == 1500


def test_enqueue_file_of_payloads_checks_each_against_the_size_limit(client: tq.Client,
                                                                     tmp_path: Path):
    path = tmp_path / "tasks.jsonl"
    payloads = [{"n": i} for i in range(1100)]
    payloads[1099] = {"blob": "x" * (2 * tq.task.DEFAULT_MAX_PAYLOAD_BYTES)}
    path.write_text("".join(json.dumps(p) + "\n" for p in payloads))
    result = run("enqueue", "email", "--file", str(path))
    assert result.exit_code == 2
    assert f"{path}: line 1100: task body is" in result.output
    assert "max_payload_bytes" in result.output
    assert client.queue_sizes() == {}


@pytest.mark.parametrize("args", [["--offset", "9223372036854775807"], ["--offset", "-1"],
                                  ["--limit", "99999999999999999999"], ["--limit", "0"]])
def test_dead_list_out_of_range_numbers_are_usage_errors(client: tq.Client, broker: Broker,
                                                         args: list[str]):
    make_dead(broker, client, 1)
    result = run("dead", "list", *args)
    assert result.exit_code == 2 and "is not in the range" in result.output, result.output


# -- get and wait ---------------------------------------------------------------------------
def test_get_text_and_json(client: tq.Client):
    task_id = client.enqueue("email", {"to": "a@example.com"}, priority=4)
    result = run("get", task_id)
    assert result.exit_code == 0
    shown = fields(result.stdout)
    assert shown["id"] == task_id and shown["state"] == "queued" and shown["priority"] == "4"
    assert shown["payload"] == '{"to":"a@example.com"}'
    assert shown["created"].endswith("ago)")

    doc = run_json("get", task_id)
    assert doc["id"] == task_id and doc["state"] == "queued" and doc["priority"] == 4


def test_get_unknown_id_exits_1(client: tq.Client):
    client.enqueue("email", {})
    result = run("get", "no-such-task")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == \
        "Error: no task with id 'no-such-task' (never enqueued, or its result expired)"


def test_wait_returns_the_result(client: tq.Client, broker: Broker):
    task_id = client.enqueue("email", {"to": "a"})
    (task,) = broker.fetch("w-test", ["email"])
    assert broker.ack("w-test", task, {"sent": True})

    result = run("wait", task_id, "--timeout", "5")
    assert result.exit_code == 0 and result.stdout.strip() == '{"sent":true}'
    assert run_json("wait", task_id) == {"id": task_id, "state": "succeeded",
                                         "result": {"sent": True}}


def test_wait_exits_124_on_timeout_and_1_when_dead(client: tq.Client, broker: Broker):
    queued = client.enqueue("email", {})
    started = time.monotonic()
    result = run("wait", queued, "--timeout", "0.3")
    assert result.exit_code == 124
    assert "did not finish within 0.3s (state: queued)" in result.output
    assert time.monotonic() - started < 3
    result = run("wait", queued, "--timeout", "0.1", "--json")
    assert result.exit_code == 124
    assert json.loads(result.stdout) == {"id": queued, "state": "queued", "timeout": 0.1}

    (dead_id,) = make_dead(broker, client, 1, "report")
    result = run("wait", dead_id)
    assert result.exit_code == 1 and f"Error: task {dead_id} is dead: boom 0" in result.output
    result = run("wait", dead_id, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"] == "boom 0"   # one JSON document, nothing else
    assert run("wait", "nope", "--timeout", "1").exit_code == 1


# -- dead letters ---------------------------------------------------------------------------
def test_dead_list_and_show(client: tq.Client, broker: Broker):
    ids = make_dead(broker, client, 3)
    result = run("dead", "list")
    assert result.exit_code == 0
    header, *rows = result.stdout.strip().splitlines()
    assert header.split() == ["ID", "TYPE", "QUEUE", "ATTEMPTS", "DIED", "ERROR"]
    assert sorted(r.split()[0] for r in rows) == sorted(ids)
    assert all("boom" in r for r in rows)

    docs = run_json("dead", "list", "--limit", "2")
    assert len(docs) == 2 and all(d["state"] == "dead" for d in docs)

    shown = run("dead", "show", ids[0])
    assert shown.exit_code == 0
    assert "ValueError: boom" in shown.stdout and fields(shown.stdout)["state"] == "dead"
    assert fields(shown.stdout)["error"] == "boom 0 (error)"
    assert run_json("dead", "show", ids[0])["traceback"].endswith("ValueError: boom")


def test_dead_show_of_a_live_task_exits_1(client: tq.Client):
    task_id = client.enqueue("email", {})
    result = run("dead", "show", task_id)
    assert result.exit_code == 1 and "not in the dead-letter queue (state: queued)" in \
        result.output


def test_dead_retry_some_and_all(client: tq.Client, broker: Broker):
    ids = make_dead(broker, client, 4)
    assert run_json("dead", "retry", ids[0]) == {"retried": 1}
    assert client.get(ids[0]).state == "queued"

    refused = run("dead", "retry", "--all", input="n\n")
    assert refused.exit_code == 1 and "Retry all 3 dead tasks?" in refused.output
    assert [client.get(i).state for i in ids[1:]] == ["dead"] * 3

    agreed = run("dead", "retry", "--all", input="y\n")
    assert agreed.exit_code == 0, agreed.output
    assert "retried 3 dead tasks" in agreed.stdout
    assert [client.get(i).state for i in ids] == ["queued"] * 4


def test_dead_delete_all_with_yes_and_by_queue(client: tq.Client, broker: Broker):
    mails = make_dead(broker, client, 2, "email")
    reports = make_dead(broker, client, 2, "report")
    result = run("dead", "delete", "--all", "--queue", "report", "--yes")
    assert result.exit_code == 0 and "deleted 2 dead tasks" in result.stdout
    assert client.queue_sizes()["report"]["dead"] == 0
    assert [client.get(i).state for i in mails] == ["dead", "dead"]
    with pytest.raises(tq.TaskNotFound):
        client.get(reports[0])


def test_dead_errors(client: tq.Client, broker: Broker):
    (dead_id,) = make_dead(broker, client, 1)
    live = client.enqueue("email", {})
    assert run("dead", "retry").exit_code == 2                 # neither ids nor --all
    assert run("dead", "retry", dead_id, "--all").exit_code == 2
    unknown = run("dead", "delete", "nope")
    assert unknown.exit_code == 1 and "no task with id 'nope'" in unknown.output
    not_dead = run("dead", "retry", dead_id, live)
    assert not_dead.exit_code == 1 and f"task {live} is not in the dead-letter" in \
        not_dead.output
    assert client.get(dead_id).state == "dead"                 # checked before acting
    assert run_json("dead", "delete", "--all", "--yes") == {"deleted": 1}
    assert run_json("dead", "retry", "--all") == {"retried": 0}   # nothing to ask about


# -- purge ----------------------------------------------------------------------------------
def test_purge_asks_first(client: tq.Client):
    for i in range(3):
        client.enqueue("email", {"n": i})
    client.enqueue("email", {}, delay=600)
    client.enqueue("report", {})

    refused = run("purge", "email", input="n\n")
    assert refused.exit_code == 1 and "Delete 4 waiting tasks of queue email?" in refused.output
    assert client.queue_sizes()["email"]["ready"] == 3

    assert run_json("purge", "email", "--yes") == {"queue": "email", "purged": 4}
    sizes = client.queue_sizes()
    assert sizes["email"]["ready"] + sizes["email"]["scheduled"] == 0
    assert sizes["report"]["ready"] == 1

    unknown = run("purge", "nosuch", "--yes")
    assert unknown.exit_code == 1 and "no queue named 'nosuch'" in unknown.output


# -- status, workers, stats -----------------------------------------------------------------
def _register_master(broker: Broker) -> None:
    now = time.time()
    children = [
        {"id": "m1-0", "index": 0, "pid": 4242, "state": "busy", "task": "task-123",
         "type": "image_processing", "since": now - 2.5, "rss": 47_000_000,
         "uss": 30_000_000, "cpu": 97.5, "processed": 10, "failed": 1},
        {"id": "m1-1", "index": 1, "pid": 4243, "state": "idle", "task": None, "type": None,
         "since": now - 30, "rss": 40_000_000, "uss": 25_000_000, "cpu": 0.0,
         "processed": 12, "failed": 0},
    ]
    info = {"id": "m1", "host": "web-1", "pid": 4241, "started": now - 100, "app": ["app"],
            "queues": ["email"], "concurrency": 2, "status": "running", "processed": 22,
            "failed": 1, "version": tq.__version__, "children": children}
    broker.heartbeat("m1", info, {c["id"]: {"id": c["id"], "master": "m1", "pid": c["pid"]}
                                  for c in children})
    broker.register_worker("lone-worker", {"id": "lone-worker", "host": "web-2", "pid": 99,
                                           "state": "idle", "queues": ["email"]})


def test_status_text_and_json(client: tq.Client, broker: Broker):
    client.enqueue("email", {}, priority=9)
    client.enqueue("email", {})
    client.enqueue("email", {}, delay=600)
    make_dead(broker, client, 1, "report")
    _register_master(broker)

    result = run("status")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "processed/s" in text and "failed/s" in text
    email_row = next(line for line in text.splitlines() if line.startswith("email "))
    assert email_row.split() == ["email", "2", "9:1", "0:1", "1", "0", "0", "0", "ok"]
    assert "web-1" in text and "running" in text and "2/2" in text
    busy = next(line for line in text.splitlines() if line.startswith("m1-0"))
    assert "4242" in busy and "44.8 MiB" in busy and "task-123" in busy
    assert re.search(r" [23]\.\ds$", busy)   # its task started 2.5 s before the command ran
    assert " 98% " in busy
    assert "lone-worker" in text

    doc = run_json("status")
    assert doc["queues"]["email"]["by_priority"] == {"9": 1, "0": 1}
    assert doc["queues"]["report"]["dead"] == 1
    assert set(doc["rates"]) == {"processed", "failed"}
    (master,) = doc["masters"]
    assert master["host"] == "web-1" and len(master["children"]) == 2
    assert 2 <= master["children"][0]["task_age"] < 60
    assert [w["id"] for w in doc["workers"]] == ["lone-worker"]


def test_status_of_an_empty_system(redis_url: str):
    result = run("status")
    assert result.exit_code == 0
    assert "no queues yet" in result.stdout and "no masters or workers" in result.stdout


def test_workers(client: tq.Client, broker: Broker):
    _register_master(broker)
    doc = run_json("workers")
    assert [m["id"] for m in doc["masters"]] == ["m1"]
    text = run("workers").stdout
    assert "MASTER" in text and "CHILD" in text and "m1-1" in text


def test_stats(client: tq.Client, broker: Broker):
    client.enqueue("email", {})
    make_dead(broker, client, 2, "report")
    doc = run_json("stats")
    assert doc["total"]["enqueued"] == 3 and doc["total"]["dead"] == 2
    assert doc["by_type"]["report"]["dead"] == 2
    assert set(doc) >= {"by_queue", "rates", "latency"}
    text = run("stats").stdout
    report = next(line for line in text.splitlines() if line.startswith("report"))
    assert report.split() == ["report", "2", "2", "0", "2", "0", "2", "0"]


# -- the group: Redis, namespace, config, errors -------------------------------------------
def test_unreachable_redis_is_one_line_with_the_password_hidden(redis_url: str):
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    for args in (["status"], ["get", "x"], ["enqueue", "email"], ["dead", "list"]):
        result = run("--redis-url", url, *args)
        assert result.exit_code == 1
        last = result.output.strip().splitlines()[-1]
        assert last.startswith(f"Error: Redis at redis://***@127.0.0.1:{url.split(':')[3]}")
        assert "s3cret" not in result.output


def test_namespace_and_config_file(client: tq.Client, tmp_path: Path, redis_url: str,
                                   monkeypatch: pytest.MonkeyPatch):
    config = tmp_path / "tq.toml"
    config.write_text(f'[tq]\nredis_url = "{redis_url}"\nnamespace = "other"\n')
    monkeypatch.delenv("TQ_REDIS_URL")
    assert run("--config", str(config), "enqueue", "email").exit_code == 0
    assert client.queue_sizes() == {}                     # not in the default namespace
    with tq.Client(redis_url, namespace="other") as other:
        assert other.queue_sizes()["email"]["ready"] == 1
    assert run("--namespace", "bad name", "status").exit_code == 2
    broken = tmp_path / "broken.toml"
    broken.write_text("redis_url = \n")
    result = run("--config", str(broken), "status")
    assert result.exit_code == 2 and "not valid TOML" in result.output


def test_group_hands_its_settings_to_lazy_commands(redis_url: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "probe_cmd.py").write_text(
        "import json, click\n"
        "@click.command()\n@click.pass_context\n"
        "def probe(ctx):\n    click.echo(json.dumps(ctx.obj))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(LAZY_COMMANDS, "probe", ("probe_cmd:probe", "a test probe"))
    monkeypatch.setitem(LAZY_COMMANDS, "missing", ("no_such_module_xyz:cmd", "not there"))

    assert "a test probe" in run("--help").stdout
    result = run("--namespace", "ns1", "probe")
    assert json.loads(result.stdout) == {"redis_url": redis_url, "namespace": "ns1",
                                         "config_file": None}
    missing = run("missing", "--anything")
    assert missing.exit_code == 1 and "`tq missing` is not available" in missing.output


def test_help_does_not_import_the_dashboard():
    code = ("import sys\nfrom tq.cli import cli\n"
            "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('tq.dashboard.cli' in sys.modules, 'waitress' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, check=True)
    assert re.search(r"\n  dashboard +Serve the web dashboard\.", out.stdout)
    assert out.stdout.strip().splitlines()[-1] == "False False"


def test_dashboard_is_registered(redis_url: str):
    result = run("dashboard", "--help")
    assert result.exit_code == 0 and "--bind" in result.stdout


def test_the_installed_binary(redis_url: str, tmp_path: Path):
    env = {**os.environ, "TQ_REDIS_URL": redis_url}
    enq = subprocess.run([TQ, "enqueue", "email", "-p", '{"to": "a@example.com"}'],
                         capture_output=True, text=True, timeout=30, env=env, cwd=tmp_path)
    assert enq.returncode == 0, enq.stderr
    assert "tq: using Redis at" in enq.stderr                  # which Redis, on stderr
    status = subprocess.run([TQ, "status", "--json"], capture_output=True, text=True,
                            timeout=30, env=env, cwd=tmp_path)
    assert status.returncode == 0
    assert json.loads(status.stdout)["queues"]["email"]["ready"] == 1
    bad = subprocess.run([TQ, "enqueue", "email", "-p", "{"], capture_output=True, text=True,
                         timeout=30, env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr
    gone = subprocess.run([TQ, "get", "nope"], capture_output=True, text=True, timeout=30,
                          env=env, cwd=tmp_path)
    assert gone.returncode == 1 and gone.stderr.strip().endswith("its result expired)")
