"""The architecture stays as designed, read from the source tree (ast; tq is never imported):
no import cycles among tq's modules, a docstring opening every module, and Redis reached only
through tq.store.

`python tests/unit/test_layout.py` prints the same facts as a table (files over 400 lines,
import cycles, modules touching Redis outside tq.store, the largest class), for a before and
after of a change to the layout.
"""

from __future__ import annotations

import ast
import itertools
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The source folders and the package each one is (setup.cfg's package_dir); a subfolder is a
# subpackage of its folder's (shared/store -> tq.store, shared/cli -> tq.cli).
FOLDERS = {"shared": "tq", "supervisor": "tq.supervisor", "worker": "tq.worker",
           "dashboard": "tq.dashboard", "systemd": "tq.systemd"}
STORE = "tq.store"   # the one layer that may talk to Redis (docs: DESIGN.md, STYLE.md)
MAX_LINES = 400      # STYLE.md: a module that passes ~400 lines is usually two modules

# Modules outside tq.store that may import redis-py, name SCRIPTS or reach for a `.conn`: none
# (issue 24 moved every such use into tq.store).
ALLOWED: set[str] = set()
# Import cycles found when this test was written, to be broken in the package: none left.
KNOWN_CYCLES: list[list[str]] = []


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    lines: int
    is_package: bool
    imports: dict[str, str] = field(default_factory=dict)   # tq module -> how (first seen)


def _modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for folder, package in FOLDERS.items():
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            name = ".".join([package, *parts])
            text = path.read_text("utf-8")
            found[name] = Module(name, path, ast.parse(text, str(path)),
                                 len(text.splitlines()), is_package)
    for module in found.values():
        module.imports = _tq_imports(module, found)
    return found


def _scopes(tree: ast.Module) -> Iterator[tuple[ast.AST, str]]:
    """Every node with where it sits: "module", "TYPE_CHECKING" or "function"."""
    def walk(node: ast.AST, where: str) -> Iterator[tuple[ast.AST, str]]:
        for child in ast.iter_child_nodes(node):
            inner = where
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                inner = "function"
            elif isinstance(child, ast.If) and where == "module" and \
                    "TYPE_CHECKING" in ast.unparse(child.test):
                inner = "TYPE_CHECKING"
            yield child, inner
            yield from walk(child, inner)
    yield from walk(tree, "module")


def _tq_imports(module: Module, known: dict[str, Module]) -> dict[str, str]:
    """The tq modules `module` imports, at any level (module, TYPE_CHECKING, function)."""
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    out: dict[str, str] = {}

    def add(target: str, where: str) -> None:
        while target and target not in known:   # tq.x.attr -> tq.x
            target = target.rpartition(".")[0]
        if target and target != module.name:
            out.setdefault(target, where)

    for node, where in _scopes(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "tq" or alias.name.startswith("tq."):
                    add(alias.name, where)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source != "tq" and not source.startswith("tq."):
                continue
            for alias in node.names:
                full = f"{source}.{alias.name}"
                add(full if full in known else source, where)
    return out


def import_cycles(modules: dict[str, Module]) -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(modules) + 100))

    def visit(name: str) -> None:
        nonlocal counter
        index[name] = low[name] = counter
        counter += 1
        stack.append(name)
        on_stack.add(name)
        for dep in modules[name].imports:
            if dep not in index:
                visit(dep)
                low[name] = min(low[name], low[dep])
            elif dep in on_stack:
                low[name] = min(low[name], index[dep])
        if low[name] == index[name]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == name:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for name in sorted(modules):
        if name not in index:
            visit(name)
    return sorted(groups)


def cycle_path(modules: dict[str, Module], group: list[str]) -> str:
    """One import loop inside a cycle group, each edge with where its import sits."""
    members = set(group)
    start = group[0]
    path, seen = [start], {start}
    while True:
        here = path[-1]
        deps = [d for d in sorted(modules[here].imports) if d in members]
        nxt = next((d for d in deps if d == start), None) or next(
            (d for d in deps if d not in seen), deps[0])
        path.append(nxt)
        if nxt in seen:
            loop = path[path.index(nxt):]
            edges = [f"{a} ({modules[a].imports[b]})" for a, b in itertools.pairwise(loop)]
            return " -> ".join(edges) + f" -> {loop[-1]}"
        seen.add(nxt)


def _redis_use(node: ast.AST) -> str | None:
    """Which way of reaching Redis past tq.store `node` is, if any."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0:
        names = [node.module or ""]
    else:
        names = []
    if any(n == "redis" or n.startswith("redis.") for n in names):
        return "imports redis"
    if isinstance(node, ast.ImportFrom) and any(a.name == "SCRIPTS" for a in node.names):
        return "SCRIPTS"
    if (isinstance(node, ast.Name) and node.id == "SCRIPTS") or (
            isinstance(node, ast.Attribute) and node.attr == "SCRIPTS"):
        return "SCRIPTS"
    if isinstance(node, ast.Attribute) and node.attr == "conn":
        return ".conn"
    return None


def redis_uses(module: Module) -> list[str]:
    """What in `module` reaches Redis without tq.store: redis-py imported, SCRIPTS named, a
    `.conn` attribute used (each with its first line)."""
    uses: dict[str, int] = {}
    for node, _ in _scopes(module.tree):
        what = _redis_use(node)
        if what and what not in uses:
            uses[what] = getattr(node, "lineno", 0)
    return [f"{what} (line {line})" for what, line in uses.items()]


def outside_store(modules: dict[str, Module]) -> dict[str, list[str]]:
    return {name: uses for name, m in sorted(modules.items())
            if not (name == STORE or name.startswith(STORE + "."))
            and (uses := redis_uses(m))}


def largest_class(modules: dict[str, Module]) -> tuple[str, int]:
    best = ("", 0)
    for name, m in modules.items():
        for node in ast.walk(m.tree):
            if isinstance(node, ast.ClassDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > best[1]:
                    best = (f"{name}.{node.name}", size)
    return best


MODULES = _modules()


# -- the tests --------------------------------------------------------------------------------
def test_the_source_tree_is_read_whole():
    # a guard for the checks below: they mean nothing if the walk found no modules or no imports
    assert {"tq", "tq.client", "tq.store.broker", "tq.supervisor.master", "tq.worker.child",
            "tq.dashboard.app", "tq.cli", "tq.systemd"} <= set(MODULES)
    assert "tq.store.broker" in MODULES["tq.client"].imports
    assert "tq.errors" in MODULES["tq.store.connection"].imports


def test_no_import_cycles_among_tq_modules():
    cycles = [g for g in import_cycles(MODULES) if g not in KNOWN_CYCLES]
    assert not cycles, "import cycles:\n" + "\n".join(cycle_path(MODULES, g) for g in cycles)


def test_the_cycle_check_sees_a_cycle_through_any_kind_of_import():
    # the check itself, on four small modules: a loop through a module-level, a function-level
    # and a TYPE_CHECKING import is one cycle; a module that only imports into it is not in it
    sources = {"tq.a": "from . import b\n",
               "tq.b": "def f():\n    from tq.c import x\n",
               "tq.c": "import typing\nif typing.TYPE_CHECKING:\n    from .a import A\n",
               "tq.d": "import tq.a\n"}
    modules = {name: Module(name, Path(f"{name}.py"), ast.parse(src), 1, False)
               for name, src in sources.items()}
    for m in modules.values():
        m.imports = _tq_imports(m, modules)
    assert import_cycles(modules) == [["tq.a", "tq.b", "tq.c"]]
    assert cycle_path(modules, ["tq.a", "tq.b", "tq.c"]) == \
        "tq.a (module) -> tq.b (function) -> tq.c (TYPE_CHECKING) -> tq.a"


def test_every_module_opens_with_a_docstring():
    missing = [name for name, m in sorted(MODULES.items())
               if not (ast.get_docstring(m.tree) or "").strip()]
    assert not missing, missing


def test_only_tq_store_reaches_redis():
    offenders = outside_store(MODULES)
    new = {name: uses for name, uses in offenders.items() if name not in ALLOWED}
    assert not new, ("modules outside tq.store that reach Redis (redis-py, SCRIPTS, .conn); "
                     f"go through tq.store instead: {new}")


def test_the_offender_check_sees_an_offence():
    # the check itself, on three small modules: each kind of use is seen, a clean one is not
    def uses(source: str) -> list[str]:
        return redis_uses(Module("tq.x", Path("x.py"), ast.parse(source), 1, False))
    assert uses("import redis.exceptions\n") == ["imports redis (line 1)"]
    assert uses("def f(b):\n    return b.conn.get('k')\n") == [".conn (line 2)"]
    assert uses("from tq.store.scripts import SCRIPTS\n") == ["SCRIPTS (line 1)"]
    assert uses("from tq.store.broker import Broker\n") == []


# -- the table ----------------------------------------------------------------------------------
def report(modules: dict[str, Module]) -> str:
    rows: list[str] = []
    big = sorted(((m.lines, m.path.relative_to(ROOT)) for m in modules.values()
                  if m.lines > MAX_LINES), reverse=True)
    rows.append(f"files over {MAX_LINES} lines: {len(big)}")
    rows += [f"  {lines:>5}  {path}" for lines, path in big]
    cycles = import_cycles(modules)
    rows.append(f"import cycles: {len(cycles)}")
    rows += [f"  {cycle_path(modules, g)}{' (known)' if g in KNOWN_CYCLES else ''}"
             for g in cycles]
    touching = outside_store(modules)
    rows.append(f"modules touching Redis outside {STORE}: {len(touching)}")
    rows += [f"  {name}: {', '.join(uses)}" for name, uses in touching.items()]
    stale = sorted(ALLOWED - set(touching))
    if stale:
        rows.append(f"  (no longer touching it, to drop from ALLOWED: {', '.join(stale)})")
    name, size = largest_class(modules)
    rows.append(f"largest class: {name} ({size} lines)")
    return "\n".join(rows)


if __name__ == "__main__":
    print(report(MODULES))
