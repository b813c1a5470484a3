#!/usr/bin/env python3
"""The release smoke test: tq's built wheel and sdist, installed the way a user gets them.

    python3 .ci/smoke_wheel.py DIST_DIR      (DIST_DIR holds what `python -m build` made)

Checks that the sdist carries everything a build needs and that both name this checkout's
version, installs the wheel with its dependencies into a fresh virtual environment, and from
there: imports tq, starts `tq-master` with a tiny handler module (examples/ is not in the
wheel), runs a few tasks, reads `tq status`, and drains on SIGTERM while a task runs. Redis is
the embedded one, on a unix socket in a temporary folder: never the machine's Redis. Only the
standard library, so any python3 runs it; exit 0 when every check passed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# what a build from the sdist needs beyond the Python modules (the package data included)
SDIST_GLOBS = ("setup.cfg", "pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md",
               "shared/py.typed", "shared/store/lua/*.lua", "shared/ops/*.json",
               "systemd/*.service", "dashboard/static/*", "dashboard/templates/*",
               "shared/**/*.py", "supervisor/*.py", "worker/*.py", "dashboard/*.py",
               "systemd/*.py")

APP = '''"""Handlers for the wheel's smoke test."""
import time

import tq


@tq.handler("smoke.add")
def add(payload, ctx):
    return payload["a"] + payload["b"]


@tq.handler("smoke.slow")
def slow(payload, ctx):
    time.sleep(payload["seconds"])
    return "slept"
'''

ADD = '''import json, tq
client = tq.Client()
ids = client.enqueue_many([{"type": "smoke.add", "payload": {"a": i, "b": 1}} for i in range(20)])
print(json.dumps([client.wait(i, timeout=60) for i in ids]))
'''

SLOW = '''import time, tq
client = tq.Client()
tid = client.enqueue("smoke.slow", {"seconds": 2})
deadline = time.monotonic() + 30
while client.get(tid).state != "running":
    assert time.monotonic() < deadline, "the slow task never started"
    time.sleep(0.02)
print(tid)
'''

STATE = '''import sys, tq
print(tq.Client().get(sys.argv[1]).state)
'''


def eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise SystemExit(f"smoke: timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return value


def version() -> str:
    """The checkout's version, read from the one place it is written."""
    found = re.search(r'^__version__ = "([^"]+)"', (ROOT / "shared" / "__init__.py").read_text(),
                      re.M)
    if found is None:
        raise SystemExit("smoke: no __version__ in shared/__init__.py")
    return found.group(1)


def check_dist(dist: Path, want: str) -> Path:
    """The sdist has what a build needs; both files name this version. Returns the wheel."""
    wheels, sdists = list(dist.glob("tq-*.whl")), list(dist.glob("tq-*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        raise SystemExit(f"smoke: want one wheel and one sdist in {dist}, found "
                         f"{[p.name for p in [*wheels, *sdists]]}")
    (wheel,), (sdist,) = wheels, sdists
    if not wheel.name.startswith(f"tq-{want}-") or sdist.name != f"tq-{want}.tar.gz":
        raise SystemExit(f"smoke: {wheel.name}, {sdist.name}: not version {want}")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    needed = {str(p.relative_to(ROOT)) for g in SDIST_GLOBS for p in ROOT.glob(g)
              if p.is_file() and "__pycache__" not in p.parts}
    missing = sorted(needed - names)
    if missing:
        raise SystemExit(f"smoke: the sdist lacks {missing}")
    print(f"smoke: {sdist.name} holds the {len(needed)} files a build needs")
    return wheel


def run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> str:
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"smoke: {' '.join(cmd)} exited {done.returncode}:\n"
                         f"{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return done.stdout


def smoke(wheel: Path, want: str, tmp: Path) -> None:
    venv, app, home = tmp / "venv", tmp / "app", tmp / "home"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    bin_ = venv / "bin"
    base = {k: v for k, v in os.environ.items()   # no Redis URL, config or socket of ours
            if not k.startswith(("TQ_", "PYTHON", "VIRTUAL_ENV")) and k != "NOTIFY_SOCKET"}
    run([str(bin_ / "pip"), "install", "-q", str(wheel)], base, tmp, timeout=600)
    print(f"smoke: installed {wheel.name} into a fresh venv")
    app.mkdir()
    (app / "smokeapp.py").write_text(APP)
    env = {**base, "TQ_HOME": str(home), "PYTHONPATH": str(app), "PYTHONUNBUFFERED": "1"}
    py = str(bin_ / "python")

    got = run([py, "-c", "import tq, tq.dashboard, tq.supervisor, tq.worker, tq.ops; "
               "print(tq.__version__, tq.__file__)"], env, app).split()
    if got[0] != want or not got[1].startswith(str(venv)):
        raise SystemExit(f"smoke: imported tq {got} (want {want} from {venv})")
    for tool in ("tq", "tq-master"):
        line = run([str(bin_ / tool), "--version"], env, app)
        if want not in line:
            raise SystemExit(f"smoke: {tool} --version says {line!r}")

    log_path = tmp / "master.log"
    with open(log_path, "wb") as log:
        master = subprocess.Popen([str(bin_ / "tq-master"), "start", "-A", "smokeapp", "-c", "2"],
                                  env=env, cwd=app, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        def ready() -> bool:
            if master.poll() is not None:
                raise SystemExit(f"smoke: tq-master exited {master.returncode}:\n"
                                 f"{log_path.read_text()[-3000:]}")
            return "children are ready" in log_path.read_text()
        eventually(ready, 90, "tq-master's children")
        results = json.loads(run([py, "-c", ADD], env, app))
        if results != [i + 1 for i in range(20)]:
            raise SystemExit(f"smoke: wrong results {results}")
        print("smoke: 20 tasks ran")
        status = json.loads(run([str(bin_ / "tq"), "status", "--json"], env, app))
        masters = status.get("masters") or []
        if "smoke.add" not in status["queues"] or len(masters) != 1:
            raise SystemExit(f"smoke: tq status shows {status}")
        print("smoke: tq status sees the queues and the master")

        slow = run([py, "-c", SLOW], env, app).strip()
        master.send_signal(signal.SIGTERM)
        code = master.wait(timeout=60)
        state = run([py, "-c", STATE, slow], env, app).strip()
        text = log_path.read_text()
        if code != 0 or state != "succeeded" or "draining" not in text:
            raise SystemExit(f"smoke: after SIGTERM: exit {code}, the running task "
                             f"{state}:\n{text[-3000:]}")
        print("smoke: SIGTERM drained: the running task finished, exit 0")
    finally:
        if master.poll() is None:
            os.killpg(master.pid, signal.SIGKILL)
            master.wait()
        subprocess.run([str(bin_ / "tq"), "-q", "embedded", "stop"], env=env, cwd=app,
                       capture_output=True, timeout=60)


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    want = version()
    wheel = check_dist(Path(sys.argv[1]).resolve(), want)
    with tempfile.TemporaryDirectory(prefix="tq-smoke-") as tmp:
        smoke(wheel, want, Path(tmp))
    print(f"smoke: tq {want} passed")


if __name__ == "__main__":
    main()
