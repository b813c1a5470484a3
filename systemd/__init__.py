"""tq.systemd: the systemd units shipped with the package (`tq install-units` copies them).

    tq-master.service     one master for the host
    tq-master@.service    one master per queue group (tq-master@GROUP, /etc/tq/GROUP.toml)
    tq-dashboard.service  the dashboard
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

if __name__ != "tq.systemd":
    raise ImportError(f"import tq.systemd, not {__name__} (install the project: pip install -e .)")

UNITS = ("tq-master.service", "tq-master@.service", "tq-dashboard.service")


def path(name: str) -> Path:
    """Where an installed unit file is (a real file: the package is installed unzipped)."""
    if name not in UNITS:
        raise ValueError(f"no such unit in tq.systemd: {name!r} (have: {', '.join(UNITS)})")
    return Path(str(resources.files(__package__).joinpath(name)))
