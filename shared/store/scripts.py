"""The Lua scripts (shared/store/lua/*.lua): loaded once, called by name through EVALSHA.

Each script's header documents its KEYS, ARGV and reply. A script whose first line is
`-- uses: _lib[, part...]` gets those files (lua/_lib.lua, then parts such as lua/_settle.lua)
prepended, as much of them as it uses. After a Redis restart the script cache is empty: a
NOSCRIPT reply loads the script and repeats the call (it did not run, so this is safe).

On a Redis Cluster the global indexes (groups' ready indexes, the masters' agenda) live in
another slot than the queues: a queue script's reply then ends with what it changed there
(_lib.lua's reply_with_signals), which Script takes off the reply and applies (index.lua).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis import Redis, RedisCluster
from redis.exceptions import NoScriptError

from .cluster import ClusterLink
from .link import Link, pack_items

NAMES = ("enqueue", "claim", "fail", "requeue", "promote", "inspect", "dead", "purge",
         "heartbeat", "expired", "repair", "drop", "sched", "flow", "rekey", "cancel", "wfadd",
         "handoff", "unregister", "index", "pick", "sweep", "agenda", "unclaim", "sizes",
         "counters", "peek", "value")
# Queue scripts whose reply is no table, so no signals ride on it (see Script): on a cluster
# their queue is entered in the indexes after each call, as if it had got work and a master
# were needed (rare operators' paths; a claim that finds nothing takes it out again).
UNSIGNALLED = frozenset({"cancel", "handoff", "purge", "sched", "wfadd"})
SIGNAL = b"~sig"


def _source(name: str) -> str:
    folder = resources.files(__package__).joinpath("lua")
    text = folder.joinpath(f"{name}.lua").read_text("utf-8")
    first = text.split("\n", 1)[0]
    if first.startswith("-- uses:"):
        parts = [p.strip() for p in first[len("-- uses:"):].split(",") if p.strip()]
        lib = "".join(folder.joinpath(f"{p}.lua").read_text("utf-8") for p in parts)
        text = used_lib(lib, text) + "\n" + text
    return text


_DEFINES = re.compile(r"^local (?:function (\w+)|([\w, ]+?) =)", re.M)
_WORD = re.compile(r"(?<![.\w])[A-Za-z_]\w*")   # not a field (q.wake)
_COMMENTS = re.compile(r"^--\[\[(?s:.*?)\]\]|^[ \t]*--.*$", re.M)   # block, whole-line
_STRINGS = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"")   # a name in one is no use


def _names_used(text: str) -> set[str]:
    return set(_WORD.findall(_STRINGS.sub("", _COMMENTS.sub("", text))))


def used_lib(lib: str, script: str) -> str:
    """The part of _lib.lua a script uses: its top-level definitions (each with the comment
    above it) that the script names, and those they name in turn, in their order. Redis runs
    the whole text on every call, and each `local function` makes a closure there, garbage
    for the collector when the call ends: for a one-task enqueue, the whole library was a
    third of the script's cost (callgrind). Statements that define nothing are kept."""
    lines = lib.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if _DEFINES.match(line) or (
        line[:1].isalpha() and not line.startswith("end"))]
    chunks: list[tuple[set[str], str]] = []
    for n, i in enumerate(starts):
        begin = i
        while begin > 0 and lines[begin - 1].startswith("--") and (
                n == 0 or begin - 1 > starts[n - 1]):
            begin -= 1
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        while end > i + 1 and lines[end - 1].startswith("--"):
            end -= 1   # the next definition's comment
        m = _DEFINES.match(lines[i])
        names = {m.group(1)} if m and m.group(1) else {
            x.strip() for x in m.group(2).split(",")} if m else set()
        chunks.append((names, "".join(lines[begin:end])))
    head = "".join(lines[:starts[0]]) if starts else lib
    wanted = _names_used(script)
    used = [False] * len(chunks)
    grew = True
    while grew:
        grew = False
        for k, (names, text) in enumerate(chunks):
            if not used[k] and (not names or names & wanted):
                used[k] = grew = True
                wanted.update(_names_used(text))
    return head + "".join(text for (_, text), u in zip(chunks, used, strict=True) if u)


class Script:
    """One Lua script: its source and SHA1."""

    __slots__ = ("name", "sha", "source", "unsignalled")

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = _source(name)
        self.sha = hashlib.sha1(self.source.encode("utf-8")).hexdigest()
        self.unsignalled = name in UNSIGNALLED

    def __call__(self, link: Link | ClusterLink, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            reply = link.call("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            link.call("SCRIPT", "LOAD", self.source)
            reply = link.call("EVALSHA", self.sha, len(keys), *keys, *args)
        if isinstance(link, ClusterLink):
            reply = self.signalled(link, keys, reply)
        return reply

    def signalled(self, link: Link | ClusterLink, keys: Sequence[Any], reply: Any) -> Any:
        """The reply of a call on a cluster, with its signals taken off and applied to the
        global indexes (index.lua, in their slot); the reply as it is elsewhere."""
        if not isinstance(link, ClusterLink) or not keys:
            return reply
        if isinstance(reply, list) and reply and isinstance(reply[-1], list) and \
                reply[-1][:1] == [SIGNAL]:
            _, ready, due = reply.pop()
            apply_signals(link, keys[0], int(ready) == 1, int(due))
        elif self.unsignalled:
            apply_signals(link, keys[0], True, 0)
        return reply

    def call_packed(self, link: Link, n_keys: int, n_items: int, parts: list[bytes]) -> Any:
        """__call__ with its keys and arguments already packed (link.pack_items):
        `n_items` of them in `parts`, the first `n_keys` keys."""
        head = pack_items(("EVALSHA", self.sha, n_keys))
        try:
            return link.call_packed(3 + n_items, [head, *parts])
        except NoScriptError:
            link.call("SCRIPT", "LOAD", self.source)
            return link.call_packed(3 + n_items, [head, *parts])

    def queue(self, pipe: Any, keys: Sequence[Any], args: Sequence[Any]) -> None:
        """Add a call to a pipeline (load_all() first: a pipeline cannot load on NOSCRIPT)."""
        pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)


def apply_signals(link: ClusterLink, queue_key: Any, ready: bool, due: int) -> None:
    """Tell the global indexes (index.lua) what a script did to the queue of `queue_key`
    ("ns:{Q}:..."): it got ready work, and/or it needs a master by `due` (ms; < 0: no)."""
    if not ready and due < 0:
        return
    key = queue_key.decode() if isinstance(queue_key, bytes) else str(queue_key)
    ns, _, rest = key.partition(":{")
    queue = rest.split("}:", 1)[0]
    SCRIPTS.index(link, [f"{ns}:{{#}}:groups"], [1, queue, "1" if ready else "0", due, 0])


class Scripts:
    """All scripts, by name."""

    def __init__(self) -> None:
        for name in NAMES:
            setattr(self, name, Script(name))

    enqueue: Script
    claim: Script
    fail: Script
    requeue: Script
    promote: Script
    inspect: Script
    dead: Script
    purge: Script
    heartbeat: Script
    expired: Script
    repair: Script
    drop: Script
    sched: Script
    flow: Script
    rekey: Script
    cancel: Script
    wfadd: Script
    handoff: Script
    unregister: Script
    index: Script
    pick: Script
    sweep: Script
    agenda: Script
    unclaim: Script
    sizes: Script
    counters: Script
    peek: Script
    value: Script

    def load_all(self, conn: Redis | RedisCluster) -> None:
        """Load every script, on every primary of a Redis Cluster (a failover's new primary
        loads them on its first NOSCRIPT, see Script.__call__)."""
        targets = [n.redis_connection for n in conn.get_primaries()] \
            if isinstance(conn, RedisCluster) else [conn]
        for target in targets:
            pipe = target.pipeline(transaction=False)
            for name in NAMES:
                pipe.execute_command("SCRIPT", "LOAD", getattr(self, name).source)
            pipe.execute()


SCRIPTS = Scripts()


def script_text(name: str) -> tuple[str, str]:
    """A script's exact text as tq loads it (its helpers included) and its SHA1: what a
    producer in another language ships and calls with EVALSHA (docs/protocol.md)."""
    script: Script = getattr(SCRIPTS, name)
    return script.source, script.sha
