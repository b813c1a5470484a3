"""Loading the settings (declared in tq.settings) into one validated Config.

Precedence, lowest first: defaults < config file (TOML) < environment (TQ_<NAME>) < flags.
The config file is --config / TQ_CONFIG, else ./tq.toml when it exists. Its keys are the
setting names (top level, or under a [tq] table).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .settings import BY_NAME, ENV_PREFIX, SETTINGS, split_bind

# what callers import from here: the table is tq.settings', re-exported so that tq.config
# stays the one door to the settings
__all__ = ["BY_NAME", "SETTINGS", "Config", "config_path", "load", "protect_settings",
           "read_file", "replica_acks_setting", "split_bind"]

DEFAULT_CONFIG_FILE = "tq.toml"


def _cpu_count() -> int:
    return os.cpu_count() or 1


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
    periodic: list[Any] | None = None   # tq.periodic_tasks.Periodic entries, from the config
    concurrency: int = field(default_factory=_cpu_count)   # child processes (-c)
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
    """The key ring (tq.keyring.KeyRing) of a producer or a worker: explicit "ID:BASE64,..."
    ("" for none, whatever the environment says), else TQ_KEYS, else keys_file (TQ_KEYS_FILE,
    the config file); None: no keys."""
    from .keyring import KeyRing

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
