"""The systemd units: the directives issue 4 asks for, and systemd's own verdict on them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from needs import unavailable

from tq.config import BY_NAME, load

UNITS = Path(__file__).resolve().parents[2] / "systemd"
PLAIN = UNITS / "tq-master.service"
TEMPLATE = UNITS / "tq-master@.service"
DASHBOARD = UNITS / "tq-dashboard.service"
TQ_MASTER = str(Path(sys.executable).with_name("tq-master"))


def parse(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values (a key may repeat, e.g. Environment=)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"{path.name}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: {line!r} is not KEY=VALUE"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|min)?", value)
    assert match, value
    return float(match[1]) * (60 if match[2] == "min" else 1)


@pytest.mark.parametrize("path", [PLAIN, TEMPLATE], ids=lambda p: p.name)
def test_required_directives(path: Path):
    unit = parse(path)
    service, one = unit["Service"], lambda key: unit["Service"][key][-1]
    assert one("Type") == "notify" and one("NotifyAccess") == "main"
    assert one("ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one("KillMode") == "mixed"
    drain = BY_NAME["drain_timeout"].default
    assert seconds(one("TimeoutStopSec")) >= drain + 10   # the drain fits, with a margin
    assert seconds(one("WatchdogSec")) >= 10
    assert one("Restart") == "on-failure"
    assert int(unit["Unit"]["StartLimitBurst"][-1]) > 0
    assert seconds(unit["Unit"]["StartLimitIntervalSec"][-1]) > 0
    assert one("User") == "tq" and one("Group") == "tq"
    exec_start = one("ExecStart").split()
    assert exec_start[0].endswith("/tq-master") and exec_start[1] == "start"
    assert one("OOMPolicy") == "continue"
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                       "ProtectHome": "yes", "PrivateDevices": "yes", "RestrictSUIDSGID": "yes",
                       "ProtectKernelTunables": "yes", "ProtectControlGroups": "yes"}.items():
        assert one(key) == value, key
    assert one("CapabilityBoundingSet") == ""
    # ProtectSystem=strict: the state folder (embedded Redis) must be the writable one.
    home = next(v.split("=", 1)[1] for v in service["Environment"] if v.startswith("TQ_HOME="))
    assert home == "/var/lib/" + one("StateDirectory")
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_template_is_one_master_per_queue_group():
    service = parse(TEMPLATE)["Service"]
    # the group's own config and environment after the shared secrets; the application is
    # the one of tq-master.service
    assert service["EnvironmentFile"] == ["-/etc/tq/tq.env", "-/etc/tq/%i.env"]
    assert "--config /etc/tq/%i.toml" in service["ExecStart"][-1]
    assert service["WorkingDirectory"] == parse(PLAIN)["Service"]["WorkingDirectory"]
    assert service["StateDirectory"] == ["tq/%i"]
    assert service["SyslogIdentifier"] == ["tq-master@%i"]


def test_every_directive_is_explained_or_obvious():
    """Each block of directives in [Service] follows a comment saying why."""
    text = PLAIN.read_text().split("[Service]", 1)[1].split("[Install]", 1)[0]
    for block in re.split(r"\n\s*\n", text.strip()):
        assert block.lstrip().startswith("#"), f"block without a comment:\n{block}"


def _installed_copy(tmp_path: Path) -> Path:
    """The units with ExecStart pointing at this venv's tq-master (verify checks it exists)."""
    for path in (PLAIN, TEMPLATE, DASHBOARD):
        (tmp_path / path.name).write_text(
            path.read_text().replace("/opt/tq/venv/bin/tq-master", TQ_MASTER)
            .replace("/opt/tq/venv/bin/tq ", str(Path(TQ_MASTER).with_name("tq")) + " "))
    return tmp_path


def _systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        unavailable("systemd-analyze missing (apt-get install systemd)")
    return path


@pytest.mark.parametrize("name", ["tq-master.service", "tq-master@bulk.service",
                                  "tq-dashboard.service"])
def test_systemd_analyze_verify(tmp_path: Path, name: str):
    folder = _installed_copy(tmp_path)
    done = subprocess.run([_systemd_analyze(), "verify", str(folder / name)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr   # no unknown keys, no bad values


@pytest.mark.parametrize("name", ["tq-master.service", "tq-master@bulk.service",
                                  "tq-dashboard.service"])
def test_systemd_security_exposure_is_low(tmp_path: Path, name: str):
    folder = _installed_copy(tmp_path)
    done = subprocess.run([_systemd_analyze(), "security", "--offline=yes",
                           str(folder / name)],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0 and "offline" in done.stderr:
        unavailable("systemd-analyze security --offline needs systemd >= 250 (Debian 12 on)")
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", done.stdout)
    assert match, done.stdout[-2000:] + done.stderr
    assert float(match[1]) <= 2.5   # "OK" on systemd's 0 (safe) to 10 (exposed) scale


def test_the_documented_queue_groups_are_valid_configs(tmp_path: Path):
    # docs/operations.md writes one config per group for tq-master@GROUP: each must load
    # with tq's own loader, and the groups must split the queues and the metrics ports
    docs = (UNITS.parent / "docs" / "operations.md").read_text()
    written = [(group, text) for group, text in re.findall(
        r"cat > /etc/tq/(\w+)\.toml <<'EOF'\n(.*?)\nEOF\n", docs, re.S)
        if group != "tq"]   # (tq.toml: the one-master-per-host unit's)
    assert len(written) >= 2, written
    configs = {}
    for group, text in written:
        path = tmp_path / f"{group}.toml"
        path.write_text(text)
        configs[group] = load(config_file=str(path), env={})
        assert configs[group].app and configs[group].queues, group
    served = [q for c in configs.values() for q in c.queues]
    assert len(served) == len(set(served)), "a queue in two groups"
    binds = [c.metrics_bind for c in configs.values()]
    assert None not in binds and len(set(binds)) == len(binds), binds
    assert len({tuple(c.app) for c in configs.values()}) == 1   # one application
