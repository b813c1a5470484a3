"""Property tests over everything that enters tq from outside: enqueue arguments, raw bodies in
Redis, settings and --file lines. No input crashes a process or prints a traceback; every
refusal is a clear error; nothing that is accepted is changed on the way to the handler."""

from __future__ import annotations

import io
import json
import math
import re
import signal
import string
from pathlib import Path

import pytest
from click.testing import CliRunner
from faultkit import wait_all
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import tq
from tq.cli import cli as tq_cli
from tq.config import SETTINGS, load
from tq.errors import ConfigError, PayloadError
from tq.store.broker import Broker
from tq.task import MAX_PAYLOAD_DEPTH, MAX_RETRIES, MAX_SECONDS, Task

SLOW = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

numbers = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.integers(-2, 11),   # both sides of each limit, often
                    st.sampled_from([MAX_RETRIES, MAX_RETRIES + 1, MAX_SECONDS, MAX_SECONDS + 1,
                                     0.0, -0.0, 5e-324]),
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


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _seconds_or_none(v: object) -> float | None:
    """`v` as a duration tq can take (a finite number within ten years), else None."""
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
            or abs(v) > MAX_SECONDS:
        return None
    return float(v)


def _json_key(key: object) -> str:
    """The name json.dumps writes for a dict key (1 -> "1", True -> "true", None -> "null")."""
    return next(iter(json.loads(json.dumps({key: 0}))))


def _payload_fault(value: object, depth: int = 1) -> bool:
    """Would JSON change or refuse this payload value? Nesting past MAX_PAYLOAD_DEPTH, NaN or
    infinity, text that is not Unicode, two keys JSON writes alike: the cases tq must refuse
    rather than deliver something else (worked out here from JSON itself, not from tq)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, float):
        return not math.isfinite(value)
    if value is None or isinstance(value, bool | int):
        return False
    if depth > MAX_PAYLOAD_DEPTH:
        return True
    if isinstance(value, list):
        return any(_payload_fault(v, depth + 1) for v in value)
    names = [_json_key(k) for k in value]
    return len(set(names)) < len(names) or any(_payload_fault(k) for k in value) or \
        any(_payload_fault(v, depth + 1) for v in value.values())


def expected_refusals(payload: object, options: dict) -> dict[str, type[ValueError]]:
    """What enqueue must refuse in these arguments: argument name -> the exact error class.
    Options are ValueErrors naming the option; the payload a PayloadError (a ValueError too)."""
    wrong: dict[str, type[ValueError]] = {}
    if "priority" in options and not (_is_int(options["priority"])
                                      and 0 <= options["priority"] <= 9):
        wrong["priority"] = ValueError
    if "max_retries" in options and not (_is_int(options["max_retries"])
                                         and 0 <= options["max_retries"] <= MAX_RETRIES):
        wrong["max_retries"] = ValueError
    if "timeout" in options:
        timeout = _seconds_or_none(options["timeout"])
        if timeout is None or timeout <= 0:
            wrong["timeout"] = ValueError
    if "delay" in options:
        delay = _seconds_or_none(options["delay"])
        if delay is None or delay < 0:
            wrong["delay"] = ValueError
    doc = {} if payload is None else payload   # enqueue(type) means {}
    if not isinstance(doc, dict) or _payload_fault(doc):
        wrong["payload"] = PayloadError
    return wrong


def option(edges: list[object]) -> st.SearchStrategy[object]:
    """An enqueue option: often left out or on an edge of its range, so the examples where
    every other argument is right (where a limit off by one would show) are not rare."""
    return st.one_of(st.none(), st.sampled_from(edges), st.none(), st.sampled_from(edges),
                     numbers)


@settings(SLOW, max_examples=400)   # ~2 ms an example: the edges above need the numbers
@given(payload=st.one_of(payloads, st.sampled_from([nested(MAX_PAYLOAD_DEPTH + 1),
                                                    nested(MAX_PAYLOAD_DEPTH),
                                                    nested(MAX_PAYLOAD_DEPTH - 1),
                                                    nested(985), {"s": "\ud800"},
                                                    {1: "a", "1": "b"}, {"x": math.nan}])),
       max_retries=option([0, MAX_RETRIES, MAX_RETRIES + 1]),
       timeout=option([5e-324, 0, MAX_SECONDS, MAX_SECONDS + 1]),
       priority=option([0, 9, 10, -1, 9.0]), delay=option([0, -0.0, -1e-9, MAX_SECONDS]))
def test_enqueue_refuses_clearly_or_delivers_exactly(redis_url, payload, max_retries, timeout,
                                                    priority, delay):
    options = {k: v for k, v in (("max_retries", max_retries), ("timeout", timeout),
                                 ("priority", priority), ("delay", delay)) if v is not None}
    wrong = expected_refusals(payload, options)
    with tq.Client(redis_url) as client:
        try:
            task_id = client.enqueue("prop", payload, **options)
        except ValueError as exc:
            # Then it is refused for one of the arguments that are wrong, with that
            # argument's own error class (not a subclass, not a stray ValueError), in a
            # message that names it
            named = re.match(r"(priority|max_retries|timeout|delay|payload)\b", str(exc))
            assert named and named[1] in wrong, f"refused {payload!r} {options}: {exc}"
            named = named[1]
            assert type(exc) is wrong[named], (type(exc), exc)
            return
        assert not wrong, f"accepted {payload!r} {options}, but {sorted(wrong)} are wrong"
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


GOOD_LINE = b'{"type": "x", "payload": {}}'
lines = st.lists(st.one_of(
    st.binary(max_size=60),
    st.sampled_from([GOOD_LINE, b"\xff\xfe\x00garbage",
                     b'{"type": "x", "max_retries": 9223372036854775808}',
                     b'{"type": "x", "payload": ' + b'[' * 100000 + b']' * 100000 + b'}',
                     b'{"type": "x", "payload": {"a": "\\ud800"}}', b"[1, 2]"])), max_size=5)


def line_verdict(raw: bytes) -> str | None:
    """"good", "blank" (skipped), "unreadable" (not a JSON object with a type), "refused" (one
    of its values is out of tq's range), or None for a line this test cannot judge by itself
    (a JSON object with a string type other than GOOD_LINE's: random bytes almost never)."""
    if raw == GOOD_LINE + b"\n":
        return "good"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "unreadable"
    if not text.strip():
        return "blank"
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return "unreadable"
    if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
        return "unreadable"
    if doc.get("type") == "x" and (doc.get("max_retries") == 2**63 or
                                   doc.get("payload") == {"a": "\ud800"}):
        return "refused"   # the two sampled lines whose only fault is a value tq refuses
    return None


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=lines)
def test_enqueue_file_is_all_or_nothing_with_a_line_number(redis_url, rconn, tmp_path_factory,
                                                           content):
    # Given a JSONL file of good, blank and bad lines, each judged here
    data = b"\n".join(content) + b"\n"
    verdicts = [line_verdict(raw) for raw in io.BytesIO(data)]   # split as a file reads
    assume(None not in verdicts)
    # the line the error must name: the file is read whole before any value is checked, so
    # the first unreadable line, else the first refused one
    first_bad = next((n for kind in ("unreadable", "refused")
                      for n, v in enumerate(verdicts, 1) if v == kind), None)
    path = Path(tmp_path_factory.mktemp("file")) / "tasks.jsonl"
    path.write_bytes(data)
    before = rconn.hlen("tq:{x}:tasks")
    # When `tq enqueue --file` reads it
    result = CliRunner().invoke(tq_cli, ["enqueue", "--file", str(path)])
    assert "Traceback" not in result.output
    added = rconn.hlen("tq:{x}:tasks") - before
    if first_bad is None:
        # Then a file without a bad line is enqueued whole: every good line is one task
        assert result.exit_code == 0, result.output
        assert added == verdicts.count("good")
        assert f"enqueued {added} tasks" in result.output
    else:
        # Else nothing at all is enqueued, and the one-line error names the first bad line
        assert result.exit_code == 2, result.output
        assert added == 0
        last = result.output.splitlines()[-1]
        assert last.startswith("Error: ") and f": line {first_bad}: " in last, last


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
    # and once the master has drained and exited (the presence of its exit, waited for with a
    # deadline), everything it and its children ever printed is in the log: no traceback, no
    # child that died
    m.signal(signal.SIGTERM)
    assert m.wait_exit(30) == 0
    assert "Traceback" not in m.log()
    assert "killed by signal" not in m.log() and "exited with code" not in m.log()
