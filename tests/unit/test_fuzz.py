"""A fuzzed decoder: everything a worker (or a client) decodes from Redis — task bodies, sealed
and signed bodies, claim replies, result records, stored errors — and the settings it reads,
fed with garbage, truncations and bit flips. Never an exception other than the documented
refusal, never a hang, never a silently different payload.

Bounded here (CI); `make fuzz` runs the same properties with 50x the examples
(TQ_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tq.config import load
from tq.errors import ConfigError
from tq.handlers import REGISTRY, handler
from tq.info import task_info
from tq.keyring import KeyRing, Rejected, new_key
from tq.limits import parse_table
from tq.protect import open_payload, seal_body
from tq.store.broker import Broker
from tq.store.tasks import Snapshot
from tq.task import Task, encode_body
from tq.worker.runner import Failure, Runner

N = int(os.environ.get("TQ_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=N, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
RING = KeyRing.parse(f"k1:{new_key()},k0:{new_key()}")
SIGNER = KeyRing(RING.keys, "k1", "sign")
KINDS = {"malformed", "unknown_type", "bad_signature", "cannot_decrypt", "error", "retry",
         "permanent", "timeout"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)
payloads = st.dictionaries(st.text(max_size=10), json_values, max_size=5)


def mutate(data: bytes, how: st.DataObject) -> bytes:
    """Truncate, flip a bit, splice in junk or duplicate a slice of `data`."""
    kind = how.draw(st.sampled_from(["truncate", "flip", "splice", "dup"]))
    if not data:
        return how.draw(st.binary(max_size=20))
    i = how.draw(st.integers(0, len(data) - 1))
    if kind == "truncate":
        return data[:i]
    if kind == "flip":
        return data[:i] + bytes([data[i] ^ (1 << how.draw(st.integers(0, 7)))]) + data[i + 1:]
    if kind == "splice":
        return data[:i] + how.draw(st.binary(min_size=1, max_size=12)) + data[i:]
    return data[:i] + data[i:i + 8] + data[i:]


@handler("fuzz-job", queue="fz")
def fuzz_job(payload, ctx):
    return payload


def run_once(runner: Runner, task: Task) -> Failure | object:
    out, _ = runner.run(task, lambda *a: None)
    return out


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_as_a_body_decode_to_a_task_or_a_malformed_one(raw):
    task = Task.from_body("P7rAAAAAAAAAAAAA", "fz", raw)
    assert isinstance(task, Task) and (task.malformed is None or task.type == "?")


@FUZZ
@given(payloads, st.data())
def test_a_changed_sealed_or_signed_body_is_refused_never_misread(payload, how):
    for ring in (RING, SIGNER):
        plain = encode_body("fuzz-job", "fz", json.dumps(payload), 3)
        body = str(seal_body(ring, "fz", "P7rAAAAAAAAAAAAA", plain)).encode()
        bad = mutate(body, how)
        assume(bad != body)
        task = Task.from_body("P7rAAAAAAAAAAAAA", "fz", bad)
        if task.malformed or task.raw is None:
            continue   # no longer a tq body (a worker dead-letters it as malformed)
        try:
            opened = open_payload(ring, "fz", "P7rAAAAAAAAAAAAA", task.raw, task.sealed)
        except Rejected:
            continue
        # a change the checks let through must leave the payload itself as it was (JSON
        # whitespace, a duplicated header field): never a different payload
        assert opened is None or json.loads(opened) == payload


@FUZZ
@given(payloads, st.text(max_size=20), st.data())
def test_a_worker_turns_any_body_into_a_run_or_a_clear_dead_letter(payload, junk, how):
    runner = Runner(Broker.__new__(Broker), "w-fuzz", RING)
    plain = encode_body("fuzz-job", "fz", json.dumps(payload))
    candidates = [seal_body(RING, "fz", "P7rAAAAAAAAAAAAA", plain).encode(), plain.encode(),
                  f'{{"t":"fuzz-job","p":"tqe1.{junk}"}}'.encode(),
                  f'{{"t":"fuzz-job","s":"{junk}","p":{{}}}}'.encode()]
    body = how.draw(st.sampled_from(candidates))
    if how.draw(st.booleans()):
        body = mutate(body, how)
    task = Task.from_body("P7rAAAAAAAAAAAAA", "fz", body)
    out = run_once(runner, task)
    if isinstance(out, Failure):
        assert (out.kind in KINDS and out.message and not out.retry) or out.kind == "error"
    else:   # it ran: only with the payload the producer sealed
        assert body == candidates[0] and json.loads(out.record)["x"].startswith("tqe1.")


@FUZZ
@given(st.lists(st.one_of(st.integers(-3, 3), st.binary(max_size=30), st.none()),
                max_size=12), st.integers(-5, 5), st.integers(-2, 2))
def test_claim_replies_of_any_shape_raise_nothing_but_value_errors(claimed, due, strays):
    try:
        got = Broker._claim_result([claimed, [], due, strays], ["fz", "other"])
    except (ValueError, TypeError, IndexError, AttributeError, UnicodeDecodeError):
        return   # the worker treats a reply it cannot read as a failed claim (hands back)
    assert all(isinstance(t, Task) for t in got.tasks)


@FUZZ
@given(st.one_of(st.binary(max_size=200), st.builds(
    lambda v: json.dumps({"s": "succeeded", "r": v, "x": v, "h": v, "st": v}).encode(),
    json_values)), st.one_of(st.none(), st.binary(max_size=200)))
def test_results_and_errors_of_any_shape_read_as_a_task_info(result, error):
    for ring in (None, RING):
        info = task_info("P7rAAAAAAAAAAAAA", "fz", Snapshot(None, None, None, error, None, None,
                                                             result, None), ring)
        assert info.id == "P7rAAAAAAAAAAAAA"


@FUZZ
@given(st.dictionaries(st.sampled_from(["concurrency", "queues", "limits", "protect",
                                        "result_ttl", "prefetch", "strict", "keys_file"]),
                       json_values, max_size=3))
def test_settings_of_any_value_are_a_config_error_or_a_config(values):
    try:
        load(values, env={})
    except ConfigError:
        pass
    try:
        parse_table(values.get("limits", "x=1/s"))
    except ValueError:
        pass


def teardown_module() -> None:
    REGISTRY.pop("fuzz-job", None)
