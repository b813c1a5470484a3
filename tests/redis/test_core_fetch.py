"""Worker side against a real Redis (7.x and 6.2): claim/fetch order and atomicity, blocking
wake-ups, fenced acks and fails, malformed entries."""

from __future__ import annotations

import threading
import time

import pytest
from master_proc import clients, eventually

from tq.store.broker import Ack, Broker, result_record
from tq.store.keys import Keys

K = Keys("tq")


pytestmark = pytest.mark.cluster_too   # each test: on a standalone Redis, then on a Cluster


def blocked(rconn) -> int:
    """How many clients sit in BLPOP (workers waiting for work)."""
    return sum(1 for c in clients(rconn) if c.get("cmd") == "blpop")


class Fetcher(threading.Thread):
    """broker.fetch() in a thread, with its own connection; records what and when it got."""

    def __init__(self, url: str, worker: str, queues: list[str], block: float = 5.0,
                 n: int = 1) -> None:
        super().__init__(daemon=True)
        self.broker = Broker(url)
        self.args = (worker, queues, n, block)
        self.tasks: list = []
        self.done_at: float | None = None

    def run(self) -> None:
        self.tasks = self.broker.fetch(*self.args)
        self.done_at = time.monotonic()
        self.broker.close()


# -- claim ---------------------------------------------------------------------------------------
def test_claim_moves_ids_atomically_into_the_workers_processing_list(any_client, any_broker,
                                                                     any_rconn):
    ids = any_client.enqueue_many([("email", {"i": i}) for i in range(5)])
    got = any_broker.claim("w1", ["email"], 3)
    q = K.queue("email")
    assert [t.id for t in got.tasks] == ids[:3]
    assert [t.payload for t in got.tasks] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert any_rconn.lrange(q.proc("w1"), 0, -1) == [i.encode() for i in ids[:3]]
    assert any_rconn.lrange(q.ready_at(0), 0, -1) == [i.encode() for i in ids[3:]]
    claims = {k.decode(): v.decode().split("|") for k, v in any_rconn.hgetall(q.run).items()}
    assert set(claims) == set(ids[:3])
    tokens = {t.id: t.token for t in got.tasks}
    for tid, (worker, token, _ms) in claims.items():
        assert worker == "w1" and token == tokens[tid]
    assert len(set(tokens.values())) == 3   # every claim its own fencing token


def test_queues_are_served_in_the_order_given_then_by_priority(any_client, any_broker):
    low = any_client.enqueue_many([{"type": "low", "payload": {}, "priority": 9}] * 2)
    high = any_client.enqueue_many([{"type": "high", "priority": p} for p in (0, 5)])
    got = [t.id for t in any_broker.claim("w", ["high", "low"], 3).tasks]
    assert got == [high[1], high[0], low[0]]
    assert [t.id for t in any_broker.claim("w", ["high", "low"], 3).tasks] == [low[1]]
    assert any_broker.claim("w", ["high", "low"], 3).tasks == []


def test_claim_promotes_due_retries_first(any_client, any_broker, any_rconn):
    tid = any_client.enqueue("t", {}, delay=60)
    any_rconn.zadd(K.queue("t").sched, {tid: 1})
    assert [t.id for t in any_broker.claim("w", ["t"]).tasks] == [tid]


def test_claim_acks_and_claims_in_one_call(any_client, any_broker, any_rconn):
    any_client.enqueue_many([("t", {"i": i}) for i in range(4)])
    first = any_broker.claim("w", ["t"], 2).tasks
    acks = [Ack(t, result_record(t, str(i), "w", time.time(), time.time()))
            for i, t in enumerate(first)]
    got = any_broker.claim("w", ["t"], 2, acks=acks, stats={("t", "t:custom"): 5})
    assert got.stale == [] and len(got.tasks) == 2
    assert any_rconn.lrange(K.queue("t").proc("w"), 0, -1) == [t.id.encode() for t in got.tasks]
    assert any_rconn.hget(K.queue("t").stats, "t:custom") == b"5"
    assert any_rconn.exists(*(K.queue("t").result(t.id) for t in first)) == 2
    with pytest.raises(ValueError, match="outside"):
        any_broker.claim("w", ["other"], 1, acks=[Ack(got.tasks[0], "null")])


def test_acks_out_of_claim_order(any_client, any_broker, any_rconn):
    any_client.enqueue_many([("t", {"i": i}) for i in range(4)])
    tasks = any_broker.claim("w", ["t"], 4).tasks
    assert any_broker.ack("w", tasks[2])
    assert any_broker.ack("w", tasks[0])
    assert any_rconn.lrange(K.queue("t").proc("w"), 0, -1) == [tasks[1].id.encode(),
                                                                 tasks[3].id.encode()]


# -- blocking fetch -------------------------------------------------------------------------------
def test_fetch_returns_nothing_after_its_block_time(any_broker):
    t = time.monotonic()
    assert any_broker.fetch("w", ["empty"], 1, block_seconds=0.2) == []
    assert 0.19 <= time.monotonic() - t < 1.0
    assert any_broker.fetch("w", ["empty"], 1) == []   # 0: does not block


def test_a_blocked_fetch_is_woken_by_an_enqueue_not_its_timeout(any_redis_url, any_client,
                                                                 any_rconn):
    block = 5.0
    f = Fetcher(any_redis_url, "w1", ["email"], block=block)
    f.start()
    eventually(lambda: blocked(any_rconn) == 1)
    t = time.monotonic()
    tid = any_client.enqueue("email", {})
    f.join(5)
    assert [x.id for x in f.tasks] == [tid]
    # Woken by the enqueue's token (milliseconds when idle), not at the end of its 5 s block:
    # a tenth of the block tells the two apart on any machine, however loaded; how fast the
    # wake-up is, is measured by bench/ (idle latency), not asserted here.
    assert f.done_at - t < block / 10


def test_wait_and_claim_claims_as_the_token_arrives(any_redis_url, any_client, any_rconn):
    # The claim is pipelined behind the blocking read: one round trip from wake-up to task.
    b = Broker(any_redis_url)
    got: list = []
    th = threading.Thread(target=lambda: got.append(b.wait_and_claim("w1", ["email"], 5)))
    th.start()
    eventually(lambda: blocked(any_rconn) == 1)
    t = time.monotonic()
    tid = any_client.enqueue("email", {"n": 1})
    th.join(5)
    assert time.monotonic() - t < 5 / 10   # the token, not the 5 s block (see above)
    assert [x.id for x in got[0].tasks] == [tid]
    assert any_client.get(tid).state == "running"
    b.close()


def test_wait_and_claim_times_out_empty_and_survives_an_empty_script_cache(any_broker,
                                                                            any_rconn):
    t = time.monotonic()
    assert any_broker.wait_and_claim("w1", ["empty"], 0.2).tasks == []
    assert 0.15 <= time.monotonic() - t < 1.0
    any_rconn.script_flush()   # as after a Redis restart: the queued EVALSHA gets NOSCRIPT
    assert any_broker.wait_and_claim("w1", ["empty"], 0.05).tasks == []


def test_a_block_longer_than_the_socket_timeout_is_fine(any_redis_url):
    b = Broker(any_redis_url, socket_timeout=0.5)
    t = time.monotonic()
    assert b.fetch("w", ["empty"], 1, block_seconds=1.2) == []
    assert 1.15 <= time.monotonic() - t < 2.5
    b.close()


def test_a_delayed_task_wakes_a_blocked_fetch_when_due(any_redis_url, any_client, any_rconn):
    f = Fetcher(any_redis_url, "w1", ["t"], block=5)
    f.start()
    eventually(lambda: blocked(any_rconn) == 1)
    t = time.monotonic()
    tid = any_client.enqueue("t", {}, delay=0.15)
    f.join(5)
    assert [x.id for x in f.tasks] == [tid]
    assert 0.14 <= f.done_at - t < 0.5   # Redis ends a block up to 100 ms late (hz 10)


def test_every_blocked_worker_is_woken_by_the_token_chain(any_redis_url, any_client, any_rconn):
    # Given four workers blocked on the same queue and two more on two queues at once
    fetchers = [Fetcher(any_redis_url, f"w{i}", ["jobs"]) for i in range(4)]
    fetchers += [Fetcher(any_redis_url, f"m{i}", ["other", "jobs"]) for i in range(2)]
    for f in fetchers:
        f.start()
    eventually(lambda: blocked(any_rconn) == 6)
    # When six tasks arrive in one enqueue (one wake token)
    t = time.monotonic()
    ids = any_client.enqueue_many([("jobs", {"i": i}) for i in range(6)])
    for f in fetchers:
        f.join(5)
    # Then each worker got one, and none twice, each woken by the token passed on to it (six
    # hops of milliseconds), not by the end of its 5 s block: a fifth of it tells them apart
    got = sorted(x.id for f in fetchers for x in f.tasks)
    assert got == sorted(ids)
    assert max(f.done_at for f in fetchers) - t < 5.0 / 5


def test_a_worker_on_several_queues_wakes_for_any_of_them(any_redis_url, any_client, any_rconn):
    f = Fetcher(any_redis_url, "w", ["a", "b", "c"])
    f.start()
    eventually(lambda: blocked(any_rconn) == 1)
    tid = any_client.enqueue("c", {})
    f.join(5)
    assert [x.id for x in f.tasks] == [tid]


def test_stale_wake_tokens_do_not_make_an_idle_worker_spin(any_client, any_broker, any_rconn):
    tid = any_client.enqueue("t", {})
    assert any_rconn.llen(K.queue("t").wake) == 1
    assert [x.id for x in any_broker.fetch("w", ["t"], 1, 1)] == [tid]
    calls = any_rconn.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    assert any_broker.fetch("w", ["t"], 1, block_seconds=0.3) == []
    after = any_rconn.info("commandstats")["cmdstat_evalsha"]["calls"]
    assert after - calls <= 3   # claim, block, claim: no busy loop


# -- fencing -------------------------------------------------------------------------------------
def test_a_stale_worker_cannot_ack_or_fail_a_task_that_was_requeued(any_client, any_broker,
                                                                     any_rconn):
    # Given w1 claimed a task, then was presumed dead: its task went to w2
    tid = any_client.enqueue("t", {})
    stale, = any_broker.claim("w1", ["t"]).tasks
    assert any_broker.requeue_worker("w1", ["t"]).requeued == 1
    # (before anyone claims it again, w1 cannot ack it either)
    assert any_broker.ack("w1", stale) is False
    fresh, = any_broker.claim("w2", ["t"]).tasks
    assert fresh.id == tid and fresh.token != stale.token
    # When w1 wakes up and acks or fails it
    assert any_broker.ack("w1", stale, "zombie result") is False
    assert any_broker.fail("w1", stale, "zombie error").outcome == "stale"
    got = any_broker.claim("w1", ["t"], 1, acks=[Ack(stale, "1")])
    assert got.stale == [tid]
    # Then nothing changed: w2 still holds it and its ack counts
    q = K.queue("t")
    assert any_rconn.hget(q.run, tid).startswith(b"w2|")
    assert not any_rconn.exists(q.result(tid)) and not any_rconn.hexists(q.fails, tid)
    assert any_broker.ack("w2", fresh, "real")
    assert any_rconn.exists(q.result(tid))


def test_the_same_worker_with_an_old_token_is_fenced_too(any_client, any_broker):
    any_client.enqueue("t", {})
    first, = any_broker.claim("w", ["t"]).tasks
    assert any_broker.fail("w", first, "x", delay=0).outcome == "retry"
    second, = any_broker.claim("w", ["t"]).tasks
    assert any_broker.ack("w", first) is False
    assert any_broker.ack("w", second) is True


# -- malformed entries ----------------------------------------------------------------------------
def test_junk_and_missing_bodies_become_malformed_dead_letters_and_fetch_goes_on(
        any_client, any_broker, any_rconn):
    q = K.queue("t")
    any_rconn.rpush(q.ready_at(0), '{"junk": "pushed by hand"}')   # not an id at all
    any_rconn.rpush(q.ready_at(0), "idwithoutabody")               # an id, no body
    any_rconn.hset(q.tasks, "unreadable", "garbage")
    any_rconn.rpush(q.ready_at(0), "unreadable")                   # a body tq did not write
    tid = any_client.enqueue("t", {"ok": True})
    got = any_broker.claim("w", ["t"], 4)
    assert [x.id for x in got.tasks] == [tid]
    dead = {d.id: d for d in any_client.dead(limit=10)}
    assert len(dead) == 3
    assert {d.error_kind for d in dead.values()} == {"malformed"}
    assert {d.state for d in dead.values()} == {"dead"}
    assert "no task body" in dead["idwithoutabody"].error
    assert "unreadable task body" in dead["unreadable"].error
    junk, = (d for d in dead.values() if d.id.startswith("malformed-"))
    assert "not a task id" in junk.error
    assert any_rconn.hget(q.tasks, junk.id) == b'{"junk": "pushed by hand"}'   # kept as evidence
    assert any_client.stats()["total"]["dead"] == 3


def test_junk_in_the_schedule_is_buried_too(any_client, any_broker, any_rconn):
    q = K.queue("t")
    any_rconn.zadd(q.sched, {"ghost": 0})
    any_client.enqueue("t", {})
    assert len(any_broker.claim("w", ["t"], 5).tasks) == 1
    assert [d.id for d in any_client.dead()] == ["ghost"]


def test_a_body_whose_payload_is_not_json_reaches_the_worker_marked_malformed(
        any_broker, any_rconn):
    q = K.queue("t")
    any_rconn.hset(q.tasks, "broken", '{"p":{"to": oops')
    any_rconn.rpush(q.ready_at(0), "broken")
    task, = any_broker.claim("w", ["t"]).tasks
    assert task.id == "broken" and task.malformed and "oops" in task.malformed
    out = any_broker.fail("w", task, task.malformed, kind="malformed", retry=False)
    assert out.outcome == "dead"


def test_malformed_entries_do_not_count_against_max_tasks(any_client, any_broker, any_rconn):
    q = K.queue("t")
    any_rconn.rpush(q.ready_at(0), "ghost1", "ghost2", "ghost3")
    tid = any_client.enqueue("t", {})
    assert [x.id for x in any_broker.claim("w", ["t"], 1).tasks] == [tid]


def test_a_flood_of_junk_is_buried_in_bounded_steps_and_fetch_goes_on(any_client, any_broker,
                                                                      any_rconn):
    q = K.queue("t")
    any_rconn.rpush(q.ready_at(0), *[f"ghost{i}" for i in range(1500)])
    tid = any_client.enqueue("t", {})
    first = any_broker.claim("w", ["t"], 1)
    assert first.tasks == [] and first.next_due == 0   # cap reached: claim again at once
    assert any_rconn.zcard(q.dead) == 1000
    t = time.monotonic()
    assert [x.id for x in any_broker.fetch("w", ["t"], 1, block_seconds=5)] == [tid]
    assert time.monotonic() - t < 1
    assert any_rconn.zcard(q.dead) == 1500
