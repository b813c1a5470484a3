"""Excerpts of cut texts that stay valid: UTF-8 cut at character boundaries, the beginning or
the end of a JSON string literal, and a prefix of a JSON text closed into a valid JSON text.

Redis cuts long values at byte offsets (tq.store.peek); these turn such pieces into what a
page can show: text without broken characters, and JSON a browser can parse.
"""

from __future__ import annotations

import json
import re

ELLIPSIS = "\u2026"
MAX_DEPTH = 100          # nesting a closed excerpt keeps (tq's payload limit: tq.payload)

# an escape cut short at the end of a string (\, \u, \u12), or the first half of a pair
_PARTIAL_ESCAPE = re.compile(
    r"(?<!\\)((?:\\\\)*)\\(?:u(?:[0-9a-fA-F]{0,3}|[dD][89abAB][0-9a-fA-F]{2}))?\Z")
_LINE_ESCAPE = re.compile(r"(\\+)n")
_TOKEN = re.compile(r"""
    (?P<s>"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*")
  | (?P<p>[{}\[\]:,])
  | (?P<n>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<l>true|false|null)
  | (?P<w>[ \t\n\r]+)
""", re.X)


def utf8_head(raw: bytes) -> str:
    """The first bytes of a UTF-8 text, without the character cut in two at their end."""
    end = len(raw)
    for back in range(1, min(4, end) + 1):   # the last lead byte, and whether it is whole
        b = raw[end - back]
        if b < 0x80:
            break
        if b >= 0xC0:
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            if back < need:
                end -= back
            break
    return raw[:end].decode("utf-8", "replace")


def utf8_tail(raw: bytes) -> str:
    """The last bytes of a UTF-8 text, without the character cut in two at their start."""
    start = 0
    while start < min(3, len(raw)) and 0x80 <= raw[start] < 0xC0:
        start += 1
    return raw[start:].decode("utf-8", "replace")


def string_head(raw: bytes) -> str:
    """The text of the first bytes of a JSON string literal (cut anywhere after its quote, or
    whole)."""
    text = utf8_head(raw)
    if not text.startswith('"'):
        return text
    try:   # a whole literal (a value cut elsewhere, around it)
        whole = json.loads(text)
        return whole if isinstance(whole, str) else text
    except ValueError:
        pass
    body = _whole_escapes(text[1:])
    try:
        out = json.loads('"' + body + '"')
    except ValueError:
        return body
    return out[:-1] if out and "\ud800" <= out[-1] <= "\udbff" else out   # half a pair


def string_tail(raw: bytes) -> str:
    """The text of the last bytes of a JSON string literal, from the start of a line (the end
    of a traceback): '' when no line starts in them."""
    text = utf8_tail(raw).removesuffix('"')
    for m in _LINE_ESCAPE.finditer(text):
        # "\n" after an even run of backslashes is a line break, unless the run may have
        # begun before these bytes (then its parity is unknown)
        if m.start() > 0 and len(m.group(1)) % 2 == 1:
            try:
                return json.loads('"' + text[m.end():] + '"')
            except ValueError:
                return ""
    return ""


def _whole_escapes(body: str) -> str:
    """The inside of a string literal cut short, without an escape cut in two at its end
    (nor the half of a surrogate pair left before it: "\\ud834\\ud" loses both)."""
    for _ in range(2):
        body, n = _PARTIAL_ESCAPE.subn(r"\1", body)
        if not n:
            break
    return body


def close_json(prefix: str) -> str:
    """A valid JSON text from a prefix of one: a string cut in the middle ends with an
    ellipsis, a key or a number cut is left out with its member, open objects and arrays are
    closed. Something that does not read as JSON comes back as a JSON string of it."""
    stack: list[str] = []
    expect = "value"   # value | first (value or ]) | key | keyfirst (key or }) | colon | comma
    good: tuple[int, str] | None = None   # (length kept, closers) of the last whole point
    pos, end = 0, len(prefix)

    def closers() -> str:
        return "".join("}" if c == "{" else "]" for c in reversed(stack))

    while pos < end:
        m = _TOKEN.match(prefix, pos)
        if m is None:
            break
        kind, tok = m.lastgroup, m.group()
        if kind == "w":
            pos = m.end()
            continue
        if kind in ("n", "l") and m.end() == end:
            break   # 12 may be the start of 123, tr of true
        if expect in ("value", "first"):
            if tok == "]" and expect == "first":
                stack.pop()
            elif tok in ("{", "["):
                stack.append(tok)
                if len(stack) > MAX_DEPTH:
                    break
                expect = "keyfirst" if tok == "{" else "first"
                pos = m.end()
                good = (pos, closers())
                continue
            elif kind not in ("s", "n", "l"):
                break
            expect = "comma"
        elif expect in ("key", "keyfirst"):
            if tok == "}" and expect == "keyfirst":
                stack.pop()
                expect = "comma"
            elif kind == "s":
                expect = "colon"
                pos = m.end()
                continue
            else:
                break
        elif expect == "colon":
            if tok != ":":
                break
            expect = "value"
            pos = m.end()
            continue
        else:   # comma
            if tok == "," and stack:
                expect = "key" if stack[-1] == "{" else "value"
                pos = m.end()
                continue
            if not stack or tok != ("}" if stack[-1] == "{" else "]"):
                break
            stack.pop()
        pos = m.end()   # a value ended here
        good = (pos, closers())
        if not stack:
            break
    rest = prefix[pos:]
    if rest.startswith('"') and expect in ("value", "first"):   # a string value cut short
        body = _whole_escapes(rest[1:])
        candidate = f'{prefix[:pos]}"{body}{ELLIPSIS}"{closers()}'
        if _valid(candidate):
            return candidate
    if good is not None:
        candidate = prefix[:good[0]] + good[1]
        if _valid(candidate):
            return candidate
    return json.dumps(prefix + ELLIPSIS, ensure_ascii=False)


def _valid(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True
