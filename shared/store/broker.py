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
from .cluster import ClusterLink, is_cluster
from .connection import check_eviction_policy, connect, resolve_url, translated
from .integrity import Quarantine
from .keys import Keys, QueueKeys
from .link import Link, pack_items, refused
from .registry import Registry
from .scripts import SCRIPTS, Script
from .upkeep import Upkeep
from .urls import redact

log = logging.getLogger("tq.store.broker")

DEFAULT_RESULT_TTL = 24 * 3600.0
SHORT_WAIT_MS = 10   # WAIT's timeout while fewer replicas than replica_acks answer
MAX_RETRY_DELAY = 365 * 86400.0
PROMOTE_LIMIT = 100
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


@dataclass(slots=True)
class Ack:
    """A finished task's ack, waiting to be sent (possibly together with the next claim)."""

    task: Task
    record: str   # the result record (JSON) stored under the task's result key
    result_ttl: float | None = None   # the handler's own; None: the claim's


@dataclass(slots=True)
class ClaimResult:
    tasks: list[Task]
    stale: list[str] = field(default_factory=list)   # acks refused by the fence
    next_due: float | None = None                     # s until the next scheduled task
    strays: int = 0   # tasks found in the worker's lists that it did not know it held


@dataclass(slots=True)
class FailOutcome:
    outcome: str          # retry | dead | stale
    failures: int
    due_ms: int = 0


@dataclass(slots=True)
class RequeueReport:
    requeued: int = 0
    dead: list[str] = field(default_factory=list)


def result_record(task: Task, result_json: str, worker_id: str, started: float,
                  finished: float, sealed: str | None = None) -> str:
    """The JSON stored for a succeeded task (result_json is already JSON; `sealed`: the
    result encrypted by tq.protect, stored as "x" instead)."""
    value = f'"x":"{sealed}"' if sealed is not None else f'"r":{result_json}'
    if task.workflow is not None:   # a workflow member's result links back to it
        value = f'"wf":"{task.workflow}",{value}'
    return (f'{{"s":"succeeded","t":{_json_name(task.type)},"a":{task.failures + 1},'
            f'"st":{int(started * 1000)},"f":{int(finished * 1000)},'
            f'"w":{_json_name(worker_id)},{value}}}')


_FLAGS = ("0", "1", "2", "3")   # an ack's flags in claim.lua: bit 1 failures, bit 2 workflow
_NAMES: dict[str, str] = {}


def _json_name(name: str) -> str:
    """A task type or worker id as JSON: a worker's few names, encoded once (every ack)."""
    encoded = _NAMES.get(name)
    if encoded is None:
        encoded = _dumps(name)
        if len(_NAMES) < 10_000:
            _NAMES[name] = encoded
    return encoded


def retry_ms(delay: float) -> int:
    """A retry delay in ms: not negative, not NaN or infinite (a handler's backoff may say so)."""
    if not isinstance(delay, int | float) or not math.isfinite(delay) or delay < 0:
        return 0
    return int(min(delay, MAX_RETRY_DELAY) * 1000)


class Broker(Registry, Upkeep):
    """One Redis connection and the queue operations of tq, for one namespace (the registry of
    masters and workers comes from tq.store.registry)."""

    def __init__(self, url: str | None = None, namespace: str = "tq", *,
                 conn: redis.Redis | None = None, retries: int = 0,
                 socket_timeout: float | None = 10.0, client_name: str | None = None) -> None:
        self.url = resolve_url(url)
        self.safe_url = redact(self.url)
        self.namespace = namespace
        self.conn = conn if conn is not None else connect(
            self.url, socket_timeout=socket_timeout, retries=retries, client_name=client_name)
        self.cluster = is_cluster(self.conn)
        self.keys = Keys(namespace, cluster=self.cluster)
        self.socket_timeout = socket_timeout if self.cluster else \
            self.conn.connection_pool.connection_kwargs.get("socket_timeout")
        self.link: Link | ClusterLink = ClusterLink(self.conn, retries, self.safe_url) \
            if self.cluster else Link(self.conn, retries, self.safe_url)
        self._blocks: dict[str, list[bytes]] = {}
        self._packed: dict[tuple[str, ...], bytes] = {}   # claim keys packed, see claim()
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
        """The 28 keys of a queue, in the order _lib.lua's qkeys() reads them."""
        b = self._blocks.get(queue)
        if b is None:
            q = self.keys.queue(queue)
            names = [*q.ready, q.tasks, q.sched, q.run, q.fails, q.errors, q.dead, q.wake,
                     q.seq, q.stats, q.policy, q.waiters, q.events, q.soon, q.done, q.flow,
                     q.held, q.wf, q.out]
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

    # -- the worker's round trip --------------------------------------------------------
    def claim(self, worker_id: str, queues: Sequence[str], max_tasks: int = 1, *,
              acks: Sequence[Ack] = (), stats: dict[tuple[str, str], int] | None = None,
              result_ttl: float = DEFAULT_RESULT_TTL, holds_nothing: bool = False
              ) -> ClaimResult:
        """Ack `acks`, add `stats` ((queue, field) -> n), then claim up to max_tasks; one trip.

        holds_nothing: the caller holds no claimed task once these acks are settled, so
        anything else in its lists is a stray of a lost reply, handed back (see claim.lua).

        Raises redis-py's connection errors untranslated, and refusals (OOM, READONLY...) as
        RedisUnavailable: the worker loop handles both (link.OUTAGE).
        """
        if self.cluster and len(queues) > 1:
            return self._claim_each(worker_id, queues, max_tasks, acks, stats, result_ttl,
                                    holds_nothing)
        keys, args = self._claim_request(worker_id, queues, max_tasks, acks, stats, result_ttl,
                                         holds_nothing)
        if acks and self.replica_acks:
            return self._claim_result(self.replicated(SCRIPTS.claim, keys, args), queues)
        if self.cluster:
            return self._claim_result(SCRIPTS.claim(self.link, keys, args), queues)
        # The queues' keys and the worker's lists are the same on every claim of this order:
        # packed once (they are half of what a claim would pack each time).
        n_fixed = len(keys) - len(acks)
        fixed = self._packed.get((worker_id, *queues))
        if fixed is None:
            if len(self._packed) >= 64:
                self._packed.clear()
            fixed = self._packed[(worker_id, *queues)] = pack_items(keys[:n_fixed])
        rest = pack_items([*keys[n_fixed:], *args])
        reply = SCRIPTS.claim.call_packed(self.link, len(keys), len(keys) + len(args),
                                          [fixed, rest])
        return self._claim_result(reply, queues)

    def _claim_each(self, worker_id: str, queues: Sequence[str], max_tasks: int,
                    acks: Sequence[Ack], stats: dict[tuple[str, str], int] | None,
                    result_ttl: float, holds_nothing: bool) -> ClaimResult:
        """claim() on a cluster, where each queue lives in its own slot: one call per queue, in
        the caller's order (its priority), each with that queue's acks and stats, until
        max_tasks are claimed; queues after that get a call only for their acks."""
        by_queue: dict[str, list[Ack]] = {}
        for ack in acks:
            if ack.task.queue not in queues:
                raise ValueError(f"ack for queue {ack.task.queue!r} outside {list(queues)}")
            by_queue.setdefault(ack.task.queue, []).append(ack)
        out = ClaimResult([])
        for q in queues:
            want = max_tasks - len(out.tasks)
            mine = by_queue.get(q, ())
            part = {(qq, f): n for (qq, f), n in (stats or {}).items() if qq == q}
            if want <= 0 and not mine and not part:
                continue
            got = self.claim(worker_id, [q], max(want, 0), acks=mine, stats=part,
                             result_ttl=result_ttl, holds_nothing=holds_nothing)
            out.tasks.extend(got.tasks)
            out.stale.extend(got.stale)
            out.strays += got.strays
            if got.next_due is not None:
                out.next_due = got.next_due if out.next_due is None else \
                    min(out.next_due, got.next_due)
        if out.tasks:
            out.next_due = None
        return out

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

    def wait_and_claim(self, worker_id: str, queues: Sequence[str], timeout: float,
                       max_tasks: int = 1, result_ttl: float = DEFAULT_RESULT_TTL,
                       holds_nothing: bool = False) -> ClaimResult:
        """Block until a queue may have work (or `timeout`), then claim, in one round trip.

        The claim is pipelined behind the blocking read: Redis holds a blocked client's next
        command until the read returns, so the claim runs the moment a wake-up token arrives,
        before this process is even scheduled. A caller interrupted while waiting must assume
        the claim ran (release its lists), as after any lost reply.
        """
        wake = [self.qkeys(q).wake for q in queues]
        block = round(max(self.block_limit(timeout), 0.001), 3)
        if self.cluster and len(queues) > 1:
            # Wake lists in several slots: block on each (ClusterLink.wait_any), then claim
            # from the queues that woke this worker first (in the caller's order: one round
            # trip where a claim of every queue would take one per queue), else from all.
            assert isinstance(self.link, ClusterLink)
            woke = set(self.link.wait_any(wake, block))
            first = [q for q, key in zip(queues, wake, strict=True) if key in woke]
            if first and len(first) < len(queues):
                got = self.claim(worker_id, first, max_tasks, result_ttl=result_ttl,
                                 holds_nothing=holds_nothing)
                if got.tasks:
                    return got
            return self.claim(worker_id, queues, max_tasks, result_ttl=result_ttl,
                              holds_nothing=holds_nothing)
        keys, args = self._claim_request(worker_id, queues, max_tasks, (), None, result_ttl,
                                         holds_nothing)
        script = SCRIPTS.claim
        _, reply = self.link.call_pipelined(("BLPOP", *wake, block),
                                            ("EVALSHA", script.sha, len(keys), *keys, *args))
        return self._claim_result(self._pipelined_reply(reply, script, keys, args)[0], queues)

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
        return reply, False

    def _claim_request(self, worker_id: str, queues: Sequence[str], max_tasks: int,
                       acks: Sequence[Ack], stats: dict[tuple[str, str], int] | None,
                       result_ttl: float, holds_nothing: bool = False
                       ) -> tuple[list[Any], list[Any]]:
        index = {q: str(i) for i, q in enumerate(queues, 1)}   # (strings: packed as they are)
        keys: list[Any] = []
        for q in queues:
            keys.extend(self.block(q))
        keys.extend(self.qkeys(q).proc(worker_id) for q in queues)
        args: list[Any] = [worker_id, len(queues), max_tasks, PROMOTE_LIMIT,
                           int(result_ttl * 1000), len(acks), len(stats or ()),
                           1 if holds_nothing else 0, *queues]
        for ack in acks:
            t = ack.task
            qi = index.get(t.queue)
            if qi is None:   # a task of a queue outside this claim: add its block
                raise ValueError(f"ack for queue {t.queue!r} outside {list(queues)}")
            keys.append(self.qkeys(t.queue).result(t.id))
            flags = _FLAGS[(1 if t.failures else 0) | (0 if t.workflow is None else 2)]
            args.extend((qi, t.id, t.token, t.type, flags, ack.record))
        if stats:
            for (q, fieldname), n in stats.items():
                args.extend((index[q], fieldname, n))
        return keys, args

    @staticmethod
    def _claim_result(reply: Any, queues: Sequence[str]) -> ClaimResult:
        claimed, stale, due, strays = reply
        from_body = Task.from_body
        it = iter(claimed)   # flat: (queue index, id, token, body, failures) per task
        tasks = [from_body(tid.decode(), queues[qi - 1], body, fails, token.decode())
                 for qi, tid, token, body, fails in zip(it, it, it, it, it, strict=True)]
        return ClaimResult(tasks, [s.decode() for s in stale] if stale else [],
                           None if due < 0 else due / 1000, strays)

    def wait_for_work(self, queues: Sequence[str], timeout: float) -> bool:
        """Block until a queue may have work (a wake token), for at most `timeout` seconds."""
        if timeout <= 0:
            return False
        keys = [self.qkeys(q).wake for q in queues]
        timeout = round(max(self.block_limit(timeout), 0.001), 3)
        if self.cluster and len(queues) > 1:
            assert isinstance(self.link, ClusterLink)
            return bool(self.link.wait_any(keys, timeout))
        return self.link.call("BLPOP", *keys, timeout) is not None

    def block_limit(self, seconds: float) -> float:
        """`seconds`, shortened to stay inside the socket timeout; callers block in slices."""
        # A block longer than the socket timeout would read as a dead connection; Redis ends
        # a block up to 1/hz (100 ms) late, so keep a margin.
        limit = self.socket_timeout
        if not limit:
            return seconds
        return min(seconds, limit - 1.0 if limit > 2 else limit / 2)

    def fetch(self, worker_id: str, queues: Sequence[str], max_tasks: int = 1,
              block_seconds: float = 0.0) -> list[Task]:
        """Claim up to max_tasks, blocking up to block_seconds while the queues are empty."""
        deadline = time.monotonic() + block_seconds
        with translated(self.url):
            while True:
                got = self.claim(worker_id, queues, max_tasks)
                remaining = deadline - time.monotonic()
                if got.tasks or remaining <= 0:
                    return got.tasks
                self.wait_for_work(queues, remaining if got.next_due is None
                                   else min(remaining, got.next_due))

    def ack(self, worker_id: str, task: Task, result: Any = None, *,
            started: float | None = None, result_ttl: float = DEFAULT_RESULT_TTL) -> bool:
        """Mark a claimed task succeeded; False if this worker no longer holds that claim."""
        now = time.time()
        record = result_record(task, _dumps(result), worker_id, started or now, now)
        with translated(self.url):
            got = self.claim(worker_id, [task.queue], 0, acks=[Ack(task, record)],
                             result_ttl=result_ttl)
        return not got.stale

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
        return report

    def release(self, worker_id: str, queues: Sequence[str]) -> int:
        """Hand back a worker's claims without counting an attempt (drain, lost connection)."""
        return self.requeue_worker(worker_id, queues).requeued

    def queues_of(self, worker_id: str) -> list[str]:
        """The queues a worker consumed: from its registry info, else from a key scan."""
        with translated(self.url):
            raw = self.conn.get(self.keys.worker(worker_id))
            if raw:
                try:
                    queues = json.loads(raw).get("queues")
                    if isinstance(queues, list) and all(isinstance(q, str) for q in queues):
                        return queues
                except ValueError:
                    pass
            found = set()
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
