"""One task packed for the enqueue script, once, before anything is sent: its options checked,
its body encoded (and sealed, tq.protect), its unique lock named."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import time
from typing import Any

from .errors import PayloadError
from .handlers import REGISTRY
from .ids import new_id
from .limits import key_value
from .protect import KeyRing, seal_body
from .store.keys import Keys
from .task import (
    MAX_SECONDS,
    encode_body,
    encode_payload,
    validate_max_retries,
    validate_name,
    validate_priority,
    validate_timeout,
)

_canonical = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode


def seconds(value: Any, name: str) -> float:
    """A duration in seconds (a number or a timedelta), within ten years."""
    if isinstance(value, dt.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, not {value!r}")
    if abs(value) > MAX_SECONDS:
        raise ValueError(f"{name} must be at most {MAX_SECONDS} seconds (ten years), "
                         f"not {value!r}")
    return float(value)


def eta_to_ms(eta: Any) -> int:
    """A datetime (naive = local time) or Unix seconds, within ten years of now, in ms."""
    if isinstance(eta, dt.datetime):
        if eta.tzinfo is None:
            eta = eta.astimezone()
        eta = eta.timestamp()
    if isinstance(eta, bool) or not isinstance(eta, int | float) or not math.isfinite(eta):
        raise ValueError(f"eta must be a datetime or a Unix time, not {eta!r}")
    if abs(eta - time.time()) > MAX_SECONDS:
        raise ValueError(f"eta {eta!r} is more than ten years away")
    return int(eta * 1000)


def pack(task_type: str, payload: Any, queue: str | None, priority: int, delay: Any, eta: Any,
         max_retries: int | None, timeout: Any, unique_for: Any, unique_key: str | None, *,
         ring: KeyRing | None, max_bytes: int, keys: Keys, workflow: str | None = None,
         inputs: int = 0) -> tuple[str, list[Any], str | None]:
    """Check one task's enqueue options (client.enqueue's; ValueError naming what is wrong)
    and pack it: (its queue, its arguments for tq.store.tasks.enqueue, its unique lock key).
    ring: seals the body (tq.protect); max_bytes: the largest body (else PayloadError);
    keys: the namespace's key names (the lock's)."""
    validate_name("type", task_type)
    queue = task_type if queue is None else validate_name("queue", queue)
    validate_priority(priority)
    if max_retries is not None:
        validate_max_retries(max_retries)
    if timeout is not None:
        timeout = validate_timeout(seconds(timeout, "timeout"))
    delay_ms: int | str = ""   # '': none (the script's ARGV)
    eta_ms: int | str = ""
    if delay is not None and eta is not None:
        raise ValueError("give delay or eta, not both")
    if delay is not None:
        d = seconds(delay, "delay")
        if d < 0:
            raise ValueError("delay must not be negative")
        delay_ms = int(d * 1000)
    elif eta is not None:
        eta_ms = eta_to_ms(eta)
    payload_json = encode_payload(payload)
    spec = REGISTRY.get(task_type)   # a rate_key function of a handler known here
    key = key_value(spec.rate_key, payload) if spec is not None and spec.rate_key \
        is not None and not isinstance(spec.rate_key, str) else None
    body = encode_body(task_type, queue, payload_json, priority, max_retries, timeout, key,
                       workflow, inputs)
    task_id = new_id(queue=queue)
    if ring is not None:
        body = seal_body(ring, queue, task_id, body)
    size = len(body.encode()) if not body.isascii() else len(body)
    if size > max_bytes:
        raise PayloadError(f"task body is {size} bytes, over the limit of "
                           f"{max_bytes} (max_payload_bytes)")
    lock_key = uniq_ttl = None
    if unique_key is not None and unique_for is None:
        raise ValueError("unique_key needs unique_for (how long the key holds)")
    if unique_for is not None:
        ttl = seconds(unique_for, "unique_for")
        if ttl <= 0:
            raise ValueError("unique_for must be positive")
        uniq_ttl = max(int(ttl * 1000), 1)
        basis = f"k\0{unique_key}" if unique_key is not None else \
            f"p\0{task_type}\0{_canonical(payload)}"
        digest = hashlib.sha1(basis.encode()).hexdigest()
        lock_key = keys.queue(queue).uniq(digest)
    args = [task_id, body, priority, delay_ms, eta_ms, uniq_ttl or "", task_type]
    return queue, args, lock_key

