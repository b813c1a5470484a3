"""A producer in another language: examples/node (Node.js, the `redis` npm package) enqueues
tasks by tq wire protocol 1 (docs/protocol.md) that a real tq-master runs, and reads their
outcomes; tq's own client finds its tasks by id; its ids and bodies are what tq.Client makes
for the same inputs; the Lua it ships is the text tq loads."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from master_proc import eventually

import tq
from tq.ids import ID_LENGTH, created_ms, hint_of, new_id, queue_hint
from tq.packing import pack
from tq.store.keys import Keys
from tq.store.scripts import SCRIPTS
from tq.task import MAX_PAYLOAD_BYTES

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "node"
FILES = ("package.json", "package-lock.json", "tq.js", "producer.js", "enqueue.lua", "index.lua")
TQ = str(Path(sys.executable).with_name("tq"))
ALPHABET = set("-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        why = f"{name} missing (apt-get install nodejs npm)"
        if os.environ.get("CI"):
            pytest.fail(why)   # CI installs them: a skip there would hide a broken producer
        pytest.skip(why)
    return path


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example in a folder of its own, its locked dependencies installed (npm ci)."""
    node, npm = _tool("node"), _tool("npm")
    assert subprocess.run([node, "--version"], capture_output=True, check=True).returncode == 0
    folder = tmp_path_factory.mktemp("node-producer")
    for name in FILES:
        shutil.copy(EXAMPLE / name, folder / name)
    done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=folder,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return folder


def produce(app: Path, redis_url: str, *args: str, code: int = 0) -> list[dict]:
    """Run producer.js; its JSON lines, one per task."""
    done = subprocess.run([shutil.which("node") or "node", "producer.js", "--url", redis_url,
                           *args], cwd=app, capture_output=True, text=True, timeout=120)
    assert done.returncode == code, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return [json.loads(line) for line in done.stdout.splitlines()]


def node_eval(app: Path, script: str, data: object) -> object:
    """Run JavaScript with the example's tq.js as `tq` and `data` as `input`; what it prints
    (JSON)."""
    code = f"const tq = require('./tq'); const input = JSON.parse(require('fs')" \
           f".readFileSync(0, 'utf8')); {script}"
    done = subprocess.run([shutil.which("node") or "node", "-e", code], cwd=app, text=True,
                          input=json.dumps(data), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def client_body(task_type: str, payload: dict, queue: str | None = None, priority: int = 0,
                max_retries: int | None = None, timeout: float | None = None) -> str:
    """The body tq.Client.enqueue writes for these inputs (tq.packing.pack, without keys)."""
    _, args, _ = pack(task_type, payload, queue, priority, None, None, max_retries, timeout,
                      None, None, ring=None, max_bytes=MAX_PAYLOAD_BYTES, keys=Keys())
    return args[1]


def check_id(task_id: str, queue: str, since_ms: int, until_ms: int) -> None:
    """An id of tq's format: 17 characters of the alphabet, its time, its queue's hint."""
    assert len(task_id) == ID_LENGTH and set(task_id) <= ALPHABET, task_id
    assert queue_hint(task_id) == hint_of(queue), task_id
    assert since_ms <= created_ms(task_id) <= until_ms, task_id


# -- the script it ships ------------------------------------------------------------------------
def test_the_shipped_scripts_are_the_text_tq_loads_and_tq_protocol_prints():
    for name in ("enqueue", "index"):
        assert (EXAMPLE / f"{name}.lua").read_bytes() == getattr(SCRIPTS, name).source.encode(), \
            f"examples/node/{name}.lua is not what tq loads: is the change compatible with " \
            f"the copies producers ship (docs/protocol.md, Versions)? Then `tq protocol " \
            f"script {name} > examples/node/{name}.lua`"
    shipped = (EXAMPLE / "enqueue.lua").read_bytes()
    printed = subprocess.run([TQ, "protocol", "script", "enqueue"], capture_output=True,
                             check=True).stdout
    assert printed == shipped
    sha = subprocess.run([TQ, "protocol", "script", "enqueue", "--sha"], capture_output=True,
                         text=True, check=True).stdout
    assert sha == SCRIPTS.enqueue.sha + "\n"
    version = subprocess.run([TQ, "protocol"], capture_output=True, text=True, check=True)
    assert version.stdout == "tq wire protocol 1\n"


# -- end to end (a standalone Redis, and a Redis Cluster) --------------------------------------
@pytest.mark.cluster_too
def test_a_master_runs_what_node_enqueues_and_node_reads_the_outcomes(app, masters, redis_url,
                                                                      client, rconn):
    m = masters("-c", "2", "-A", "polyglotapp", "-Q", "greet,polyglot,boom")
    m.wait_ready(2)
    # Given tasks of type == queue, with a payload that needs escaping and UTF-8
    template = {"name": "Ada «Lovelace»", "note": 'say "hi"\n\ttab \\ \u0001 end', "n": [1, 2.5]}
    since = int(time.time() * 1000)
    lines = produce(app, redis_url, "--type", "greet", "--count", "5",
                    "--payload", json.dumps(template))
    until = int(time.time() * 1000)
    # Then every one ran, and its result came back to Node
    assert [x["state"] for x in lines] == ["succeeded"] * 5
    for i, x in enumerate(lines):
        payload = {**template, "i": i}
        assert x["result"] == {"hello": template["name"], "i": i, "type": "greet",
                               "queue": "greet", "max_retries": 0, "attempt": 1}
        assert x["body"] == client_body("greet", payload)
        check_id(x["id"], "greet", since, until)
        # and tq's client finds each by its id alone (the id's hint names the queue)
        info = client.get(x["id"])
        assert (info.state, info.queue, info.type, info.result) == \
            ("succeeded", "greet", "greet", x["result"])
        assert x["record"]["w"] == info.worker and x["attempts"] == 1

    # Given a type in another queue, with every header field a producer may set
    lines = produce(app, redis_url, "--type", "greet", "--queue", "polyglot", "--count", "3",
                    "--priority", "7", "--max-retries", "2", "--timeout", "2.5")
    for i, x in enumerate(lines):
        assert x["state"] == "succeeded"
        assert x["result"] == {"hello": None, "i": i, "type": "greet", "queue": "polyglot",
                               "max_retries": 2, "attempt": 1}   # the task's own, not 0
        assert x["body"] == client_body("greet", {"i": i}, "polyglot", 7, 2, 2.5)
        assert x["body"] == f'{{"t":"greet","r":7,"m":2,"o":2.5,"p":{{"i":{i}}}}}'
        assert client.get(x["id"]).queue == "polyglot"

    # Given a task whose handler fails for good: Node reads its dead letter's error
    [dead] = produce(app, redis_url, "--type", "boom")
    assert dead["state"] == "dead"
    assert (dead["error"]["kind"], dead["error"]["message"]) == ("permanent", "no luck for task 0")
    info = client.get(dead["id"])
    assert (info.state, info.error, info.error_kind) == ("dead", "no luck for task 0", "permanent")
    assert {"greet", "polyglot", "boom"} <= set(client.queues())
    # and no waiter is left behind
    for q in ("greet", "polyglot", "boom"):
        assert rconn.hlen(f"tq:{{{q}}}:waiters") == 0


@pytest.mark.cluster_too
def test_tq_sees_what_node_enqueued_before_anything_runs(app, redis_url, client, rconn,
                                                        backend):
    # Given tasks enqueued by Node with no master running
    since = int(time.time() * 1000)
    ready = produce(app, redis_url, "--type", "report", "--queue", "slow", "--count", "3",
                    "--priority", "3", "--max-retries", "5", "--timeout", "60", "--wait", "0")
    later = produce(app, redis_url, "--type", "report", "--queue", "slow", "--delay", "3600",
                    "--payload", '{"day": "2030-01-01"}', "--wait", "0")
    until = int(time.time() * 1000)
    assert [x["state"] for x in ready + later] == ["enqueued"] * 4
    # Then they are where tq.Client would have put them, as tq.Client would have written them
    ids = [x["id"] for x in ready]
    assert [i.decode() for i in rconn.lrange("tq:{slow}:ready:3", 0, -1)] == ids
    for i, x in enumerate(ready):
        check_id(x["id"], "slow", since, until)
        assert rconn.hget("tq:{slow}:tasks", x["id"]).decode() == x["body"] == \
            client_body("report", {"i": i}, "slow", 3, 5, 60)
        info = client.get(x["id"])
        assert (info.state, info.type, info.queue, info.priority, info.payload,
                info.max_retries, info.timeout) == ("queued", "report", "slow", 3, {"i": i},
                                                    5, 60.0)
    info = client.get(later[0]["id"])
    assert info.state == "scheduled" and info.payload == {"day": "2030-01-01", "i": 0}
    assert since / 1000 + 3590 < info.eta < until / 1000 + 3610   # Redis' clock + 3600 s
    # the masters' agenda knows when (on a cluster: Node applied the script's report, index.lua)
    agenda = "tq:{#}:due" if backend == "cluster" else "tq:due"
    assert rconn.zscore(agenda, "slow") == info.eta * 1000
    assert client.stats()["by_queue_type"]["slow"]["report"]["enqueued"] == 4
    assert client.queue_sizes()["slow"]["ready"] == 3 and "slow" in client.queues()
    # and tq's client can cancel them like its own
    assert client.cancel(later[0]["id"]) == "cancelled"
    assert client.get(later[0]["id"]).state == "cancelled"


@pytest.mark.cluster_too
def test_a_waiting_node_producer_hears_of_a_cancel_a_delete_and_a_purge(app, redis_url, client,
                                                                        rconn):
    # Given Node waiting for three delayed tasks (no master)
    proc = subprocess.Popen([shutil.which("node") or "node", "producer.js", "--url", redis_url,
                             "--type", "report", "--count", "3", "--delay", "3600",
                             "--wait", "60"], cwd=app, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        ids = eventually(lambda: [i.decode() for i in rconn.zrange("tq:{report}:sched", 0, -1)]
                         if rconn.zcard("tq:{report}:sched") == 3 else None, 30,
                         what="the delayed tasks")
        assert rconn.hlen("tq:{report}:waiters") == 3
        # When an operator cancels one, deletes one, and purges the queue
        assert client.cancel(ids[0]) == "cancelled"
        client.delete_scheduled([ids[1]], "report")
        assert client.purge("report") == 1
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Then Node hears of the first two (events) and finds the purged one gone (a purge sends
    # no event: its keys say so), long before its --wait deadline
    assert proc.returncode == 0, err
    states = {x["id"]: x["state"] for x in map(json.loads, out.splitlines())}
    assert states == {ids[0]: "cancelled", ids[1]: "deleted", ids[2]: "unknown"}
    assert rconn.hlen("tq:{report}:waiters") == 0


# -- ids and bodies, against tq's own code ------------------------------------------------------
QUEUES = ["a", "greet", "email", "tenant-42", "v2/thumbs@eu+1", "é-queue", "日本", "x" * 200,
          "_.-"]


def test_ids_carry_the_time_and_hint_tq_gives_them(app):
    times = [1, 63, 64, 1_700_000_000_000, int(time.time() * 1000), 2**42 - 1]
    got = node_eval(app, """
        const out = {crc: input.queues.map((q) => tq.crc32(Buffer.from(q, 'utf8'))),
                     hints: input.queues.map(tq.hintOf), ids: []};
        for (const q of input.queues) for (const t of input.times) out.ids.push(tq.newId(q, t));
        console.log(JSON.stringify(out));""", {"queues": QUEUES, "times": times})
    assert got["crc"] == [zlib.crc32(q.encode()) for q in QUEUES]
    assert got["hints"] == [hint_of(q) for q in QUEUES]
    assert hint_of("email") == "Zblo"   # the test vector of docs/protocol.md
    assert new_id(now_ms=1_700_000_000_000, queue="email")[:11] == "NjEtLV-Zblo"
    ids = iter(got["ids"])
    for q in QUEUES:
        for t in times:
            tid = next(ids)
            assert tid[:11] == new_id(now_ms=t, queue=q)[:11], (q, t)
            assert len(tid) == ID_LENGTH and set(tid) <= ALPHABET and created_ms(tid) == t
    # the 6 random characters take every character of the alphabet, evenly
    tails = "".join(node_eval(app, "console.log(JSON.stringify(Array.from({length: 2000}, "
                                   "() => tq.newId('q').slice(11))))", None))
    assert set(tails) == ALPHABET
    assert max(tails.count(c) for c in ALPHABET) < 4 * len(tails) / 64


def _random_payload(rnd: random.Random, depth: int = 0) -> dict:
    def value(d: int) -> object:
        kind = rnd.randrange(9 if d < 3 else 6)
        if kind == 0:
            return rnd.randrange(-2**53 + 1, 2**53)
        if kind == 1:
            return rnd.choice([0.5, -1.25, 2.5, 3.14159, 1e-3, 123456.789])
        if kind == 2:
            return rnd.choice([True, False, None])
        if kind in (3, 4, 5):
            return "".join(chr(rnd.choice([rnd.randrange(0, 0x80), rnd.randrange(0x80, 0x800),
                                           rnd.randrange(0x800, 0xD800),
                                           rnd.randrange(0x10000, 0x10FFFF)]))
                           for _ in range(rnd.randrange(12)))
        if kind in (6, 7):
            return [value(d + 1) for _ in range(rnd.randrange(4))]
        return _random_payload(rnd, d + 1)

    # (keys that are not integers: a JavaScript object puts those first, whatever the order)
    return {f"k{rnd.randrange(1000)}_{chr(rnd.randrange(0x20, 0x3000))}": value(depth)
            for _ in range(rnd.randrange(5))}


def test_bodies_are_byte_for_byte_what_tq_client_writes(app):
    rnd = random.Random(2028)
    cases = [{"type": "email", "queue": "email", "payload": {"to": "a@example.com"}},
             {"type": "email", "queue": "mail", "payload": {}, "priority": 9, "maxRetries": 0,
              "timeout": 30},
             {"type": "t", "queue": "q", "payload": {"x": 1}, "timeout": 1e-05},
             {"type": "t", "queue": "q", "payload": {"x": 1}, "timeout": 0.001},
             {"type": "t", "queue": "q", "payload": {"x": 1}, "timeout": 315360000},
             {"type": "é", "queue": "q", "payload": {"\u2028": "\u2029\x7f\x1f"}}]
    for _ in range(300):
        q = rnd.choice(QUEUES)
        cases.append({"type": rnd.choice([q, "greet"]), "queue": q,
                      "payload": _random_payload(rnd), "priority": rnd.randrange(10),
                      "maxRetries": rnd.choice([None, 0, 3, 1000]),
                      "timeout": rnd.choice([None, 1, 2.5, 0.25, 86400])})
    got = node_eval(app, "console.log(JSON.stringify(input.map((c) => tq.encodeBody(c))))",
                    cases)
    for case, body in zip(cases, got, strict=True):
        want = client_body(case["type"], case["payload"], case["queue"],
                           case.get("priority", 0), case.get("maxRetries"), case.get("timeout"))
        assert body == want, case
        decoded = tq.Task.from_body("X", case["queue"], body.encode())
        assert decoded.malformed is None and decoded.payload == case["payload"]
