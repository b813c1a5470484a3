"""Property-based tests (hypothesis): random sequences of enqueue (priorities, delays), claim,
ack, fail, requeue and stale acks against a real Redis, checked step by step against a model.

Invariants: after every step each live task is in exactly one place (a ready list, the
schedule, one worker's processing list, or dead) and the ready lists hold exactly the model's
order (priorities strict, FIFO within a level, requeues at the front); at the end every task
has finished exactly once, as succeeded or dead: none lost, none duplicated.
"""

from __future__ import annotations

from collections import deque

import hypothesis.strategies as st
import redis
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import tq
from tq.store.broker import Broker
from tq.store.keys import Keys

K = Keys("tq")
Q = K.queue("t")
WORKERS = ("w1", "w2", "w3")


class QueueMachine(RuleBasedStateMachine):
    url = ""

    def __init__(self) -> None:
        super().__init__()
        self.raw = redis.Redis.from_url(self.url, protocol=2)
        self.raw.flushall()
        self.client = tq.Client(self.url)
        self.broker = Broker(self.url)
        self.meta: dict[str, dict] = {}                     # id -> priority, max_retries, failures
        self.ready = {p: deque() for p in range(10)}
        self.waiting: list[str] = []                        # scheduled, not yet due
        self.due: list[str] = []                            # scheduled and due, in due order
        self.held = {w: [] for w in WORKERS}                # worker -> claimed Tasks, in order
        self.succeeded: list[str] = []
        self.dead: set[str] = set()
        self.stale: list = []                               # (worker, Task) claims taken away
        self.clock = 0                                      # due scores handed out by make_due

    def teardown(self) -> None:
        self.client.close()
        self.broker.close()
        self.raw.close()

    # -- producers -------------------------------------------------------------------------
    @rule(specs=st.lists(st.tuples(st.integers(0, 9), st.booleans(), st.integers(0, 2)),
                         min_size=1, max_size=4))
    def enqueue(self, specs):
        batch = [{"type": "t", "payload": {"n": len(self.meta) + i}, "priority": p,
                  "max_retries": m, **({"delay": 60} if delayed else {})}
                 for i, (p, delayed, m) in enumerate(specs)]
        ids = (self.client.enqueue_many(batch) if len(batch) > 1
               else [self.client.enqueue(**batch[0])])
        for tid, (p, delayed, m) in zip(ids, specs, strict=True):
            assert tid not in self.meta
            self.meta[tid] = {"p": p, "m": m, "f": 0}
            (self.waiting.append if delayed else self.ready[p].append)(tid)

    @precondition(lambda self: self.waiting)
    @rule(data=st.data())
    def make_due(self, data):
        tid = self.waiting.pop(data.draw(st.integers(0, len(self.waiting) - 1)))
        self.clock += 1
        self.raw.zadd(Q.sched, {tid: self.clock})   # long past: due, in this order
        self.due.append(tid)

    # -- workers ---------------------------------------------------------------------------
    @rule(worker=st.sampled_from(WORKERS), n=st.integers(1, 4))
    def claim(self, worker, n):
        for tid in self.due:            # claim promotes due tasks first, to their tails
            self.ready[self.meta[tid]["p"]].append(tid)
        self.due = []
        expected = []
        for p in range(9, -1, -1):
            while self.ready[p] and len(expected) < n:
                expected.append(self.ready[p].popleft())
        got = self.broker.claim(worker, ["t"], n).tasks
        assert [t.id for t in got] == expected
        assert [t.failures for t in got] == [self.meta[i]["f"] for i in expected]
        self.held[worker].extend(got)

    def _take(self, data, worker):
        return self.held[worker].pop(data.draw(st.integers(0, len(self.held[worker]) - 1)))

    @precondition(lambda self: any(self.held.values()))
    @rule(data=st.data())
    def ack(self, data):
        worker = data.draw(st.sampled_from([w for w in WORKERS if self.held[w]]))
        task = self._take(data, worker)
        assert self.broker.ack(worker, task, {"n": task.payload["n"]}) is True
        self.succeeded.append(task.id)

    @precondition(lambda self: any(self.held.values()))
    @rule(data=st.data(), retry=st.booleans())
    def fail(self, data, retry):
        worker = data.draw(st.sampled_from([w for w in WORKERS if self.held[w]]))
        task = self._take(data, worker)
        out = self.broker.fail(worker, task, "boom", retry=retry, delay=60)
        meta = self.meta[task.id]
        meta["f"] += 1
        if retry and meta["f"] <= meta["m"]:
            assert out.outcome == "retry"
            self.waiting.append(task.id)
        else:
            assert out.outcome == "dead"
            self.dead.add(task.id)
        assert out.failures == meta["f"]

    @rule(worker=st.sampled_from(WORKERS), mode=st.sampled_from(["none", "head", "id"]),
          data=st.data())
    def requeue(self, worker, mode, data):
        held = self.held[worker]
        running = None
        if mode == "id" and held:
            running = held[data.draw(st.integers(0, len(held) - 1))].id
        report = self.broker.requeue_worker(worker, ["t"], running_task_id=running,
                                            count_head=mode == "head")
        dead = []
        for i in range(len(held) - 1, -1, -1):
            tid = held[i].id
            meta = self.meta[tid]
            if (mode == "head" and i == 0) or tid == running:
                meta["f"] += 1
                if meta["f"] > meta["m"]:
                    dead.append(tid)
                    continue
            self.ready[meta["p"]].appendleft(tid)
        assert sorted(report.dead) == sorted(dead)
        assert report.requeued == len(held) - len(dead)
        self.dead.update(dead)
        self.stale.extend((worker, t) for t in held)
        self.held[worker] = []

    @precondition(lambda self: self.stale)
    @rule(data=st.data())
    def stale_worker_wakes_up(self, data):
        worker, task = self.stale[data.draw(st.integers(0, len(self.stale) - 1))]
        holder = self.raw.hget(Q.run, task.id)   # whoever holds it now, if anyone
        assert self.broker.ack(worker, task) is False
        assert self.broker.fail(worker, task, "late").outcome == "stale"
        assert self.raw.hget(Q.run, task.id) == holder   # nothing changed

    # -- the invariant -----------------------------------------------------------------------
    @invariant()
    def redis_matches_the_model(self):
        pipe = self.raw.pipeline(transaction=False)
        for p in range(10):
            pipe.lrange(Q.ready_at(p), 0, -1)
        pipe.zrange(Q.sched, 0, -1)
        for w in WORKERS:
            pipe.lrange(Q.proc(w), 0, -1)
        pipe.zrange(Q.dead, 0, -1)
        pipe.hkeys(Q.run)
        r = [[x.decode() for x in reply] for reply in pipe.execute()]
        assert r[:10] == [list(self.ready[p]) for p in range(10)]
        assert sorted(r[10]) == sorted(self.waiting + self.due)
        assert r[11:14] == [[t.id for t in self.held[w]] for w in WORKERS]
        assert set(r[14]) == self.dead
        assert sorted(r[15]) == sorted(t.id for w in WORKERS for t in self.held[w])
        places = [i for lst in r[:15] for i in lst] + self.succeeded
        assert sorted(places) == sorted(self.meta)   # each task in exactly one place

    def drain(self) -> None:
        """Run everything left to its end: every task finishes exactly once."""
        for w in WORKERS:
            self.broker.requeue_worker(w, ["t"])
        for tid in self.raw.zrange(Q.sched, 0, -1):
            self.raw.zadd(Q.sched, {tid: 0})
        while True:
            got = self.broker.claim("drain", ["t"], 50).tasks
            if not got:
                break
            for task in got:
                assert self.broker.ack("drain", task) is True
                self.succeeded.append(task.id)
        assert len(self.succeeded) == len(set(self.succeeded))
        assert set(self.succeeded).isdisjoint(self.dead)
        assert set(self.succeeded) | self.dead == set(self.meta)
        stats = self.client.stats()["total"]
        assert stats["enqueued"] == len(self.meta)
        assert stats["succeeded"] == len(self.succeeded) and stats["dead"] == len(self.dead)


class DrainingMachine(QueueMachine):
    def teardown(self) -> None:
        self.drain()
        super().teardown()


def test_random_histories_keep_order_and_lose_nothing(any_redis_url):
    DrainingMachine.url = any_redis_url
    run_state_machine_as_test(DrainingMachine, settings=settings(
        max_examples=30, stateful_step_count=30, deadline=None,
        suppress_health_check=list(HealthCheck)))
