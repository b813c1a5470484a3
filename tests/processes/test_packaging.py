"""What the package ships and promises: the wheel's files and metadata, the units installer,
and handler types that survive @tq.handler for mypy."""

from __future__ import annotations

import email
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import tq
from tq import ops
from tq.cli import cli
from tq.supervisor.cli import main as master_cli

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel built from it, as `python -m build` makes a release."""
    tmp = tmp_path_factory.mktemp("dist")
    source = tmp / "src"   # a copy: the build must not leave files in the checkout
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".tq",
        ".mypy_cache", ".ruff_cache", ".hypothesis"))
    # no build isolation: the test environment's setuptools, without reaching for PyPI
    done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir",
                           str(tmp / "dist"), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp / "dist"


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    (built,) = dist.glob("tq-*.whl")
    return built


def test_the_wheel_ships_the_license_units_grafana_and_types(wheel: Path):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = email.message_from_bytes(z.read(next(n for n in names
                                                    if n.endswith(".dist-info/METADATA"))))
    for name in ops.UNITS:
        assert f"tq/systemd/{name}" in names
    assert f"tq/ops/{ops.GRAFANA}" in names
    assert "tq/py.typed" in names and any(n.endswith("/LICENSE") for n in names)
    assert {"tq/store/lua/claim.lua", "tq/dashboard/static/dashboard.js"} <= names
    assert meta["License"] == "MIT"
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Documentation", "Source", "Issues"} <= set(urls)
    assert not [n for n in names if n.startswith(("tests/", "bench/", "shared/", "systemd/"))]


def test_install_units(tmp_path: Path):
    runner = CliRunner()
    result = runner.invoke(cli, ["install-units", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for name in ops.UNITS:
        assert (tmp_path / name).read_bytes() == ops.path(name).read_bytes()
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644
    assert str(ops.path(ops.GRAFANA)) in result.output
    # a second run does not overwrite edited units, unless --force
    (tmp_path / "tq-master.service").write_text("# edited\n")
    again = runner.invoke(cli, ["install-units", "--dir", str(tmp_path)])
    assert again.exit_code == 1 and "already in" in again.output
    assert (tmp_path / "tq-master.service").read_text() == "# edited\n"
    assert runner.invoke(cli, ["install-units", "--dir", str(tmp_path), "--force"]).exit_code == 0
    assert (tmp_path / "tq-master.service").read_bytes() == ops.path(
        "tq-master.service").read_bytes()
    assert runner.invoke(cli, ["install-units", "--dir", str(tmp_path / "nope")]).exit_code == 1
    with pytest.raises(ValueError, match="no such file"):
        ops.path("../setup.cfg")


def test_mypy_keeps_a_handlers_signature(tmp_path: Path, wheel: Path):
    # tq as a user gets it: the wheel installed in an environment (an editable install's
    # import hook is invisible to mypy), found the PEP 561 way
    env = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True,
                   timeout=120)
    site = next((env / "lib").glob("python3*/site-packages"))
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "--target", str(site), str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    app = tmp_path / "typed_app.py"
    app.write_text('''
import tq

@tq.handler("email", max_retries=3)
def send_email(payload: dict[str, str], ctx: tq.Context) -> dict[str, bool]:
    return {"sent": True}

class Resize(tq.Handler):
    type = "resize"
    def handle(self, payload, ctx):
        return None

reveal_type(send_email)
sent: bool = send_email({"to": "a@example.com"}, None)["sent"]   # type: ignore[arg-type]
wrong: str = send_email({"to": "a@example.com"}, None)            # type: ignore[arg-type]
''')
    done = subprocess.run([str(BIN / "mypy"), "--no-incremental", "--show-error-codes",
                           "--python-version", "3.11", "--python-executable",
                           str(env / "bin" / "python"), str(app)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    out = done.stdout
    assert ('Revealed type is "def (payload: dict[str, str], ctx: tq.handlers.Context) -> '
            'dict[str, bool]"') in out, out
    # the handler's return type is known: assigning it to a str is an error
    assert 'typed_app.py:15: error: Incompatible types in assignment' in out, out
    assert out.count("error:") == 1, out


@pytest.mark.timeout(900)
def test_the_release_installs_and_runs_from_a_fresh_venv(dist: Path):
    # CI's release step: the sdist holds what a build needs, the wheel (with its dependencies)
    # in a new venv imports, runs a master on its own embedded Redis, and drains on SIGTERM
    done = subprocess.run([sys.executable, str(ROOT / ".ci" / "smoke_wheel.py"), str(dist)],
                          capture_output=True, text=True, timeout=840)
    assert done.returncode == 0, done.stdout + done.stderr
    for step in ("holds the", "20 tasks ran", "tq status sees", "SIGTERM drained",
                 f"tq {tq.__version__} passed"):
        assert step in done.stdout, done.stdout


def test_the_one_version_is_what_the_clis_and_metadata_say():
    assert re.fullmatch(r"\d+\.\d+\.\d+", tq.__version__)
    runner = CliRunner()
    assert runner.invoke(cli, ["--version"]).output == f"tq, version {tq.__version__}\n"
    assert runner.invoke(master_cli, ["--version"]).output == \
        f"tq-master, version {tq.__version__}\n"
    assert f"## [{tq.__version__}] - " in (ROOT / "CHANGELOG.md").read_text()
