"""Corrupt keys: finding which key of a queue is wrong, setting the queue aside, repairing it.

A key of a queue written with the wrong type (a mistaken SET on the ready list, a counter
that is not a number) makes every script touching that queue fail with WRONGTYPE or "not an
integer". Such an error is not an outage: waiting will not fix it. So the process that meets
it diagnoses the queue (TYPE of each key, the counters' values), marks the queue broken in
`ns:{Q}:broken` (the first diagnosis wins; JSON: key, problem, error, by, at) and stops using
that queue; every other queue goes on. `tq queue repair Q` (Client.repair_queue) moves each
bad key aside to `<key>:corrupt:<ms>` (kept for a post-mortem), re-indexes the queue from its
task bodies (repair.lua) and clears the mark; processes see the mark gone and use it again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from .link import not_permitted, refused

if TYPE_CHECKING:
    from .keys import QueueKeys

log = logging.getLogger("tq.store.integrity")


@dataclass(frozen=True)
class Problem:
    key: str
    problem: str   # "is a string, not a list", "holds 'abc', not an integer"

    def __str__(self) -> str:
        return f"{self.key} {self.problem}"


def expected_types(q: QueueKeys) -> dict[str, str]:
    """Every fixed key of a queue and the Redis type it must have when it exists."""
    types = {k: "list" for k in q.ready}
    types.update({q.tasks: "hash", q.sched: "zset", q.run: "hash", q.fails: "hash",
                  q.errors: "hash", q.dead: "zset", q.wake: "list", q.seq: "string",
                  q.stats: "hash", q.policy: "hash", q.waiters: "hash", q.events: "stream",
                  q.soon: "list", q.done: "list", q.flow: "hash", q.held: "zset",
                  q.wf: "hash", q.out: "list"})
    return types


def _integer(value: Any) -> bool:
    try:
        int(value)
        return True
    except (TypeError, ValueError):
        return False


def diagnose(conn: redis.Redis, q: QueueKeys, procs: Sequence[str] = ()) -> list[Problem]:
    """What is wrong with a queue's keys (and the given processing lists): [] if nothing."""
    types = expected_types(q)
    types.update({p: "list" for p in procs})
    pipe = conn.pipeline(transaction=False)
    for key in types:
        pipe.type(key)
    actual = pipe.execute()
    problems = []
    for (key, want), got in zip(types.items(), actual, strict=True):
        got = got.decode() if isinstance(got, bytes) else str(got)
        if got not in ("none", want):
            problems.append(Problem(key, f"is a {got}, not a {want}"))
    bad = {p.key for p in problems}
    # Counters that scripts INCR / HINCRBY must hold integers.
    if q.seq not in bad:
        seq = conn.get(q.seq)
        if seq is not None and not _integer(seq):
            problems.append(Problem(q.seq, f"holds {seq[:40]!r}, not an integer"))
    for key in (q.stats, q.fails):
        if key in bad:
            continue
        for field, value in conn.hscan_iter(key, count=1000):
            if not _integer(value):
                problems.append(Problem(key, f"field {field[:60]!r} holds {value[:40]!r}, "
                                             "not an integer"))
                break
    return problems


def mark(conn: redis.Redis, q: QueueKeys, problems: list[Problem], error: BaseException | str,
         by: str) -> bool:
    """Mark the queue broken (unless it is already); True if this call set the mark."""
    doc = {"key": problems[0].key, "problem": "; ".join(map(str, problems)),
           "error": str(error)[:500], "by": by, "at": time.time()}
    return bool(conn.set(q.broken, json.dumps(doc), nx=True))


def read_marks(conn: redis.Redis, queues: list[str],
               qkeys: Any) -> dict[str, dict[str, Any]]:
    """queue -> its broken mark, for the queues that have one."""
    if not queues:
        return {}
    pipe = conn.pipeline(transaction=False)
    for name in queues:
        pipe.get(qkeys(name).broken)
    out = {}
    for name, raw in zip(queues, pipe.execute(raise_on_error=False), strict=True):
        if raw is None:
            continue
        try:
            doc = json.loads(raw)
            out[name] = doc if isinstance(doc, dict) else {"problem": str(doc)}
        except (TypeError, ValueError):
            out[name] = {"problem": "unreadable broken mark"}
    return out


def corrupt_key(key: str, now_ms: int) -> str:
    """Where repair moves a bad key (same hash tag, so the same cluster slot)."""
    return f"{key}:corrupt:{now_ms}"


RECHECK_EVERY = 5.0   # seconds between looks at whether a broken queue was repaired


class Quarantine:
    """The queues one process found broken: it stops using them until their mark is gone."""

    def __init__(self, conn: redis.Redis, qkeys: Any, who: str) -> None:
        self.conn = conn
        self.qkeys = qkeys
        self.who = who
        self.queues: dict[str, str] = {}   # queue -> what is wrong
        self._next_check = 0.0

    def active(self, queues: list[str]) -> list[str]:
        return [q for q in queues if q not in self.queues] if self.queues else queues

    def contain(self, queues: list[str], error: BaseException,
                procs: Any = None) -> list[str]:
        """After an error reply from Redis that is no outage: find which of `queues` has a
        corrupt key, mark it broken and set it aside. Returns the queues set aside now ([]
        when none of them explains the error). Connection errors propagate (an outage)."""
        found = []
        for name in queues:
            if name in self.queues:
                continue
            q = self.qkeys(name)
            problems = diagnose(self.conn, q, [procs(name)] if procs else [])
            if not problems:
                continue
            mark(self.conn, q, problems, error, self.who)
            self.queues[name] = str(problems[0])
            found.append(name)
            log.error("queue %s is broken and set aside (other queues go on): %s; Redis said: "
                      "%s. Repair it with `tq queue repair %s`", name,
                      "; ".join(map(str, problems)), error, name)
        self._next_check = time.monotonic() + RECHECK_EVERY
        return found

    def explains(self, queues: list[str], error: BaseException, procs: Any = None) -> bool:
        """Does a corrupt key of one of `queues` explain `error`? True if one of them is set
        aside already, or is now (see contain). Outages, refusals (READONLY, OOM...) and ACL
        refusals are never a corrupt key: False, without a diagnosis."""
        if not isinstance(error, redis.exceptions.ResponseError) or refused(error) \
                or not_permitted(error):
            return False
        return any(q in self.queues for q in queues) or bool(self.contain(queues, error, procs))

    def recheck(self) -> list[str]:
        """Queues whose broken mark was cleared (repaired): usable again. Cheap to call often."""
        if not self.queues or time.monotonic() < self._next_check:
            return []
        self._next_check = time.monotonic() + RECHECK_EVERY
        marks = read_marks(self.conn, list(self.queues), self.qkeys)
        back = [q for q in self.queues if q not in marks]
        for name in back:
            del self.queues[name]
            log.info("queue %s was repaired: serving it again", name)
        return back


@dataclass
class RepairReport:
    moved: dict[str, str]      # corrupt key -> where it was moved
    restored: int              # tasks put back on their ready lists
    buried: int                # unreadable bodies dead-lettered as malformed
    was_marked: bool           # the queue had a broken mark


def repair(broker: Any, queue: str) -> RepairReport:
    """See Client.repair_queue."""
    from .scripts import SCRIPTS

    conn, q = broker.conn, broker.qkeys(queue)
    procs = sorted(k.decode() for k in conn.scan_iter(match=f"{q.prefix}proc:*", count=1000))
    procs = [p for p in procs if ":corrupt:" not in p]
    was_marked = conn.exists(q.broken) > 0
    now_ms = int(time.time() * 1000)
    moved: dict[str, str] = {}
    for p in diagnose(conn, q, procs):
        if p.key not in moved:
            moved[p.key] = corrupt_key(p.key, now_ms)
            conn.rename(p.key, moved[p.key])
            log.warning("repair: moved corrupt key %s to %s (%s)", p.key, moved[p.key],
                        p.problem)
    if q.seq in moved:   # fencing tokens must not repeat old ones: restart above any of them
        conn.set(q.seq, now_ms)
    live = {m.decode() for m in conn.zrange(broker.keys.workers, 0, -1)}
    procs = [p for p in procs if p not in moved]
    mine = [p for p in procs if p.rsplit(":proc:", 1)[1] in live]
    gone = [p for p in procs if p.rsplit(":proc:", 1)[1] not in live]
    restored, buried = SCRIPTS.repair(broker.link, [*broker.block(queue), q.broken, *mine,
                                                    *gone], [queue, len(mine)])
    return RepairReport(moved, int(restored), int(buried), was_marked)
