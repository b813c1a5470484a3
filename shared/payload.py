"""What a payload may be: a JSON object tq can store as it is, checked before it is encoded
(validate_payload) and, cheaply, after a body is decoded (payload_depth_ok)."""

from __future__ import annotations

import json
from typing import Any

from .errors import PayloadError

MAX_PAYLOAD_DEPTH = 100              # nesting of objects and arrays inside the payload

# writes a non-string key as json.dumps would (1 -> "1"), refusing NaN as the body encoder does
_scalar_json = json.JSONEncoder(allow_nan=False).encode
_JSON_KEYS = (str, int, float, bool, type(None))   # what json.dumps accepts as object keys
_SCALARS = (int, float, bool, type(None))


def _json_key(key: object) -> str:
    """The key json.dumps writes for `key` (1 -> "1", True -> "true", None -> "null")."""
    return key if isinstance(key, str) else _scalar_json(key)


def _path(parts: list[object]) -> str:
    shown = "".join(f"[{p!r}]" for p in parts[-8:])
    return "payload" + (f"...({len(parts) - 8} levels)..." if len(parts) > 8 else "") + shown


_PLAIN = frozenset((int, float, bool, type(None)))


def _flat_and_plain(payload: dict[Any, Any]) -> bool:
    """The usual payload, checked fast: ASCII string keys, ASCII strings and scalars as values
    (nothing nested, no key JSON could write twice). Anything else takes the full walk."""
    for key, value in payload.items():
        if type(key) is not str or not key.isascii():
            return False
        t = type(value)
        if t is str:
            if not value.isascii():
                return False
        elif t not in _PLAIN:
            return False
    return True


def validate_payload(payload: object, max_depth: int = MAX_PAYLOAD_DEPTH) -> dict[Any, Any]:
    """`payload` if it is a JSON object tq can store as it is, else PayloadError naming the path:
    nesting within max_depth, no two keys that JSON would write alike ({1: .., "1": ..}), no
    text that is not valid Unicode (a lone surrogate), only JSON types."""
    if not isinstance(payload, dict):
        raise PayloadError(f"payload must be a JSON object (dict), not {type(payload).__name__}")
    if _flat_and_plain(payload):
        return payload
    # Iterative (a deep payload must not exhaust the interpreter's stack here either).
    stack: list[tuple[object, list[object], int]] = [(payload, [], 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise PayloadError(f"{_path(path)}: not valid Unicode text "
                                       f"({exc.reason} at position {exc.start})") from None
            continue
        if isinstance(value, _SCALARS):
            continue
        if not isinstance(value, dict | list | tuple):
            raise PayloadError(f"{_path(path)}: {type(value).__name__} is not JSON-serialisable")
        if depth > max_depth:
            raise PayloadError(f"{_path(path)}: nested deeper than {max_depth} levels")
        if isinstance(value, dict):
            seen: dict[str, object] = {}
            for key, item in value.items():
                if not isinstance(key, _JSON_KEYS):
                    raise PayloadError(f"{_path(path)}: key {key!r} is not JSON-serialisable "
                                       "as an object key")
                name = _json_key(key)
                if name in seen:
                    raise PayloadError(f"{_path(path)}: keys {seen[name]!r} and {key!r} are "
                                       f"both written as {name!r} in JSON (one would be lost)")
                seen[name] = key
                if isinstance(key, str) and not key.isascii():
                    stack.append((key, [*path, key], depth))
                stack.append((item, [*path, key], depth + 1))
        else:
            stack.extend((item, [*path, i], depth + 1) for i, item in enumerate(value))
    return payload


def payload_depth_ok(raw: bytes | str, doc: object, max_depth: int = MAX_PAYLOAD_DEPTH) -> bool:
    """Is the decoded body `doc` nested within the limit? Cheap for the usual small body: only
    one with more brackets than the limit is walked."""
    if len(raw) <= max_depth + 1:   # too short for that many brackets
        return True
    if isinstance(raw, bytes):
        opens = raw.count(b"{") + raw.count(b"[")
    else:
        opens = raw.count("{") + raw.count("[")
    if opens <= max_depth + 1:   # the body's own object adds one level
        return True
    stack: list[tuple[object, int]] = [(doc, 1)]   # counted as validate_payload() counts
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if depth > max_depth:
                return False
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            if depth > max_depth:
                return False
            stack.extend((v, depth + 1) for v in value)
    return True
