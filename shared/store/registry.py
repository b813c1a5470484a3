"""The registry of live masters and workers: heartbeats stamped with Redis' clock, expiry,
and the info a reaper needs (see keys.py for the keys). Part of Broker, kept apart."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..task import _dumps
from .connection import translated
from .scripts import SCRIPTS

if TYPE_CHECKING:

    from .cluster import ClusterLink
    from .keys import Keys
    from .link import Link


class Registry:
    """Registry operations of a Broker (which provides url, keys, link and conn)."""

    url: str
    keys: Keys
    link: Link | ClusterLink
    conn: Any   # a redis.Redis, or a redis.RedisCluster

    def heartbeat(self, master_id: str, master_info: dict[str, Any],
                  workers: dict[str, dict[str, Any]]) -> int:
        """Stamp a master and its live children with Redis' time (returns it, in ms)."""
        keys = [self.keys.masters, self.keys.workers, self.keys.master(master_id or "-")]
        args: list[Any] = [master_id, _dumps(master_info)]
        for wid, info in workers.items():
            keys.append(self.keys.worker(wid))
            args.extend((wid, _dumps(info)))
        with translated(self.url):
            return int(SCRIPTS.heartbeat(self.link, keys, args))

    def register_worker(self, worker_id: str, info: dict[str, Any]) -> None:
        """A worker announces itself before its first claim, so a reaper can always find it."""
        self.heartbeat("", {}, {worker_id: info})

    def unregister_worker(self, worker_id: str) -> None:
        self._unregister(self.keys.workers, self.keys.worker(worker_id), worker_id)

    def unregister_master(self, master_id: str) -> None:
        self._unregister(self.keys.masters, self.keys.master(master_id), master_id)

    def _unregister(self, zset: str, info: str, member: str) -> None:
        with translated(self.url):   # one script: both go, or neither
            SCRIPTS.unregister(self.link, [zset, info], [member])

    def expired(self, ttl: float) -> tuple[int, list[str], list[str]]:
        """(Redis now in ms, masters, workers) whose heartbeat is older than ttl seconds."""
        with translated(self.url):
            now, masters, workers = SCRIPTS.expired(
                self.link, [self.keys.masters, self.keys.workers], [int(ttl * 1000)])
        return int(now), [m.decode() for m in masters], [w.decode() for w in workers]

    def registry(self, kind: str = "workers") -> list[dict[str, Any]]:
        """Registered masters or workers with their info and last heartbeat (Redis ms)."""
        zkey = self.keys.workers if kind == "workers" else self.keys.masters
        info_key = self.keys.worker if kind == "workers" else self.keys.master
        with translated(self.url):
            members = self.conn.zrange(zkey, 0, -1, withscores=True)
            if not members:
                return []
            infos = self.conn.mget([info_key(m.decode()) for m, _ in members])
        out = []
        for (member, score), raw in zip(members, infos, strict=True):
            try:
                info = json.loads(raw) if raw else {}
            except ValueError:
                info = {}
            info.update(id=member.decode(), last_seen_ms=int(score))
            out.append(info)
        return out
