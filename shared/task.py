"""The task model: what a task is, how it is validated, and how it is stored in Redis (JSON).

A task body is stored once, as compact JSON in its queue's `tasks` hash. Fields that keep their
default are left out, the id and the queue are implied by where the body lives, the creation
time is encoded in the id, and the payload comes last so that Lua can read the small header
(type, priority, max_retries) without decoding the payload:

    {"p":{"to":"a@example.com"}}                       a task of type == queue, priority 0
    {"t":"email","r":9,"m":5,"o":30,"p":{...}}         type, priority, max_retries, timeout

Mutable state (failed attempts, last error, who runs it) lives in other per-queue hashes, so a
body is never rewritten and Lua never re-encodes a payload (cjson would turn [] into {} and round
large numbers).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import PayloadError
from .ids import created_ms

MAX_NAME_LENGTH = 200  # also in _NAME_RE
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
DEFAULT_MAX_RETRIES = 3
PRIORITIES = range(0, 10)

# Letters, digits and . _ - / @ + : no whitespace, no braces (Redis Cluster hash tags),
# no colon (key separator), no glob characters (SCAN patterns), no quotes (the Lua header parser).
_NAME_RE = re.compile(r"[\w.\-/@+]{1,200}")

STATES = ("scheduled", "queued", "running", "succeeded", "failed-will-retry", "dead")

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def validate_name(kind: str, value: object) -> str:
    """Return `value` if it is a usable type or queue name, else raise ValueError saying why."""
    if not isinstance(value, str):
        raise ValueError(f"{kind} must be a string, not {type(value).__name__}")
    if not _NAME_RE.fullmatch(value):
        if not value:
            why = "is empty"
        elif len(value) > MAX_NAME_LENGTH:
            why = f"is longer than {MAX_NAME_LENGTH} characters"
        else:
            why = "may only contain letters, digits and . _ - / @ +"
        raise ValueError(f"{kind} {value[:60]!r} {why}")
    return value


def validate_priority(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in PRIORITIES:
        raise ValueError(f"priority must be an integer from 0 to 9, not {value!r}")
    return value


def encode_payload(payload: object) -> str:
    """The payload as compact JSON; PayloadError unless it is a JSON-serialisable object."""
    if not isinstance(payload, dict):
        raise PayloadError(f"payload must be a JSON object (dict), not {type(payload).__name__}")
    try:
        return _dumps(payload)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"payload is not JSON-serialisable: {exc}") from None


def encode_body(
    task_type: str,
    queue: str,
    payload_json: str,
    priority: int = 0,
    max_retries: int | None = None,
    timeout: float | None = None,
) -> str:
    """The stored body: header fields that differ from their defaults, then the payload."""
    head = []
    if task_type != queue:
        head.append(f'"t":"{task_type}"')
    if priority:
        head.append(f'"r":{priority}')
    if max_retries is not None:
        head.append(f'"m":{max_retries}')
    if timeout is not None:
        head.append(f'"o":{_dumps(timeout)}')
    head.append(f'"p":{payload_json}')
    return "{" + ",".join(head) + "}"


@dataclass(slots=True)
class Task:
    """A task as a worker receives it from fetch()."""

    id: str
    queue: str
    type: str
    payload: dict[str, Any]
    priority: int = 0
    max_retries: int | None = None
    timeout: float | None = None
    failures: int = 0          # failed attempts before this one
    token: str = ""            # the claim's fencing token: ack/fail must present it
    malformed: str | None = None  # why the stored body could not be used, if it could not

    @property
    def attempt(self) -> int:
        """This run's number, from 1."""
        return self.failures + 1

    @property
    def created_at(self) -> float | None:
        ms = created_ms(self.id)
        return ms / 1000 if ms is not None else None

    @classmethod
    def from_body(cls, task_id: str, queue: str, body: bytes | str, failures: int = 0,
                  token: str = "") -> Task:
        """Decode a stored body; a body tq cannot use gives a Task with `malformed` set."""
        try:
            doc = json.loads(body)
            if not isinstance(doc, dict) or not isinstance(doc.get("p"), dict):
                raise ValueError("not an object with a 'p' payload object")
            task_type = doc.get("t", queue)
            validate_name("type", task_type)
            priority = doc.get("r", 0)
            validate_priority(priority)
            max_retries = doc.get("m")
            if max_retries is not None and (not isinstance(max_retries, int) or max_retries < 0):
                raise ValueError(f"bad max_retries {max_retries!r}")
            timeout = doc.get("o")
            if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
                raise ValueError(f"bad timeout {timeout!r}")
        except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
            raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            return cls(task_id, queue, "?", {}, failures=failures, token=token,
                       malformed=f"malformed task body ({exc}): {raw[:200]!r}")
        return cls(task_id, queue, task_type, doc["p"], priority, max_retries, timeout,
                   failures, token)


@dataclass(slots=True)
class TaskInfo:
    """What client.get() knows of a task."""

    id: str
    queue: str
    type: str
    state: str
    attempts: int = 0              # runs started so far (a running task counts its own)
    priority: int = 0
    payload: dict[str, Any] | None = None   # kept while the task is not finished
    result: Any = None
    error: str | None = None
    error_kind: str | None = None  # error, timeout, died, malformed, unknown_type, permanent
    traceback: str | None = None
    max_retries: int | None = None
    timeout: float | None = None
    created_at: float | None = None
    eta: float | None = None       # due time of a scheduled task or a pending retry
    started_at: float | None = None
    finished_at: float | None = None
    failed_at: float | None = None
    worker: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
