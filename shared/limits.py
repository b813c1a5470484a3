"""Flow control: rate limits, concurrency limits and pause, enforced in Redis at claim time.

A limit belongs to a task type (inside its queue). Handlers declare them
(`@tq.handler("email", rate_limit="100/s", burst=10, rate_key="tenant", concurrency=5)`) and
workers publish them when they start; operators override them (`tq limits set email 50/s`),
and an override wins until it is cleared. The claim script (store/lua/claim.lua) reads the effective
limits of a queue from one field of its `flow` hash:

- **Rate** uses GCRA (the generic cell rate algorithm, the leaky bucket as a meter): one
  number per bucket, the theoretical arrival time (TAT). A task may start when TAT - now is
  within the burst tolerance; starting it moves TAT one emission interval (period / count) on.
  Chosen over a token bucket (two numbers and a refill computation) and a sliding window (a
  list of start times per bucket) because it keeps one number per bucket, answers "when is the
  next opening" exactly, and its behaviour is the token bucket's.
- A task over its rate is **not claimed**: it moves to the queue's schedule, due when its slot
  opens (successive deferrals of one bucket are spaced one interval apart, so they come back one
  per slot instead of all at once), and the master promotes it on time like any delayed task.
  No attempt is charged, no worker waits on it, and tasks of other types behind it in the
  ready list are claimed in the same call (no head-of-line blocking).
- **Concurrency** is a count of leases per type in the `flow` hash, taken when a task is
  claimed and given back wherever its claim ends (ack, failure, requeue by a reaper when its
  worker died): a crash never leaks a lease. A task that finds no lease waits in the queue's
  `held` set and goes back to the front of its ready list when one is given back.
- **Pause** stops claims from a queue; enqueues and running tasks go on.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .ranges import IntRange
from .task import validate_name

PERIODS = {"s": 1000, "sec": 1000, "second": 1000, "m": 60_000, "min": 60_000,
           "minute": 60_000, "h": 3_600_000, "hour": 3_600_000, "d": 86_400_000,
           "day": 86_400_000}
_RATE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+)\s*")
MAX_BURST = 1_000_000
MAX_CONCURRENCY = 1_000_000
MAX_KEY_LENGTH = 200
PRODUCER_KEY = "()"   # Limits.key of a rate_key function (its value is in each task's header)
BURST = IntRange(1, MAX_BURST, grouped=True)
CONCURRENCY = IntRange(1, MAX_CONCURRENCY, grouped=True)


@dataclass(frozen=True, slots=True)
class Rate:
    count: float       # tasks ...
    period_ms: int     # ... per this many ms

    @property
    def interval_ms(self) -> float:
        """The emission interval: ms between starts at the steady rate."""
        return self.period_ms / self.count

    def __str__(self) -> str:
        unit = {1000: "s", 60_000: "m", 3_600_000: "h", 86_400_000: "d"}[self.period_ms]
        n = int(self.count) if self.count == int(self.count) else self.count
        return f"{n}/{unit}"


def parse_rate(text: object) -> Rate:
    """"100/s", "6000/m", "10/h", "500/d" -> Rate; ValueError saying why otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"rate limit must be a string like '100/s', not {text!r}")
    m = _RATE_RE.fullmatch(text.lower())
    if not m or m.group(2) not in PERIODS:
        raise ValueError(f"rate limit {text!r} is not COUNT/UNIT (e.g. 100/s, 6000/m, 10/h; "
                         f"units: s, m, h, d)")
    count = float(m.group(1))
    if not math.isfinite(count) or count <= 0:
        raise ValueError(f"rate limit {text!r} must allow more than 0 tasks")
    if count > 1_000_000:
        raise ValueError(f"rate limit {text!r} is over 1,000,000 per unit")
    return Rate(count, PERIODS[m.group(2)])


def validate_burst(burst: object) -> int:
    return BURST.validate(burst, "burst")


def validate_concurrency(n: object) -> int:
    return CONCURRENCY.validate(n, "concurrency")


def validate_key_field(field: object) -> str:
    if not isinstance(field, str) or not field or len(field) > MAX_KEY_LENGTH \
            or '"' in field or "\\" in field:
        raise ValueError(f"rate_key must be a payload field name (a non-empty string without "
                         f"quotes or backslashes) or a function of the payload, not {field!r}")
    return field


RateKey = str | Callable[[dict[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of one task type. None: no such limit."""

    rate: Rate | None = None
    burst: int = 1
    key: str | None = None          # payload field whose value picks the bucket
    concurrency: int | None = None

    def __post_init__(self) -> None:
        validate_burst(self.burst)
        if self.concurrency is not None:
            validate_concurrency(self.concurrency)
        if self.key is not None:
            validate_key_field(self.key)

    @property
    def empty(self) -> bool:
        return self.rate is None and self.concurrency is None

    def to_wire(self) -> dict[str, Any]:
        """The JSON Lua reads: i interval ms, b burst, k key field, c concurrency; plus the
        rate as written (for status)."""
        out: dict[str, Any] = {}
        if self.rate is not None:
            out.update(i=self.rate.interval_ms, b=self.burst, rate=str(self.rate))
            if self.key is not None:
                out["k"] = self.key
        if self.concurrency is not None:
            out["c"] = self.concurrency
        return out

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Limits:
        rate = parse_rate(data["rate"]) if data.get("rate") else None
        return cls(rate, int(data.get("b", 1)), data.get("k"), data.get("c"))

    def describe(self) -> str:
        parts = []
        if self.rate is not None:
            per = "" if not self.key else (" per key" if self.key == PRODUCER_KEY
                                           else f" per {self.key}")
            parts.append(f"{self.rate}" + (f" burst {self.burst}" if self.burst > 1 else "")
                         + per)
        if self.concurrency is not None:
            parts.append(f"concurrency {self.concurrency}")
        return ", ".join(parts) or "none"


def default_burst(rate: Rate | None) -> int:
    """What the rate allows in 10 ms, at least 1: strict spacing for ordinary rates (50/s: 1),
    while a high one (5,000/s: 50) lets a claim take a batch at once instead of one task per
    claim and the rest deferred."""
    if rate is None:
        return 1
    return max(1, min(MAX_BURST, int(10 / rate.interval_ms)))


def declared(rate_limit: str | None, burst: int | None, rate_key: RateKey | None,
             concurrency: int | None) -> Limits | None:
    """A handler's limits from its options (ValueError naming the bad one); None: none."""
    if rate_limit is None and (burst is not None or rate_key is not None):
        raise ValueError("burst and rate_key need rate_limit")
    rate = parse_rate(rate_limit) if rate_limit is not None else None
    # a function: producers write its value into each task's header; "()" tells the claim
    # script to look there only
    field = rate_key if isinstance(rate_key, str) or rate_key is None else PRODUCER_KEY
    if rate_key is not None and not isinstance(rate_key, str) and not callable(rate_key):
        raise ValueError(f"rate_key must be a payload field name or a function of the "
                         f"payload, not {rate_key!r}")
    limits = Limits(rate, validate_burst(burst) if burst is not None else default_burst(rate),
                    validate_key_field(field) if field is not None else None,
                    validate_concurrency(concurrency) if concurrency is not None else None)
    return None if limits.empty else limits


def override(task_type: str, rate_limit: str | None, burst: int | None,
             rate_key: RateKey | None, concurrency: int | None) -> Limits:
    """An operator's override of a type's limits (set_limit's arguments, ValueError naming
    the bad one): a rate and/or a concurrency."""
    validate_name("type", task_type)
    if rate_limit is None and concurrency is None:
        raise ValueError("give rate_limit and/or concurrency")
    given = declared(rate_limit, burst, rate_key, concurrency)
    assert given is not None
    return given


def key_value(rate_key: RateKey, payload: dict[str, Any]) -> str | None:
    """The bucket a producer writes into a task's header ("k") for a function rate_key; None
    when it gives nothing usable (the task then shares the type's own bucket)."""
    if isinstance(rate_key, str):
        return None   # a field name: read by the claim script from the payload itself
    try:
        value = rate_key(payload)
    except Exception:
        return None
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    if _SAFE_KEY.fullmatch(text):
        return text
    # the header is read by Lua without a JSON decoder: no quotes or escapes in it
    return "sha1:" + hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


_SAFE_KEY = re.compile(rf"[\w.\-@+/:=,]{{1,{MAX_KEY_LENGTH}}}")


def parse_spec(text: str) -> Limits:
    """One type's limits as written in the config: "50/s", "50/s burst=5 key=tenant",
    "concurrency=3", "10/m concurrency=2" (ValueError naming what is wrong)."""
    rate = burst = key = concurrency = None
    for token in text.split():
        name, eq, value = token.partition("=")
        if not eq:
            rate = token
        elif name == "burst" and value.isdigit():
            burst = int(value)
        elif name == "key":
            key = value
        elif name == "concurrency" and value.lstrip("-").isdigit():
            concurrency = int(value)
        else:
            raise ValueError(f"{token!r} is not a rate (50/s) or burst=N, key=FIELD, "
                             f"concurrency=N")
    limits = declared(rate, burst, key, concurrency)
    if limits is None:
        raise ValueError(f"{text!r} sets no limit")
    return limits


def parse_table(value: object) -> dict[str, Limits]:
    """The `limits` setting: {type: spec} (TOML table), or "type=spec,type=spec" (env, flag)."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, str):
        items = []
        for part in value.split(","):
            if part.strip():
                ttype, eq, spec = part.partition("=")
                if not eq:
                    raise ValueError(f"{part.strip()!r} is not TYPE=LIMITS")
                items.append((ttype.strip(), spec))
    else:
        raise ValueError("must be a table of type = \"limits\" or TYPE=LIMITS[,TYPE=LIMITS]")
    out = {}
    for ttype, spec in items:
        validate_name("type", ttype)
        if not isinstance(spec, str):
            raise ValueError(f"limits of {ttype!r} must be a string like \"50/s burst=5\"")
        try:
            out[ttype] = parse_spec(spec)
        except ValueError as exc:
            raise ValueError(f"limits of {ttype!r}: {exc}") from None
    return out


def merge(base: Limits | None, over: Limits | None) -> Limits | None:
    """`over`'s rate (with its burst and key) and/or concurrency on top of `base`."""
    if over is None:
        return base
    if base is None:
        return over
    rate, burst, key = (over.rate, over.burst, over.key) if over.rate is not None else \
        (base.rate, base.burst, base.key)
    return Limits(rate, burst, key, over.concurrency if over.concurrency is not None
                  else base.concurrency)
