"""A fuzzed decoder: everything a worker (or a client) decodes from Redis — task bodies, sealed
and signed bodies, claim replies, result records, stored errors — and the settings it reads,
fed with garbage, truncations and bit flips. Never an exception other than the documented
refusal (a claim reply of a shape the script never sends raises), never a hang, never a
silently different payload.

Bounded here (CI); `make fuzz` runs the same properties with 50x the examples
(TQ_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tq.config import BY_NAME, load
from tq.errors import ConfigError
from tq.handlers import REGISTRY, handler
from tq.info import task_info
from tq.keyring import KeyRing, Rejected, new_key
from tq.limits import Limits, parse_table
from tq.protect import open_payload, seal_body
from tq.store.broker import Broker
from tq.store.results import parse_claim
from tq.store.tasks import Snapshot
from tq.task import Task, encode_body, validate_name
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


QUEUES = ["fz", "other"]
task_ids = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                   min_size=1, max_size=16)
# one claimed task as the claim script returns it: queue name, id, token, body, failures
claimed_tasks = st.tuples(st.sampled_from(QUEUES).map(str.encode), task_ids.map(str.encode),
                          st.from_regex(r"\d{1,4}\.\d{1,3}", fullmatch=True).map(str.encode),
                          st.one_of(st.binary(max_size=40),
                                    payloads.map(lambda p: encode_body("fuzz-job", "fz",
                                                                       json.dumps(p)).encode())),
                          st.integers(0, 5))
claim_replies = st.tuples(st.lists(claimed_tasks, max_size=4),
                          st.lists(task_ids.map(str.encode), max_size=3),
                          st.integers(-1, 10_000), st.integers(0, 3))
# what a field of a claimed task is replaced with when a reply is garbled: never what that
# field holds in a reply the script can send
NOT_A_QUEUE = [7, None, b"\xff\xfe", [b"x"], 1.0]
NOT_TEXT = [7, None, b"\xff\xfe", [b"x"]]


def garble(flat: list, how: st.DataObject) -> list:
    """The flat list of claimed fields, no longer the script's shape: a field dropped or added,
    a queue that is no name, an id or token that is not UTF-8 text."""
    kinds = ["add"] + (["drop", "queue", "text"] if flat else [])
    kind = how.draw(st.sampled_from(kinds))
    if kind == "add":
        i = how.draw(st.integers(0, len(flat)))
        return [*flat[:i], how.draw(st.one_of(st.integers(), st.binary(max_size=8))), *flat[i:]]
    if kind == "drop":
        i = how.draw(st.integers(0, len(flat) - 1))
        return flat[:i] + flat[i + 1:]
    task = how.draw(st.integers(0, len(flat) // 5 - 1))
    if kind == "queue":
        return [*flat[:task * 5], how.draw(st.sampled_from(NOT_A_QUEUE)), *flat[task * 5 + 1:]]
    at = task * 5 + how.draw(st.sampled_from([1, 2]))   # the id or the token
    return [*flat[:at], how.draw(st.sampled_from(NOT_TEXT)), *flat[at + 1:]]


@FUZZ
@given(claim_replies, st.booleans(), st.data())
def test_a_claim_reply_decodes_to_exactly_its_tasks_or_raises(reply, garbled, how):
    claimed, stale, due, strays = reply
    flat = [field for task in claimed for field in task]
    if garbled:
        flat = garble(flat, how)
    try:
        got = parse_claim([flat, stale, due, strays, []])
    except Exception:
        # A reply the script cannot send raises out of the claim: the child exits, its master
        # restarts it and requeues whatever its lists hold (nothing is half-read and run)
        assert garbled, f"a reply of the script's own shape raised: {reply!r}"
        return
    # Else the reply was whole, and every field is read where the script put it
    assert not garbled, f"a garbled reply decoded as if it were whole: {flat!r}"
    assert [(t.id, t.queue, t.token, t.failures) for t in got.tasks] == \
        [(tid.decode(), q.decode(), token.decode(), fails)
         for q, tid, token, _, fails in claimed]
    assert [t.payload for t in got.tasks] == \
        [Task.from_body("x", q.decode(), body).payload for q, _, _, body, _ in claimed]
    assert got.stale == [s.decode() for s in stale] and got.strays == strays
    assert got.next_due == (None if due < 0 else due / 1000)


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
    given = {k: v for k, v in values.items() if v is not None}   # None: not given
    try:
        config = load(values, env={})
    except ConfigError as exc:
        # a refusal is one line that starts with the flag of a setting that was given
        text = str(exc)
        assert "\n" not in text and text.startswith(tuple(f"{BY_NAME[k].flag}: " for k in given))
    else:
        # else every setting given was taken from these flags, parsed as its setting parses
        assert config.sources == dict.fromkeys(given, "flag")
        for name, raw in given.items():
            assert getattr(config, name) == BY_NAME[name].parse(raw), name
    limits = values.get("limits", "x=1/s")
    try:
        table = parse_table(limits)
    except ValueError as exc:
        assert str(exc)
    else:
        # a table of limits keyed by exactly the task types it named, each one checked
        named = limits if isinstance(limits, dict) else \
            [p.partition("=")[0].strip() for p in limits.split(",") if p.strip()]
        assert set(table) == set(named)
        assert all(isinstance(v, Limits) and validate_name("type", k) for k, v in table.items())


def teardown_module() -> None:
    REGISTRY.pop("fuzz-job", None)
