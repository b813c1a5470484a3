"""The Lua scripts' sources as Redis gets them: each carries exactly the _lib.lua helpers it
names."""

from __future__ import annotations


def test_each_script_carries_the_lib_helpers_it_names_and_no_other():
    # scripts.py prepends only the part of _lib.lua a script uses (Redis runs the whole text
    # on every call); a helper it names but lacks would fail only in the path that calls it
    import re
    from importlib import resources

    from tq.store.scripts import NAMES, _source, used_lib
    folder = resources.files("tq.store").joinpath("lua")
    lib = folder.joinpath("_lib.lua").read_text("utf-8")
    helpers = set(re.findall(r"^local function (\w+)", lib, re.M))
    assert {"qkeys", "promote", "node_done", "int"} <= helpers
    for name in NAMES:
        text = folder.joinpath(f"{name}.lua").read_text("utf-8")
        src = _source(name)
        code = re.sub(r"^--\[\[(?s:.*?)\]\]|^[ \t]*--.*$", "", src, flags=re.M)
        code = re.sub(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"", "", code)   # strings
        defined = set(re.findall(r"^local function (\w+)", src, re.M))
        named = set(re.findall(r"(?<![.\w])[A-Za-z_]\w*", code)) & helpers   # (not q.wake)
        own = set(re.findall(r"^local function (\w+)", text, re.M))
        assert named - own <= defined, (name, sorted(named - own - defined))
    # the one-task enqueue carries no workflow or flow-control helpers
    assert "local function node_done(" not in _source("enqueue")
    assert "local function refill(" not in _source("enqueue")
    # nor the index helpers' wrappers: it calls them through indexes() in its rare branches
    assert "local function wake(" not in _source("enqueue")
    # a helper named only in a comment is left out; one named by a helper it uses is kept
    trimmed = used_lib(lib, "-- promote(...) is not called here\nlocal x = int(1)\n")
    assert "local function int(" in trimmed and "local function promote(" not in trimmed
    trimmed = used_lib(lib, "local x = {'promote', 'soon'}\n")   # names in strings: no use
    assert "local function promote(" not in trimmed and "local function soon(" not in trimmed
    trimmed = used_lib(lib, "local x = IDX.promote\n")   # a field of that name: no use either
    assert "local function promote(" not in trimmed
    trimmed = used_lib(lib, "promote(q, 'q', 0, 1)\n")
    assert "local function promote(" in trimmed and "local function bury_malformed(" in trimmed
