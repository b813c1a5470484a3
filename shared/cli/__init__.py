"""The tq operator CLI: inspect queues and workers, enqueue, follow tasks, handle dead letters.

    tq status                      queues, masters and children, throughput
    tq enqueue email --payload '{"to": "a@example.com"}'
    tq dead list / tq dead retry --all

Exit codes: 0 ok, 1 failure (unknown id, Redis unreachable, a dead task...), 2 usage or a bad
value, 124 `tq wait` timed out. Under --json an error is a JSON object on stdout too.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import click

from .. import __version__, exitcodes
from ..config import load
from ..errors import ConfigError, TQError
from ..store.embedded import ENV_HOME
from ..store.link import RedisError
from .common import JSON_META, configure_logging
from .output import echo_json

# name -> (module:attribute, short help): imported only when used, so `tq --help` stays light.
LAZY_COMMANDS = {
    "dashboard": ("tq.dashboard.cli:dashboard", "Serve the web dashboard."),
}


class TqGroup(click.Group):
    """The root group: lazy commands, and tq's errors as one-line failures (exit 1)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in LAZY_COMMANDS:
            return super().get_command(ctx, cmd_name)
        target, _ = LAZY_COMMANDS[cmd_name]
        module, _, attr = target.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            missing = str(exc)

            @click.command(cmd_name, context_settings={"ignore_unknown_options": True})
            @click.argument("args", nargs=-1, type=click.UNPROCESSED)
            def unavailable(args: tuple[str, ...]) -> None:
                raise click.ClickException(f"`tq {cmd_name}` is not available: {missing}")

            return unavailable

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in LAZY_COMMANDS:
                rows.append((name, LAZY_COMMANDS[name][1]))
                continue
            cmd = super().get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(formatter.width - 20)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            try:
                return super().invoke(ctx)
            except TQError as exc:
                raise click.ClickException(str(exc)) from None
            except RedisError as exc:
                raise click.ClickException(f"Redis error: {exc}") from None
        except click.ClickException as exc:
            if not ctx.meta.get(JSON_META):
                raise
            # --json: the error is a JSON object on stdout (what a script parses), same code
            echo_json({"error": exc.format_message(), "exit_code": exc.exit_code,
                       "kind": "usage" if isinstance(exc, click.UsageError) else
                       "bad_value" if exc.exit_code == exitcodes.USAGE else "failure"})
            ctx.exit(exc.exit_code)


@click.group(cls=TqGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--redis-url", metavar="URL", default=None,
              help="Redis URL (redis://, rediss://, unix://, redis+sentinel://...); default: "
                   "TQ_REDIS_URL, the config file, else the embedded Redis of the state folder")
@click.option("--home", metavar="DIR", default=None, envvar="TQ_HOME",
              type=click.Path(file_okay=False),
              help="state folder of the embedded Redis (default: TQ_HOME, else "
                   "$XDG_STATE_HOME/tq, i.e. ~/.local/state/tq; a systemd master's is "
                   "/var/lib/tq)")
@click.option("--namespace", metavar="NAME", default=None,
              help="prefix of every Redis key (default: tq)")
@click.option("--config", "config_file", metavar="PATH", default=None,
              help="TOML config file (default: TQ_CONFIG, else ./tq.toml if present)")
@click.option("-q", "--quiet", is_flag=True, help="only warnings and errors on stderr")
@click.option("-v", "--verbose", is_flag=True, help="debug logs on stderr")
@click.version_option(__version__, prog_name="tq")   # tq.__version__: the one source
@click.pass_context
def cli(ctx: click.Context, redis_url: str | None, home: str | None, namespace: str | None,
        config_file: str | None, quiet: bool, verbose: bool) -> None:
    """Operate tq: queues, tasks, workers and dead letters."""
    configure_logging(-1 if quiet else 1 if verbose else 0)
    if home:   # tq.store.embedded reads it from the environment, like every tq process
        os.environ[ENV_HOME] = home
    try:
        cfg = load({"redis_url": redis_url, "namespace": namespace}, config_file=config_file)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    # A plain dict: commands from other packages (tq dashboard) read it too.
    ctx.obj = {"redis_url": cfg.redis_url, "namespace": cfg.namespace,
               "config_file": cfg.config_file}


def main() -> None:
    """The `tq` console script."""
    cli(prog_name="tq")


def _register() -> None:
    from . import dead, flow, keys, ops, protocol, queue, server, status, tasks, workflow

    for command in (*status.COMMANDS, *tasks.COMMANDS, *dead.COMMANDS, *server.COMMANDS,
                    *queue.COMMANDS, *flow.COMMANDS, *keys.COMMANDS, *ops.COMMANDS,
                    *workflow.COMMANDS, *protocol.COMMANDS):
        cli.add_command(command)


_register()
