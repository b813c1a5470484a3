"""Every code block of README.md and docs/*.md runs, as a user would paste it.

A file's blocks run in order in a fresh folder, against the test's private Redis
(TQ_REDIS_URL), with this checkout's `tq` and `tq-master` first on PATH:

- ```sh: in one bash session per file (variables carry from block to block, like a terminal;
  a failing command fails the test). A line that starts a server (`tq-master start`,
  `tq dashboard`, `python -m tq.dashboard`) runs beside it, as in a second terminal: a master
  must log that its children are ready and runs until the file ends (then SIGTERM: it must
  drain and exit 0); a dashboard must answer on its --bind address, then gets Ctrl-C.
- ```python: in one Python process per file, one namespace, in order.
- ```redis: each line is a Redis command, sent to the private Redis.
- ```yaml: Kubernetes manifests and the like; always a skip naming the test that checks them.
- ```text: output, diagrams, synopses; not run. Output shown next to a command is checked:
  `<!-- doctest: output-of-previous -->` must be exactly what the sh block before printed,
  `<!-- doctest: output-of CMD -->` must have the table headers CMD prints.

A comment on the line before a block says more: `<!-- doctest: file PATH -->` (the block is
that file; every file's `file` blocks are written in every folder first),
`<!-- doctest: embedded -->` (no TQ_REDIS_URL: the embedded Redis of the folder),
`<!-- doctest: skip: WHY -->` (it needs what a test run cannot have: root, systemd, other
hosts; WHY names the test that covers it). `<!-- doctest-setup: master MODULE -->` anywhere
in a file starts a master for its blocks first.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from master_proc import eventually

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent
LANGS = {"python", "sh", "redis", "text", "yaml"}
FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```\s*$", re.S | re.M)
DIRECTIVE = re.compile(r"<!--\s*doctest:\s*(.*?)\s*-->\s*$")
SETUP = re.compile(r"<!--\s*doctest-setup:\s*master\s+(\S+)\s*-->")
SERVER = re.compile(r"^(?:\w+=\S*\s+)*(tq-master\s+start|tq\s+dashboard|tq\s+--\S+.*\s+dashboard"
                    r"|python3?\s+-m\s+tq\.dashboard)\b")
MAX_SKIPS = 12   # blocks that need root, systemd or other hosts; each says which test covers it


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    code: str
    directive: str = ""

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    text = path.read_text()
    out = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        d = DIRECTIVE.search(before)
        out.append(Block(path, line, m.group(1), m.group(2), d.group(1) if d else ""))
    return out


ALL = {p: blocks_of(p) for p in DOCS}


def test_every_block_says_what_it_is_and_skips_say_why():
    for blocks in ALL.values():
        for b in blocks:
            assert b.lang in LANGS, f"{b.where}: a code block needs a language ({LANGS})"
            # YAML is configuration for systems a test run has not (Kubernetes): never run
            # here, so it says which test checks it instead
            assert b.lang != "yaml" or b.directive.startswith("skip"), \
                f"{b.where}: a yaml block is a skip naming the test that checks it"
            if b.directive.startswith("skip"):
                assert len(b.directive) > 30 and "test" in b.directive, \
                    f"{b.where}: a skip says why and which test covers it"
    skips = [b.where for bs in ALL.values() for b in bs if b.directive.startswith("skip")]
    assert len(skips) <= MAX_SKIPS, skips


# -- running a file ---------------------------------------------------------------------------
@dataclass
class Session:
    """One doc file's run: its folder, environment, shell, Python and servers."""

    folder: Path
    env: dict[str, str]
    logs: list[str] = field(default_factory=list)
    masters: list[tuple[subprocess.Popen, Path]] = field(default_factory=list)
    shell: subprocess.Popen | None = None
    python: subprocess.Popen | None = None
    n: int = 0
    last_out: str = ""

    def _file(self, suffix: str, code: str) -> Path:
        self.n += 1
        path = self.folder / ".doctest" / f"block{self.n:02d}.{suffix}"
        path.parent.mkdir(exist_ok=True)
        path.write_text(code)
        return path

    # sh ------------------------------------------------------------------------------------
    def sh(self, block: Block, env: dict[str, str] | None = None) -> str:
        lines = block.code.splitlines()
        chunk: list[str] = []
        out = []
        for line in lines:
            if SERVER.match(line.strip()):
                if chunk:
                    out.append(self._source(block, "\n".join(chunk), env))
                    chunk = []
                self.server(block, line.strip(), env)
            else:
                chunk.append(line)
        if chunk:
            out.append(self._source(block, "\n".join(chunk), env))
        self.last_out = "".join(out)
        return self.last_out

    def _source(self, block: Block, code: str, env: dict[str, str] | None) -> str:
        if env is not None:   # this block in a shell of its own (another environment)
            done = subprocess.run(["bash", "-e", "-c", code], cwd=self.folder, env=env,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, f"{block.where}: exit {done.returncode}\n" \
                f"{done.stdout}\n{done.stderr}"
            return done.stdout
        if self.shell is None:
            self.shell = subprocess.Popen(["bash", "--noprofile", "--norc"], cwd=self.folder,
                                          env=self.env, stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, text=True)
        script = self._file("sh", code)
        out, err = script.with_suffix(".out"), script.with_suffix(".err")
        self.shell.stdin.write(f"set -e\nsource {shlex.quote(str(script))} "
                               f">{shlex.quote(str(out))} 2>{shlex.quote(str(err))}\n"
                               f"set +e\necho __done__\n")
        self.shell.stdin.flush()
        ended = self.shell.stdout.readline().strip()
        if ended != "__done__":
            self.shell.wait(10)
            pytest.fail(f"{block.where}: a command failed (exit {self.shell.returncode}):\n"
                        f"{code}\n--- stdout\n{_read(out)}\n--- stderr\n{_read(err)}")
        return out.read_text()

    def server(self, block: Block, line: str, env: dict[str, str] | None) -> None:
        log = self._file("log", "")
        handle = open(log, "wb")   # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(["bash", "-c", f"exec env {line}"], cwd=self.folder,
                                env=env or self.env, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)
        handle.close()
        if "dashboard" in line:
            bind = re.search(r"--bind\s+(\S+)", line)
            host, _, port = (bind.group(1) if bind else "127.0.0.1:8080").rpartition(":")
            url = f"http://{host}:{port}/static/dashboard.css"
            eventually(lambda: _answers(url, proc, log), 20, what=f"{block.where}: {line}")
            proc.send_signal(signal.SIGINT)
            assert proc.wait(10) == 0, f"{block.where}: {line}\n{_read(log)}"
            return
        eventually(lambda: "children are ready" in _read(log) or _died(proc, log), 60,
                   what=f"{block.where}: {line}")
        self.masters.append((proc, log))

    # python --------------------------------------------------------------------------------
    def py(self, block: Block) -> None:
        if self.python is None:
            driver = self._file("py", DRIVER)
            self.python = subprocess.Popen([sys.executable, str(driver)], cwd=self.folder,
                                           env=self.env, stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, text=True)
        code = self._file("py", block.code)
        self.python.stdin.write(f"{code}\n")
        self.python.stdin.flush()
        reply = json.loads(self.python.stdout.readline() or '{"error": "python died"}')
        assert reply.get("ok"), f"{block.where}:\n{block.code}\n{reply.get('error')}"

    def close(self) -> None:
        for p in (self.shell, self.python):
            if p is not None and p.poll() is None:
                p.stdin.close()
                p.wait(30)
        for proc, log in self.masters:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
            assert code == 0, f"a master of the docs exited {code}:\n{_read(log)[-3000:]}"


DRIVER = textwrap.dedent('''
    import contextlib, io, json, sys, traceback
    sys.path.insert(0, ".")
    namespace = {"__name__": "__main__"}
    for path in sys.stdin:
        path = path.strip()
        try:
            with open(path) as f:
                exec(compile(f.read(), path, "exec"), namespace)
            reply = {"ok": True}
        except BaseException:
            reply = {"ok": False, "error": traceback.format_exc()}
        print(json.dumps(reply), flush=True)
''')


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _died(proc: subprocess.Popen, log: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"exited {proc.returncode}:\n{_read(log)[-3000:]}")
    return False


def _answers(url: str, proc: subprocess.Popen, log: Path) -> bool:
    _died(proc, log)
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return reply.status == 200
    except (urllib.error.URLError, ConnectionError):
        return False


def _headers(text: str) -> list[str]:
    """Table header lines of a command's output: upper-case words only."""
    return [" ".join(line.split()) for line in text.splitlines()
            if re.fullmatch(r"[A-Z][A-Z ]+", line.strip()) and "  " in line]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("doc", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_the_blocks_of(doc: Path, tmp_path: Path, redis_url: str, rconn):
    folder = tmp_path / "work"
    folder.mkdir()
    for blocks in ALL.values():   # every `file` block, wherever it is documented
        for b in blocks:
            if b.directive.startswith("file "):
                target = folder / b.directive.split(None, 1)[1]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(b.code)
                if target.parent != folder:
                    (target.parent / "__init__.py").touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQ_")}
    env.update(PATH=f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}", TQ_REDIS_URL=redis_url,
               TQ_HOME=str(folder / ".tq-home"), HOME=str(tmp_path / "home"),
               PYTHONUNBUFFERED="1", PYTHONPATH=str(folder))
    (tmp_path / "home").mkdir()
    session = Session(folder, env)
    embedded_env = {k: v for k, v in env.items() if k != "TQ_REDIS_URL"}
    try:
        for module in SETUP.findall(doc.read_text()):
            session.server(Block(doc, 0, "sh", ""), f"tq-master start -c 2 -A {module}", None)
        for b in ALL[doc]:
            if b.directive.startswith(("skip", "file")) or (b.lang == "text" and not \
                    b.directive.startswith("output-of")):
                continue
            if b.lang == "sh":
                session.sh(b, embedded_env if b.directive == "embedded" else None)
            elif b.lang == "python":
                session.py(b)
            elif b.lang == "redis":
                for line in b.code.splitlines():
                    if line.strip() and not line.lstrip().startswith("#"):
                        rconn.execute_command(*shlex.split(line))
            elif b.directive == "output-of-previous":
                assert session.last_out.strip() == b.code.strip(), \
                    f"{b.where}: the block is not what the command prints:\n{session.last_out}"
            elif b.directive.startswith("output-of "):
                command = b.directive.split(None, 1)[1]
                printed = session.sh(Block(doc, b.line, "sh", command))
                missing = [h for h in _headers(b.code) if h not in _headers(printed)]
                assert not missing, f"{b.where}: `{command}` no longer prints {missing}:\n" \
                    f"{printed}"
    finally:
        session.close()
        if (folder / ".tq-home" / "redis.sock").exists():
            subprocess.run([str(BIN / "tq"), "-q", "embedded", "stop"], env=embedded_env,
                           cwd=folder, timeout=60, check=False)
