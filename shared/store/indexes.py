"""The global indexes that keep tq's costs with the work, not with the number of queues: the
consumer groups and their ready indexes (groups.py), the masters' agenda, the sweep that keeps
both right whatever a crashed process did not get to tell them, and a task's queue from its id.

    agenda (ns:due)   queue -> the earliest time it needs a master (Redis ms): its earliest
                      scheduled task, or now for a hand-off or a cancel request. Queue scripts
                      keep it (lua/_lib.lua agenda); the masters promote what is due from it
                      (promote_agenda) and block on ns:soon for news of an earlier time.
    sweep             one master at a time (a lock) looks at every known queue every few
                      seconds and enters what it finds (sweep.lua): the safety net on a
                      cluster, where the indexes cannot change in the same call as a queue.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..ids import hint_of, queue_hint
from .connection import translated
from .groups import Group
from .link import ResponseError
from .scripts import SCRIPTS

if TYPE_CHECKING:

    from .cluster import ClusterLink
    from .integrity import Quarantine
    from .keys import Keys, QueueKeys
    from .link import Link

PROMOTE_BATCH = 1000      # due tasks one promotion call moves (the agenda says to come back)
AGENDA_BATCH = 100        # queues one agenda pass promotes
SWEEP_CHUNK = 200         # queues per sweep call on a standalone Redis
GROUP_IDLE = 900.0        # s without a master using a group before its index is dropped


class Indexes:
    """The global indexes of a Broker (which provides the attributes and methods below)."""

    url: str
    namespace: str
    keys: Keys
    link: Link | ClusterLink
    conn: Any   # a redis.Redis, or a redis.RedisCluster
    cluster: bool
    quarantine: Quarantine

    if TYPE_CHECKING:
        def qkeys(self, queue: str) -> QueueKeys: ...
        def block(self, queue: str) -> list[bytes]: ...
        def known_queues(self) -> list[str]: ...

    def _indexes_init(self) -> None:
        self._hints: dict[str, list[str]] = {}
        self._names_sent: dict[str, int] = {}   # group id -> link.connects when its names went

    # -- consumer groups ------------------------------------------------------------------
    def register_group(self, group: Group) -> bool:
        """Publish a group's spec and that a master uses it (each heartbeat: idempotent, and
        a restarted Redis without persistence learns it again within a second). Its plain
        names (a hash: a -Q of a thousand names is one lookup) once per connection, first.
        True when this call made the group: its index starts empty, so the caller sweeps
        for it (sweep_group) -- work queued before is then in line at once."""
        gid = group.id
        with translated(self.url):
            names = group.names_map
            if names and self._names_sent.get(gid) != self.link.connects:
                flat = [x for kv in names.items() for x in kv]
                for i in range(0, len(flat), 2000):
                    self.link.call("HSET", self.keys.group_names(gid), *flat[i:i + 2000])
                self._names_sent[gid] = self.link.connects
            made: Any = self.link.call("HSET", self.keys.groups, gid, group.spec)
            self.link.call("ZADD", self.keys.groupseen, int(time.time() * 1000), gid)
        return int(made) == 1

    def group_line(self, group: Group, limit: int = 100) -> list[tuple[str, float]]:
        """The queues in line in a group's ready index (those with ready work), first first."""
        with translated(self.url):
            raw = self.conn.zrange(self.keys.group_ready(group.id), 0, limit - 1,
                                   withscores=True)
        return [(q.decode(), s) for q, s in raw]

    def forget_groups(self, idle: float = GROUP_IDLE) -> list[str]:
        """Drop the groups no master used for `idle` seconds, with their indexes."""
        cutoff = int((time.time() - idle) * 1000)
        with translated(self.url):
            old = [g.decode() for g in self.conn.zrangebyscore(self.keys.groupseen, "-inf",
                                                               cutoff)]
            for gid in old:
                self.link.call("HDEL", self.keys.groups, gid)
                self.link.call("DEL", self.keys.group_ready(gid))
                self.link.call("DEL", self.keys.group_wake(gid))
                self.link.call("DEL", self.keys.group_gens(gid))
                self.link.call("DEL", self.keys.group_names(gid))
                self.link.call("ZREM", self.keys.groupseen, gid)
        return old

    # -- the masters' agenda ----------------------------------------------------------------
    def agenda(self, limit: int = AGENDA_BATCH
               ) -> tuple[int, list[tuple[str, int]], int | None]:
        """(Redis now in ms, the queues due by now with their agenda time, the next later
        time or None)."""
        now, flat, later = SCRIPTS.agenda(self.link, [self.keys.due], [limit])
        it = iter(flat)
        due = [(q.decode(), int(float(s))) for q, s in zip(it, it, strict=True)]
        nxt = int(float(later))
        return int(now), due, (None if nxt < 0 else nxt)

    def promote_agenda(self, before: Callable[[str], None] | None = None,
                       limit: int = AGENDA_BATCH) -> tuple[int, float | None, list[str]]:
        """Promote the due tasks of every queue the agenda says is due, after `before(queue)`
        (the master applies the queue's hand-offs there). Returns (tasks promoted, seconds
        until the agenda's next time or None, the queues looked at). Any number of masters
        may do this at once: each due task moves once."""
        moved = 0
        with translated(self.url):
            now, due, nxt = self.agenda(limit)
            resched: list[Any] = []
            for queue, seen in due:
                if queue in self.quarantine.queues:
                    continue
                if before is not None:
                    before(queue)
                try:
                    n, d = SCRIPTS.promote(self.link, self.block(queue),
                                           [queue, PROMOTE_BATCH, "1"])
                except ResponseError as exc:
                    if not self.quarantine.explains([queue], exc):
                        raise
                    continue
                moved += int(n)
                at = now + int(d) if int(d) >= 0 else -1
                if at >= 0 and (nxt is None or at < nxt):
                    nxt = at
                if self.cluster:   # the agenda is in another slot: reschedule there
                    resched.extend((queue, seen, at))
            if resched:
                SCRIPTS.index(self.link, [self.keys.groups], [0, len(resched) // 3, *resched])
        if len(due) >= limit:
            nxt = now   # more are due: come back at once
        return moved, (None if nxt is None else max(0.0, (nxt - now) / 1000)), \
            [q for q, _ in due]

    # -- the sweep ----------------------------------------------------------------------
    def sweep(self, holder: str, every: float) -> tuple[int, int] | None:
        """If no other master swept within `every` seconds, enter every known queue that holds
        ready work in the ready index of the groups that consume it, and every queue with
        scheduled tasks or hand-offs in the agenda; drop groups no master uses any more.
        Returns (queues with ready work, queues in the agenda), or None (another master's
        turn)."""
        with translated(self.url):
            got = self.link.call("SET", self.keys.sweep, holder, "NX", "PX",
                                 max(1, int(every * 900)))
            if got is None:
                return None
            self.forget_groups()
            return self._sweep([q for q in self.known_queues()
                                if q not in self.quarantine.queues])

    def sweep_group(self, group: Group) -> tuple[int, int]:
        """The sweep of the known queues a group consumes, now (no turn to wait for): by the
        process whose register_group made the group, so that work queued before it is in
        line at once."""
        with translated(self.url):
            return self._sweep(group.matching([q for q in self.known_queues()
                                               if q not in self.quarantine.queues]))

    def _sweep(self, queues: list[str]) -> tuple[int, int]:
        """sweep.lua over `queues`: in chunks on a standalone Redis; on a cluster a call per
        queue in its slot, then what they found in the indexes' slot (index.lua)."""
        if not self.cluster:
            ready = due = 0
            for i in range(0, len(queues), SWEEP_CHUNK):
                r, d = SCRIPTS.sweep(self.link, [self.keys.groups],
                                     [self.namespace, *queues[i:i + SWEEP_CHUNK]])
                ready, due = ready + int(r), due + int(d)
            return ready, due
        found: list[Any] = []
        ready = due = 0
        for q in queues:
            r, d = SCRIPTS.sweep(self.link, [self.qkeys(q).groups], [self.namespace, q])
            if r == b"1" or int(d) >= 0:
                found.extend((q, r, d))
                ready += r == b"1"
                due += int(d) >= 0
        for i in range(0, len(found), 3 * SWEEP_CHUNK):
            part = found[i:i + 3 * SWEEP_CHUNK]
            SCRIPTS.index(self.link, [self.keys.groups], [len(part) // 3, *part, 0])
        return ready, due

    # -- a task's queue from its id ---------------------------------------------------------
    def queues_for_id(self, task_id: str, fresh: bool = False) -> list[str]:
        """The queues a task of this id may be in: those whose hint it carries (one, unless
        two names share a hint), or every known queue for an id without a hint. fresh: read
        the queue set again (the task was not in the queues the cached map named)."""
        hint = queue_hint(task_id)
        if hint is None:
            return self.known_queues()
        found = None if fresh else self._hints.get(hint)
        if found is None:   # (a queue new since the set was read; an id of no known queue)
            hints: dict[str, list[str]] = {}
            for q in self.known_queues():
                hints.setdefault(hint_of(q), []).append(q)
            self._hints = hints
            found = hints.get(hint)
        return list(found or ())
