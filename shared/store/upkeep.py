"""The master's maintenance reads and writes: cancel requests, idle queues, hand-off lists and
promotion connections. Part of Broker, kept apart (see tq.supervisor for who calls what).

These raise redis-py's errors as they come, untranslated: the master's loop tells an outage
(link.OUTAGE) from an error reply, and a corrupt queue key from the rest (integrity.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import NoPermission
from . import grants
from .cluster import ClusterLink
from .connection import translated
from .link import dedicated
from .scripts import SCRIPTS

if TYPE_CHECKING:
    from redis.connection import AbstractConnection

    from .keys import Keys, QueueKeys
    from .link import Link

CANCELLED = b"|x"   # the suffix cancel.lua gives a running task's claim in its queue's run hash


log = logging.getLogger("tq.store.grants")


class Upkeep:
    """Maintenance operations of a Broker (which provides keys, link, conn, cluster, qkeys,
    block, forget_queue and register_queues)."""

    keys: Keys
    link: Link | ClusterLink
    conn: Any   # a redis.Redis, or a redis.RedisCluster
    cluster: bool

    if TYPE_CHECKING:
        def qkeys(self, queue: str) -> QueueKeys: ...
        def block(self, queue: str) -> list[bytes]: ...
        def forget_queue(self, queue: str) -> None: ...
        def register_queues(self, queues: Sequence[str], again: bool = False) -> None: ...

    # -- cancel requests --------------------------------------------------------------------
    def cancel_requested(self, running: Sequence[tuple[str, str]]) -> list[bool]:
        """For each running (queue, task id): was it cancelled while it runs? One round trip;
        a claim that cannot be read (a corrupt run hash) reads as not cancelled."""
        pipe = self.conn.pipeline(transaction=False)
        for queue, task in running:
            pipe.hget(self.qkeys(queue).run, task)
        claims = pipe.execute(raise_on_error=False)
        return [isinstance(claim, bytes) and claim.endswith(CANCELLED) for claim in claims]

    # -- idle queues ------------------------------------------------------------------------
    def redis_ms(self) -> int:
        """Redis' clock in ms (idleness is measured by it, so hosts' clocks don't matter)."""
        seconds, micros = self.conn.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def idle_queues(self) -> dict[str, int]:
        """Queues seen empty and unserved -> since when (Redis ms)."""
        marks: dict[Any, Any] = self.conn.hgetall(self.keys.idle)
        return {q.decode(): int(v) for q, v in marks.items()}

    def mark_idle(self, queues: Sequence[str], since_ms: int) -> None:
        """Note `queues` as idle since `since_ms`, unless another master noted them first."""
        if not queues:
            return
        pipe = self.conn.pipeline(transaction=False)
        for q in queues:
            pipe.hsetnx(self.keys.idle, q, since_ms)
        pipe.execute()

    def clear_idle(self, queues: Sequence[str]) -> None:
        """`queues` are in use again: idle anew from the next time they are seen empty."""
        if queues:
            self.conn.hdel(self.keys.idle, *queues)

    def drop_idle_queue(self, queue: str) -> bool:
        """Delete an empty queue's keys, then its name (drop.lua). False if it held work
        (it is then idle anew) or an enqueue came in between (its name stays). Raises an
        error reply for a corrupt key."""
        qk = self.qkeys(queue)
        reply: Any = SCRIPTS.drop(self.link, [*self.block(queue), qk.broken], ["forget", "0"])
        if reply[0] != b"dropped":
            self.clear_idle([queue])
            return False
        self.forget_queue(queue)
        # The queue set is a global key (another slot on a cluster): an enqueue may have
        # slipped in between; its stats hash says so, and the name goes back.
        if self.conn.exists(qk.stats):
            self.register_queues([queue], again=True)
            return False
        return True

    # -- workflow hand-offs -----------------------------------------------------------------
    def handoff_entries(self, queues: Sequence[str], limit: int) -> list[list[bytes] | Exception]:
        """The first `limit` entries of each queue's `out` list, in one round trip; a list
        that cannot be read gives its error instead."""
        pipe = self.conn.pipeline(transaction=False)
        for q in queues:
            pipe.lrange(self.qkeys(q).out, 0, limit - 1)
        return pipe.execute(raise_on_error=False)

    def apply_handoffs(self, queue: str, entries: Sequence[Sequence[Any]]) -> None:
        """Apply hand-offs to members of `queue` (handoff.lua): each entry is (member id, k,
        outcome, value as JSON). Idempotent."""
        flat = [a for entry in entries for a in entry]
        SCRIPTS.handoff(self.link, self.block(queue), [queue, len(entries), *flat])

    def remove_handoffs(self, queue: str, raw_entries: Sequence[bytes]) -> None:
        """Delete entries (as read) from `queue`'s `out` list once applied."""
        if not raw_entries:
            return
        out = self.qkeys(queue).out
        pipe = self.conn.pipeline(transaction=False)
        for raw in raw_entries:
            pipe.lrem(out, 1, raw)   # type: ignore[arg-type]   # bytes are fine
        pipe.execute()

    # -- promotion --------------------------------------------------------------------------
    def promotion_connection(self) -> AbstractConnection:
        """A connected connection of its own, for blocking on the agenda's soon list (on a
        cluster, to the primary of the global keys' slot)."""
        if self.cluster:
            assert isinstance(self.link, ClusterLink)
            conn: AbstractConnection = self.link.connection_for(self.keys.soon)
            return conn
        return dedicated(self.conn.connection_pool)


def require_master(broker: Any, replica_acks: int = 0) -> None:
    """Raise NoPermission naming every grant this user lacks for a master and its children
    (broker: the master's tq.store.broker.Broker). On Redis 6 only scripting is checked."""
    with translated(broker.url):
        names = grants.missing(broker.conn, broker.keys.workers,
                               grants.master_commands(broker.cluster, replica_acks > 0))
    if names is None:
        log.debug("this Redis cannot check ACL grants (redis.acl_check_cmd is 7.0's): a "
                  "refused command will be named when it is refused")
        return
    if names:
        raise NoPermission(broker.safe_url, f"this user may not {_what(names, broker)}, which "
                           "a master and its children need: grant "
                           f"{' '.join(grants.grants(names, broker.namespace))}")


def _what(names: list[str], broker: Any) -> str:
    if names == [grants.SCRIPTING]:
        return "run scripts (SCRIPT LOAD, EVALSHA)"
    access = " or ".join(n[1:] for n in names if n.startswith("~"))
    parts = [f"{access} keys like {broker.keys.workers}"] if access else []
    commands = [n.upper().replace("|", " ") for n in names if not n.startswith("~")]
    return " or ".join(parts + ([f"run {', '.join(commands)}"] if commands else []))
