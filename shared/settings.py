"""The settings of tq-master and the tq CLI, each declared once: its name, how its value is
parsed and checked, its default and its help (tq.config loads them)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .ranges import FloatRange, IntRange
from .task import MAX_SECONDS, validate_name, validate_queue_spec

ENV_PREFIX = "TQ_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _names(kind: str) -> Callable[[Any], list[str]]:
    def parse(v: Any) -> list[str]:
        items = v.split(",") if isinstance(v, str) else list(v)
        out = [str(i).strip() for i in items if str(i).strip()]
        if not out:
            raise ValueError(f"needs at least one {kind}")
        return out
    return parse


class QueueList(list[str]):
    """Queue names in the order given, with their weights (1 unless NAME:WEIGHT said)."""

    weights: dict[str, int]


MAX_WEIGHT = 1000
WEIGHT = IntRange(1, MAX_WEIGHT)


def _queues(v: Any) -> QueueList:
    """"email:5,report:1" (or a TOML list of such strings) -> names and weights; a name may
    be a glob ("tenant-*:1,urgent:5") consuming every queue it matches."""
    items = v.split(",") if isinstance(v, str) else list(v)
    out = QueueList()
    out.weights = {}
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        name, sep, weight = text.partition(":")
        name = name.strip()
        validate_queue_spec(name)
        w = 1
        if sep:
            w_text = weight.strip()
            if not w_text.isdigit() or int(w_text) not in WEIGHT:
                raise WEIGHT.error(w_text, f"weight of queue {name!r}")
            w = int(w_text)
        if name in out.weights:
            raise ValueError(f"queue {name!r} is listed twice")
        out.append(name)
        out.weights[name] = w
    if not out:
        raise ValueError("needs at least one queue")
    return out


def _limits(v: Any) -> dict[str, Any]:
    from .limits import parse_table

    return parse_table(v)


def _periodic(v: Any) -> list[Any]:
    from .periodic_tasks import from_config

    try:
        return from_config(v)
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not JSON: {exc}") from None


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _choice(*choices: str, upper: bool = False) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        s = str(v).upper() if upper else str(v).lower()
        if s not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return s
    return parse


def _bind(v: Any) -> str:
    s = str(v)
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"must be HOST:PORT with a port from 1 to 65535, e.g. "
                         f"127.0.0.1:9808, not {s!r}")
    if host:
        try:   # an unknown host is a setting error now, not a traceback when the master binds
            socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise ValueError(f"cannot resolve host {host!r} of {s!r}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
    return s if host else f"127.0.0.1:{port}"


def split_bind(bind: str) -> tuple[str, int]:
    """(host, port) of a HOST:PORT address ([::1]:80 gives ::1; a bare :PORT is 127.0.0.1)."""
    host, _, port = _bind(bind).rpartition(":")
    return host.strip("[]"), int(port)


def _namespace(v: Any) -> str:
    return validate_name("namespace", str(v))


@dataclass(frozen=True)
class Setting:
    name: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    metavar: str = ""

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


SETTINGS: tuple[Setting, ...] = (
    Setting("redis_url", str, None, "Redis URL (redis://, rediss://, unix://, "
            "redis+sentinel://H:P[,H:P]/SERVICE); default: the embedded Redis of --home",
            "URL"),
    Setting("home", str, None, "state folder of the embedded Redis, used when no Redis URL "
            "is set (default: $XDG_STATE_HOME/tq, i.e. ~/.local/state/tq)", "DIR"),
    Setting("namespace", _namespace, "tq", "prefix of every Redis key", "NAME"),
    Setting("app", _names("module"), None, "handler modules to import, comma-separated",
            "MODULE[,MODULE]"),
    Setting("queues", _queues, None, "queues to consume, with weights for weighted-fair "
            "claiming (Q:5,R:1: five claims start at Q for one at R; default weight 1, the "
            "default queues: those of the registered handlers)", "Q[:W][,Q[:W]]"),
    Setting("limits", _limits, None, "rate / concurrency limits of task types, on top of "
            "their handlers' (docs/flow.md): TYPE=50/s burst=5 key=FIELD concurrency=N"
            "[,TYPE=...]; in TOML a table, email = \"50/s\"", "TYPE=LIMITS[,...]"),
    Setting("keys_file", str, None, "payload protection keys (TOML: current = \"ID\", "
            "[keys] ID = \"base64\"); or TQ_KEYS=ID:BASE64[,...] in the environment (never a "
            "flag: a command line is visible to every user); see docs/security.md", "PATH"),
    Setting("protect", _choice("encrypt", "sign"), "encrypt", "with keys: encrypt payloads, "
            "results and errors (AES-256-GCM), or only sign bodies (HMAC-SHA256)",
            "encrypt|sign"),
    Setting("periodic", _periodic, None, "periodic tasks (docs/core.md): in TOML a list of "
            "{schedule = \"*/5 * * * *\" or seconds, type, payload, tz, missed}; as a flag "
            "or TQ_PERIODIC the same list in JSON", "JSON"),
    Setting("strict", _bool, False, "serve --queues in strict order instead: a later queue "
            "only gets work when the earlier ones are empty (may starve it)", ""),
    Setting("concurrency", IntRange(1, 1024).parse, None, "child processes, 1-1024 "
            "(default: number of CPUs)", "N"),
    Setting("prefetch", IntRange(1, 1000).parse, None, "tasks a child claims per round "
            "trip, 1-1000 (default: adaptive, 1 for slow tasks, more for sub-millisecond "
            "ones)", "N"),
    Setting("max_tasks_per_child", IntRange(1, 10**9).parse, None, "replace a child after N "
            "tasks", "N"),
    Setting("max_memory_per_child", FloatRange(0, 10**7, lo_open=True).parse, None,
            "replace a child whose own memory (USS) passes MB, after its current task", "MB"),
    Setting("drain_timeout", FloatRange(0, 86400).parse, 25.0, "seconds in-flight tasks get "
            "to finish on SIGTERM before they are requeued (0-86400)", "S"),
    Setting("result_ttl", FloatRange(0, MAX_SECONDS).parse, 86400.0, "seconds results are "
            "kept (0: not stored; at most ten years)", "S"),
    Setting("heartbeat_ttl", FloatRange(1, 3600).parse, 15.0, "seconds without a heartbeat "
            "after which another master recovers a master's tasks (1-3600)", "S"),
    Setting("max_worker_kills", IntRange(1, 100).parse, 3, "a task whose runs killed this "
            "many children goes dead (reason killed-worker), whatever its retries", "N"),
    Setting("stall_timeout", FloatRange(1, 86400).parse, 60.0, "seconds a child may show no "
            "sign of life (stopped, stuck) before it is killed and its task requeued", "S"),
    Setting("async_concurrency", IntRange(1, 10000).parse, 1, "async def handlers' "
            "coroutines one child runs at once on its event loop (it then claims up to N "
            "tasks at a time); sync handlers still run one at a time", "N"),
    Setting("cancel_grace", FloatRange(0, 86400).parse, 10.0, "seconds a cancelled running "
            "task gets to stop after tq.Cancelled is raised in it before its child is killed",
            "S"),
    Setting("orphan_grace", FloatRange(0, 86400).parse, 300.0, "seconds a child whose master "
            "died may take to finish a task without a timeout (then it exits)", "S"),
    Setting("replica_acks", IntRange(0, 16).parse, 0, "after each enqueue and each batch of "
            "acks, WAIT until N replicas have the write (0: off); guards acknowledged work "
            "against a failover, at a cost per round trip", "N"),
    Setting("replica_ack_timeout", FloatRange(0.001, 60).parse, 1.0, "seconds that WAIT "
            "waits for the replicas before going on (and logging it)", "S"),
    Setting("forget_queues_after", FloatRange(0, MAX_SECONDS).parse, 86400.0, "seconds a "
            "queue must stay empty and unconsumed before it is dropped from the queue list "
            "and the metrics (0: never)", "S"),
    Setting("pidfile", str, None, "write the master's pid to PATH", "PATH"),
    Setting("log_level", _choice(*LOG_LEVELS, upper=True), "INFO", "log level", "LEVEL"),
    Setting("log_format", _choice("text", "json"), "text", "log format", "text|json"),
    Setting("preload", _bool, False, "import handler modules once in the master before "
            "forking (faster forks, shared memory; code reload then needs a restart)", ""),
    Setting("allow_eviction", _bool, False, "start even if Redis' maxmemory-policy may evict "
            "queue keys", ""),
    Setting("metrics_bind", _bind, None, "serve Prometheus metrics on HOST:PORT "
            "(e.g. 127.0.0.1:9808; off by default)", "HOST:PORT"),
)
BY_NAME = {s.name: s for s in SETTINGS}
