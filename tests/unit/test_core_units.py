"""Unit tests of the queue core's pure logic: ids, validation, bodies, backoff, tallies, URLs."""

from __future__ import annotations

import json
import math
import string

import pytest

import tq
from tq import ids
from tq.errors import ConfigError, PayloadError
from tq.handlers import DEFAULT_BACKOFF, REGISTRY, Backoff
from tq.store.urls import redact
from tq.tally import BUCKETS, Histogram, Tally, bucket_index
from tq.task import (
    MAX_PAYLOAD_DEPTH,
    Task,
    encode_body,
    encode_payload,
    validate_name,
    validate_priority,
)


# -- ids ------------------------------------------------------------------------------------
def test_new_id_is_16_url_safe_characters_and_encodes_its_time():
    tid = ids.new_id(1_700_000_000_123)
    assert len(tid) == ids.ID_LENGTH == 16
    assert set(tid) <= set(string.ascii_letters + string.digits + "-_")
    assert ids.created_ms(tid) == 1_700_000_000_123


def test_ids_sort_by_creation_time():
    times = [0, 1, 999, 1_000, 1_700_000_000_000, 1_700_000_000_001, 2**42 - 1]
    made = [ids.new_id(t) for t in times]
    assert sorted(made) == made
    assert [ids.created_ms(t) for t in made] == times


def test_ids_of_this_century_never_look_like_an_option():
    # ids starting with "-" are read as options by shells and CLIs (tq get -Abc...)
    for ms in (1_000_000_000_000, 1_800_000_000_000, 2**42 - 1):
        assert not ids.new_id(ms).startswith("-")


def test_ids_do_not_collide():
    many = {ids.new_id(42) for _ in range(20_000)}   # all in the same millisecond
    assert len(many) == 20_000


@pytest.mark.parametrize("other", ["", "abc", "0" * 36, "not an id at all!", "é" * 16,
                                   "*" * 16])
def test_created_ms_of_a_foreign_id_is_none(other):
    assert ids.created_ms(other) is None


# -- names, priorities, payloads ------------------------------------------------------------
@pytest.mark.parametrize("name", ["email", "a", "x" * 200, "image.resize", "v2/thumbs",
                                  "user@host", "a-b_c+d", "Ünïcode"])
def test_good_names(name):
    assert validate_name("queue", name) == name


@pytest.mark.parametrize("name", ["", " ", "a b", " email", "email\n", "a\tb", "{email}",
                                  "e{", "}", "a:b", ":", "x" * 201, "a*b", "a?", "[a]",
                                  'say"hi"', "a\\b"])
def test_bad_names_are_value_errors(name):
    with pytest.raises(ValueError, match="queue"):
        validate_name("queue", name)


@pytest.mark.parametrize("name", [None, 5, b"email", ["email"]])
def test_names_must_be_strings(name):
    with pytest.raises(ValueError, match="must be a string"):
        validate_name("type", name)


@pytest.mark.parametrize("p", range(10))
def test_priorities_0_to_9(p):
    assert validate_priority(p) == p


@pytest.mark.parametrize("p", [-1, 10, 100, True, False, 1.0, "1", None])
def test_bad_priorities(p):
    with pytest.raises(ValueError, match="priority"):
        validate_priority(p)


def test_payload_must_be_a_json_object():
    assert encode_payload({"a": [1, 2.5, None, True, "é"]}) == '{"a":[1,2.5,null,true,"é"]}'
    for bad in ([1, 2], "text", 7, None, (("a", 1),)):
        with pytest.raises(PayloadError, match="JSON object"):
            encode_payload(bad)


@pytest.mark.parametrize("bad", [{"x": object()}, {"x": {1, 2}}, {"x": math.nan},
                                 {"x": math.inf}, {("a", "b"): 1}, {"x": b"bytes"}])
def test_payload_must_be_serialisable(bad):
    with pytest.raises(PayloadError, match="not JSON-serialisable"):
        encode_payload(bad)
    assert issubclass(PayloadError, ValueError)


def test_body_leaves_defaults_out_and_puts_the_payload_last():
    assert encode_body("email", "email", '{"to":"a"}') == '{"p":{"to":"a"}}'
    body = encode_body("email", "mail", '{"to":"a"}', priority=9, max_retries=5, timeout=2.5)
    assert body == '{"t":"email","r":9,"m":5,"o":2.5,"p":{"to":"a"}}'
    assert json.loads(body)["p"] == {"to": "a"}


def test_body_round_trip():
    body = encode_body("resize", "images", encode_payload({"w": 10, "l": [], "big": 2**70}),
                       priority=3, max_retries=0, timeout=30)
    task = Task.from_body("ID", "images", body.encode(), failures=2, token="7.1")
    assert (task.type, task.queue, task.priority, task.max_retries, task.timeout) == \
        ("resize", "images", 3, 0, 30)
    assert task.payload == {"w": 10, "l": [], "big": 2**70}   # [] stays a list, ints exact
    assert (task.failures, task.attempt, task.token, task.malformed) == (2, 3, "7.1", None)


@pytest.mark.parametrize("body", [b"not json", b'{"p":not json', b"[1,2]", b'{"p":[1]}',
                                  b'{"t":"a b","p":{}}', b'{"r":12,"p":{}}',
                                  b'{"m":-1,"p":{}}', b'{"o":0,"p":{}}', b"\xff\xfe", b""])
def test_a_body_tq_cannot_use_gives_a_malformed_task(body):
    task = Task.from_body("ID", "q", body)
    assert task.malformed and task.malformed.startswith("malformed task body")
    assert task.type == "?" and task.payload == {}


def test_task_created_at_comes_from_its_id():
    tid = ids.new_id(1_600_000_000_500)
    assert Task(tid, "q", "q", {}).created_at == 1_600_000_000.5
    assert Task("custom", "q", "q", {}).created_at is None


# -- backoff -----------------------------------------------------------------------------------
def test_backoff_without_jitter_is_exponential_and_capped():
    b = Backoff(base=0.5, factor=3, cap=10, jitter=0)
    assert [b(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.5, 4.5, 10, 10]
    assert b(0) == 0.5   # attempt numbers start at 1; 0 is treated as the first


def test_backoff_jitter_spreads_both_ways_within_its_fraction():
    b = Backoff(base=8, factor=2, cap=100, jitter=0.25)
    delays = [b(1) for _ in range(2000)]
    assert all(6 <= d <= 10 for d in delays)
    assert min(delays) < 7 and max(delays) > 9   # really spread, not constant
    assert DEFAULT_BACKOFF(1) > 0


@pytest.mark.parametrize("kwargs", [{"base": -1}, {"factor": 0.5}, {"cap": -1},
                                    {"jitter": 1.5}, {"jitter": -0.1}])
def test_bad_backoff(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)


# -- handlers ----------------------------------------------------------------------------------
def test_handler_decorator_registers_its_policy(clean_registry):
    @tq.handler("email", max_retries=5, timeout=10, backoff=Backoff(base=2, jitter=0))
    def send(payload, ctx):
        return payload["to"]

    spec = REGISTRY["email"]
    assert spec.func is send and spec.queue == "email"
    assert spec.policy() == {"max_retries": 5, "timeout": 10}
    assert spec.backoff(2) == 4
    assert send({"to": "x"}, None) == "x"   # the decorator returns the function itself


def test_handler_class_form(clean_registry):
    class Resize(tq.Handler):
        type = "resize"
        queue = "images"
        max_retries = 1

        def handle(self, payload, ctx):
            return payload["w"] * 2

    spec = REGISTRY["resize"]
    assert (spec.queue, spec.max_retries, spec.func({"w": 3}, None)) == ("images", 1, 6)


@pytest.mark.parametrize("kwargs", [{"max_retries": -1}, {"max_retries": True},
                                    {"timeout": 0}, {"soft_timeout": -2}, {"queue": "a:b"}])
def test_bad_handler_options(clean_registry, kwargs):
    with pytest.raises(ValueError):
        tq.handler("t", **kwargs)


def test_two_handlers_for_one_type_are_refused(clean_registry):
    tq.handler("dup")(lambda p, c: 1)
    with pytest.raises(ValueError, match="already registered"):
        @tq.handler("dup")
        def other(payload, ctx):
            return 2


# -- tally -------------------------------------------------------------------------------------
def test_bucket_index():
    assert bucket_index(0) == 0
    assert bucket_index(0.0001) == 0
    assert bucket_index(0.00011) == 1
    assert BUCKETS[bucket_index(0.0005)] == 0.0005   # a bound is in the bucket it closes
    assert bucket_index(1e9) == len(BUCKETS) - 1


def test_tally_adds_merges_and_survives_the_wire():
    a, b = Tally(), Tally()
    assert not a
    a.add("email", "succeeded", duration=0.002, wait=0.1)
    a.add("email", "failed", duration=0.3)
    b.add("email", "succeeded", duration=0.004)
    b.add("resize", "dead")
    a.merge(b)
    assert a.counts["email"] == {"succeeded": 2, "failed": 1, "retried": 0, "dead": 0}
    assert a.total("succeeded") == 2 and a.total("dead") == 1
    assert a.durations["email"].n == 3
    assert a.waits["email"].n == 1
    wire = json.loads(json.dumps(a.to_wire()))   # really JSON
    back = Tally.from_wire(wire)
    assert back.counts == a.counts
    assert back.durations["email"].counts == a.durations["email"].counts
    assert back.durations["email"].total == pytest.approx(0.306)


def test_histogram_quantiles_interpolate_within_their_bucket():
    h = Histogram()
    assert h.quantile(0.5) is None and h.percentile(0.5) is None
    for _ in range(90):
        h.observe(0.0035)     # bucket (3, 4] ms
    for _ in range(10):
        h.observe(2.2)        # bucket (2, 2.5] s
    assert h.percentile(0.5) == pytest.approx((0.003 + 0.001 * 50 / 90, 0.003, 0.004))
    assert h.percentile(0.99) == pytest.approx((2.0 + 0.5 * 9 / 10, 2.0, 2.5))
    h.observe(10_000)         # the +Inf bucket: its lower bound, no upper one
    assert h.percentile(1.0) == (BUCKETS[-2], BUCKETS[-2], math.inf)


# -- URLs and the client's own settings ---------------------------------------------------------
@pytest.mark.parametrize("url, safe", [
    ("redis://:s3cret@h:6379/0", "redis://***@h:6379/0"),
    ("redis://user:s3cret@h:6379/0", "redis://user:***@h:6379/0"),
    ("rediss://default:p%40ss@h/1", "rediss://default:***@h/1"),
    ("redis://tokenonly@h", "redis://***@h"),
    ("redis://u:s3cret@with@at@h:1/0", "redis://u:***@h:1/0"),
    ("unix:///run/r.sock?db=0&password=s3cret", "unix:///run/r.sock?db=0&password=***"),
    ("redis://h:6379/0", "redis://h:6379/0"),
])
def test_redact(url, safe):
    assert redact(url) == safe
    assert "s3cret" not in redact(url)


def test_client_settings_are_checked_without_connecting():
    url = "redis://:hunter2@127.0.0.1:1/0"   # nothing listens there; nothing connects yet
    with tq.Client(url, namespace="app1", max_payload_bytes=10) as c:
        assert c.namespace == "app1" and c.max_payload_bytes == 10
        assert "hunter2" not in repr(c) and "***" in repr(c)
        with pytest.raises(PayloadError, match="over the limit of 10"):
            c.enqueue("t", {"text": "longer than ten bytes"})   # checked before any I/O
    with pytest.raises(ValueError, match="namespace"):
        tq.Client(url, namespace="a:b")
    with pytest.raises(ConfigError, match="max_payload_bytes"):
        tq.Client(url, max_payload_bytes=0)


def test_the_url_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("TQ_REDIS_URL", "redis://127.0.0.1:1/3")
    with tq.Client() as c:
        assert c.url == "redis://127.0.0.1:1/3"
    with tq.Client("redis://127.0.0.1:2/0") as c:   # an explicit URL wins
        assert c.url == "redis://127.0.0.1:2/0"


@pytest.mark.parametrize("payload, message", [
    ({1: "a", "1": "b"}, "payload: keys 1 and '1' are both written as '1' in JSON"),
    ({"a": [{"b": "x\ud800"}]}, "payload['a'][0]['b']: not valid Unicode text"),
    ({"\udfff": 1}, "payload['\\udfff']: not valid Unicode text"),
    ({"a": {"t": (1, object())}}, "payload['a']['t'][1]: object is not JSON-serialisable"),
    ({"a": {None: 1, "null": 2}}, "payload['a']: keys None and 'null' are both written"),
])
def test_payloads_that_json_would_mangle_are_refused_with_the_path(payload, message):
    with pytest.raises(PayloadError) as err:
        encode_payload(payload)
    assert message in str(err.value)


def test_payload_nesting_is_limited_the_same_for_producer_and_worker():
    def nested(depth: int) -> dict:
        doc: dict = {}
        cur = doc
        for _ in range(depth - 1):
            cur["x"] = {}
            cur = cur["x"]
        return doc

    ok = nested(MAX_PAYLOAD_DEPTH)
    body = encode_body("t", "t", encode_payload(ok))
    assert Task.from_body("id", "t", body).malformed is None
    with pytest.raises(PayloadError, match=f"nested deeper than {MAX_PAYLOAD_DEPTH} levels"):
        encode_payload(nested(MAX_PAYLOAD_DEPTH + 1))
    too_deep = '{"p":' + json.dumps(nested(MAX_PAYLOAD_DEPTH + 1)) + "}"
    assert "nested deeper than" in Task.from_body("id", "t", too_deep).malformed
    with pytest.raises(PayloadError, match="nested deeper"):   # no RecursionError either
        encode_payload(nested(5000))


@pytest.mark.parametrize("body, why", [
    (b'{"m":73786976294838206464,"p":{}}', "max_retries must be an integer from 0 to 1000"),
    (b'{"m":1001,"p":{}}', "max_retries must be an integer from 0 to 1000"),
    (b'{"o":1e300,"p":{}}', "timeout must be a number of seconds above 0"),
    (b'{"p":' + b"[" * 3000 + b"]" * 3000 + b"}", "recursion"),
    (b"\xff\xfe", "malformed task body"),
])
def test_the_workers_decoder_turns_any_body_into_a_verdict(body, why):
    task = Task.from_body("id", "q", body)
    assert task.malformed and why in task.malformed


@pytest.mark.parametrize("options", [{"max_retries": 2**63}, {"max_retries": 1001},
                                     {"max_retries": True}, {"timeout": 1e300},
                                     {"timeout": 0}])
def test_task_options_out_of_range_are_refused_at_the_door(client, rconn, options):
    with pytest.raises(ValueError):
        client.enqueue("t", {}, **options)
    with pytest.raises(ValueError, match="spec #1"):
        client.enqueue_many([("t", {}), {"type": "t", **options}])
    assert rconn.exists("tq:{t}:tasks") == 0


def test_each_script_carries_the_lib_helpers_it_names_and_no_other():
    # scripts.py prepends only the part of _lib.lua a script uses (Redis runs the whole text
    # on every call); a helper it names but lacks would fail only in the path that calls it
    import re
    from importlib import resources

    from tq.store.scripts import NAMES, _source, used_lib
    folder = resources.files("tq.store").joinpath("lua")
    lib = folder.joinpath("_lib.lua").read_text("utf-8")
    helpers = set(re.findall(r"^local function (\w+)", lib, re.M))
    assert {"qkeys", "promote", "node_done", "int"} <= helpers
    for name in NAMES:
        text = folder.joinpath(f"{name}.lua").read_text("utf-8")
        src = _source(name)
        code = re.sub(r"^--\[\[(?s:.*?)\]\]|^[ \t]*--.*$", "", src, flags=re.M)
        defined = set(re.findall(r"^local function (\w+)", src, re.M))
        named = set(re.findall(r"[A-Za-z_]\w*", code)) & helpers
        own = set(re.findall(r"^local function (\w+)", text, re.M))
        assert named - own <= defined, (name, sorted(named - own - defined))
    # the one-task enqueue carries no workflow or flow-control helpers
    assert "local function node_done(" not in _source("enqueue")
    assert "local function refill(" not in _source("enqueue")
    # a helper named only in a comment is left out; one named by a helper it uses is kept
    trimmed = used_lib(lib, "-- promote(...) is not called here\nlocal x = int(1)\n")
    assert "local function int(" in trimmed and "local function promote(" not in trimmed
    trimmed = used_lib(lib, "promote(q, 'q', 0, 1)\n")
    assert "local function promote(" in trimmed and "local function bury_malformed(" in trimmed
