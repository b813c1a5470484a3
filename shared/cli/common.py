"""What the tq commands share: the client of the group's Redis, --json, confirmations, logs."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from ..client import Client
from ..config import load, protect_settings
from ..store.connection import resolve_url

F = TypeVar("F", bound=Callable[..., Any])

JSON_META = "tq.json"   # ctx.meta (shared by the whole command line): --json was given


def _remember_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta[JSON_META] = True   # read by TqGroup when the command fails
    return value


# Eager: processed before the other options, so an error in one of them is JSON too.
json_option = click.option("--json", "as_json", is_flag=True, is_eager=True,
                           callback=_remember_json,
                           help="print JSON (for scripts) instead of text; errors too")
yes_option = click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation")


class BadInput(click.ClickException):
    """Input tq cannot use (a bad line of a file, a value out of range): exit 2, one line."""

    exit_code = 2


def open_client(ctx: click.Context, start: bool = False) -> Client:
    """A tq.Client for the group's --redis-url/--namespace/--config, closed with the command.

    With no Redis URL configured it uses the embedded Redis of the state folder if one runs;
    only commands that put work in (start=True: `tq enqueue`) start one. A command that reads
    or changes what is there must not start an empty server and report "nothing here".
    """
    obj = ctx.find_root().obj or {}
    url = resolve_url(obj.get("redis_url"), config_file=obj.get("config_file"), start=start)
    # payload protection keys: TQ_KEYS, else keys_file of the environment or config file
    keys = protect_settings(config=load({}, config_file=obj.get("config_file")))
    client = Client(url, obj.get("namespace") or "tq", keys=keys)
    ctx.call_on_close(client.close)
    return client


def confirm(question: str, yes: bool) -> None:
    """Ask before something destructive, unless --yes; 'no' aborts (exit 1)."""
    if not yes:
        click.confirm(question, abort=True, err=True)


@contextmanager
def progress(total: int, label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr, fed with (done, total) as tq.Client's admin calls report it."""
    with click.progressbar(length=max(total, 1), label=label, file=sys.stderr,
                           show_pos=True) as bar:
        seen = 0

        def update(done: int, _total: int) -> None:
            nonlocal seen
            if done > seen:
                bar.update(done - seen)
                seen = done

        yield update


class _ClickHandler(logging.Handler):
    """Log lines to whatever stderr is now (CliRunner swaps it per invocation)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(f"tq: {self.format(record)}", err=True)
        except Exception:   # a log line must never break a command
            self.handleError(record)


def configure_logging(verbosity: int) -> None:
    """-q: warnings only; default: also which Redis is used; -v: everything tq says."""
    logger = logging.getLogger("tq")
    if not any(isinstance(h, _ClickHandler) for h in logger.handlers):
        logger.addHandler(_ClickHandler())
    level = {-1: logging.WARNING, 0: logging.WARNING, 1: logging.DEBUG}[max(-1, min(verbosity, 1))]
    logger.setLevel(level)
    # The one INFO line a command shows by default: which Redis it talks to.
    logging.getLogger("tq.store.connection").setLevel(
        logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO)
