"""Consumer groups: what a master's children consume (`-Q`: names and globs, weights, strict),
and the ready index through which they find the queues that hold work.

A group is identified by its spec, so masters started with the same `-Q` share one group, its
ready index and its wake list, whatever host they run on. Producers and queue scripts enter a
queue in the ready index of every group whose patterns match it when it gets ready work
(lua/_lib.lua: wake); claims take it out when they drain it. So a claim, and an idle worker's
wait, cost with the queues that hold work, not with the queues a worker consumes.

    ns:groups              hash  group id -> spec: "W" or "S", "\\n=" when it names plain
                                 queues, then per glob "\\n<rank>\\t<stride>\\t<lua pattern>"
    ns:gnames:<id>         hash  plain queue name -> "<rank>\\t<stride>" (a lookup, however
                                 many names a -Q lists)
    ns:groupseen           zset  group id -> last heartbeat of a master using it (Redis ms)
    ns:gready:<id>         zset  queue -> pass (weighted) or rank (strict): queues in line
    ns:gwake:<id>          list  a token for one idle worker of the group
    ns:ggen:<id>           hash  queue -> joins so far (cluster: fences a drained verdict)
    (on a Redis Cluster under the global tag: ns:{#}:groups ...)
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache

from ..task import is_pattern

BASE_STRIDE = 5040   # divisible by 1..10: weights up to 10 step exactly; larger ones round


def stride(weight: int) -> int:
    """How far a queue's pass moves on each claim that takes from it (weighted fairness)."""
    return max(1, round(BASE_STRIDE / max(1, weight)))


def lua_pattern(glob: str) -> str:
    """A glob as an anchored Lua pattern (string.find), with fnmatch's meaning: * any run of
    characters, ? one, [abc] / [!abc] a set. Queue names hold only [A-Za-z0-9_.-/@+]."""
    out, i = ["^"], 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = glob.find("]", i + 1)
            if j < 0:
                out.append("%[")
            else:
                body = glob[i + 1:j]
                neg = body.startswith("!")
                if neg:
                    body = body[1:]
                out.append("[" + ("^" if neg else "") + _lua_set(body) + "]")
                i = j
        else:
            out.append(_lua_escape(c))
        i += 1
    out.append("$")
    return "".join(out)


def _lua_escape(c: str) -> str:
    return "%" + c if c in "^$()%.[]*+-?" else c


def _lua_set(body: str) -> str:
    # keep ranges (a-z), escape the rest
    out = []
    for k, c in enumerate(body):
        if c == "-" and 0 < k < len(body) - 1:
            out.append("-")
        else:
            out.append(_lua_escape(c))
    return "".join(out)


@dataclass(frozen=True)
class Group:
    """A consumer group: its patterns (names or globs) in order, their weights, strict or not."""

    patterns: tuple[str, ...]
    weights: tuple[int, ...]
    strict: bool = False

    @classmethod
    def of(cls, queues: list[str], weights: dict[str, int] | None = None,
           strict: bool = False) -> Group:
        w = weights or {}
        return cls(tuple(queues), tuple(int(w.get(q, 1)) for q in queues), strict)

    @property
    def spec(self) -> str:
        """What the groups hash holds for it (read by the Lua scripts, see module doc): its
        globs; its plain names are in names()."""
        lines = [("S" if self.strict else "W")]
        if any(not is_pattern(p) for p in self.patterns):
            lines.append("=")
        for rank, (p, w) in enumerate(zip(self.patterns, self.weights, strict=True), 1):
            if is_pattern(p):
                lines.append(f"{rank}\t{stride(w)}\t{lua_pattern(p)}")
        return "\n".join(lines)

    @property
    def names_map(self) -> dict[str, str]:
        """Its plain queue names -> "rank<TAB>stride" (the gnames hash)."""
        out: dict[str, str] = {}
        for rank, (p, w) in enumerate(zip(self.patterns, self.weights, strict=True), 1):
            if not is_pattern(p) and p not in out:
                out[p] = f"{rank}\t{stride(w)}"
        return out

    @property
    def id(self) -> str:
        return _group_id(self.patterns, self.weights, self.strict)

    def rank(self, queue: str) -> int | None:
        """1-based index of the first pattern `queue` matches (None: not consumed)."""
        return _rank(self.patterns, queue)

    def consumes(self, queue: str) -> bool:
        return self.rank(queue) is not None

    def stride_of(self, queue: str) -> int:
        """The queue's stride in this group (0 when strict: its rank never moves)."""
        r = self.rank(queue)
        if self.strict or r is None:
            return 0
        return stride(self.weights[r - 1])

    def names(self) -> list[str]:
        """The plain queue names it lists (its globs left out)."""
        return [p for p in self.patterns if not is_pattern(p)]

    def matching(self, queues: list[str]) -> list[str]:
        """Which of `queues` it consumes, in its order (by rank, then name)."""
        ranked = [(r, q) for q in queues if (r := self.rank(q)) is not None]
        return [q for _, q in sorted(ranked)]


@lru_cache(maxsize=256)
def _group_id(patterns: tuple[str, ...], weights: tuple[int, ...], strict: bool) -> str:
    text = "\n".join([("S" if strict else "W"), *(f"{w}\t{p}" for p, w in
                                                   zip(patterns, weights, strict=True))])
    return hashlib.sha1(text.encode()).hexdigest()[:12]


@lru_cache(maxsize=256)
def _plain(patterns: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i, p in enumerate(patterns, 1):
        if not is_pattern(p):
            out.setdefault(p, i)
    return out


@lru_cache(maxsize=4096)
def _rank(patterns: tuple[str, ...], queue: str) -> int | None:
    rank = _plain(patterns).get(queue)
    for i, p in enumerate(patterns, 1):
        if rank is not None and i > rank:
            break
        if is_pattern(p) and fnmatch.fnmatchcase(queue, p):
            return i
    return rank


_SPEC_LINE = re.compile(r"\n(\d+)\t(\d+)\t([^\n]*)")


def spec_patterns(spec: str) -> list[str]:
    """The Lua patterns of a spec read back from Redis (for tests and diagnostics)."""
    return [m.group(3) for m in _SPEC_LINE.finditer(spec)]
