"""The task model (tq.task): names, priorities and payloads checked at the door, bodies
encoded compactly, and any stored body decoded to a task or a malformed verdict."""

from __future__ import annotations

import json
import math

import pytest

from tq.errors import PayloadError
from tq.task import (
    MAX_PAYLOAD_DEPTH,
    Task,
    encode_body,
    encode_payload,
    validate_name,
    validate_priority,
)


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
