"""Every class and exception the docs name as tq.X is importable from the top-level `tq`, and
its modules do not shadow its functions (`import tq.periodic_tasks`, `tq.periodic(...)`)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import tq

ROOT = Path(__file__).resolve().parents[2]
NAMED = re.compile(r"\btq\.([A-Z]\w*)")


def test_every_class_the_docs_name_is_in_tq():
    named = {m for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
             for m in NAMED.findall(doc.read_text())}
    assert {"NoPermission", "QueueBroken", "TaskCancelled"} <= named
    assert sorted(n for n in named if not hasattr(tq, n)) == []
    assert all(n in tq.__all__ for n in named)


def test_periodic_is_the_function_and_its_module_has_its_own_name():
    assert callable(tq.periodic) and tq.periodic.__module__ == "tq.periodic_tasks"
    assert importlib.import_module("tq.periodic_tasks").periodic is tq.periodic
