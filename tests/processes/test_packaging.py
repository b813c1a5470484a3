"""What the package ships and promises: the wheel's files and metadata, the units installer,
and handler types that survive @tq.handler for mypy."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from tq import ops
from tq.cli import cli

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"   # a copy: the build must not leave files in the checkout
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".tq",
        ".mypy_cache", ".ruff_cache", ".hypothesis"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                           "--no-build-isolation", "-w", str(tmp / "dist"), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (built,) = (tmp / "dist").glob("tq-*.whl")
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
