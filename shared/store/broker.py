"""Queue operations on Redis: what workers and masters do to tasks (claim, ack, fail, requeue,
promote) and the registry of live masters and workers. Producers use tq.Client instead.

Every state change is one Lua script (scripts.py), so one round trip and atomic.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from ..errors import RedisUnavailable
from ..task import DEFAULT_MAX_RETRIES, Task
from .claims import DEFAULT_RESULT_TTL, Ack, ClaimResult, Claims, result_record
from .cluster import ClusterLink, is_cluster
from .connection import check_eviction_policy, connect, resolve_url, translated
from .groups import is_pattern
from .indexes import Indexes
from .integrity import Quarantine
from .keys import Keys, QueueKeys
from .link import Link, refused
from .registry import Registry
from .scripts import SCRIPTS, Script
from .upkeep import Upkeep
from .urls import redact

log = logging.getLogger("tq.store.broker")

__all__ = ["DEFAULT_RESULT_TTL", "Ack", "Broker", "ClaimResult", "FailOutcome",
           "RequeueReport", "result_record", "retry_ms"]
SHORT_WAIT_MS = 10   # WAIT's timeout while fewer replicas than replica_acks answer
MAX_RETRY_DELAY = 365 * 86400.0
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


@dataclass(slots=True)
class FailOutcome:
    outcome: str          # retry | dead | stale
    failures: int
    due_ms: int = 0


@dataclass(slots=True)
class RequeueReport:
    requeued: int = 0
    dead: list[str] = field(default_factory=list)


def retry_ms(delay: float) -> int:
    """A retry delay in ms: not negative, not NaN or infinite (a handler's backoff may say so)."""
    if not isinstance(delay, int | float) or not math.isfinite(delay) or delay < 0:
        return 0
    return int(min(delay, MAX_RETRY_DELAY) * 1000)


class Broker(Registry, Claims, Indexes, Upkeep):
    """One Redis connection and the queue operations of tq, for one namespace: the claim path
    (claims.py), the global indexes (indexes.py), the registry of masters and workers
    (registry.py) and the master's upkeep (upkeep.py) are its mixins."""

    def __init__(self, url: str | None = None, namespace: str = "tq", *,
                 conn: Any = None, retries: int = 0,
                 socket_timeout: float | None = 10.0, client_name: str | None = None) -> None:
        self.url = resolve_url(url)
        self.safe_url = redact(self.url)
        self.namespace = namespace
        self.conn: Any = conn if conn is not None else connect(
            self.url, socket_timeout=socket_timeout, retries=retries, client_name=client_name)
        self.cluster = is_cluster(self.conn)
        self.keys = Keys(namespace, cluster=self.cluster)
        self.socket_timeout = socket_timeout if self.cluster else \
            self.conn.connection_pool.connection_kwargs.get("socket_timeout")
        self.link: Link | ClusterLink = ClusterLink(self.conn, retries, self.safe_url) \
            if self.cluster else Link(self.conn, retries, self.safe_url)
        self._blocks: dict[str, list[bytes]] = {}
        self._claims_init()
        self._indexes_init()
        self._known_queues: dict[str, int] = {}   # queue -> link.connects when registered
        self.quarantine = Quarantine(self.conn, self.keys.queue, client_name or "tq")
        self.replica_acks = 0            # WAIT for this many replicas after each write batch
        self.replica_timeout_ms = 1000
        self.result_ttl = DEFAULT_RESULT_TTL   # how long cancelled records are kept (fail, requeue)
        self._replica_warned = -60.0
        self._replicas_short = False

    def close(self) -> None:
        self.link.close()
        self.conn.close()

    # -- keys ---------------------------------------------------------------------------
    def qkeys(self, queue: str) -> QueueKeys:
        return self.keys.queue(queue)

    def block(self, queue: str) -> list[bytes]:
        """The 29 keys of a queue, in the order _lib.lua's qkeys() reads them."""
        b = self._blocks.get(queue)
        if b is None:
            q = self.keys.queue(queue)
            names = [*q.ready, q.tasks, q.sched, q.run, q.fails, q.errors, q.dead, q.wake,
                     q.seq, q.stats, q.policy, q.waiters, q.events, q.soon, q.done, q.flow,
                     q.held, q.wf, q.out, q.groups]
            if len(self._blocks) >= 100_000:
                self._blocks.clear()
            b = self._blocks[queue] = [n.encode() for n in names]
        return b

    # -- set-up -------------------------------------------------------------------------
    def ping(self) -> None:
        with translated(self.url):
            self.conn.ping()

    def check_eviction_policy(self, allow: bool = False) -> str:
        with translated(self.url):
            return check_eviction_policy(self.conn, self.url, allow)

    def load_scripts(self) -> None:
        with translated(self.url):
            SCRIPTS.load_all(self.conn)

    def register_queues(self, queues: Iterable[str], again: bool = False) -> None:
        """Add queues to the set of known queues (once per connection: a restarted Redis
        without persistence has forgotten them; `again`: whatever this process thinks)."""
        connects = self.link.connects
        new = [q for q in queues if again or self._known_queues.get(q) != connects]
        if new:
            with translated(self.url):
                self.link.call("SADD", self.keys.queues, *new)
            for q in new:
                self._known_queues[q] = self.link.connects

    def forget_queue(self, queue: str) -> None:
        """Take a queue out of the queue set (its keys are gone: drop.lua)."""
        with translated(self.url):
            self.link.call("SREM", self.keys.queues, queue)
            self.link.call("HDEL", self.keys.idle, queue)
        self._known_queues.pop(queue, None)

    def known_queues(self) -> list[str]:
        with translated(self.url):
            return sorted(m.decode() for m in self.conn.smembers(self.keys.queues))

    def publish_policies(self, policies: dict[str, dict[str, dict[str, Any]]]) -> None:
        """Record handler policies (queue -> type -> {max_retries, ...}) for Lua to read."""
        with translated(self.url):
            pipe = self.conn.pipeline(transaction=False)
            order = []
            for queue, by_type in policies.items():
                for ttype, policy in by_type.items():
                    pipe.hset(self.qkeys(queue).policy, ttype, _dumps(policy))
                    order.append(queue)
            for queue, reply in zip(order, pipe.execute(raise_on_error=False), strict=True):
                if isinstance(reply, Exception) and not self.quarantine.explains([queue], reply):
                    raise reply   # a corrupt policy hash sets its queue aside; the rest raise

    def declare_limits(self, by_queue: dict[str, dict[str, Any]]) -> None:
        """Record the handlers' rate / concurrency limits (queue -> type -> Limits or None)
        for the claim script (flow.lua; an operator's override stays on top)."""
        with translated(self.url):
            for queue, types in by_queue.items():
                args: list[Any] = [queue, "declare", len(types)]
                for ttype, lim in types.items():
                    args += [ttype, _dumps(lim.to_wire()) if lim is not None else ""]
                try:
                    SCRIPTS.flow(self.link, self.block(queue), args)
                except redis.exceptions.ResponseError as exc:
                    if not self.quarantine.explains([queue], exc):
                        raise

    # -- writes that must survive a failover ------------------------------------------------
    def replicated(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run a script, then WAIT until `replica_acks` replicas have its writes (or the
        timeout), in one round trip: with asynchronous replication, a failover could otherwise
        lose a write Redis already acknowledged. Fewer replicas in time is logged, not raised:
        the write is done, and raising would make callers repeat it."""
        if not self.replica_acks:
            return script(self.link, keys, args)
        # With fewer replicas connected than asked for (all of them lost in a failover), every
        # WAIT would last its whole timeout: until one answers in full again, wait briefly.
        timeout = min(SHORT_WAIT_MS, self.replica_timeout_ms) if self._replicas_short \
            else self.replica_timeout_ms
        wait = ("WAIT", self.replica_acks, timeout)
        reply, acked = self.link.call_pipelined(
            ("EVALSHA", script.sha, len(keys), *keys, *args), wait)
        reply, rerun = self._pipelined_reply(reply, script, keys, args)
        if rerun:
            acked = self.link.call(*wait)
        if isinstance(acked, int):
            self._replicas_short = acked < self.replica_acks
            if self._replicas_short and time.monotonic() - self._replica_warned > 60:
                self._replica_warned = time.monotonic()
                log.warning("only %d of %d replica(s) acknowledged a write within %d ms: a "
                            "failover now could lose it (until they answer, writes wait "
                            "%d ms for them)", acked, self.replica_acks, timeout,
                            min(SHORT_WAIT_MS, self.replica_timeout_ms))
        return reply

    def _pipelined_reply(self, reply: Any, script: Script, keys: Sequence[Any],
                         args: Sequence[Any]) -> tuple[Any, bool]:
        """A script's reply read from a pipeline, as Script.__call__ would give it: after
        NOSCRIPT (Redis restarted; the script did not run) it is loaded and run again (the
        flag says so); a refusal raises RedisUnavailable, any other error reply itself."""
        if isinstance(reply, redis.exceptions.NoScriptError):
            return script(self.link, keys, args), True
        if isinstance(reply, Exception):
            if refused(reply):
                raise RedisUnavailable(self.safe_url, f"it refused the command: {reply}")
            raise reply
        return script.signalled(self.link, keys, reply), False

    def fail(self, worker_id: str, task: Task, message: str, *, kind: str = "error",
             traceback: str | None = None, retry: bool = True, delay: float = 0.0,
             default_max_retries: int = DEFAULT_MAX_RETRIES) -> FailOutcome:
        """Record a failed attempt: retried after `delay` s while retries are left, else dead."""
        qk = self.qkeys(task.queue)
        keys = [*self.block(task.queue), qk.proc(worker_id), qk.result(task.id)]
        args = [task.queue, worker_id, task.id, task.token, kind, message, traceback or "",
                1 if retry else 0, retry_ms(delay), default_max_retries,
                int(self.result_ttl * 1000)]
        with translated(self.url):
            outcome, failures, due = self.replicated(SCRIPTS.fail, keys, args)
        return FailOutcome(outcome.decode(), int(failures), int(due))

    # -- recovery -----------------------------------------------------------------------
    def requeue_worker(self, worker_id: str, queues: Sequence[str] | None = None, *,
                       running_task_id: str | None = None, count_head: bool = False,
                       kind: str = "died", reason: str = "worker died",
                       default_max_retries: int = DEFAULT_MAX_RETRIES,
                       killed: bool = False, max_kills: int = 0) -> RequeueReport:
        """Put back everything `worker_id` holds, at the front of its queues.

        The running task (running_task_id, or the first claimed one with count_head) counts a
        failed attempt with `reason`; the rest (prefetched, never started) do not. `killed`:
        that run crashed its worker, which the task is charged with too; after `max_kills`
        such deaths it is dead-lettered as 'killed-worker' (0: no such limit).
        """
        everything = queues is None
        if queues is None:
            queues = self.queues_of(worker_id)
        mode, running = ("id", running_task_id) if running_task_id else (
            ("head", "") if count_head else ("none", ""))
        report = RequeueReport()
        with translated(self.url):
            for q in self.quarantine.active(list(queues)):
                keys = [*self.block(q), self.qkeys(q).proc(worker_id),
                        self.qkeys(q).result(running or "-")]
                try:
                    n, dead = SCRIPTS.requeue(self.link, keys, [
                        q, mode, running, kind, reason, default_max_retries,
                        1 if killed else 0, max_kills, int(self.result_ttl * 1000)])
                except redis.exceptions.ResponseError as exc:
                    # A corrupt queue: set it aside; its repair requeues this worker's list.
                    if not self.quarantine.explains(
                            [q], exc, lambda name: self.qkeys(name).proc(worker_id)):
                        raise
                    continue
                report.requeued += int(n)
                report.dead.extend(d.decode() for d in dead)
            if everything and len(self.quarantine.active(list(queues))) == len(queues):
                self.link.call("DEL", self.keys.procs(worker_id))   # its lists are gone
        return report

    def give_back(self, worker_id: str, tasks: Sequence[Task]) -> list[str]:
        """Hand back claimed tasks this worker has not started, to the front of their queues
        (fenced by their tokens; no attempt counted). Returns the ids that went back."""
        by_queue: dict[str, list[Any]] = {}
        for t in tasks:
            by_queue.setdefault(t.queue, []).extend((t.id, t.token))
        back: list[str] = []
        with translated(self.url):
            for q, pairs in by_queue.items():
                (ids,) = SCRIPTS.unclaim(self.link, self.block(q), [worker_id, *pairs])
                back.extend(i.decode() for i in ids)
        return back

    def release(self, worker_id: str, queues: Sequence[str] | None = None) -> int:
        """Hand back a worker's claims without counting an attempt (drain, lost connection):
        in `queues`, else in every queue it may hold tasks of (queues_of)."""
        if queues is None:
            queues = self.queues_of(worker_id)
        return self.requeue_worker(worker_id, queues).requeued

    def queues_of(self, worker_id: str) -> list[str]:
        """The queues whose lists of a worker may hold tasks: its procs set (every queue it
        claimed from through its group); for a worker of tq before groups (its registry entry
        has no "procs" mark) also the plain names of that entry; without either, a key scan.
        (Not the entry's names for a worker that keeps its procs set: a worker of a thousand
        queues would cost a requeue call per queue at each death.)"""
        with translated(self.url):
            found = {m.decode() for m in self.conn.smembers(self.keys.procs(worker_id))}
            raw = self.conn.get(self.keys.worker(worker_id))
            if raw:
                try:
                    entry = json.loads(raw)
                    queues = entry.get("queues")
                    if entry.get("procs"):
                        return sorted(found)
                    if isinstance(queues, list) and all(isinstance(q, str) for q in queues):
                        found.update(q for q in queues if not is_pattern(q))
                except (ValueError, AttributeError):
                    pass
            if found:
                return sorted(found)
            suffix = f":proc:{worker_id}"
            pattern = f"{self.namespace}:{{*}}{suffix}"
            for key in self.conn.scan_iter(match=pattern, count=1000):
                k = key.decode()
                found.add(k[len(self.namespace) + 2:-len(suffix) - 1])
            return sorted(found)

    def orphaned_workers(self) -> set[str]:
        """Workers holding a processing list without a registry entry (a safety net)."""
        with translated(self.url):
            registered = {w.decode() for w in self.conn.zrange(self.keys.workers, 0, -1)}
            orphans = set()
            for key in self.conn.scan_iter(match=f"{self.namespace}:{{*}}:proc:*", count=1000):
                worker = key.decode().rsplit(":proc:", 1)[1]
                if worker not in registered:
                    orphans.add(worker)
            return orphans

    def promote_due(self, queues: Sequence[str] | None = None,
                    limit: int = 1000) -> tuple[int, float | None]:
        """Move due delayed tasks and retries to their ready lists.

        Returns (promoted, seconds until the next one is due or None). Safe to call from any
        number of processes at once.
        """
        if queues is None:
            queues = self.known_queues()
        moved, due = 0, None
        with translated(self.url):
            for q in self.quarantine.active(list(queues)):
                try:
                    n, d = SCRIPTS.promote(self.link, self.block(q), [q, limit])
                except redis.exceptions.ResponseError as exc:
                    if not self.quarantine.explains([q], exc):
                        raise
                    continue
                moved += int(n)
                if d >= 0:
                    due = d / 1000 if due is None else min(due, d / 1000)
        return moved, due

    # -- reads for the worker (cancel requests, workflow inputs)
    def cancels_requested(self, tasks: Sequence[Task]) -> list[str]:
        """The ids of `tasks` (running in the caller) whose cancel was requested: cancel.lua
        marks their claim '|x'. One pipelined round trip; redis-py's errors untranslated,
        as claim()'s (the worker waits outages out)."""
        pipe = self.conn.pipeline(transaction=False)
        for t in tasks:
            pipe.hget(self.qkeys(t.queue).run, t.id)
        return [t.id for t, claim in zip(tasks, pipe.execute(), strict=True)
                if isinstance(claim, bytes) and claim.endswith(b"|x")]

    def workflow_inputs(self, task: Task) -> list[bytes | str | None]:
        """What a workflow member's upstream members handed it ("i:ID:K" of its queue's wf
        hash), in their order, undecoded: one HMGET; errors untranslated, as above."""
        fields = [f"i:{task.id}:{k}" for k in range(task.inputs)]
        return self.conn.hmget(self.qkeys(task.queue).wf, fields)
