"""The `periodic` hash: each periodic schedule's last and next tick (JSON by schedule name),
kept by the masters (tq.periodic) for `tq status` and the dashboard."""

from __future__ import annotations

from typing import Any

from .broker import Broker


def entries(broker: Broker) -> dict[str, bytes]:
    """Every schedule's entry, name -> JSON as stored."""
    raw: Any = broker.conn.hgetall(broker.keys.periodic)
    return {name.decode("utf-8", "replace"): value for name, value in raw.items()}


def entry(broker: Broker, name: str) -> bytes | None:
    """One schedule's entry as stored, None if it has none yet."""
    raw: Any = broker.conn.hget(broker.keys.periodic, name)
    return raw


def publish(broker: Broker, name: str, doc: str) -> None:
    """Store a schedule's entry (JSON)."""
    broker.conn.hset(broker.keys.periodic, name, doc)
