"""Excerpts of values cut at byte offsets (tq.excerpt, tq.previews): whole characters, and
JSON a page can parse, wherever the cut falls."""

from __future__ import annotations

import json

import pytest

from tq.excerpt import ELLIPSIS, close_json, string_head, string_tail, utf8_head, utf8_tail
from tq.previews import Cut, Outlined, from_outline, render

TEXT = "a é ✓ 𝄞 z\n\"quoted\" \\ back\\slash \t tab \x01 ctl \ud7ff end"
DOCS = [
    {"to": "a@example.com", "n": 12345, "f": -1.5e-3, "ok": True, "no": None,
     "list": [1, [2, [3, {"deep": "x"}]], {}, []], "text": TEXT, "": {"": ""}},
    [{"id": i, "name": "é" * i, "tags": ["a", "b"]} for i in range(6)],
    "just a string with \"quotes\" and é",
    [[[[[[[[]]]]]]]],
]


def cuts(raw: bytes):
    return (raw[:n] for n in range(len(raw) + 1))


def test_utf8_head_and_tail_never_split_a_character():
    raw = TEXT.encode()
    for n in range(len(raw) + 1):
        head, tail = utf8_head(raw[:n]), utf8_tail(raw[n:])
        assert "\ufffd" not in head + tail
        assert TEXT.startswith(head) and TEXT.endswith(tail)
        assert len(raw[:n]) - len(head.encode()) <= 3   # at most one character lost
        assert len(head.encode()) + len(tail.encode()) >= len(raw) - 4   # the one cut


@pytest.mark.parametrize("ascii_only", [True, False])
def test_the_head_of_a_cut_json_string_is_a_prefix_of_its_text(ascii_only):
    # escapes (\" \\ \n \u0001 \ud834\udd1e with ensure_ascii) cut anywhere, UTF-8 cut anywhere
    literal = json.dumps(TEXT, ensure_ascii=ascii_only).encode()
    for raw in cuts(literal[:-1]):   # (a cut literal never has its closing quote)
        head = string_head(raw)
        assert TEXT.startswith(head), (raw, head)
        assert "\ufffd" not in head
        assert not head or not "\ud800" <= head[-1] <= "\udbff"   # no half of a pair
        json.dumps(head)   # (a str any JSON encoder takes)
    assert string_head(literal) == TEXT   # whole


def test_the_tail_of_a_traceback_starts_at_a_line():
    tb = "Traceback (most recent call last):\n  File \"a.py\", line 1\n" + "x" * 50 + \
         "\nValueError: \\n is not a line \\\\n nor this\n"
    literal = json.dumps(tb).encode()
    for n in range(1, len(literal)):
        tail = string_tail(literal[n:])
        assert tb.endswith(tail)
        assert tail == "" or tb[len(tb) - len(tail) - 1] == "\n", tail
    assert string_tail(literal[-30:]) == ""   # no line starts in the last 30 bytes
    assert string_tail(literal[-60:]).startswith("ValueError: \\n is not")


@pytest.mark.parametrize("doc", DOCS, ids=["object", "array", "string", "nested"])
@pytest.mark.parametrize("ascii_only", [True, False])
def test_every_prefix_of_a_json_text_closes_into_valid_json(doc, ascii_only):
    text = json.dumps(doc, ensure_ascii=ascii_only, separators=(",", ":"))
    assert close_json(text) == text   # a whole text stays as it is
    for raw in cuts(text.encode()):
        closed = close_json(utf8_head(raw))
        value = json.loads(closed)   # what the page parses
        assert type(value) is type(doc) or (raw == b"" and isinstance(value, str))
        if isinstance(doc, dict) and isinstance(value, dict):
            assert set(value) <= set(doc)   # members cut are left out, never made up
            for k, v in value.items():
                if isinstance(v, str) and v != doc[k]:
                    assert v.endswith(ELLIPSIS) and doc[k].startswith(v[:-1])


def test_what_is_not_json_comes_back_as_a_json_string():
    # (or as the JSON it begins with)
    for text, want in (("{'single': 1}", {}), ('{"a":1}}', {"a": 1}), ("[1,,2]", [1]),
                       ("\x00", "\x00" + ELLIPSIS)):
        assert json.loads(close_json(text)) == want
    assert json.loads(close_json("<html>")) == "<html>" + ELLIPSIS
    deep = json.loads(close_json("[" * 5000))   # deeper than tq's payloads: kept to 100
    assert json.dumps(deep) == "[" * 100 + "]" * 100


def test_an_outline_renders_as_valid_json():
    # {"a": 1, "big": "xxx… (cut)", "rows": [1, 2, … (cut short)]}, as peek.lua outlines it
    node = [b"{", 5000, b"a", b"1", b"big", [b"~", 3000, b'"xx\\u00', b""],
            b"rows", [b"[", 1900, b"", b"1", b"", b"2", b"+"]]
    value = from_outline(node)
    assert isinstance(value, Outlined) and value.size == 5000
    assert value.items["big"] == Cut(b'"xx\\u00', 3000)
    assert json.loads(render(value)) == {"a": 1, "big": "xx" + ELLIPSIS,
                                         "rows": [1, 2, ELLIPSIS]}
    assert from_outline(b"not json") == Cut(b"not json", 8)
