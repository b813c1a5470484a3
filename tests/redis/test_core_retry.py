"""Failures against a real Redis (7.x and 6.2): retries with backoff, handler policies, dead
letters and their admin operations, purge, and requeueing a dead worker's tasks."""

from __future__ import annotations

import threading

import pytest
from master_proc import eventually

from tq.handlers import Backoff
from tq.store.broker import Broker
from tq.store.keys import Keys
from tq.supervisor.recovery import Recovery

K = Keys("tq")


pytestmark = pytest.mark.cluster_too   # each test: on a standalone Redis, then on a Cluster


def redis_ms(rconn) -> int:
    sec, usec = rconn.time()
    return sec * 1000 + usec // 1000


def make_due(rconn, queue: str = "t") -> None:
    """Every scheduled task of the queue is due now (no waiting on backoff in tests)."""
    sched = K.queue(queue).sched
    for tid in rconn.zrange(sched, 0, -1):
        rconn.zadd(sched, {tid: 0})


def run_and_fail(broker, rconn, queue: str = "t", **fail_kw):
    """Claim the next task of the queue (due or not) and fail it; returns the outcome."""
    make_due(rconn, queue)
    task, = broker.claim("w", [queue]).tasks
    return task, broker.fail("w", task, "boom", traceback="tb", **fail_kw)


# -- retries ---------------------------------------------------------------------------------------
def test_a_retry_is_due_after_its_delay_on_redis_time(any_client, any_broker, any_rconn):
    tid = any_client.enqueue("t", {})
    task, = any_broker.claim("w", ["t"]).tasks
    before = redis_ms(any_rconn)
    out = any_broker.fail("w", task, "boom", delay=2.5)
    after = redis_ms(any_rconn)
    assert out.outcome == "retry" and before + 2500 <= out.due_ms <= after + 2500
    assert any_rconn.zscore(K.queue("t").sched, tid) == out.due_ms
    assert any_rconn.llen(K.queue("t").proc("w")) == 0 and not any_rconn.hexists(
        K.queue("t").run, tid)


def test_handler_backoff_with_jitter_spaces_the_retries(any_client, any_broker, any_rconn):
    backoff = Backoff(base=10, factor=2, cap=1000, jitter=0.1)
    any_client.enqueue("t", {}, max_retries=4)
    gaps = []
    for _ in range(4):
        make_due(any_rconn)
        task, = any_broker.claim("w", ["t"]).tasks
        now = redis_ms(any_rconn)
        out = any_broker.fail("w", task, "boom", delay=backoff(task.attempt))
        gaps.append((out.due_ms - now) / 1000)
    for attempt, gap in enumerate(gaps, 1):
        nominal = 10 * 2 ** (attempt - 1)
        assert nominal * 0.9 - 0.01 <= gap <= nominal * 1.1 + 0.01


def test_max_retries_on_the_task(any_client, any_broker, any_rconn):
    tid = any_client.enqueue("t", {}, max_retries=2)
    outcomes = [run_and_fail(any_broker, any_rconn)[1] for _ in range(3)]
    assert [(o.outcome, o.failures) for o in outcomes] == [("retry", 1), ("retry", 2),
                                                           ("dead", 3)]
    info = any_client.get(tid)
    assert (info.state, info.attempts, info.error, info.traceback) == ("dead", 3, "boom", "tb")


def test_the_handler_policy_is_used_when_the_task_has_no_max_retries(any_client, any_broker,
                                                                     any_rconn):
    any_broker.publish_policies({"t": {"t": {"max_retries": 1, "timeout": None}}})
    any_client.enqueue("t", {})
    assert run_and_fail(any_broker, any_rconn)[1].outcome == "retry"
    assert run_and_fail(any_broker, any_rconn)[1].outcome == "dead"
    # the task's own setting wins over the policy
    any_client.enqueue("t", {}, max_retries=0)
    assert run_and_fail(any_broker, any_rconn)[1].outcome == "dead"


def test_without_task_setting_or_policy_the_default_applies(any_client, any_broker, any_rconn):
    any_client.enqueue("t", {})
    outcomes = [run_and_fail(any_broker, any_rconn)[1].outcome for _ in range(4)]
    assert outcomes == ["retry", "retry", "retry", "dead"]   # default max_retries 3
    any_client.enqueue("t", {})
    assert run_and_fail(any_broker, any_rconn, default_max_retries=0)[1].outcome == "dead"


def test_no_retry_goes_straight_to_dead(any_client, any_broker, any_rconn):
    tid = any_client.enqueue("t", {}, max_retries=5)
    _, out = run_and_fail(any_broker, any_rconn, retry=False, kind="permanent")
    assert (out.outcome, out.failures) == ("dead", 1)
    assert any_client.get(tid).error_kind == "permanent"


def test_a_task_that_succeeds_after_failing_forgets_its_error(any_client, any_broker, any_rconn):
    tid = any_client.enqueue("t", {})
    run_and_fail(any_broker, any_rconn)
    make_due(any_rconn)
    task, = any_broker.claim("w", ["t"]).tasks
    assert task.failures == 1
    assert any_broker.ack("w", task, "ok")
    info = any_client.get(tid)
    assert (info.state, info.attempts, info.error) == ("succeeded", 2, None)
    q = K.queue("t")
    assert not any_rconn.hexists(q.fails, tid) and not any_rconn.hexists(q.errors, tid)


# -- dead letters ----------------------------------------------------------------------------------
def kill(client, broker, rconn, queue: str, n: int) -> list[str]:
    """n tasks of `queue` that died one after another (distinct dead times)."""
    ids = []
    for i in range(n):
        ids.append(client.enqueue(queue, {"i": i}, max_retries=0))
        task, = broker.claim("w", [queue]).tasks
        broker.fail("w", task, f"error {i}", traceback=f"tb {i}")
        died = redis_ms(rconn)
        while redis_ms(rconn) == died:   # the next one dies in a later Redis millisecond
            pass
    return ids


def test_dead_lists_newest_first_with_limit_and_offset(any_client, any_broker, any_rconn):
    a = kill(any_client, any_broker, any_rconn, "a", 3)
    b = kill(any_client, any_broker, any_rconn, "b", 2)
    newest_first = (a + b)[::-1]
    assert [d.id for d in any_client.dead()] == newest_first
    assert [d.id for d in any_client.dead(limit=2)] == newest_first[:2]
    assert [d.id for d in any_client.dead(limit=2, offset=2)] == newest_first[2:4]
    assert [d.id for d in any_client.dead(limit=10, offset=4)] == newest_first[4:]
    assert [d.id for d in any_client.dead(queue="a")] == a[::-1]
    first = any_client.dead(queue="a")[-1]
    assert (first.error, first.traceback, first.payload, first.state) == \
        ("error 0", "tb 0", {"i": 0}, "dead")
    with pytest.raises(ValueError):
        any_client.dead(limit=0)


def test_retry_dead_by_id_resets_attempts(any_client, any_broker, any_rconn):
    ids = kill(any_client, any_broker, any_rconn, "t", 3)
    assert any_client.retry_dead([ids[1], "unknown"]) == 1
    info = any_client.get(ids[1])
    assert (info.state, info.attempts, info.error) == ("queued", 0, None)
    task, = any_broker.claim("w", ["t"]).tasks
    assert task.id == ids[1] and task.attempt == 1
    assert [d.id for d in any_client.dead()] == [ids[2], ids[0]]


def test_retry_dead_all_with_progress(any_client, any_broker, any_rconn):
    ids = kill(any_client, any_broker, any_rconn, "a", 2) + kill(any_client, any_broker,
                                                                 any_rconn, "b", 1)
    seen = []
    assert any_client.retry_dead("all", progress=lambda done, total: seen.append((done, total))) \
        == 3
    assert seen[-1] == (3, 3)
    assert any_client.dead() == []
    assert sorted(t.id for t in any_broker.claim("w", ["a", "b"], 5).tasks) == sorted(ids)
    with pytest.raises(ValueError, match="all"):
        any_client.retry_dead("some-id")


def test_retry_dead_leaves_malformed_letters_dead(any_client, any_broker, any_rconn):
    q = K.queue("t")
    any_rconn.rpush(q.ready_at(0), *[f"ghost{i}" for i in range(3)])   # ids without bodies
    any_broker.claim("w", ["t"])
    good = kill(any_client, any_broker, any_rconn, "t", 2)
    assert len(any_client.dead()) == 5
    assert any_client.retry_dead("all") == 2       # the ghosts are older, they are skipped
    assert sorted(d.id for d in any_client.dead()) == ["ghost0", "ghost1", "ghost2"]
    assert any_client.retry_dead(["ghost1"]) == 0
    assert sorted(t.id for t in any_broker.claim("w", ["t"], 5).tasks) == sorted(good)
    assert any_client.delete_dead(["ghost1"]) == 1
    assert any_client.delete_dead("all") == 2
    assert any_client.dead() == [] and any_rconn.hlen(q.tasks) == 2   # the two running


def test_delete_dead(any_client, any_broker, any_rconn):
    ids = kill(any_client, any_broker, any_rconn, "t", 3)
    assert any_client.delete_dead([ids[0]]) == 1
    assert any_client.delete_dead([ids[0]]) == 0
    assert [d.id for d in any_client.dead()] == [ids[2], ids[1]]
    assert any_client.delete_dead("all", queue="t") == 2
    q = K.queue("t")
    for key in (q.tasks, q.fails, q.errors, q.dead):
        assert not any_rconn.exists(key)
    for tid in ids:
        with pytest.raises(Exception, match="no task"):
            any_client.get(tid)


def test_purge_deletes_waiting_tasks_only(any_client, any_broker, any_rconn):
    dead = kill(any_client, any_broker, any_rconn, "t", 1)[0]
    any_client.enqueue_many([{"type": "t", "priority": i % 10} for i in range(2500)])
    any_client.enqueue("t", {}, delay=60)
    running, = any_broker.claim("w", ["t"]).tasks
    other = any_client.enqueue("other", {})
    assert any_client.purge("t") == 2500   # 2499 ready + 1 scheduled, in chunks
    sizes = any_client.queue_sizes()
    assert sizes["t"] == {"ready": 0, "by_priority": {}, "scheduled": 0, "running": 1,
                          "dead": 1, "held": 0, "limited": False, "paused": False, "broken": None,
                          "oldest_ready": None}
    assert any_rconn.hlen(K.queue("t").tasks) == 2   # the running one and the dead one
    assert any_broker.ack("w", running)
    assert any_client.get(dead).state == "dead" and any_client.get(other).state == "queued"
    assert any_client.purge("t") == 0
    with pytest.raises(ValueError):
        any_client.purge("a:b")


# -- requeueing a worker's tasks ----------------------------------------------------------------
def test_requeue_puts_everything_back_in_front_in_order(any_client, any_broker, any_rconn):
    held = any_client.enqueue_many([("t", {"i": i}) for i in range(3)])
    any_broker.claim("w1", ["t"], 3)
    waiting = any_client.enqueue_many([("t", {"i": i}) for i in range(3, 5)])
    report = any_broker.requeue_worker("w1", ["t"])
    assert (report.requeued, report.dead) == (3, [])
    assert [t.id for t in any_broker.claim("w2", ["t"], 10).tasks] == held + waiting
    assert not any_rconn.exists(K.queue("t").proc("w1"))


def test_requeue_keeps_priorities(any_client, any_broker):
    ids = any_client.enqueue_many([{"type": "t", "priority": p} for p in (9, 1, 9, 1)])
    any_broker.claim("w1", ["t"], 3)           # 9, 9, 1
    late = any_client.enqueue("t", {}, priority=1)
    any_broker.requeue_worker("w1", ["t"])
    got = [t.id for t in any_broker.claim("w2", ["t"], 10).tasks]
    assert got == [ids[0], ids[2], ids[1], ids[3], late]


def test_only_the_running_task_counts_an_attempt(any_client, any_broker, any_rconn):
    ids = any_client.enqueue_many([("t", {"i": i}) for i in range(3)])
    any_broker.claim("w1", ["t"], 3)
    report = any_broker.requeue_worker("w1", ["t"], running_task_id=ids[1], reason="worker died")
    assert report.requeued == 3
    infos = [any_client.get(i) for i in ids]
    assert [i.attempts for i in infos] == [0, 1, 0]
    assert (infos[1].error, infos[1].error_kind) == ("worker died", "died")
    assert any_client.stats()["total"]["failed"] == 1
    # count_head: a reaper that does not know what ran counts the first claimed task
    any_broker.claim("w2", ["t"], 3)
    any_broker.requeue_worker("w2", ["t"], count_head=True)
    assert [any_client.get(i).attempts for i in ids] == [1, 1, 0]


def test_a_dead_hosts_running_task_is_charged_not_the_first_claimed(any_client, any_redis_url):
    # Given a worker on another host with a finished-but-unacked task ahead of the running one
    b = Broker(any_redis_url)
    first, running = any_client.enqueue("t", {"n": 1}), any_client.enqueue("t", {"n": 2})
    info = {"id": "far.1.x-1", "host": "far", "pid": 1, "queues": ["t"], "state": "busy",
            "task": running}
    b.register_worker("far.1.x-1", info)
    assert [t.id for t in b.claim("far.1.x-1", ["t"], 2).tasks] == [first, running]
    # When its heartbeat has expired and a master reaps it
    eventually(lambda: "far.1.x-1" in b.expired(0.01)[2], what="the heartbeat to expire")
    Recovery(b, "here", set()).expired(0.01)
    # Then the task its master last saw running counts the attempt, the other does not
    assert any_client.get(running).attempts == 1 and any_client.get(running).error_kind == "died"
    assert any_client.get(first).attempts == 0 and any_client.get(first).state == "queued"
    b.close()


def test_a_task_that_kills_every_worker_ends_dead(any_client, any_broker):
    tid = any_client.enqueue("t", {}, max_retries=1)
    other = any_client.enqueue("t", {})
    for round_ in range(2):
        assert len(any_broker.claim(f"w{round_}", ["t"], 2).tasks) == 2
        report = any_broker.requeue_worker(f"w{round_}", ["t"], running_task_id=tid,
                                           reason="worker died: signal 9")
    assert report.dead == [tid] and report.requeued == 1
    info = any_client.get(tid)
    assert (info.state, info.attempts, info.error) == ("dead", 2, "worker died: signal 9")
    assert any_client.get(other).attempts == 0   # the prefetched one never counted


def test_release_counts_nothing(any_client, any_broker, any_rconn):
    ids = any_client.enqueue_many([("t", {}), ("u", {})])
    any_broker.claim("w", ["t", "u"], 2)
    assert any_broker.release("w", ["t", "u"]) == 2
    assert [any_client.get(i).attempts for i in ids] == [0, 0]
    assert any_client.stats()["total"]["failed"] == 0
    assert any_broker.release("w", ["t", "u"]) == 0


def test_requeue_finds_the_queues_of_an_unregistered_worker(any_client, any_broker):
    any_client.enqueue_many([("a", {}), ("b", {})])
    any_broker.claim("w", ["a", "b"], 2)
    assert sorted(any_broker.queues_of("w")) == ["a", "b"]   # no registry info: a key scan
    assert any_broker.requeue_worker("w").requeued == 2


def reap(b: Broker, start: threading.Barrier, counts: list[int]) -> None:
    start.wait()
    counts.append(b.requeue_worker("w", ["t"], count_head=True).requeued)


def test_concurrent_requeues_of_one_worker_requeue_each_task_once(any_redis_url, any_client,
                                                                  any_rconn):
    brokers = [Broker(any_redis_url) for _ in range(4)]
    for round_ in range(10):
        ids = any_client.enqueue_many([("t", {"r": round_, "i": i}) for i in range(20)])
        brokers[0].claim("w", ["t"], 20)
        start = threading.Barrier(len(brokers))
        counts: list[int] = []
        threads = [threading.Thread(target=reap, args=(b, start, counts)) for b in brokers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert sum(counts) == 20
        ready = [r.decode() for r in any_rconn.lrange(K.queue("t").ready_at(0), 0, -1)]
        assert ready == ids
        assert sum(any_client.get(i).attempts for i in ids) == 1   # counted once, not 4 times
        any_client.purge("t")
    for b in brokers:
        b.close()
