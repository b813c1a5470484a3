"""Settings of tq-master and the tq CLI: each declared once, loaded in one place.

Precedence, lowest first: defaults < config file (TOML) < environment (TQ_<NAME>) < flags.
The config file is --config / TQ_CONFIG, else ./tq.toml when it exists. Its keys are the
setting names below (top level, or under a [tq] table).
"""

from __future__ import annotations

import json
import math
import os
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .task import MAX_SECONDS, validate_name

ENV_PREFIX = "TQ_"
DEFAULT_CONFIG_FILE = "tq.toml"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _int_range(lo: int, hi: int) -> Callable[[Any], int]:
    def parse(v: Any) -> int:
        try:
            if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
                raise ValueError
            n = int(v)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"must be an integer from {lo} to {hi}, not {v!r}") from None
        if not lo <= n <= hi:
            raise ValueError(f"must be an integer from {lo} to {hi}, not {v!r}")
        return n
    return parse


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _float_range(lo: float, hi: float, lo_open: bool = False) -> Callable[[Any], float]:
    low = f"above {_num(lo)}" if lo_open else f"from {_num(lo)}"

    def parse(v: Any) -> float:
        try:
            x = float("nan") if isinstance(v, bool) else float(v)
        except (TypeError, ValueError, OverflowError):
            x = float("nan")
        if not (math.isfinite(x) and (x > lo if lo_open else x >= lo) and x <= hi):
            raise ValueError(f"must be a finite number {low} to {_num(hi)}, not {v!r}")
        return x
    return parse


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


def _queues(v: Any) -> QueueList:
    """"email:5,report:1" (or a TOML list of such strings) -> names and weights."""
    items = v.split(",") if isinstance(v, str) else list(v)
    out = QueueList()
    out.weights = {}
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        name, sep, weight = text.partition(":")
        name = name.strip()
        validate_name("queue", name)
        w = 1
        if sep:
            w_text = weight.strip()
            if not w_text.isdigit() or not 1 <= int(w_text) <= MAX_WEIGHT:
                raise ValueError(f"weight of queue {name!r} must be an integer from 1 to "
                                 f"{MAX_WEIGHT}, not {weight.strip()!r}")
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
    Setting("concurrency", _int_range(1, 1024), None, "child processes, 1-1024 (default: "
            "number of CPUs)", "N"),
    Setting("prefetch", _int_range(1, 1000), None, "tasks a child claims per round trip, "
            "1-1000 (default: adaptive, 1 for slow tasks, more for sub-millisecond ones)", "N"),
    Setting("max_tasks_per_child", _int_range(1, 10**9), None, "replace a child after N tasks",
            "N"),
    Setting("max_memory_per_child", _float_range(0, 10**7, lo_open=True), None, "replace a "
            "child whose own memory (USS) passes MB, after its current task", "MB"),
    Setting("drain_timeout", _float_range(0, 86400), 25.0, "seconds in-flight tasks get to "
            "finish on SIGTERM before they are requeued (0-86400)", "S"),
    Setting("result_ttl", _float_range(0, MAX_SECONDS), 86400.0, "seconds results are kept "
            "(0: not stored; at most ten years)", "S"),
    Setting("heartbeat_ttl", _float_range(1, 3600), 15.0, "seconds without a heartbeat after "
            "which another master recovers a master's tasks (1-3600)", "S"),
    Setting("max_worker_kills", _int_range(1, 100), 3, "a task whose runs killed this many "
            "children goes dead (reason killed-worker), whatever its retries", "N"),
    Setting("stall_timeout", _float_range(1, 86400), 60.0, "seconds a child may show no sign "
            "of life (stopped, stuck) before it is killed and its task requeued", "S"),
    Setting("async_concurrency", _int_range(1, 10000), 1, "async def handlers' coroutines "
            "one child runs at once on its event loop (it then claims up to N tasks at a "
            "time); sync handlers still run one at a time", "N"),
    Setting("cancel_grace", _float_range(0, 86400), 10.0, "seconds a cancelled running task "
            "gets to stop after tq.Cancelled is raised in it before its child is killed", "S"),
    Setting("orphan_grace", _float_range(0, 86400), 300.0, "seconds a child whose master died "
            "may take to finish a task without a timeout (then it exits)", "S"),
    Setting("replica_acks", _int_range(0, 16), 0, "after each enqueue and each batch of "
            "acks, WAIT until N replicas have the write (0: off); guards acknowledged work "
            "against a failover, at a cost per round trip", "N"),
    Setting("replica_ack_timeout", _float_range(0.001, 60), 1.0, "seconds that WAIT waits "
            "for the replicas before going on (and logging it)", "S"),
    Setting("forget_queues_after", _float_range(0, MAX_SECONDS), 86400.0, "seconds a queue "
            "must stay empty and unconsumed before it is dropped from the queue list and "
            "the metrics (0: never)", "S"),
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


@dataclass(frozen=True)
class Config:
    """The validated settings, and where the config file came from."""

    redis_url: str | None = None
    home: str | None = None
    namespace: str = "tq"
    app: list[str] | None = None
    queues: list[str] | None = None
    strict: bool = False
    keys_file: str | None = None
    protect: str = "encrypt"
    limits: dict[str, Any] | None = None      # type -> tq.limits.Limits, from the config
    periodic: list[Any] | None = None         # tq.periodic_tasks.Periodic entries, from the config
    concurrency: int | None = None
    prefetch: int | None = None
    max_tasks_per_child: int | None = None
    max_memory_per_child: float | None = None
    drain_timeout: float = 25.0
    result_ttl: float = 86400.0
    heartbeat_ttl: float = 15.0
    max_worker_kills: int = 3
    stall_timeout: float = 60.0
    orphan_grace: float = 300.0
    cancel_grace: float = 10.0
    async_concurrency: int = 1
    replica_acks: int = 0
    replica_ack_timeout: float = 1.0
    forget_queues_after: float = 86400.0
    pidfile: str | None = None
    log_level: str = "INFO"
    log_format: str = "text"
    preload: bool = False
    allow_eviction: bool = False
    metrics_bind: str | None = None
    config_file: str | None = None
    sources: dict[str, str] = field(default_factory=dict, compare=False)  # name -> origin

    def weights(self) -> dict[str, int]:
        """Queue -> weight from `queues` (queues it does not name weigh 1)."""
        return dict(getattr(self.queues, "weights", {}))

    @property
    def workers(self) -> int:
        return self.concurrency or os.cpu_count() or 1


def read_file(path: Path) -> dict[str, Any]:
    """The tq settings in a TOML file (top level or [tq]); ConfigError if it is unusable."""
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text: {exc.reason} at byte "
                          f"{exc.start}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    table = data.get("tq", data)
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [tq] must be a table")
    unknown = sorted(set(table) - set(BY_NAME) - {"tq"})
    if unknown:
        raise ConfigError(f"config file {path}: unknown settings {', '.join(unknown)}")
    return {k: v for k, v in table.items() if k in BY_NAME}


def config_path(explicit: str | None, env: Mapping[str, str]) -> Path | None:
    """The config file to read: explicit, TQ_CONFIG, else ./tq.toml if it exists."""
    if explicit:
        return Path(explicit)
    if env.get(ENV_PREFIX + "CONFIG"):
        return Path(env[ENV_PREFIX + "CONFIG"])
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def load(flags: Mapping[str, Any] | None = None, *, config_file: str | None = None,
         env: Mapping[str, str] | None = None) -> Config:
    """Build the Config: defaults < file < env < flags (None in flags means 'not given')."""
    env = os.environ if env is None else env
    path = config_path(config_file, env)
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if path is not None:
        layers.append((f"file {path}", read_file(path)))
    layers.append(("environment", {s.name: env[s.env] for s in SETTINGS
                                   if env.get(s.env) not in (None, "")}))
    layers.append(("flag", {k: v for k, v in (flags or {}).items()
                            if v is not None and k in BY_NAME}))
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for origin, layer in layers:
        for name, raw in layer.items():
            setting = BY_NAME[name]
            try:
                values[name] = setting.parse(raw)
            except (ValueError, TypeError) as exc:
                where = setting.env if origin == "environment" else (
                    setting.flag if origin == "flag" else f"{name} in {origin}")
                raise ConfigError(f"{where}: {exc}") from None
            sources[name] = origin
    known = {f.name for f in fields(Config)}
    return Config(**{k: v for k, v in values.items() if k in known},
                  config_file=str(path) if path else None, sources=sources)


def replica_acks_setting(explicit: int | None, env: Mapping[str, str] | None = None) -> int:
    """A producer's replica_acks: explicit, else TQ_REPLICA_ACKS, else the config file's."""
    setting = BY_NAME["replica_acks"]
    if explicit is not None:
        return setting.parse(explicit)
    env = os.environ if env is None else env
    if env.get(setting.env):
        try:
            return setting.parse(env[setting.env])
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{setting.env}: {exc}") from None
    path = config_path(None, env)
    raw = read_file(path).get("replica_acks") if path is not None else None
    if raw is None:
        return 0
    try:
        return setting.parse(raw)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"replica_acks in {path}: {exc}") from None


def protect_settings(explicit: str | None = None, env: Mapping[str, str] | None = None,
                     config: Config | None = None) -> Any:
    """The key ring (tq.protect.KeyRing) of a producer or a worker: explicit "ID:BASE64,..."
    ("" for none, whatever the environment says), else TQ_KEYS, else keys_file (TQ_KEYS_FILE,
    the config file); None: no keys."""
    from .protect import KeyRing

    env = os.environ if env is None else env
    if explicit == "":
        return None
    if config is None:
        path = config_path(None, env)
        table = read_file(path) if path is not None else {}
        keys_file = env.get("TQ_KEYS_FILE") or table.get("keys_file")
        mode = env.get("TQ_PROTECT") or table.get("protect") or "encrypt"
    else:
        keys_file, mode = config.keys_file, config.protect
    inline = explicit if explicit is not None else env.get("TQ_KEYS")
    if inline:
        return KeyRing.parse(inline, mode)
    if keys_file:
        return KeyRing.from_file(keys_file, mode)
    return None
