"""Producer side against a real Redis (7.x and 6.2): enqueue, get, states, delays, uniqueness,
counters and the bad input the issue lists. Each test runs on both servers (any_* fixtures)."""

from __future__ import annotations

import datetime as dt
import math
import threading
import time

import pytest
from master_proc import eventually

import tq
from tq.packing import pack
from tq.store.broker import Broker
from tq.store.keys import Keys

PAYLOAD = {"to": "user123@example.com", "subject": "Welcome"}
K = Keys("tq")


pytestmark = pytest.mark.cluster_too   # each test: on a standalone Redis, then on a Cluster


def redis_ms(rconn) -> int:
    sec, usec = rconn.time()
    return sec * 1000 + usec // 1000


# -- enqueue and the states get() reports ------------------------------------------------------
def test_enqueue_stores_one_body_and_one_id(any_client, any_rconn):
    tid = any_client.enqueue("email", PAYLOAD)
    q = K.queue("email")
    assert any_rconn.lrange(q.ready_at(0), 0, -1) == [tid.encode()]
    assert any_rconn.hget(q.tasks, tid) == b'{"p":{"to":"user123@example.com","subject":"Welcome"}}'
    assert any_rconn.smembers(K.queues) == {b"email"}
    info = any_client.get(tid)
    assert (info.id, info.type, info.queue, info.state, info.attempts) == \
        (tid, "email", "email", "queued", 0)
    assert info.payload == PAYLOAD and info.priority == 0
    assert abs(info.created_at - time.time()) < 5


def test_get_follows_a_task_through_every_state(any_client, any_broker, any_rconn):
    tid = any_client.enqueue("report", {"n": 1}, queue="reports", delay=30, max_retries=1,
                             timeout=9)
    info = any_client.get(tid)
    assert info.state == "scheduled" and info.eta > time.time() + 20
    assert (info.queue, info.max_retries, info.timeout) == ("reports", 1, 9)

    any_rconn.zadd(K.queue("reports").sched, {tid: 0})   # make it due now
    assert any_broker.promote_due(["reports"]) == (1, None)
    assert any_client.get(tid).state == "queued"

    before = time.time()
    task, = any_broker.claim("w1", ["reports"]).tasks
    info = any_client.get(tid)
    assert (info.state, info.attempts, info.worker) == ("running", 1, "w1")
    assert before - 1 < info.started_at < time.time() + 1

    out = any_broker.fail("w1", task, "boom", traceback="Traceback: boom", delay=60)
    assert (out.outcome, out.failures) == ("retry", 1)
    info = any_client.get(tid)
    assert (info.state, info.attempts, info.error, info.traceback) == \
        ("failed-will-retry", 1, "boom", "Traceback: boom")
    assert info.eta > time.time() + 50 and info.failed_at is not None

    any_rconn.zadd(K.queue("reports").sched, {tid: 0})
    task, = any_broker.claim("w1", ["reports"]).tasks
    assert task.attempt == 2
    assert any_client.get(tid).attempts == 2
    assert any_broker.fail("w1", task, "boom again", traceback="tb2").outcome == "dead"
    info = any_client.get(tid)
    assert (info.state, info.attempts, info.error, info.traceback) == \
        ("dead", 2, "boom again", "tb2")
    assert info.payload == {"n": 1}   # a dead letter keeps its payload for a retry


def test_a_succeeded_task_keeps_its_result_times_and_attempts(any_client, any_broker, any_rconn):
    tid = any_client.enqueue("add", {"a": 1})
    task, = any_broker.claim("w1", ["add"]).tasks
    started = time.time()
    assert any_broker.ack("w1", task, {"sum": 3, "list": []}, started=started, result_ttl=60)
    info = any_client.get(tid)
    assert (info.state, info.result, info.attempts, info.worker) == \
        ("succeeded", {"sum": 3, "list": []}, 1, "w1")
    assert info.started_at == pytest.approx(started, abs=0.002)
    assert started - 0.002 <= info.finished_at <= time.time() + 0.01   # stored in ms
    assert abs(info.created_at - started) < 5
    ttl = any_rconn.pttl(K.queue("add").result(tid))
    assert 59_000 < ttl <= 60_000
    # nothing else is left of a finished task
    q = K.queue("add")
    assert not any_rconn.hexists(q.tasks, tid) and not any_rconn.hexists(q.run, tid)
    assert any_rconn.llen(q.proc("w1")) == 0


def test_result_ttl_zero_stores_nothing(any_client, any_broker, any_rconn):
    tid = any_client.enqueue("add", {"a": 1})
    task, = any_broker.claim("w1", ["add"]).tasks
    assert any_broker.ack("w1", task, 3, result_ttl=0)
    assert any_rconn.keys("*res*") == []
    with pytest.raises(tq.TaskNotFound):
        any_client.get(tid)


def test_unknown_id(any_client):
    with pytest.raises(tq.TaskNotFound, match="nope"):
        any_client.get("nope")
    any_client.enqueue("email", PAYLOAD)
    with pytest.raises(tq.TaskNotFound):
        any_client.get("AAAAAAAAAAAAAAAAA")
    with pytest.raises(tq.TaskNotFound):
        any_client.get("AAAAAAAAAAAAAAAAA", queue="email")


# -- priorities ---------------------------------------------------------------------------------
def test_priorities_are_strict_and_fifo_within_a_level(any_client, any_broker):
    specs = [{"type": "job", "payload": {"i": i}, "priority": p}
             for i, p in enumerate([0, 5, 9, 0, 5, 9, 3, 0, 9])]
    ids = any_client.enqueue_many(specs)
    expected = sorted(range(len(specs)), key=lambda i: (-specs[i]["priority"], i))
    got = [t.id for t in any_broker.claim("w", ["job"], 100).tasks]
    assert got == [ids[i] for i in expected]


def test_queue_sizes_by_priority(any_client, any_broker):
    before = time.time()
    any_client.enqueue_many([("a", {})] * 3 + [{"type": "a", "priority": 7}] * 2)
    after = time.time()
    any_client.enqueue("b", {}, delay=60)
    any_client.enqueue("b", {})
    any_broker.claim("w", ["b"])
    sizes = any_client.queue_sizes()
    # the oldest ready task's creation time, read from the heads of the ready lists
    assert before - 0.001 <= sizes["a"].pop("oldest_ready") <= after
    assert sizes["a"] == {"ready": 5, "by_priority": {7: 2, 0: 3}, "scheduled": 0,
                          "running": 0, "dead": 0, "held": 0, "limited": False, "paused": False,
                          "broken": None}
    assert sizes["b"] == {"ready": 0, "by_priority": {}, "scheduled": 1, "running": 1,
                          "dead": 0, "held": 0, "limited": False, "paused": False,
                          "broken": None,
                          "oldest_ready": None}
    assert any_client.queues() == ["a", "b"]


# -- delays, on Redis' clock ----------------------------------------------------------------------
def test_delay_counts_from_redis_time_not_the_producers_clock(any_client, any_broker, any_rconn,
                                                              monkeypatch):
    # Given a producer whose clock is an hour fast
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)
    monkeypatch.setattr(time, "time_ns", lambda: int((real_time() + 3600) * 1e9))
    # When it enqueues with a 150 ms delay
    before = redis_ms(any_rconn)
    tid = any_client.enqueue("email", PAYLOAD, delay=0.15)
    after = redis_ms(any_rconn)
    # Then the due time is 150 ms after Redis' now, and the task runs then, not in an hour
    due = any_rconn.zscore(K.queue("email").sched, tid)
    assert before + 150 <= due <= after + 150
    assert any_broker.claim("w", ["email"]).tasks == []
    task, = eventually(lambda: any_broker.claim("w", ["email"]).tasks, timeout=3)
    assert task.id == tid
    assert redis_ms(any_rconn) >= due


def test_delays_have_millisecond_resolution(any_client, any_rconn):
    t0 = redis_ms(any_rconn)
    ids = [any_client.enqueue("tick", {"i": i}, delay=i / 1000) for i in range(1, 6)]
    scores = [any_rconn.zscore(K.queue("tick").sched, tid) for tid in ids]
    assert scores == sorted(scores) and len(set(scores)) == 5
    for i, s in enumerate(scores, 1):
        assert t0 + i <= s <= redis_ms(any_rconn) + i


def test_eta_and_timedelta(any_client, any_rconn):
    now = time.time()
    a = any_client.enqueue("t", {}, eta=now + 100)
    b = any_client.enqueue("t", {}, eta=dt.datetime.fromtimestamp(now + 200, dt.UTC))
    c = any_client.enqueue("t", {}, delay=dt.timedelta(seconds=300))
    d = any_client.enqueue("t", {}, eta=now - 10)   # already due: ready at once
    sched = K.queue("t").sched
    assert any_rconn.zscore(sched, a) == pytest.approx((now + 100) * 1000, abs=2)
    assert any_rconn.zscore(sched, b) == pytest.approx((now + 200) * 1000, abs=2)
    assert any_rconn.zscore(sched, c) == pytest.approx(redis_ms(any_rconn) + 300_000, abs=1000)
    assert any_client.get(d).state == "queued"


def test_promote_due_moves_each_task_exactly_once_under_concurrency(any_redis_url, any_client,
                                                                    any_rconn):
    n = 400
    ids = any_client.enqueue_many([{"type": "t", "payload": {"i": i}, "delay": 0.05,
                                    "priority": i % 3} for i in range(n)])
    last_due = max(any_rconn.zscore(K.queue("t").sched, tid) for tid in ids)
    eventually(lambda: redis_ms(any_rconn) > last_due)
    moved = []
    start = threading.Barrier(8)

    def promoter():
        b = Broker(any_redis_url)
        start.wait()
        while True:
            n_moved, _ = b.promote_due(["t"], limit=7)
            moved.append(n_moved)
            if n_moved == 0:
                break
        b.close()

    threads = [threading.Thread(target=promoter) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sum(moved) == n
    ready = [i for p in range(3) for i in any_rconn.lrange(K.queue("t").ready_at(p), 0, -1)]
    assert sorted(r.decode() for r in ready) == sorted(ids)   # each once, none lost
    assert any_rconn.zcard(K.queue("t").sched) == 0


def test_promote_due_reports_the_next_due_time(any_client, any_broker):
    assert any_broker.promote_due() == (0, None)
    any_client.enqueue("t", {}, delay=30)
    moved, due = any_broker.promote_due()
    assert moved == 0 and 29 < due <= 30


# -- unique_for ----------------------------------------------------------------------------------
def test_unique_for_returns_the_first_id_while_the_lock_holds(any_client, any_rconn):
    first = any_client.enqueue("email", {"a": 1, "b": 2}, unique_for=60)
    assert any_client.enqueue("email", {"b": 2, "a": 1}, unique_for=60) == first   # key order
    assert any_client.enqueue("email", {"a": 1, "b": 3}, unique_for=60) != first
    assert any_client.enqueue("other", {"a": 1, "b": 2}, queue="email", unique_for=60) != first
    assert any_client.enqueue("email", {"a": 1, "b": 2}) != first   # not asked: no dedup
    k1 = any_client.enqueue("email", {"x": 1}, unique_for=60, unique_key="user:7")
    assert any_client.enqueue("email", {"x": 2}, unique_for=60, unique_key="user:7") == k1
    assert any_rconn.llen(K.queue("email").ready_at(0)) == 5
    ids = any_client.enqueue_many([{"type": "email", "payload": {"z": 1}, "unique_for": 60}] * 3)
    assert ids[0] == ids[1] == ids[2]
    assert any_client.stats()["total"]["enqueued"] == 6


def test_after_the_unique_window_a_new_task_is_made(any_client, any_rconn):
    first = any_client.enqueue("email", PAYLOAD, unique_for=0.05)
    locks = any_rconn.keys("tq:{email}:uniq:*")
    assert len(locks) == 1 and 0 < any_rconn.pttl(locks[0]) <= 50
    eventually(lambda: not any_rconn.exists(locks[0]))
    second = any_client.enqueue("email", PAYLOAD, unique_for=0.05)
    assert second != first


# -- counters ------------------------------------------------------------------------------------
def test_stats_total_by_type_and_by_queue(any_client, any_broker):
    any_client.enqueue_many([("email", {})] * 3 + [{"type": "sms", "queue": "email"}])
    any_client.enqueue("resize", {}, max_retries=0)
    tasks = any_broker.claim("w", ["email"], 2).tasks
    any_broker.ack("w", tasks[0])
    any_broker.fail("w", tasks[1], "x", delay=100)
    r, = any_broker.claim("w", ["resize"]).tasks
    any_broker.fail("w", r, "x")
    stats = any_client.stats()
    assert stats["total"] == {"enqueued": 5, "started": 3, "succeeded": 1, "failed": 2,
                              "retried": 1, "dead": 1, "throttled": 0}
    assert stats["by_type"]["email"] == {"enqueued": 3, "started": 2, "succeeded": 1,
                                         "failed": 1, "retried": 1, "dead": 0, "throttled": 0}
    assert stats["by_type"]["sms"]["enqueued"] == 1
    assert stats["by_type"]["resize"]["dead"] == 1
    assert stats["by_queue"]["email"]["enqueued"] == 4
    assert stats["by_queue"]["resize"] == stats["by_type"]["resize"]


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("payload", [[1, 2], "text", 3, {"x": object()}, {"x": float("nan")},
                                     {"x": {1, 2}}])
def test_bad_payload_writes_nothing(any_client, any_rconn, payload):
    with pytest.raises(tq.PayloadError):
        any_client.enqueue("email", payload)
    with pytest.raises(tq.PayloadError, match="spec #1"):
        any_client.enqueue_many([("email", {"ok": 1}), ("email", payload)])
    assert any_rconn.dbsize() == 0


def test_payload_size_limit(any_redis_url, any_client, any_rconn):
    big = {"blob": "x" * (1024 * 1024)}
    with pytest.raises(tq.PayloadError, match="over the limit of 1048576"):
        any_client.enqueue("upload", big)
    assert any_rconn.dbsize() == 0
    assert any_client.get(any_client.enqueue("upload", {"blob": "x" * 1_000_000})).payload
    with tq.Client(any_redis_url, max_payload_bytes=2 * 1024 * 1024) as roomy:
        tid = roomy.enqueue("upload", big)
    assert any_client.get(tid).payload == big


@pytest.mark.parametrize("name", ["", " ", "a b", "{x}", "a}", "a:b", "x" * 201, "tab\t"])
def test_bad_type_or_queue_names(any_client, any_rconn, name):
    with pytest.raises(ValueError):
        any_client.enqueue(name, {})
    with pytest.raises(ValueError):
        any_client.enqueue("ok", {}, queue=name)
    with pytest.raises(ValueError):
        any_client.enqueue_many([("ok", {}), (name, {})])
    assert any_rconn.dbsize() == 0


@pytest.mark.parametrize("options, match", [
    ({"priority": 10}, "priority"), ({"priority": -1}, "priority"), ({"priority": "9"}, "priority"),
    ({"delay": -1}, "delay"), ({"delay": "soon"}, "delay"), ({"delay": 1, "eta": 5}, "not both"),
    ({"max_retries": -1}, "max_retries"), ({"timeout": 0}, "timeout"),
    ({"unique_for": 0}, "unique_for"), ({"unique_key": "k"}, "unique_for"),
])
def test_bad_options(any_client, any_rconn, options, match):
    with pytest.raises(ValueError, match=match):
        any_client.enqueue("t", {}, **options)
    with pytest.raises(ValueError, match=match):
        any_client.enqueue_many([{"type": "t", **options}])
    assert any_rconn.dbsize() == 0


def test_bad_specs(any_client):
    with pytest.raises(ValueError, match="no 'type'"):
        any_client.enqueue_many([{"payload": {}}])
    with pytest.raises(ValueError, match="unknown options"):
        any_client.enqueue_many([{"type": "t", "prio": 1}])
    with pytest.raises(ValueError, match="mapping or a"):
        any_client.enqueue_many(["t"])
    assert any_client.enqueue_many([]) == []


@pytest.mark.parametrize("options", [{"max_retries": 2**63}, {"max_retries": 1001},
                                     {"max_retries": True}, {"timeout": 1e300},
                                     {"timeout": 0}])
def test_task_options_out_of_range_are_refused_at_the_door(any_client, any_rconn, options):
    with pytest.raises(ValueError):
        any_client.enqueue("t", {}, **options)
    with pytest.raises(ValueError, match="spec #1"):
        any_client.enqueue_many([("t", {}), {"type": "t", **options}])
    assert any_rconn.exists("tq:{t}:tasks") == 0


@pytest.mark.parametrize("kwargs", [
    {"unique_for": 1e16}, {"delay": math.inf}, {"delay": math.nan}, {"timeout": math.inf},
    {"eta": 1e300}, {"delay": 11 * 365 * 86400},
])
def test_absurd_durations_are_refused_before_anything_is_written(any_client, any_rconn, kwargs):
    with pytest.raises(ValueError):
        any_client.enqueue("t", {}, **kwargs)
    assert any_rconn.exists("tq:{t}:tasks") == 0


def test_an_earlier_due_time_leaves_a_token_for_the_master(any_client, any_broker, any_rconn):
    # the masters block on the agenda's soon list: a token when the earliest time of all
    # moves earlier, and the agenda keeps each queue's earliest
    soon, due = K.soon, K.due
    any_client.enqueue("t", {}, delay=60)
    assert any_rconn.lpop(soon) == b"1"                 # the first scheduled task
    first = any_rconn.zscore(due, "t")
    any_client.enqueue("t", {}, delay=120)
    assert any_rconn.llen(soon) == 0                    # later than the earliest: no news
    assert any_rconn.zscore(due, "t") == first
    any_client.enqueue_many([{"type": "t", "delay": 30}] * 3)
    assert any_rconn.llen(soon) == 1                    # earlier: one token, not three
    assert any_rconn.zscore(due, "t") < first
    any_rconn.delete(soon)
    any_client.enqueue("t", {})
    assert any_rconn.llen(soon) == 0                    # ready tasks are the workers' business
    task, = any_broker.claim("w", ["t"]).tasks
    any_broker.fail("w", task, "x", delay=1)            # a retry due before everything else
    assert any_rconn.llen(soon) == 1


def test_a_repeated_enqueue_call_does_not_make_a_second_task(any_client, any_rconn):
    # As when a connection drops after Redis ran the script and the client sends it again
    q, args, _ = pack("t", {"a": 1}, None, 0, None, None, None, None, None, None,
                      ring=any_client.keys, max_bytes=any_client.max_payload_bytes,
                      keys=any_client.broker.keys)
    first = any_client._send(q, [list(args)], [])
    again = any_client._send(q, [list(args)], [])
    assert first == again == [args[0]]
    assert any_rconn.llen(K.queue("t").ready_at(0)) == 1
    # while a different body under a taken id is a collision: it gets a fresh id
    other = list(args)
    other[1] = '{"p":{"a":2}}'
    fresh, = any_client._send(q, [other], [])
    assert fresh != args[0] and any_client.get(fresh).payload == {"a": 2}


def test_enqueue_many_keeps_the_order_of_ids_across_queues_and_chunks(any_client, any_rconn):
    specs = [{"type": "t", "queue": ("a", "b")[i % 2], "payload": {"i": i}} for i in range(2500)]
    ids = any_client.enqueue_many(iter(specs))        # any iterable, consumed once
    assert len(set(ids)) == 2500
    for i in (0, 1, 999, 1000, 1001, 2499):
        info = any_client.get(ids[i])
        assert (info.queue, info.payload) == (("a", "b")[i % 2], {"i": i})
    assert any_rconn.llen(K.queue("a").ready_at(0)) == 1250


def test_unicode_names_and_payloads(any_client, any_broker):
    tid = any_client.enqueue("Ünïcode", {"текст": "日本語", "emoji": "🙂"}, queue="очередь")
    task, = any_broker.claim("w", ["очередь"]).tasks
    assert (task.type, task.payload) == ("Ünïcode", {"текст": "日本語", "emoji": "🙂"})
    assert any_broker.ack("w", task, {"ok": "✓"})
    assert any_client.wait(tid, timeout=1) == {"ok": "✓"}
    assert any_client.stats()["by_type"]["Ünïcode"]["succeeded"] == 1
