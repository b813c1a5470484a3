"""`tq install-units`: put the shipped systemd units where systemd finds them."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from .. import ops


@click.command("install-units")
@click.option("--dir", "target", default="/etc/systemd/system", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="where to copy the units")
@click.option("--force", is_flag=True, help="replace units that are there already")
def install_units(target: Path, force: bool) -> None:
    """Copy tq-master.service, tq-master@.service and tq-dashboard.service into --dir.

    Adjust their ExecStart (venv path) and WorkingDirectory to your layout, then
    `systemctl daemon-reload && systemctl enable --now tq-master` (docs/operations.md).
    """
    if not target.is_dir():
        raise click.ClickException(f"{target} is not a folder")
    present = [name for name in ops.UNITS if (target / name).exists()]
    if present and not force:
        raise click.ClickException(f"{', '.join(present)} already in {target}: compare them "
                                   "with `tq install-units --dir /tmp/x`, or use --force")
    for name in ops.UNITS:
        shutil.copyfile(ops.path(name), target / name)
        (target / name).chmod(0o644)
        click.echo(f"installed {target / name}")
    click.echo(f"next: edit ExecStart/WorkingDirectory if your layout differs, then "
               f"`systemctl daemon-reload`; Grafana dashboard: {ops.path(ops.GRAFANA)}",
               err=True)


COMMANDS = (install_units,)
