"""Property tests over everything that enters tq from outside: enqueue arguments, raw bodies in
Redis, settings and --file lines. No input crashes a process or prints a traceback; every
refusal is a clear error; nothing that is accepted is changed on the way to the handler."""

from __future__ import annotations

import json
import math
import string
from pathlib import Path

import pytest
from click.testing import CliRunner
from faultkit import wait_all
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from master_proc import eventually

import tq
from tq.cli import cli as tq_cli
from tq.config import SETTINGS, load
from tq.errors import ConfigError
from tq.store.broker import Broker
from tq.task import MAX_PAYLOAD_DEPTH, Task

SLOW = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

numbers = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5))
keys = st.one_of(st.text(max_size=8), st.integers(-3, 3), st.booleans(), st.none(),
                 st.floats(allow_nan=False, allow_infinity=False, width=16))
leaves = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                   st.floats(allow_nan=True, allow_infinity=True),
                   st.text(alphabet=st.characters(), max_size=10))
payloads = st.recursive(leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)), max_leaves=30)


def nested(depth: int) -> dict:
    doc: dict = {}
    cur = doc
    for _ in range(depth):
        cur["x"] = {}
        cur = cur["x"]
    return doc


@SLOW
@given(payload=st.one_of(payloads, st.sampled_from([nested(MAX_PAYLOAD_DEPTH + 1),
                                                    nested(985), {"s": "\ud800"}])),
       max_retries=numbers, timeout=numbers, priority=numbers, delay=numbers)
def test_enqueue_refuses_clearly_or_delivers_exactly(redis_url, payload, max_retries, timeout,
                                                    priority, delay):
    options = {k: v for k, v in (("max_retries", max_retries), ("timeout", timeout),
                                 ("priority", priority), ("delay", delay)) if v is not None}
    with tq.Client(redis_url) as client:
        try:
            task_id = client.enqueue("prop", payload, **options)
        except ValueError as exc:   # PayloadError and ConfigError are ValueErrors
            assert str(exc)
            return
        except TypeError as exc:   # a payload that is not a dict at all
            assert not isinstance(payload, dict) and str(exc)
            return
    broker = Broker(redis_url)
    try:
        got = broker.claim("prop-worker", ["prop"], 100)
        task = next(t for t in got.tasks if t.id == task_id) if not options.get("delay") else \
            None
        if task is not None:   # what the worker decodes is what was accepted
            assert task.malformed is None
            expected = {} if payload is None else payload   # enqueue(type) means {}
            assert task.payload == json.loads(json.dumps(expected))
            assert task.max_retries == options.get("max_retries")
        broker.release("prop-worker", ["prop"])
    finally:
        broker.close()
    with tq.Client(redis_url) as client:
        client.purge("prop")


bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.builds(lambda head, p: ('{' + head + '"p":' + p + '}').encode(),
              st.sampled_from(['', '"m":73786976294838206464,', '"o":1e300,', '"r":12,',
                               '"t":"a b",', '"m":-1,', '"o":0,', '"m":true,', '"t":5,']),
              st.sampled_from(['{}', '[]', '3', '{"a":' * 3000 + '1' + '}' * 3000,
                               '[' * 5000 + ']' * 5000, '{"a":"\\ud800"}', '{"a":NaN}'])),
)


@settings(max_examples=400, deadline=None)
@given(body=bodies)
def test_the_decoder_always_gives_a_verdict(body):
    task = Task.from_body("id", "q", body)   # never raises, whatever Redis holds
    assert task.malformed is None or task.malformed.startswith("malformed task body (")
    if task.malformed is None:
        assert isinstance(task.payload, dict) and 0 <= task.priority <= 9


@pytest.mark.parametrize("setting", [s.name for s in SETTINGS])
@settings(max_examples=40, deadline=None)
@given(raw=st.one_of(st.text(max_size=12), numbers, st.sampled_from(
    ["1e17", "1e-300", "inf", "-0", "nan", "0", "99999999999999999999", "no.such.host:80",
     "127.0.0.1:0", "[::1]:9808", " 3 "])))
def test_every_setting_is_parsed_or_refused_in_one_line(setting, raw):
    try:
        load({setting: raw}, env={})
    except ConfigError as exc:
        text = str(exc)
        assert f"--{setting.replace('_', '-')}" in text and "\n" not in text
    if isinstance(raw, float) and not math.isfinite(raw) and setting.endswith(("ttl", "timeout")):
        with pytest.raises(ConfigError):
            load({setting: raw}, env={})


lines = st.lists(st.one_of(
    st.binary(max_size=60),
    st.sampled_from([b'{"type": "x", "payload": {}}', b"\xff\xfe\x00garbage",
                     b'{"type": "x", "max_retries": 9223372036854775808}',
                     b'{"type": "x", "payload": ' + b'[' * 100000 + b']' * 100000 + b'}',
                     b'{"type": "x", "payload": {"a": "\\ud800"}}', b"[1, 2]"])), max_size=5)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=lines)
def test_enqueue_file_is_all_or_nothing_with_a_line_number(redis_url, tmp_path_factory,
                                                           content):
    path = Path(tmp_path_factory.mktemp("file")) / "tasks.jsonl"
    path.write_bytes(b"\n".join(content) + b"\n")
    result = CliRunner().invoke(tq_cli, ["enqueue", "--file", str(path)])
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:   # one line (after the progress label), naming the line
        assert result.output.splitlines()[-1].startswith("Error: ")
        assert ": line " in result.output.splitlines()[-1]


def test_raw_bodies_in_redis_never_take_a_child_down(masters, client, rconn, runs, table):
    # Given a master serving queue a, and bodies no producer of tq would write
    m = masters("-c", "2", "-A", "faultapp", "--queues", "a")
    m.wait_ready(2)
    children = m.child_pids()
    raw = [b"not json", b"\xff\xfe", b'{"p":[]}', b'{"m":73786976294838206464,"p":{}}',
           b'{"o":1e300,"p":{}}', b'{"p":' + b'[' * 3000 + b']' * 3000 + b'}',
           b'{"t":"job","m":18446744073709551616,"p":{}}', b'{"t":"nosuch","p":{}}',
           b'{"t":"job","p":{"n":' + b'[' * 985 + b']' * 985 + b'}}', b"",
           ("{" + "".join(f'"k{i}":{i},' for i in range(50)) + '"p":{}}').encode()]
    ids = [f"raw{i}{''.join(string.ascii_lowercase[:3])}" for i in range(len(raw))]
    # When they are written straight into Redis, as corruption or an attacker would
    for tid, body in zip(ids, raw, strict=True):
        rconn.hset("tq:{a}:tasks", tid, body)
        rconn.rpush("tq:{a}:ready:0", tid)
    rconn.rpush("tq:{a}:wake", "1")
    # Then each ends dead with a reason, no child dies, and ordinary work goes on at once
    states = wait_all(client, ids, 30)
    good = client.enqueue_many([{"type": "job", "queue": "a", "payload": {"n": i}}
                                for i in range(20)])
    wait_all(client, good, 20)
    kinds = {client.get(i).error_kind for i in ids}
    table(("raw bodies written into Redis", f"{len(ids)} dead ({', '.join(sorted(kinds))}); "
           f"children replaced: {len(children - m.child_pids())}"))
    assert set(states.values()) == {"dead"}
    assert kinds <= {"malformed", "unknown_type"}
    assert m.child_pids() == children
    eventually(lambda: "Traceback" not in m.log(), timeout=1)
    assert "killed by signal" not in m.log() and "exited with code" not in m.log()
