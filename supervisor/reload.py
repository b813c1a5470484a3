"""Reload on SIGHUP: the new configuration, and the order in which a new generation of children
replaces the running one (one by one: a new child up before an old one stops)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tq.config import Config, load
from tq.errors import ConfigError

from .children import ChildRecord

log = logging.getLogger("tq.master")

NEEDS_RESTART = ("redis_url", "home", "namespace", "metrics_bind")

# What a reload does next (next_step)
WAIT, SPAWN, STOP, DONE = "wait", "spawn", "stop", "done"


@dataclass
class Reload:
    """A reload in progress: the generation it starts, and what an abort goes back to."""

    generation: int
    old_config: Config
    old_concurrency: int
    old_generation: int

    @staticmethod
    def after(current: Reload | None, config: Config, concurrency: int, generation: int) -> Reload:
        """The reload to generation + 1. Over a reload still in progress, an abort goes back
        to where that one started."""
        if current is not None:
            return dataclasses.replace(current, generation=generation + 1)
        return Reload(generation + 1, config, concurrency, generation)


def reread_config(current: Config, flags: dict[str, Any]) -> Config | None:
    """The configuration a SIGHUP asks for, with the settings that need a restart kept as they
    are; None (logged) if it cannot be read or is invalid."""
    try:
        new = load(flags, config_file=current.config_file)
    except ConfigError as exc:
        log.error("reload: invalid configuration, keeping the current one: %s", exc)
        return None
    except Exception:   # a reload must never take the running master down
        log.exception("reload: cannot read the configuration, keeping the current one")
        return None
    fixed = {k: getattr(current, k) for k in NEEDS_RESTART}
    if any(getattr(new, k) != v for k, v in fixed.items()):
        log.warning("reload: redis_url, home, namespace and metrics_bind need a restart; kept")
    if current.preload:
        log.warning("reload: handlers were preloaded in the master, so their code is not "
                    "re-imported (restart to load new code); the configuration is reloaded")
    return dataclasses.replace(new, **fixed)


def next_step(r: Reload, children: Iterable[ChildRecord],
              concurrency: int) -> tuple[str, ChildRecord | None]:
    """What the reload does next: WAIT (for the newest child to be ready, or for the old
    ones to exit), SPAWN a child of the new generation, STOP the oldest child of an old one
    (returned with it), or DONE."""
    kids = list(children)
    if any(c.generation == r.generation and c.active and not c.ready for c in kids):
        return WAIT, None   # the newest child is not up yet (an import error aborts the reload)
    old = [c for c in kids if c.generation < r.generation and c.active]
    active = sum(c.active for c in kids)
    if old:
        if active <= concurrency:
            return SPAWN, None
        return STOP, min(old, key=lambda c: c.born)
    if active < concurrency:
        return SPAWN, None
    if not any(c.generation < r.generation for c in kids):
        return DONE, None
    return WAIT, None
