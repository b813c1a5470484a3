"""`tq embedded status|start|stop`: the embedded Redis of the state folder (--home)."""

from __future__ import annotations

from typing import Any

import click

from ..store.embedded import EmbeddedRedis, display_path, home_origin
from . import output as out
from .common import json_option


def _describe(server: EmbeddedRedis) -> dict[str, Any]:
    files = list(server.home.glob("appendonly*")) if server.home.exists() else []
    stored = sum(f.stat().st_size for p in files for f in ([p] if p.is_file() else p.iterdir()))
    version = server.version()
    return {"home": str(server.home), "home_from": home_origin(), "url": server.url,
            "running": version is not None, "version": version, "pid": server.pid(),
            "aof_bytes": stored,
            "log": str(server.logfile)}


@click.group()
def embedded() -> None:
    """The embedded Redis (used when no Redis URL is configured), under --home / TQ_HOME."""


@embedded.command("status")
@json_option
def status_(as_json: bool) -> None:
    """Whether it runs, where, and how much it stores."""
    server = EmbeddedRedis()
    info = _describe(server)
    if as_json:
        out.echo_json(info)
        return
    click.echo(out.fields({
        "state": "running" if info["running"] else "stopped",
        "home": f"{info['home']} (from {info['home_from']})",
        "socket": display_path(server.socket), "version": info["version"],
        "pid": info["pid"], "stored": out.size(info["aof_bytes"]), "log": info["log"]}))


@embedded.command()
def start() -> None:
    """Start it (tq commands and masters also start it when they need it)."""
    server = EmbeddedRedis()
    got = server.ensure()
    click.echo(f"redis-server {got.version} at {display_path(server.socket)} "
               f"{'started' if got.started else 'already running'} (pid {got.pid})")


@embedded.command()
def stop() -> None:
    """Stop it cleanly; queued tasks stay in its append-only file for the next start."""
    server = EmbeddedRedis()
    if server.stop():
        click.echo(f"stopped redis-server at {display_path(server.socket)}")
    else:
        click.echo(f"not running ({display_path(server.socket)})")


COMMANDS = (embedded,)
