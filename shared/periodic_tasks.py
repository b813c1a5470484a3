"""Periodic tasks: cron expressions or intervals, enqueued by the masters exactly once per tick.

    tq.periodic("*/5 * * * *", "report", {"kind": "summary"}, tz="Europe/Paris")
    tq.periodic(30, "heartbeat")                      # every 30 s (ticks aligned to the epoch)

Declared in a handler module (the children send them to their master when they start) or in
the config file (`periodic = [{schedule = "0 3 * * *", type = "backup"}]`). Every master runs
the schedule; each tick is enqueued **exactly once** across all of them because the enqueue
carries a unique key of the schedule's name and the tick's time (`unique_for` a few periods,
atomic in the enqueue script): the masters agree on the tick without a leader, and a master
that restarts does not enqueue a tick again. Cron expressions are parsed by croniter, in the
schedule's time zone (zoneinfo names; DST handled by croniter).

Missed ticks (no master ran when they were due): `missed="skip"` (the default) drops them and
goes on with the next one; `missed="run_once"` enqueues the latest missed tick once when a
master is back. The last tick and the next one are kept in the `periodic` hash for `tq status`
and the dashboard. This module declares schedules; the masters run them
(tq.supervisor.periodic).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .task import encode_payload, validate_name

log = logging.getLogger("tq.periodic")
MISSED = ("skip", "run_once")
GRACE = 2.0   # seconds after its time a tick still counts as due (a master's loop, a restart)


@dataclass(frozen=True)
class Periodic:
    name: str
    schedule: str          # a cron expression, or "every N" seconds
    type: str
    payload: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    tz: str = "UTC"
    missed: str = "skip"

    @property
    def interval(self) -> float | None:
        return float(self.schedule.split()[1]) if self.schedule.startswith("every ") else None

    def latest(self, now: float) -> float:
        """The latest tick at or before `now` (Unix seconds)."""
        step = self.interval
        if step is not None:
            return math.floor(now / step) * step
        from croniter import croniter

        base = datetime.fromtimestamp(now, ZoneInfo(self.tz))
        return float(croniter(self.schedule, base).get_prev(float))

    def following(self, now: float) -> float:
        """The first tick after `now`."""
        step = self.interval
        if step is not None:
            return (math.floor(now / step) + 1) * step
        from croniter import croniter

        base = datetime.fromtimestamp(now, ZoneInfo(self.tz))
        return float(croniter(self.schedule, base).get_next(float))

    def period(self, now: float) -> float:
        return self.interval or max(self.following(now) - self.latest(now), 1.0)

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)


PERIODIC: dict[str, Periodic] = {}


def make(schedule: str | float, task_type: str, payload: dict[str, Any] | None = None, *,
         name: str | None = None, queue: str | None = None, tz: str = "UTC",
         missed: str = "skip") -> Periodic:
    """A checked Periodic (ValueError naming what is wrong)."""
    validate_name("type", task_type)
    if queue is not None:
        validate_name("queue", queue)
    if name is not None:
        validate_name("periodic name", name)
    if isinstance(schedule, bool) or not isinstance(schedule, int | float | str):
        raise ValueError(f"schedule must be a cron expression or seconds, not {schedule!r}")
    if isinstance(schedule, int | float):
        if not math.isfinite(schedule) or not 1 <= schedule <= 366 * 86400:
            raise ValueError(f"an interval must be 1 s to a year, not {schedule!r}")
        text = f"every {schedule:g}"
    else:
        text = " ".join(schedule.split())
        from croniter import croniter

        if not croniter.is_valid(text):
            raise ValueError(f"{schedule!r} is not a cron expression (minute hour day month "
                             f"weekday, e.g. '*/5 * * * *')")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r}") from None
    if missed not in MISSED:
        raise ValueError(f"missed must be one of {', '.join(MISSED)}, not {missed!r}")
    body = json.loads(encode_payload({} if payload is None else payload))
    return Periodic(name or f"{task_type}@{text}", text, task_type, body, queue, tz, missed)


def periodic(schedule: str | float, task_type: str, payload: dict[str, Any] | None = None, *,
             name: str | None = None, queue: str | None = None, tz: str = "UTC",
             missed: str = "skip") -> Callable[[Any], Any]:
    """Declare a periodic task (see the module). Usable as a call or as a decorator (it
    returns what it decorates unchanged)."""
    entry = make(schedule, task_type, payload, name=name, queue=queue, tz=tz, missed=missed)
    PERIODIC[entry.name] = entry
    return lambda target: target


def from_config(items: Any) -> list[Periodic]:
    """The `periodic` setting: a list of tables {schedule, type, payload, name, queue, tz,
    missed} (TOML), or the same as a JSON string (environment, flag)."""
    if isinstance(items, str):
        items = json.loads(items)
    if not isinstance(items, list):
        raise ValueError("must be a list of {schedule, type, ...} tables")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "schedule" not in item or "type" not in item:
            raise ValueError(f"entry #{i} needs a schedule and a type")
        unknown = set(item) - {"schedule", "type", "payload", "name", "queue", "tz", "missed"}
        if unknown:
            raise ValueError(f"entry #{i}: unknown keys {sorted(unknown)}")
        try:
            out.append(make(item["schedule"], item["type"], item.get("payload"),
                            name=item.get("name"), queue=item.get("queue"),
                            tz=item.get("tz", "UTC"), missed=item.get("missed", "skip")))
        except ValueError as exc:
            raise ValueError(f"entry #{i}: {exc}") from None
    return out
