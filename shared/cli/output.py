"""How the tq CLI prints: JSON for scripts, aligned tables and short units for people."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import click


def echo_json(data: Any) -> None:
    """One JSON document on stdout (what every --json prints)."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str, sort_keys=False))


def dumps(data: Any) -> str:
    """A JSON document on one line (--watch --json prints one per frame)."""
    return json.dumps(data, ensure_ascii=False, default=str, sort_keys=False)


def pretty_json(line: str) -> str:
    """A one-line document as echo_json prints it."""
    return json.dumps(json.loads(line), indent=2, ensure_ascii=False, sort_keys=False)


def compact(value: Any) -> str:
    """A JSON value on one line (payloads and results in human output)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned table; numbers right-aligned, None shown as '-'."""
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [all(isinstance(row[i], int | float) and not isinstance(row[i], bool)
                   for row in rows if row[i] is not None) and any(row[i] is not None
                                                                   for row in rows)
               for i in range(len(headers))]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w)
                 for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(headers)), *(line(r) for r in cells)])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def fields(pairs: Mapping[str, Any]) -> str:
    """`name  value` lines, names aligned; None values left out."""
    shown = {k: v for k, v in pairs.items() if v is not None}
    width = max((len(k) for k in shown), default=0)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in shown.items())


def size(n: float | None) -> str | None:
    """Bytes in binary units: 512 B, 45.3 MiB."""
    if n is None:
        return None
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def percent(value: float | None) -> str | None:
    """CPU use in percent of one core: 97%."""
    return None if value is None else f"{value:.0f}%"


def duration(seconds: float | None) -> str | None:
    """A short duration: 250µs, 1.25ms, 850ms, 4.2s, 3m05s, 2h10m, 3d4h."""
    if seconds is None or math.isnan(seconds):
        return None
    if math.isinf(seconds):
        return "∞"   # a histogram's last bucket has no upper bound
    s = max(seconds, 0.0)
    if 0 < s < 0.001:
        return f"{s * 1e6:.0f}µs"
    if s < 1:   # three digits at most: a percentile's bucket bounds stay apart (1.25-1.5ms)
        ms = s * 1000
        return f"{ms:.0f}ms" if ms >= 100 else f"{ms:.3g}ms"
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    if s < 86400:
        return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    return f"{int(s // 86400)}d{int(s % 86400 // 3600)}h"


def percentile(summary: dict[str, Any], name: str) -> str | None:
    """A percentile of History.latency() with the bucket it lies in: 296ms (250-300ms)."""
    value, bounds = summary.get(name), summary.get("bounds", {}).get(name)
    if value is None or not bounds:
        return duration(value)
    low, high = bounds
    if high is None:
        return f"{duration(value)} (>{duration(low)})"
    if not low:
        return f"{duration(value)} (<={duration(high)})"
    lo, hi = _bound(low), _bound(high)
    for unit in ("µs", "ms", "s"):   # one unit for both ends when they share it
        a, b = lo.removesuffix(unit), hi.removesuffix(unit)
        if a != lo and b != hi and all(x.replace(".", "", 1).isdigit() for x in (a, b)):
            return f"{duration(value)} ({a}-{hi})"
    return f"{duration(value)} ({lo}-{hi})"


def _bound(seconds: float) -> str:
    """A bucket bound as short as it is exact: 1.25s, 2.5s, 15s (duration() otherwise)."""
    if 1 <= seconds < 60:
        return f"{seconds:.3g}s"
    return duration(seconds) or ""


def when(ts: float | None, now: float | None = None) -> str | None:
    """A Unix time as local time, with how long ago (or how far ahead) it is."""
    if ts is None:
        return None
    now = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    delta = now - ts
    rel = f"{duration(delta)} ago" if delta >= 0 else f"in {duration(-delta)}"
    return f"{stamp} ({rel})"


def priorities(by_priority: Mapping[int, int]) -> str:
    """Depth per priority, highest first: '9:12 0:108' ('-' when empty)."""
    parts = [f"{p}:{n}" for p, n in sorted(by_priority.items(), reverse=True) if n]
    return " ".join(parts) or "-"


def clip(text: str | None, width: int = 60) -> str | None:
    """The first line of `text`, cut to `width` characters."""
    if text is None:
        return None
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= width else first[:width - 1] + "…"
