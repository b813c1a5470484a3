"""The Lua scripts (shared/store/lua/*.lua): loaded once, called by name through EVALSHA.

Each script's header documents its KEYS, ARGV and reply. A script whose first line is
`-- uses: _lib` gets lua/_lib.lua prepended. After a Redis restart the script cache is empty:
a NOSCRIPT reply loads the script and repeats the call (it did not run, so this is safe).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis import Redis
from redis.exceptions import NoScriptError

from .cluster import is_cluster
from .link import Link, pack_items

NAMES = ("enqueue", "claim", "fail", "requeue", "promote", "inspect", "dead", "purge",
         "heartbeat", "expired", "repair", "drop", "sched", "flow", "rekey", "cancel",
         "wfadd", "handoff", "unregister")


def _source(name: str) -> str:
    folder = resources.files(__package__).joinpath("lua")
    text = folder.joinpath(f"{name}.lua").read_text("utf-8")
    if text.startswith("-- uses: _lib"):
        text = used_lib(folder.joinpath("_lib.lua").read_text("utf-8"), text) + "\n" + text
    return text


_DEFINES = re.compile(r"^local (?:function (\w+)|([\w, ]+?) =)", re.M)
_WORD = re.compile(r"[A-Za-z_]\w*")
_COMMENTS = re.compile(r"^--\[\[(?s:.*?)\]\]|^[ \t]*--.*$", re.M)   # block, whole-line


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
    wanted = set(_WORD.findall(_COMMENTS.sub("", script)))
    used = [False] * len(chunks)
    grew = True
    while grew:
        grew = False
        for k, (names, text) in enumerate(chunks):
            if not used[k] and (not names or names & wanted):
                used[k] = grew = True
                wanted.update(_WORD.findall(_COMMENTS.sub("", text)))
    return head + "".join(text for (_, text), u in zip(chunks, used, strict=True) if u)


class Script:
    """One Lua script: its source and SHA1."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = _source(name)
        self.sha = hashlib.sha1(self.source.encode("utf-8")).hexdigest()

    def __call__(self, link: Link, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return link.call("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            link.call("SCRIPT", "LOAD", self.source)
            return link.call("EVALSHA", self.sha, len(keys), *keys, *args)

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

    def load_all(self, conn: Redis) -> None:
        """Load every script, on every primary of a Redis Cluster (a failover's new primary
        loads them on its first NOSCRIPT, see Script.__call__)."""
        targets = [n.redis_connection for n in conn.get_primaries()] \
            if is_cluster(conn) else [conn]
        for target in targets:
            pipe = target.pipeline(transaction=False)
            for name in NAMES:
                pipe.execute_command("SCRIPT", "LOAD", getattr(self, name).source)
            pipe.execute()


SCRIPTS = Scripts()
