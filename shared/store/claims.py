"""The worker's round trip: ack what finished and claim what is next, in one script call.

Two ways to say where to claim from (lua/claim.lua):
- named queues (`claim`, `wait_and_claim`): served in the order given. tq.testing, broker.fetch
  and the tests use it; on a Redis Cluster every claim names one queue (one slot).
- a consumer group (`claim_group`, `wait_and_claim_group`; groups.py): the queues of the group
  that hold ready work, from its ready index. What tq-master's children use: a claim, and an
  idle child's wait, cost with the queues that hold work, not with the number of queues. On a
  standalone Redis that is one call; on a cluster the group's index lives in another slot than
  the queues, so a claim first asks it which queues are in line (pick.lua, pipelined behind
  the idle wait), then claims from each in its slot, and tells the index what it found with
  its next pick.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..task import Task
from .cluster import ClusterLink
from .groups import Group
from .link import Link, pack_items
from .results import Ack, ClaimResult, parse_claim, result_record
from .scripts import SCRIPTS

if TYPE_CHECKING:

    from .integrity import Quarantine
    from .keys import Keys, QueueKeys
    from .scripts import Script

DEFAULT_RESULT_TTL = 24 * 3600.0
PROMOTE_LIMIT = "100"   # due tasks a claim promotes per queue (the masters promote the rest)
PICK = 4                # queues a cluster claim asks the group's index for
_FLAGS = ("0", "1", "2", "3")   # an ack's flags in claim.lua: bit 1 failures, bit 2 workflow
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
__all__ = ["DEFAULT_RESULT_TTL", "Ack", "ClaimResult", "Claims", "parse_claim", "result_record"]


@dataclass
class _GroupState:
    """A cluster worker's verdicts on the queues of its last picks, for its next pick."""

    updates: list[tuple[str, str, str, int]] = field(default_factory=list)


class Claims:
    """The claim path of a Broker (which provides the attributes and methods below)."""

    url: str
    namespace: str
    keys: Keys
    link: Link | ClusterLink
    conn: Any   # a redis.Redis, or a redis.RedisCluster
    cluster: bool
    socket_timeout: float | None
    replica_acks: int
    quarantine: Quarantine

    if TYPE_CHECKING:
        def qkeys(self, queue: str) -> QueueKeys: ...
        def block(self, queue: str) -> list[bytes]: ...
        def replicated(self, script: Script, keys: Sequence[Any], args: Sequence[Any]
                       ) -> Any: ...
        def _pipelined_reply(self, reply: Any, script: Script, keys: Sequence[Any],
                             args: Sequence[Any]) -> tuple[Any, bool]: ...

    def _claims_init(self) -> None:
        self._packed: dict[tuple[str, ...], bytes] = {}   # fixed parts of claims, packed once
        self._group_state: dict[tuple[str, str], _GroupState] = {}

    # -- named queues -------------------------------------------------------------------
    def claim(self, worker_id: str, queues: Sequence[str], max_tasks: int = 1, *,
              acks: Sequence[Ack] = (), stats: dict[tuple[str, str], int] | None = None,
              result_ttl: float = DEFAULT_RESULT_TTL, holds_nothing: bool = False
              ) -> ClaimResult:
        """Ack `acks`, add `stats` ((queue, field) -> n), then claim up to max_tasks from
        `queues` in that order; one trip (one per queue on a cluster).

        holds_nothing: the caller holds no claimed task once these acks are settled, so
        anything else in its lists of these queues is a stray of a lost reply, handed back.

        Raises redis-py's connection errors untranslated, and refusals (OOM, READONLY...) as
        RedisUnavailable: the worker loop handles both (link.OUTAGE).
        """
        if self.cluster and len(queues) > 1:
            return self._claim_each(worker_id, queues, max_tasks, acks, stats, result_ttl,
                                    holds_nothing)
        for ack in acks:
            if ack.task.queue not in queues:
                raise ValueError(f"ack for queue {ack.task.queue!r} outside {list(queues)}")
        keys: list[Any] = []
        for q in queues:
            keys.extend(self.block(q))
        fixed = [worker_id, self.namespace, "q", ""]
        rest = self._claim_args(max_tasks, acks, stats, result_ttl, holds_nothing, queues)
        return self._run_claim(("q", worker_id, *queues), keys, fixed, rest, bool(acks))

    def _claim_each(self, worker_id: str, queues: Sequence[str], max_tasks: int,
                    acks: Sequence[Ack], stats: dict[tuple[str, str], int] | None,
                    result_ttl: float, holds_nothing: bool) -> ClaimResult:
        """claim() on a cluster, where each queue lives in its own slot: one call per queue, in
        the caller's order, each with that queue's acks and stats, until max_tasks are
        claimed; queues after that get a call only for their acks."""
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
            if want <= 0 and not mine and not part and not holds_nothing:
                continue
            out.merge(self.claim(worker_id, [q], max(want, 0), acks=mine, stats=part,
                                 result_ttl=result_ttl, holds_nothing=holds_nothing))
        if out.tasks:
            out.next_due = None
        return out

    def wait_and_claim(self, worker_id: str, queues: Sequence[str], timeout: float,
                       max_tasks: int = 1, result_ttl: float = DEFAULT_RESULT_TTL,
                       holds_nothing: bool = False) -> ClaimResult:
        """Block until a named queue may have work (or `timeout`), then claim, in one trip.

        The claim is pipelined behind the blocking read: Redis holds a blocked client's next
        command until the read returns, so the claim runs the moment a wake-up token arrives,
        before this process is even scheduled. A caller interrupted while waiting must assume
        the claim ran (release its lists), as after any lost reply.
        """
        wake = [self.qkeys(q).wake for q in queues]
        block = round(max(self.block_limit(timeout), 0.001), 3)
        if self.cluster and len(queues) > 1:
            # Wake lists in several slots: block on each (ClusterLink.wait_any), then claim
            # from the queues that woke this worker first, else from all.
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
        keys: list[Any] = []
        for q in queues:
            keys.extend(self.block(q))
        args = [worker_id, self.namespace, "q", "",
                *self._claim_args(max_tasks, (), None, result_ttl, holds_nothing, queues)]
        script = SCRIPTS.claim
        _, reply = self.link.call_pipelined(("BLPOP", *wake, block),
                                            ("EVALSHA", script.sha, len(keys), *keys, *args))
        return parse_claim(self._pipelined_reply(reply, script, keys, args)[0])

    # -- a consumer group ---------------------------------------------------------------
    def claim_group(self, worker_id: str, group: Group, max_tasks: int = 1, *,
                    acks: Sequence[Ack] = (), result_ttl: float = DEFAULT_RESULT_TTL,
                    holds_nothing: bool = False, excluded: Sequence[str] = ()
                    ) -> ClaimResult:
        """Ack `acks`, then claim up to max_tasks from the queues of `group` that hold ready
        work (excluded: queues this worker set aside as broken). See claim()."""
        if self.cluster:
            picks = self._pick(worker_id, group, excluded)
            return self._claim_picked(worker_id, group, picks, max_tasks, acks, result_ttl,
                                      holds_nothing)
        gid = group.id
        keys = [self.keys.group_ready(gid), self.keys.group_wake(gid)]
        fixed = [worker_id, self.namespace, "g", gid]
        rest = self._claim_args(max_tasks, acks, None, result_ttl, holds_nothing, excluded,
                                promote="0")
        return self._run_claim(("g", worker_id, gid), keys, fixed, rest, bool(acks))

    def wait_and_claim_group(self, worker_id: str, group: Group, timeout: float,
                             max_tasks: int = 1, result_ttl: float = DEFAULT_RESULT_TTL,
                             holds_nothing: bool = False, excluded: Sequence[str] = ()
                             ) -> ClaimResult:
        """Block on the group's wake list until a queue of it has work (or `timeout`), then
        claim: in one round trip on a standalone Redis (the claim pipelined behind the read,
        see wait_and_claim); on a cluster the pick rides behind the read, then the claims."""
        gid = group.id
        wake = self.keys.group_wake(gid)
        block = round(max(self.block_limit(timeout), 0.001), 3)
        if self.cluster:
            # What its last claims found goes to the index before the wait (so its tokens are
            # right while this worker blocks), the pick rides behind the read.
            upd_keys, upd_args = self._pick_request(worker_id, group, excluded, k=0)
            self._state(worker_id, gid).updates = []
            pick_keys, pick_args = self._pick_request(worker_id, group, excluded)
            script = SCRIPTS.pick
            first, _, reply = self.link.call_pipelined(
                ("EVALSHA", script.sha, len(upd_keys), *upd_keys, *upd_args),
                ("BLPOP", wake, block),
                ("EVALSHA", script.sha, len(pick_keys), *pick_keys, *pick_args))
            self._pipelined_reply(first, script, upd_keys, upd_args)
            picks = self._pipelined_reply(reply, script, pick_keys, pick_args)[0]
            return self._claim_picked(worker_id, group, _pairs(picks), max_tasks, (),
                                      result_ttl, holds_nothing)
        keys = [self.keys.group_ready(gid), wake]
        args = [worker_id, self.namespace, "g", gid,
                *self._claim_args(max_tasks, (), None, result_ttl, holds_nothing, excluded,
                                  promote="0")]
        script = SCRIPTS.claim
        _, reply = self.link.call_pipelined(("BLPOP", wake, block),
                                            ("EVALSHA", script.sha, len(keys), *keys, *args))
        return parse_claim(self._pipelined_reply(reply, script, keys, args)[0])

    def _state(self, worker_id: str, gid: str) -> _GroupState:
        state = self._group_state.get((worker_id, gid))
        if state is None:
            state = self._group_state[(worker_id, gid)] = _GroupState()
        return state

    def _pick_request(self, worker_id: str, group: Group, excluded: Sequence[str],
                      k: int = PICK) -> tuple[list[Any], list[Any]]:
        gid = group.id
        state = self._state(worker_id, gid)
        keys = [self.keys.group_ready(gid), self.keys.group_wake(gid),
                self.keys.group_gens(gid), self.keys.procs(worker_id)]
        args: list[Any] = [k, len(state.updates)]
        for q, verdict, gen, stride in state.updates:
            args.extend((q, verdict, gen, stride))
        args.extend(excluded)
        return keys, args

    def _pick(self, worker_id: str, group: Group, excluded: Sequence[str]
              ) -> list[tuple[str, str]]:
        """The queues in line for this worker (cluster), telling the index what its last
        claims found (their verdicts) in the same call."""
        keys, args = self._pick_request(worker_id, group, excluded)
        picks = SCRIPTS.pick(self.link, keys, args)
        self._state(worker_id, group.id).updates = []
        return _pairs(picks)

    def _claim_picked(self, worker_id: str, group: Group,
                      picks: list[tuple[str, str]], max_tasks: int, acks: Sequence[Ack],
                      result_ttl: float, holds_nothing: bool) -> ClaimResult:
        """Claims from the picked queues (cluster: one call each, in their slots) until
        max_tasks, after the acks (a call per queue of them) and, with holds_nothing, the look
        for strays in every queue this worker may hold tasks of (its procs set): as claim.lua
        orders them in one call."""
        by_queue: dict[str, list[Ack]] = {}
        for ack in acks:
            by_queue.setdefault(ack.task.queue, []).append(ack)
        state = self._state(worker_id, group.id)
        out = ClaimResult([])
        if holds_nothing:
            # acks first: then it holds nothing, and what its lists still hold is a stray
            for q, mine in by_queue.items():
                out.merge(self.claim(worker_id, [q], 0, acks=mine, result_ttl=result_ttl))
            by_queue = {}
            members: Any = self.link.call("SMEMBERS", self.keys.procs(worker_id))
            held = [m.decode() for m in members]
            for q in held:
                out.strays += self.claim(worker_id, [q], 0, holds_nothing=True).strays
        for q, gen in picks:
            want = max_tasks - len(out.tasks)
            if want <= 0:
                break
            got = self.claim(worker_id, [q], want, acks=by_queue.pop(q, ()),
                             result_ttl=result_ttl)
            out.merge(got)
            verdict = "gone" if q in got.gone else "left"
            state.updates.append((q, verdict, gen, group.stride_of(q)))
        for q, mine in by_queue.items():   # acks of queues it did not claim from now
            out.merge(self.claim(worker_id, [q], 0, acks=mine, result_ttl=result_ttl))
        out.gone = []
        out.next_due = 0.0 if not out.tasks and picks else None
        return out

    # -- shared ---------------------------------------------------------------------------
    def _claim_args(self, max_tasks: int, acks: Sequence[Ack],
                    stats: dict[tuple[str, str], int] | None, result_ttl: float,
                    holds_nothing: bool, queues: Sequence[str], promote: str = PROMOTE_LIMIT
                    ) -> list[Any]:
        """claim.lua's ARGV after its fixed head (worker, namespace, mode, group); promote:
        how many due tasks a claim promotes per queue ("0": the masters do)."""
        args: list[Any] = [max_tasks, promote, int(result_ttl * 1000), len(acks),
                           len(stats or ()), "1" if holds_nothing else "0", len(queues),
                           *queues]
        for ack in acks:
            t = ack.task
            flags = _FLAGS[(1 if t.failures else 0) | (0 if t.workflow is None else 2)]
            args.extend((t.queue, t.id, t.token, t.type, flags, ack.record))
        if stats:
            for (q, fieldname), n in stats.items():
                args.extend((q, fieldname, n))
        return args

    def _run_claim(self, cache_key: tuple[str, ...], keys: list[Any],
                   fixed: list[Any], rest: list[Any], has_acks: bool) -> ClaimResult:
        script = SCRIPTS.claim
        if has_acks and self.replica_acks:
            reply = self.replicated(script, keys, [*fixed, *rest])
        elif self.cluster:
            reply = script(self.link, keys, [*fixed, *rest])
        else:
            # The keys and the head of ARGV are the same on every claim of this worker and
            # these queues: packed once (they are most of what a claim would pack each time).
            head = self._packed.get(cache_key)
            if head is None:
                if len(self._packed) >= 64:
                    self._packed.clear()
                head = self._packed[cache_key] = pack_items([*keys, *fixed])
            n = len(keys) + len(fixed) + len(rest)
            assert isinstance(self.link, Link)
            reply = script.call_packed(self.link, len(keys), n, [head, pack_items(rest)])
        return parse_claim(script.signalled(self.link, keys, reply))

    def wait_for_work(self, queues: Sequence[str], timeout: float) -> bool:
        """Block until a named queue may have work (a wake token), for at most `timeout` s."""
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
        from .connection import translated

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
        from .connection import translated

        now = time.time()
        record = result_record(task, _dumps(result), worker_id, started or now, now)
        with translated(self.url):
            got = self.claim(worker_id, [task.queue], 0, acks=[Ack(task, record)],
                             result_ttl=result_ttl)
        return not got.stale


def _pairs(flat: list[Any]) -> list[tuple[str, str]]:
    it = iter(flat)
    return [(q.decode(), gen.decode() if isinstance(gen, bytes) else str(gen))
            for q, gen in zip(it, it, strict=True)]
