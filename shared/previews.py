"""What a status page shows of a task read with bounded values (tq.store.peek): TaskInfo with
long values cut to previews, and which values were cut and how long they are.

A cut payload or result becomes None in the TaskInfo and a preview beside it: a valid JSON
text of its beginning (tq.excerpt.close_json). A cut error message or traceback stays text:
its beginning and an ellipsis (a traceback keeps its last lines too). Sealed values that
were cut cannot be opened (authenticated encryption opens a whole text or nothing): their
preview says so, and the full value opens them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .excerpt import ELLIPSIS, close_json, string_head, string_tail, utf8_head
from .info import task_info
from .keyring import ENCRYPTED
from .protect import KeyRing
from .store.peek import Peek
from .store.tasks import Snapshot
from .task import TaskInfo

_HEADER = re.compile(r'^\{(.*?)"p":', re.S)      # (as tq.protect.split_body)
_SIGNATURE = re.compile(r'"s":"[^"]*",')
_PLACEHOLDER = ""


@dataclass(frozen=True)
class Cut:
    """A value Redis cut: its first bytes (JSON text), its size as stored, its last bytes."""

    head: bytes
    size: int
    tail: bytes = b""


@dataclass(frozen=True)
class Outlined:
    """A long object or array Redis outlined: its items (values may be Cut or Outlined in
    turn; MORE ends a list cut short, MORE: True an object's), its size as stored."""

    items: Any
    size: int


MORE = "+"


@dataclass
class Previewed:
    """A task as a page shows it: its TaskInfo with long values cut, and what was cut."""

    info: TaskInfo
    truncated: dict[str, int] = field(default_factory=dict)   # value -> bytes as stored
    previews: dict[str, str | None] = field(default_factory=dict)   # payload, result: JSON

    def to_dict(self) -> dict[str, Any]:
        out = self.info.to_dict()
        for part, text in self.previews.items():
            out[f"{part}_preview"] = text
        out["truncated"] = self.truncated
        return out


def from_outline(node: Any) -> Any:
    """A value from peek.lua's outline: whole texts decoded, cuts as Cut, outlined objects
    and arrays as Outlined."""
    if isinstance(node, bytes):
        try:
            return json.loads(node)
        except ValueError:   # (not JSON: nothing tq wrote)
            return Cut(node, len(node))
    if not isinstance(node, list) or len(node) < 2:
        return None
    kind, size, items = node[0], int(node[1]), node[2:]
    if kind == b"~":
        return Cut(items[0] if items else b"", size, items[1] if len(items) > 1 else b"")
    more = bool(items) and items[-1] == b"+"
    if more:
        items = items[:-1]
    if kind == b"{":
        obj: dict[str, Any] = {k.decode("utf-8", "replace"): from_outline(v)
                               for k, v in zip(items[0::2], items[1::2], strict=False)}
        if more:
            obj[MORE] = True
        return Outlined(obj, size)
    values = [from_outline(v) for v in items[1::2]]
    return Outlined([*values, MORE] if more else values, size)


def render(value: Any) -> str:
    """An outlined value as a valid JSON text: cuts closed (close_json), a list cut short
    ends with an ellipsis item."""
    if isinstance(value, Cut):
        return close_json(utf8_head(value.head))
    if isinstance(value, Outlined):
        items = value.items
        if isinstance(items, dict):
            parts = [f"{json.dumps(k, ensure_ascii=False)}:{render(v)}"
                     for k, v in items.items() if k != MORE]
            if items.get(MORE):
                parts.append(f'"{ELLIPSIS}":"{ELLIPSIS}"')
            return "{" + ",".join(parts) + "}"
        return "[" + ",".join(f'"{ELLIPSIS}"' if v == MORE else render(v) for v in items) + "]"
    return json.dumps(value, ensure_ascii=False)


def _plain(value: Any) -> Any:
    """An outlined value with what was cut left out (None), for tq.info to read."""
    if isinstance(value, Outlined):
        value = value.items
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != MORE}
    if isinstance(value, list):
        return [_plain(v) for v in value if v != MORE]
    return None if isinstance(value, Cut) else value


def cut_text(value: Cut, ring: KeyRing | None) -> str:
    """A cut error message or traceback as text: its beginning, an ellipsis, and (a
    traceback) its last lines."""
    head = string_head(value.head)
    if head.startswith(ENCRYPTED):
        return f"(encrypted, {value.size:,} bytes: " + (
            "too long to open in a preview; the full value opens it)" if ring is not None
            else "no key here to open it)")
    tail = string_tail(value.tail) if value.tail else ""
    return f"{head}{ELLIPSIS}\n{tail}" if tail else f"{head}{ELLIPSIS}"


def preview_info(task_id: str, queue: str, p: Peek, ring: KeyRing | None = None
                 ) -> Previewed:
    """What a page shows of a task from its peek (None-free: peek_many leaves out tasks
    nobody knows)."""
    body, payload_cut = p.body, None
    if p.body_cut:
        assert p.body is not None
        body, payload_cut = _stand_in(p.body, p.body_size)
    error, error_cuts = _reduced(p.error, "message")
    result, result_cuts = _reduced(p.result, "r")
    snap = Snapshot(body, p.claim, p.failures, error, p.sched, p.dead, result, None, p.waiting)
    out = Previewed(task_info(task_id, queue, snap, ring=ring))
    info = out.info
    if payload_cut is not None:
        text, size = payload_cut
        info.payload = None
        out.truncated["payload"] = size
        sealed = text.lstrip().startswith(f'"{ENCRYPTED}')
        out.previews["payload"] = None if sealed else close_json(text)
        if sealed and ring is None:
            info.encrypted = True
    finished = body is None   # (its history is its result record's then)
    cuts = {**{k: v for k, v in error_cuts.items() if not (finished and isinstance(k, tuple))},
            **(result_cuts if finished else {})}
    for name, cut in cuts.items():
        if name in ("message", "e"):
            info.error = cut_text(cut, ring)
            out.truncated["error"] = cut.size
        elif name == "traceback":
            info.traceback = cut_text(cut, ring)
            out.truncated["traceback"] = cut.size
        elif isinstance(name, tuple) and name[1] < len(info.history):
            info.history[name[1]].update(message=cut_text(cut, ring), truncated=cut.size)
        elif name in ("r", "x"):
            info.result = None
            out.truncated["result"] = cut.size
            out.previews["result"] = None if name == "x" else render(cut)
            info.encrypted = info.encrypted or (name == "x" and ring is None)
    return out


def _stand_in(prefix: bytes, size: int) -> tuple[bytes, tuple[str, int]]:
    """For a cut body: a body with its header and an empty payload (decoded as the task it
    is), and (the payload's beginning, the payload's size)."""
    text = utf8_head(prefix)
    m = _HEADER.match(text)
    if m is None:   # not a body tq wrote: decoded (malformed) from what there is of it
        return prefix, (text, size)
    head = _SIGNATURE.sub("", m.group(1))   # (a cut payload's signature cannot be checked)
    payload_size = size - len(m.group().encode()) - 1   # (the body's closing brace)
    return ("{" + head + '"p":{}}').encode(), (text[m.end():], payload_size)


def _reduced(record: Any, main: str) -> tuple[bytes | None, dict[Any, Any]]:
    """A record (error or result) for tq.info to read: as stored when it came whole; else
    from its outline, each cut value replaced (text by '', a result by null), with the cuts
    by member name (a history item's message by ("h", index)). A record cut as a whole (its
    members could not be read) is read from its beginning, closed, its `main` value cut
    (a beginning that is no record: all of it as the `main` value)."""
    if record is None or isinstance(record, bytes):
        return record, {}
    doc = from_outline(record)
    cuts: dict[Any, Any] = {}
    if isinstance(doc, Cut):
        try:
            closed = json.loads(close_json(utf8_head(doc.head)))
        except ValueError:
            closed = None
        if not isinstance(closed, dict):   # not a record tq wrote: its beginning, as text
            return b"{}", {main: doc}
        for part in (main, "x"):
            if part in closed:
                cuts[part] = Cut(json.dumps(closed.pop(part)).encode(), doc.size)
        doc = Outlined(closed, doc.size)
    if not isinstance(doc, Outlined) or not isinstance(doc.items, dict):
        return None, {}
    items: dict[str, Any] = doc.items
    for name in ("message", "traceback", "e", "r", "x"):
        value = items.get(name)
        if isinstance(value, Cut) or (name == "r" and isinstance(value, Outlined)):
            cuts[name] = items.pop(name)
            if name not in ("r", "x"):
                items[name] = _PLACEHOLDER
    for key in ("history", "h"):
        listed = items.get(key)
        if isinstance(listed, Outlined):
            listed = listed.items
        if isinstance(listed, list):
            kept = []
            for i, item in enumerate(x.items if isinstance(x, Outlined) else x for x in listed
                                     if isinstance(x, (dict, Outlined))):
                if isinstance(item.get("message"), Cut):
                    cuts[("h", i)] = item["message"]
                    item["message"] = _PLACEHOLDER
                kept.append(item)
            items[key] = kept
    return json.dumps(_plain(items)).encode(), cuts
