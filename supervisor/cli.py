"""`tq-master`: run the supervisor in the foreground (systemd style)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from tq import __version__, exitcodes, logs
from tq.config import SETTINGS, Config, load, protect_settings
from tq.errors import ConfigError, EvictionPolicyError, NoPermission, RedisUnavailable
from tq.store.grants import explain
from tq.store.link import ResponseError

log = logging.getLogger("tq.master")

_SHORT = {"concurrency": "-c", "app": "-A", "queues": "-Q"}


class SettingError(click.ClickException):
    """A setting tq cannot use: one line naming it, its value and its range; exit 2."""

    exit_code = exitcodes.USAGE


def setting_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """One click option per setting in tq.config.SETTINGS (the single place they are declared)."""
    for s in reversed(SETTINGS):
        names = [s.flag] + ([_SHORT[s.name]] if s.name in _SHORT else [])
        help_text = f"{s.help} [env {s.env}" + (f"; default {s.default}]" if s.default not in (
            None, False) else "]")
        if s.parse is bool or s.metavar == "":
            func = click.option(*names, s.name, is_flag=True, default=None, help=help_text)(func)
        else:
            func = click.option(*names, s.name, default=None, metavar=s.metavar,
                                help=help_text)(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tq-master")
def main() -> None:
    """The tq master: forks worker processes, watches them, never loses a task."""


@main.command()
@click.option("--config", "config_file", metavar="PATH",
              help="TOML config file [env TQ_CONFIG; default ./tq.toml if present]")
@setting_options
def start(config_file: str | None, **flags: Any) -> None:
    """Run the master in the foreground (SIGTERM drains, SIGHUP reloads, TTIN/TTOU scale)."""
    try:
        config = load(flags, config_file=config_file)
        protect_settings(config=config)   # bad keys: exit 2 now, not in every child
    except ConfigError as exc:
        raise SettingError(str(exc)) from None
    if not config.app and not config.queues:
        raise click.UsageError("give the handler modules with -A MODULE (or TQ_APP, or app in "
                               "the config file)")
    logs.configure(config.log_level, config.log_format, "master")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())   # -A modules are found from the working directory
    sys.exit(_run(config, {**flags, "config_file": config_file}))


def _run(config: Config, flags: dict[str, Any]) -> int:
    from .master import Supervisor

    try:
        return Supervisor(config, {k: v for k, v in flags.items() if k != "config_file"}).run()
    except ConfigError as exc:   # found at start-up: a port in use, an unwritable pidfile
        log.critical("%s", exc)
        return exitcodes.USAGE
    except (RedisUnavailable, EvictionPolicyError, NoPermission) as exc:
        log.critical("%s", exc)
        return exitcodes.FAILURE
    except ResponseError as exc:   # NOPERM (an ACL), a renamed command...
        log.critical("Redis refused a command the master needs: %s (see docs/operations.md, "
                     "'Redis users and ACLs')", explain(str(exc)))
        return exitcodes.FAILURE


