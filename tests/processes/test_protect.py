"""Payload protection (tq.protect): encrypted and signed bodies, results and errors, refusals,
key rotation, and keys that never show anywhere. Real tq-master processes with TQ_KEYS; every
refused task is checked never to have run (tests/apps/secretapp.py records each run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from master_proc import eventually

import tq
from tq.errors import ConfigError
from tq.keyring import KeyRing, Rejected, new_key

SECRET = "carol.secret-4711@example.com"   # what must never be readable in Redis
TQ = str(Path(sys.executable).with_name("tq"))
K1, K2, K9 = new_key(), new_key(), new_key()


def every_value(rconn) -> bytes:
    """Everything Redis holds, as bytes (every key's name and value)."""
    out = []
    for key in rconn.scan_iter(count=1000):
        out.append(key)
        kind = rconn.type(key)
        if kind == b"string":
            out.append(rconn.get(key) or b"")
        elif kind == b"hash":
            out += [b"%s=%s" % kv for kv in rconn.hgetall(key).items()]
        elif kind == b"list":
            out += rconn.lrange(key, 0, -1)
        elif kind == b"zset":
            out += rconn.zrange(key, 0, -1)
        elif kind == b"set":
            out += list(rconn.smembers(key))
        elif kind == b"stream":
            out += [repr(e).encode() for e in rconn.xrange(key)]
    return b"\n".join(out)


def start(masters, keys: str, *extra: str, protect: str | None = None):
    env = {"TQ_KEYS": keys, **({"TQ_PROTECT": protect} if protect else {})}
    m = masters("-c", "1", "-A", "secretapp", *extra, env=env)
    m.wait_ready(1)
    return m


def test_encrypted_round_trip_leaves_nothing_readable_in_redis(masters, redis_url, rconn):
    keyed = tq.Client(redis_url, keys=f"k1:{K1}")
    start(masters, f"k1:{K1}")
    ok = keyed.enqueue("mail", {"to": SECRET})
    bad = keyed.enqueue("mail", {"to": SECRET, "fail": True})
    assert keyed.wait(ok, timeout=10) == {"sent": SECRET}
    with pytest.raises(tq.TaskFailed):
        keyed.wait(bad, timeout=10)
    # payloads, the result and the handler's error (it echoes the payload) are all sealed
    assert SECRET.encode() not in every_value(rconn)
    dead = keyed.get(bad)
    assert SECRET in dead.error and SECRET in dead.traceback and dead.payload["to"] == SECRET
    # a client without the keys sees that they are encrypted, and nothing of them
    blind = tq.Client(redis_url, keys="")
    assert blind.get(ok).encrypted and blind.get(ok).result is None
    info = blind.get(bad)
    assert info.encrypted and info.payload is None and info.error == "(encrypted)"
    shown = subprocess.run([TQ, "dead", "show", bad], capture_output=True, text=True,
                           env={**os.environ, "TQ_REDIS_URL": redis_url}, check=True).stdout
    assert "encrypted" in shown and SECRET not in shown and K1 not in shown


def test_signing_keeps_payloads_readable_and_refuses_a_changed_one(masters, redis_url, rconn):
    signer = tq.Client(redis_url, keys=KeyRing.parse(f"k1:{K1}", "sign"))
    start(masters, f"k1:{K1}", protect="sign")
    tid = signer.enqueue("mail", {"to": "bob@example.com"})
    assert signer.wait(tid, timeout=10) == {"sent": "bob@example.com"}
    # a body changed in Redis (the payload edited, the signature kept) is refused, never run
    forged = signer.enqueue("mail", {"to": "bob@example.com"}, delay=60)
    body = rconn.hget("tq:{mail}:tasks", forged)
    assert b'"s":"k1.' in body and b"bob@example.com" in body
    rconn.hset("tq:{mail}:tasks", forged, body.replace(b"bob@", b"eve@"))
    assert signer.run_now([forged], "mail") == 1
    with pytest.raises(tq.TaskFailed, match="bad signature"):
        signer.wait(forged, timeout=10)
    assert signer.get(forged).error_kind == "bad_signature"
    eventually(lambda: rconn.llen("secret:ran") >= 1, what="the genuine task's run")
    assert forged.encode() not in rconn.lrange("secret:ran", 0, -1)


def test_tampered_swapped_unsigned_and_foreign_tasks_are_refused_unrun(masters, redis_url,
                                                                       rconn):
    keyed = tq.Client(redis_url, keys=f"k1:{K1}")
    port = _free_port()
    start(masters, f"k1:{K1}", "--metrics-bind", f"127.0.0.1:{port}")
    keyed.pause("mail")   # (the master registered its queue) while the bodies are tampered
    a = keyed.enqueue("mail", {"to": "a@example.com"})
    b = keyed.enqueue("mail", {"to": "b@example.com"})
    tampered = keyed.enqueue("mail", {"to": "t@example.com"})
    unsigned = tq.Client(redis_url, keys="").enqueue("mail", {"to": "u@example.com"})
    foreign = tq.Client(redis_url, keys=f"k9:{K9}").enqueue("mail", {"to": "f@example.com"})
    tasks = "tq:{mail}:tasks"
    body_a, body_b = rconn.hget(tasks, a), rconn.hget(tasks, b)
    rconn.hset(tasks, mapping={a: body_b, b: body_a})              # swapped between tasks
    t = rconn.hget(tasks, tampered)
    rconn.hset(tasks, tampered, t[:-8] + bytes([t[-8] ^ 1]) + t[-7:])   # one bit flipped
    keyed.resume("mail")
    expect = {a: "cannot_decrypt", b: "cannot_decrypt", tampered: "cannot_decrypt",
              unsigned: "bad_signature", foreign: "cannot_decrypt"}
    for tid, kind in expect.items():
        with pytest.raises(tq.TaskFailed):
            keyed.wait(tid, timeout=10)
        info = keyed.get(tid)
        assert (info.state, info.error_kind, info.attempts) == ("dead", kind, 1), (tid, info)
    assert rconn.llen("secret:ran") == 0   # none of them ran
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    assert b'tq_tasks_rejected_total{queue="mail",type="mail"} 5.0' in metrics


def test_rotation_with_tasks_queued_under_the_old_key(masters, redis_url, rconn):
    old = tq.Client(redis_url, keys=f"k1:{K1}")
    queued = [old.enqueue("mail", {"to": f"{i}@example.com"}) for i in range(3)]
    dead = old.enqueue("mail", {"to": "d@example.com", "fail": True}, delay=3600)
    # the operator makes k2 current, keeping k1 listed: old tasks run, new ones use k2
    both = f"k2:{K2},k1:{K1}"
    m = start(masters, both)
    reader = tq.Client(redis_url, keys=both)
    assert [reader.wait(t, timeout=10) for t in queued] == [
        {"sent": f"{i}@example.com"} for i in range(3)]
    assert old.get(queued[0]).encrypted   # results are sealed with the current key, k2
    m.signal(signal.SIGTERM)   # a graceful stop: its child hands back nothing half-claimed
    assert m.wait_exit() == 0
    more = [old.enqueue("mail", {"to": f"m{i}@example.com"}) for i in range(3)]
    report = subprocess.run([TQ, "keys", "rotate", "--json"], capture_output=True, text=True,
                            env={**os.environ, "TQ_REDIS_URL": redis_url, "TQ_KEYS": both},
                            check=True)
    assert '"mail": 4' in report.stdout   # three queued + the scheduled one
    assert all(rconn.hget("tq:{mail}:tasks", t).startswith(b'{"p":"tqe1.k2.') for t in more)
    # then k1 can go: a fleet with only k2 runs what was sealed under k1 before the rotation
    start(masters, f"k2:{K2}")
    new = tq.Client(redis_url, keys=f"k2:{K2}")
    assert [new.wait(t, timeout=10) for t in more] == [
        {"sent": f"m{i}@example.com"} for i in range(3)]
    assert new.get(dead).payload == {"to": "d@example.com", "fail": True}


def test_keys_never_show_in_logs_outputs_dashboard_or_process_titles(masters, redis_url,
                                                                     tmp_path):
    keys = f"k2:{K2},k1:{K1}"
    m = start(masters, keys)
    keyed = tq.Client(redis_url, keys=keys)
    ok = keyed.enqueue("mail", {"to": SECRET})
    bad = keyed.enqueue("mail", {"to": SECRET, "fail": True})
    keyed.wait(ok, timeout=10)
    eventually(lambda: keyed.get(bad).state == "dead", what="the failing task dead")
    env = {**os.environ, "TQ_REDIS_URL": redis_url, "TQ_KEYS": keys}
    seen = [m.log()]
    for args in (["status"], ["get", ok], ["dead", "show", bad], ["dead", "list", "--json"],
                 ["limits", "show"], ["stats", "--json"], ["workers", "--json"]):
        done = subprocess.run([TQ, *args], capture_output=True, text=True, env=env)
        seen += [done.stdout, done.stderr]
    titles = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    seen.append(titles)
    from tq.dashboard.app import create_app

    app = create_app(keyed, token="t" * 32)
    web = app.test_client()
    headers = {"Host": "127.0.0.1:8080", "Authorization": "Bearer " + "t" * 32}
    for url in ("/api/overview", "/api/tasks?state=dead", f"/api/tasks/{bad}"):
        seen.append(web.get(url, headers=headers).get_data(as_text=True))
    # a bad keys setting names the key id, never the material
    broken = subprocess.run([str(Path(sys.executable).with_name("tq-master")), "start", "-A",
                             "secretapp"], capture_output=True, text=True, timeout=30,
                            env={**env, "TQ_KEYS": f"k1:{K1[:20]}"})
    assert broken.returncode == 2 and "k1" in broken.stderr
    seen += [broken.stdout, broken.stderr]
    everything = "\n".join(seen)
    for key in (K1, K2, K1[:20]):
        assert key not in everything
    assert "tq-worker" in titles and SECRET in keyed.get(bad).error


def test_bad_key_settings_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="32 bytes"):
        KeyRing.parse("k1:" + new_key()[:10])
    with pytest.raises(ConfigError, match="KEYID:BASE64"):
        KeyRing.parse("just-a-key")
    with pytest.raises(ConfigError, match="not valid base64"):
        KeyRing.parse("k1:not base64!!")
    with pytest.raises(ConfigError, match="protect must be"):
        KeyRing.parse(f"k1:{K1}", "scramble")
    f = tmp_path / "keys.toml"
    f.write_text(f'current = "k3"\n[keys]\nk1 = "{K1}"\n')
    with pytest.raises(ConfigError, match="current key 'k3'"):
        KeyRing.from_file(f)
    f.write_text(f'current = "k1"\n[keys]\nk1 = "{K1}"\n')
    ring = KeyRing.from_file(f)
    assert K1 not in repr(ring) and "k1" in repr(ring)
    with pytest.raises(Rejected, match="unknown key id"):
        ring.open("tqe1.k7.AAAAAAAAAAAAAAAA.AAAA", "x")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_opened_payload_meets_the_same_limits_as_a_plain_one():
    from tq.task import MAX_PAYLOAD_DEPTH, Task

    task = Task("P7rAAAAAAAAAAAAA", "q", "t", {}, sealed=True, raw="")

    def nested(depth: int) -> str:
        return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)

    assert task.with_payload(nested(MAX_PAYLOAD_DEPTH)).malformed is None
    deep = task.with_payload(nested(MAX_PAYLOAD_DEPTH + 1))
    assert deep.malformed and "nested deeper" in deep.malformed and deep.type == "?"
    assert "not an object" in task.with_payload("[1, 2]").malformed
    assert task.with_payload('{"to": "x"}').payload == {"to": "x"}


def test_keys_empty_means_none_even_with_a_keys_file_configured(tmp_path, monkeypatch,
                                                                 redis_url):
    f = tmp_path / "keys.toml"
    f.write_text(f'current = "k1"\n[keys]\nk1 = "{K1}"\n')
    monkeypatch.setenv("TQ_KEYS_FILE", str(f))
    monkeypatch.delenv("TQ_KEYS", raising=False)
    assert tq.Client(redis_url).keys is not None            # the file is read by default
    assert tq.Client(redis_url, keys="").keys is None        # "": explicitly none
