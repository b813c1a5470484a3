"""The task model: a task's fields, the ranges of its options, and its body as stored in Redis.

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
from .payload import MAX_PAYLOAD_DEPTH, payload_depth_ok, validate_payload
from .ranges import FloatRange, IntRange

MAX_NAME_LENGTH = 200  # also in _NAME_RE
DEFAULT_MAX_RETRIES = 3

# The limits of a task, the same for every producer (Client, tq enqueue, the dashboard) and for
# the worker's decoder: a body the door would refuse is dead-lettered as malformed, never run.
MAX_RETRIES = 1000                   # max_retries: 0 .. 1000
MAX_SECONDS = 10 * 365 * 86400       # delays, timeouts, unique_for, TTLs: at most ten years
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024   # the largest max_payload_bytes a Client may set
MAX_BODY_BYTES = MAX_PAYLOAD_BYTES + 4096   # what a worker decodes at most (payload + header)
MAX_WORKFLOW_MEMBERS = 100_000       # members of one workflow (and upstream members of one)
# (the payload's own limit, MAX_PAYLOAD_DEPTH, is tq.payload's)

PRIORITY = IntRange(0, 9)
RETRIES = IntRange(0, MAX_RETRIES)
PROGRESS = FloatRange(0, 1, text="a number from 0 to 1")
TIMEOUT = FloatRange(0, MAX_SECONDS, lo_open=True,
                     text=f"a number of seconds above 0 and at most {MAX_SECONDS} (ten years)")

# Letters, digits and . _ - / @ + : no whitespace, no braces (Redis Cluster hash tags),
# no colon (key separator), no glob characters (SCAN patterns), no quotes (the Lua header parser).
_NAME_RE = re.compile(r"[\w.\-/@+]{1,200}")
_ID_RE = re.compile(r"[\w\-]{1,64}", re.ASCII)   # what a workflow id may be (ids.new_id)

STATES = ("scheduled", "queued", "running", "succeeded", "failed-will-retry", "dead",
          "cancelled", "waiting", "cancelling")

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


GLOB_CHARS = frozenset("*?[")
_PATTERN_RE = re.compile(r"[\w.\-/@+*?\[\]!]{1,200}")


def is_pattern(name: str) -> bool:
    """A queue spec that is a glob (a name cannot hold * ? [): it consumes every queue it
    matches, those that appear later included."""
    return not GLOB_CHARS.isdisjoint(name)


def validate_queue_spec(value: object) -> str:
    """A queue name, or a glob of them (tenant-*, v?/thumbs, [ab]-*), as -Q takes them."""
    if isinstance(value, str) and is_pattern(value):
        if not _PATTERN_RE.fullmatch(value) or value.count("[") != value.count("]"):
            raise ValueError(f"queue pattern {value[:60]!r} may only contain letters, digits, "
                             ". _ - / @ + and the glob characters * ? [ ] !")
        return value
    return validate_name("queue", value)


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
    return PRIORITY.validate(value, "priority")


def validate_max_retries(value: object) -> int:
    return RETRIES.validate(value, "max_retries")


def validate_progress(value: object) -> float:
    """A ctx.progress() fraction: a number from 0 to 1."""
    return PROGRESS.validate(value, "progress")


def validate_timeout(value: object) -> float:
    return TIMEOUT.validate(value, "timeout")


def encode_payload(payload: object) -> str:
    """The payload as compact JSON; PayloadError unless validate_payload() accepts it."""
    validate_payload(payload)
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
    rate_key: str | None = None,
    workflow: str | None = None,
    inputs: int = 0,
) -> str:
    """The stored body: header fields that differ from their defaults, then the payload.
    rate_key ("k"): the task's rate-limit bucket, from its handler's rate_key function.
    workflow ("w"): the workflow it belongs to; inputs ("n"): its upstream members."""
    head = []
    if task_type != queue:
        head.append(f'"t":"{task_type}"')
    if priority:
        head.append(f'"r":{priority}')
    if max_retries is not None:
        head.append(f'"m":{max_retries}')
    if timeout is not None:
        head.append(f'"o":{_dumps(timeout)}')
    if rate_key is not None:
        head.append(f'"k":"{rate_key}"')   # (limits.key_value: nothing to escape)
    if workflow is not None:
        head.append(f'"w":"{workflow}"')   # (an id: nothing to escape)
    if inputs:
        head.append(f'"n":{inputs}')
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
    raw: str | None = None     # the stored body, when it is signed or encrypted (tq.protect)
    sealed: bool = False       # the payload is encrypted: {} until tq.protect opens it
    workflow: str | None = None   # the workflow it is a member of (shared/workflow.py)
    inputs: int = 0            # its upstream members: their results are its ctx.inputs

    def with_payload(self, payload_json: str) -> Task:
        """This task with the payload a protected body held (decrypted or verified); a
        payload tq would not accept gives a malformed task, as from_body does."""
        try:
            if len(payload_json) > MAX_BODY_BYTES:
                raise ValueError(f"payload of {len(payload_json)} bytes is over the limit")
            payload = _loads(payload_json)
            if type(payload) is not dict:
                raise ValueError("the payload is not an object")
            if not payload_depth_ok("{" + payload_json, payload):   # (as inside a body)
                raise ValueError(f"payload nested deeper than {MAX_PAYLOAD_DEPTH} levels")
        except Exception as exc:  # RecursionError, ValueError...
            why = str(exc) or type(exc).__name__
            return Task(self.id, self.queue, "?", {}, failures=self.failures, token=self.token,
                        raw=self.raw, malformed=f"malformed task payload ({why[:300]})")
        return Task(self.id, self.queue, self.type, payload, self.priority, self.max_retries,
                    self.timeout, self.failures, self.token, raw=self.raw,
                    workflow=self.workflow, inputs=self.inputs)

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
        """Decode a stored body; a body tq cannot use gives a Task with `malformed` set.

        Total: whatever Redis holds (any bytes, any depth, any numbers), the verdict is a Task
        or a malformed Task, never an exception, so no body can take a worker down.
        """
        try:
            if len(body) > MAX_BODY_BYTES:
                raise ValueError(f"body of {len(body)} bytes is over the limit of "
                                 f"{MAX_BODY_BYTES}")
            text = body.decode("utf-8") if isinstance(body, bytes) else body
            doc = _loads(text)
            if type(doc) is not dict:
                raise ValueError("not an object with a 'p' payload object")
            payload = doc.get("p")
            raw, sealed = None, False
            if type(payload) is str and payload.startswith("tqe1."):   # tq.protect
                raw, sealed, payload = text, True, {}
            elif "s" in doc:   # signed: the worker verifies it before the run
                raw = text
            if type(payload) is not dict:
                raise ValueError("not an object with a 'p' payload object")
            if not payload_depth_ok(body, payload):
                raise ValueError(f"payload nested deeper than {MAX_PAYLOAD_DEPTH} levels")
            if len(doc) == 1:   # {"p": ...}: a task named after its queue, every default
                if queue not in _VALID_TYPES:
                    validate_name("type", queue)
                    if len(_VALID_TYPES) < 10_000:
                        _VALID_TYPES.add(queue)
                return cls(task_id, queue, queue, payload, failures=failures, token=token,
                           raw=raw, sealed=sealed)
            task_type = doc.get("t", queue)
            if task_type not in _VALID_TYPES:   # names seen before are valid (a worker's few)
                validate_name("type", task_type)
                if len(_VALID_TYPES) < 10_000:
                    _VALID_TYPES.add(task_type)
            priority = doc.get("r", 0)
            if priority or type(priority) is not int:   # 0, the default, is valid
                validate_priority(priority)
            max_retries = doc.get("m")
            if max_retries is not None:
                validate_max_retries(max_retries)
            timeout = doc.get("o")
            if timeout is not None:
                timeout = validate_timeout(timeout)
            workflow, inputs = doc.get("w"), 0
            if workflow is not None:   # a workflow member (shared/workflow.py)
                if type(workflow) is not str or not _ID_RE.fullmatch(workflow):
                    raise ValueError("workflow id is not an id")
                inputs = doc.get("n", 0)
                if type(inputs) is not int or not 0 <= inputs <= MAX_WORKFLOW_MEMBERS:
                    raise ValueError(f"inputs must be a count up to {MAX_WORKFLOW_MEMBERS}")
        except Exception as exc:  # RecursionError, MemoryError, ValueError...
            raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
            why = str(exc) or type(exc).__name__
            return cls(task_id, queue, "?", {}, failures=failures, token=token,
                       malformed=f"malformed task body ({why[:300]}): {raw[:200]!r}")
        return cls(task_id, queue, task_type, payload, priority, max_retries, timeout,
                   failures, token, raw=raw, sealed=sealed, workflow=workflow, inputs=inputs)


_VALID_TYPES: set[str] = set()
_decoder = json.JSONDecoder()
_scan = _decoder.scan_once   # type: ignore[attr-defined]  # (set in __init__, not typed)


def _loads(text: str) -> Any:
    """json.loads for str (bodies are UTF-8: tq writes nothing else). A body tq wrote has no
    whitespace around it: decoded by the scanner directly, without decode()'s two regex
    passes for that whitespace; anything else gets decode()'s verdict."""
    try:
        doc, end = _scan(text, 0)
    except StopIteration:
        return _decoder.decode(text)   # (raises the decoder's error)
    if end != len(text):
        return _decoder.decode(text)
    return doc


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
    # the errors of earlier failed attempts, oldest first ({kind, message, at, worker}); the
    # last one is error/error_kind/traceback. Kept while the task is not finished.
    history: list[dict[str, Any]] = field(default_factory=list)
    # payload (or result) encrypted and no key here to open it: shown as "encrypted"
    encrypted: bool = False
    # the last ctx.progress() of a running task: {"fraction", "message", "at"}
    progress: dict[str, Any] | None = None
    workflow: str | None = None    # the workflow it is a member of
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
