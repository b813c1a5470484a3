"""Workflows: chains, groups, chords and DAGs of tasks (client.workflow).

    wf = client.workflow(tq.chain(tq.step("fetch", {"url": u}), tq.step("resize"),
                                  tq.step("upload")))
    wf = client.workflow(tq.chord([tq.step("count", {"part": i}) for i in range(100)],
                                  tq.step("total")))            # total's ctx.inputs: 100 results
    wf = client.workflow({"a": tq.step("a"), "b": tq.step("b", after="a"),
                          "c": tq.step("c", after="a"), "d": tq.step("d", after=["b", "c"])})
    client.get_workflow(wf.id)   # state, and every member's state and result

How it runs (the design's invariant: a member's completion is counted in the same Lua script
as its ack, so no crash can lose or double a downstream step):

- Every member is an ordinary task in its own queue. One without upstream members is ready at
  once; the others wait, their bodies stored, with a count of upstream members still to finish
  ("d:ID" in the queue's `wf` hash, see shared/store/keys.py).
- The ack of a member (claim.lua), its dead-lettering (fail.lua, requeue.lua) or its
  cancellation hands its outcome to each downstream member in the same script: the result
  record is stored as that member's input ("i:ID:K", K its place among the upstream members),
  and the count goes down; at zero the member is pushed to its ready list.
- All keys of one queue share a cluster slot, so a script cannot touch another queue. An edge
  to a member of another queue is written to the finishing member's queue's `out` list (in the
  same script) and a master serving that queue applies it to the other queue with handoff.lua
  (supervisor/handoff.py), then deletes the entry. Applying is idempotent (an input is set
  once, HSETNX), so a master that dies in between, or two masters at once, change nothing.
- Failure policy, per workflow: "stop" (default): a member whose upstream member is dead or
  cancelled is dead-lettered itself (kind upstream_dead / upstream_cancelled, with the cause),
  and so on downstream; "continue": it runs anyway, that input being None.
- A handler reads its upstream results as ctx.inputs (in the order of its upstream members:
  a chord's callback gets the group's results in the group's order), ctx.input (the last
  one: in a chain, the previous step's result) and ctx.workflow_id.

The workflow's own record (members, edges, policy) is one JSON string with a TTL (7 days by
default); members' states and results are read from the members themselves.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .task import MAX_WORKFLOW_MEMBERS, TaskInfo, validate_name

POLICIES = ("stop", "continue")
DEFAULT_TTL = 7 * 24 * 3600.0     # seconds a workflow's record is kept
FINISHED = ("succeeded", "dead", "cancelled", "expired")


@dataclass(frozen=True)
class Step:
    """One task of a workflow: what client.enqueue() takes, plus `after` (names of the members
    it waits for, in a DAG given as a dict) and an optional name."""

    type: str
    payload: Mapping[str, Any] | None = None
    queue: str | None = None
    priority: int = 0
    max_retries: int | None = None
    timeout: float | None = None
    after: tuple[str, ...] = ()
    name: str | None = None


def step(type: str, payload: Mapping[str, Any] | None = None, *, queue: str | None = None,
         priority: int = 0, max_retries: int | None = None, timeout: float | None = None,
         after: str | Iterable[str] = (), name: str | None = None) -> Step:
    """A task of a workflow (see chain, group, chord, client.workflow)."""
    validate_name("type", type)
    deps = (after,) if isinstance(after, str) else tuple(after)
    return Step(type, payload, queue, priority, max_retries, timeout, deps, name)


@dataclass(frozen=True)
class Chain:
    parts: tuple[Any, ...]


@dataclass(frozen=True)
class Group:
    parts: tuple[Any, ...]


def chain(*parts: Any) -> Chain:
    """Run parts one after the other; each starts when the previous one succeeded and gets
    its result (ctx.input; a group's results as ctx.inputs)."""
    if not parts:
        raise ValueError("a chain needs at least one step")
    return Chain(tuple(_part(p) for p in parts))


def group(*parts: Any) -> Group:
    """Run parts in parallel. group(a, b) or group([a, b])."""
    if len(parts) == 1 and isinstance(parts[0], list | tuple):
        parts = tuple(parts[0])
    if not parts:
        raise ValueError("a group needs at least one step")
    return Group(tuple(_part(p) for p in parts))


def chord(header: Any, callback: Any) -> Chain:
    """Run a group, then `callback` once with all its results (ctx.inputs, in order)."""
    head = header if isinstance(header, Group) else group(header)
    return chain(head, callback)


def _part(p: Any) -> Any:
    if isinstance(p, Step | Chain | Group):
        return p
    if isinstance(p, str):
        return step(p)
    if isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str):
        return step(p[0], p[1])
    raise ValueError(f"a workflow part must be tq.step(), a chain, a group, a chord, a type "
                     f"name or a (type, payload) pair, not {p!r}")


@dataclass
class Member:
    name: str
    step: Step
    deps: list[int] = field(default_factory=list)   # indices of upstream members, in order
    id: str = ""
    queue: str = ""


def compile_workflow(spec: Any) -> list[Member]:
    """The members of a workflow in a topological order, each with its upstream members."""
    members: list[Member] = []
    if isinstance(spec, Mapping):
        names = list(spec)
        index = {}
        for name in names:
            validate_name("workflow member name", name)
            s = spec[name]
            if not isinstance(s, Step):
                s = _part(s)
                if not isinstance(s, Step):
                    raise ValueError(f"member {name!r}: a DAG's members are tq.step()s "
                                     "(use `after` for edges)")
            index[name] = len(members)
            members.append(Member(name, s))
        for m in members:
            for dep in m.step.after:
                if dep not in index:
                    raise ValueError(f"member {m.name!r} waits for {dep!r}, which is not a "
                                     f"member (members: {', '.join(names)})")
                if dep == m.name:
                    raise ValueError(f"member {m.name!r} waits for itself")
                m.deps.append(index[dep])
        members = _topological(members)
    else:
        part = _part(spec)
        _add(part, [], members)
    if not members:
        raise ValueError("a workflow needs at least one step")
    if len(members) > MAX_WORKFLOW_MEMBERS:
        raise ValueError(f"a workflow has at most {MAX_WORKFLOW_MEMBERS} members")
    return members


def _add(part: Any, upstream: list[int], members: list[Member]) -> list[int]:
    """Add `part` after `upstream`; returns its exits (the members its successors wait for)."""
    if isinstance(part, Step):
        if part.after:
            raise ValueError("`after` names members of a DAG given as a dict; in a chain or "
                             "group the order is the structure")
        n = len(members)
        members.append(Member(part.name or f"{n}.{part.type}", part, list(upstream)))
        return [n]
    if isinstance(part, Chain):
        exits = upstream
        for p in part.parts:
            exits = _add(p, exits, members)
        return exits
    exits = []
    for p in part.parts:
        exits.extend(_add(p, upstream, members))
    return exits


def _topological(members: list[Member]) -> list[Member]:
    """Members ordered so that each comes after its upstream ones; ValueError on a cycle."""
    order: list[int] = []
    state = [0] * len(members)   # 0 new, 1 on the path, 2 done
    for start in range(len(members)):
        if state[start]:
            continue
        stack = [(start, iter(members[start].deps))]
        state[start] = 1
        while stack:
            node, deps = stack[-1]
            nxt = next(deps, None)
            if nxt is None:
                stack.pop()
                state[node] = 2
                order.append(node)
            elif state[nxt] == 1:
                raise ValueError(f"the workflow has a cycle through {members[nxt].name!r}")
            elif state[nxt] == 0:
                state[nxt] = 1
                stack.append((nxt, iter(members[nxt].deps)))
    where = {old: new for new, old in enumerate(order)}
    out = []
    for old in order:
        m = members[old]
        out.append(Member(m.name, m.step, [where[d] for d in m.deps]))
    return out


def downstream(members: Sequence[Member]) -> list[list[tuple[int, int]]]:
    """For each member: (downstream member index, its place among that member's upstream)."""
    out: list[list[tuple[int, int]]] = [[] for _ in members]
    for i, m in enumerate(members):
        for k, d in enumerate(m.deps):
            out[d].append((i, k))
    return out


def validate_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, not {policy!r}")
    return policy


@dataclass
class Workflow:
    """What client.workflow() returns: the workflow id and its members' task ids."""

    id: str
    tasks: dict[str, str]            # member name -> task id
    sinks: list[str]                 # task ids of the members nothing waits for

    @property
    def last(self) -> str:
        """The task id of the one final member (a chain's last step, a chord's callback)."""
        if len(self.sinks) != 1:
            raise ValueError(f"this workflow ends in {len(self.sinks)} members: use .sinks")
        return self.sinks[0]


@dataclass
class WorkflowInfo:
    """What client.get_workflow() knows: the workflow's state and each member's."""

    id: str
    state: str                      # running, succeeded, failed, cancelled
    policy: str
    created_at: float | None
    members: list[dict[str, Any]]   # name, id, queue, type, after (names), state, result...
    counts: dict[str, int]          # members by state

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "policy": self.policy,
                "created_at": self.created_at, "counts": self.counts, "members": self.members}

    @property
    def finished(self) -> bool:
        return self.state != "running"


def record(workflow_id: str, policy: str, members: Sequence[Member]) -> str:
    return json.dumps({"id": workflow_id, "policy": policy, "created": time.time(),
                       "members": [[m.name, m.queue, m.id, m.step.type, m.deps]
                                   for m in members]}, separators=(",", ":"))


def summarize(rec: dict[str, Any], infos: list[TaskInfo | None]) -> WorkflowInfo:
    """A workflow's state from its record and its members' TaskInfo (None: gone, i.e. its
    result expired)."""
    rows = rec.get("members") or []
    members = []
    counts: dict[str, int] = {}
    names = [r[0] for r in rows]
    for row, info in zip(rows, infos, strict=True):
        name, queue, tid, ttype, deps = row
        state = info.state if info is not None else "expired"
        counts[state] = counts.get(state, 0) + 1
        m: dict[str, Any] = {"name": name, "id": tid, "queue": queue, "type": ttype,
                             "after": [names[d] for d in deps], "state": state}
        if info is not None:
            m.update(result=info.result, error=info.error, error_kind=info.error_kind,
                     attempts=info.attempts, started_at=info.started_at,
                     finished_at=info.finished_at, progress=info.progress)
        members.append(m)
    done = all(m["state"] in FINISHED for m in members)
    if not done:
        state = "running"
    elif all(m["state"] == "succeeded" for m in members):
        state = "succeeded"
    elif any(m["state"] == "dead" for m in members):
        state = "failed"
    elif any(m["state"] == "cancelled" for m in members):
        state = "cancelled"
    else:
        state = "succeeded"   # some results expired, none failed
    return WorkflowInfo(rec.get("id", ""), state, rec.get("policy", "stop"),
                        rec.get("created"), members, counts)
