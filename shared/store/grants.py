"""The Redis ACL grants a master needs: the commands it and its children send, checked when it
starts, and the grant to add named in every refusal (docs/operations.md, 'Redis users and
ACLs', documents the grants per role; tests/processes/test_acl_matrix.py runs them).

A refusal met later (an ACL changed under a running master) is logged once per process and
command by note(), and the path that met it is retried, as after an outage.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from ..errors import NoPermission
from .link import not_permitted
from .scripts import NAMES, SCRIPTS, Script

log = logging.getLogger("tq.store")

# What a master and its children send outside the Lua scripts (redis-py's connection set-up
# and this module's check included; the scripts' own commands are read from their source).
# INFO / CONFIG GET belong to the eviction check, which names them itself.
MASTER = ("blpop", "client|setname", "command|info", "del", "evalsha", "exists", "expire",
          "get", "hdel", "hexists", "hget", "hgetall", "hincrby", "hkeys", "hlen", "hmget",
          "hscan", "hset", "hsetnx", "lindex", "llen", "lrange", "lrem", "mget", "ping", "sadd",
          "scan", "script|load", "set", "smembers", "srem", "time", "type", "zadd", "zcard",
          "zrange", "zrangebyscore", "zrevrange", "zscore")
# The tq CLI and the dashboard (same user) also send these, which a master never does:
# client.wait()'s XREAD, a queue repair's RENAME, a queue delete's HVALS, limits' ZLEXCOUNT.
OPERATOR = ("hvals", "rename", "xread", "zlexcount")
REPLICA_ACKS = ("wait",)                  # with replica_acks set: WAIT after each write
# a cluster client reads the slot map, the command table, and asks where a command's keys are
CLUSTER = ("cluster|slots", "command", "command|getkeys")

_CALLED = re.compile(r"""\b(?:rcall|redis\.p?call|write)\(\s*'([A-Za-z]+)'""")
_RUN = re.compile(r"permissions to run the '([^']+)' command")
_SHA = re.compile(r"\b(?:f_)?([0-9a-f]{40})\b")
_PROBE = Script("grants")
SCRIPTING = "@scripting"   # what missing() reports when the probe itself may not run


def script_commands(name: str) -> list[str]:
    """The commands one of tq's Lua scripts calls (lower case, as ACL rules name them)."""
    return sorted({c.lower() for c in _CALLED.findall(getattr(SCRIPTS, name).source)})


def master_commands(cluster: bool = False, replica_acks: bool = False) -> list[str]:
    """Every command a master and its children may send."""
    used = set(MASTER) | {c for name in NAMES for c in script_commands(name)}
    used |= set(CLUSTER) if cluster else set()
    used |= set(REPLICA_ACKS) if replica_acks else set()
    return sorted(used)


def missing(conn: redis.Redis | redis.RedisCluster, key: str, commands: Sequence[str]
            ) -> list[str] | None:
    """Which of `commands` this connection's user may not run, or '~read' / '~write' when
    `key` is outside its key patterns, on every primary of a cluster; [SCRIPTING] when it may
    not run scripts at all; None when Redis cannot tell (before 7.0: no redis.acl_check_cmd).
    Nothing is run: each command is checked with as many words as its arity asks (COMMAND
    INFO), the namespace's `key` in every place."""
    targets = [n.redis_connection for n in conn.get_primaries()] \
        if isinstance(conn, redis.RedisCluster) else [conn]
    lines = _lines(targets[0], key, commands)
    if lines is None:
        return None
    flat: list[Any] = [w for line in lines for w in (len(line.words), *line.words)]
    refused: list[Line] = []
    for target in targets:
        try:
            try:
                reply = target.evalsha(_PROBE.sha, 0, *flat)
            except redis.exceptions.NoScriptError:
                target.script_load(_PROBE.source)
                reply = target.evalsha(_PROBE.sha, 0, *flat)
        except redis.exceptions.ResponseError as exc:
            if not_permitted(exc):
                return [SCRIPTING]
            raise
        if reply is None:
            return None
        refused += [lines[i - 1] for i in reply if lines[i - 1] not in refused]
    return _explained(lines, refused)


@dataclass(frozen=True)
class Line:
    name: str               # a command, or '~read' / '~write' (GET / SET of the key)
    words: tuple[str, ...]
    keyed: str = ""         # "read" / "write": a command on keys that reads / writes them


def _lines(target: redis.Redis, key: str, commands: Sequence[str]) -> list[Line] | None:
    """The command lines to check; None when COMMAND INFO is refused."""
    conn = target.connection_pool.get_connection()
    try:   # raw: redis-py's parser of COMMAND replies fails on an unknown command's nil
        conn.send_command("COMMAND", "INFO", *commands)
        infos = conn.read_response()
    except redis.exceptions.ResponseError as exc:
        if not_permitted(exc):
            return None
        raise
    finally:
        target.connection_pool.release(conn)
    lines = [Line("~read", ("get", key)), Line("~write", ("set", key, "1"))]
    for name, info in zip(commands, infos, strict=True):
        if info is None:   # a command this Redis does not have (it would not be sent)
            continue
        words = name.split("|")   # then the key in every place, up to the arity: fewer words
        # crash Redis 7.0's acl_check_cmd (it finds keys past the end of the line)
        keyed = "" if int(info[3]) <= 0 else "write" if b"write" in info[2] else "read"
        lines.append(Line(name, (*words, *[key] * (abs(int(info[1])) - len(words))), keyed))
    return lines


def _explained(lines: list[Line], refused: list[Line]) -> list[str]:
    """The refusals to report: a key outside the user's patterns ('~read' / '~write', when
    every command reading / writing it is refused too) instead of each of those commands."""
    keys, explained = [], set()
    for kind in ("read", "write"):
        keyed = [line for line in lines if line.keyed == kind]
        if any(line.name == f"~{kind}" for line in refused) and keyed and all(
                line in refused for line in keyed):
            keys.append(f"~{kind}")
            explained |= {line.name for line in keyed}
    return keys + [line.name for line in refused
                   if not line.name.startswith("~") and line.name not in explained]


def grants(names: Sequence[str], namespace: str) -> list[str]:
    """The ACL rules that grant `names` (as missing() reports them)."""
    out: list[str] = []
    for name in names:
        # a key refused or its commands: acl_check_cmd cannot tell which; both are harmless
        rules = [f"+@{name[1:]}", f"~{namespace}:*"] if name.startswith("~") else [f"+{name}"]
        out += [r for r in rules if r not in out]
    return out


def explain(message: str) -> str:
    """A refusal's message, with the grant to add (and without the script's location)."""
    head = message.partition(" script:")[0]
    m = _RUN.search(head)
    if m:
        return f"{head}: grant +{m.group(1)}"
    if "one of the keys" in head or "access a key" in head:
        return f"{head}: grant the namespace's keys (~NAMESPACE:*)"
    if "can't run this command" in head:
        sha = _SHA.search(message)
        name = next((n for n in NAMES if sha and getattr(SCRIPTS, n).sha == sha.group(1)),
                    None)
        if name:
            used = " ".join(f"+{c}" for c in script_commands(name))
            return f"{head} (in tq's {name} script): grant what it calls, {used}"
    return head


# ACL refusals as they are raised outside scripts (one inside a script is a plain ResponseError
# whose text says so: see refusal())
REFUSALS = (NoPermission, redis.exceptions.NoPermissionError)


def refusal(exc: BaseException) -> bool:
    """An ACL refusal, translated (NoPermission) or as redis-py raised it."""
    return isinstance(exc, NoPermission) or not_permitted(exc)


def refused_within(exc: BaseException) -> BaseException | None:
    """The ACL refusal behind an error raised while handling it (redis-py's cluster client
    reports a refused CLUSTER SLOTS as "cluster mode is not enabled"), or None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if not_permitted(exc):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__   # type: ignore[assignment]
    return None


_said: set[str] = set()


def note(exc: BaseException, logger: logging.Logger, what: str,
         extra: dict[str, Any] | None = None) -> None:
    """Log an ACL refusal met by `what` once per process and refusal (the caller retries
    it later, as after an outage)."""
    text = str(exc) if isinstance(exc, NoPermission) else f"Redis refused: {explain(str(exc))}"
    if text in _said:
        return
    _said.add(text)
    logger.error("%s: %s; retried until it is granted", what, text, extra=extra)
