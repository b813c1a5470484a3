"""Files for running tq, shipped with the package: the systemd units (from tq.systemd) and a
Grafana dashboard.

    tq install-units                  # copies the units to /etc/systemd/system
    python -c "import tq.ops as o; print(o.path('grafana-dashboard.json'))"
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .. import systemd

UNITS = systemd.UNITS
GRAFANA = "grafana-dashboard.json"


def path(name: str) -> Path:
    """Where an installed file is (a real file: the package is installed unzipped)."""
    if name in UNITS:
        return systemd.path(name)
    if name != GRAFANA:
        raise ValueError(f"no such file in tq.ops: {name!r} (have: {', '.join((*UNITS, GRAFANA))})")
    return Path(str(resources.files(__package__).joinpath(name)))
