"""`tq keys new|rotate`: payload protection keys (tq.keyring, docs/security.md)."""

from __future__ import annotations

import click

from ..keyring import new_key
from . import output as out
from .common import json_option, open_client


@click.group()
def keys() -> None:
    """Keys that encrypt or sign payloads, results and errors (TQ_KEYS, keys_file)."""


@keys.command("new")
@click.argument("key_id", metavar="KEYID")
def new(key_id: str) -> None:
    """Print a new random key as KEYID:BASE64, for TQ_KEYS (put it first to make it current)
    or a keys file. Keep it secret; anyone with it can read and forge tasks."""
    click.echo(f"{key_id}:{new_key()}")


@keys.command()
@click.option("--queue", metavar="QUEUE", help="only this queue (default: every queue)")
@json_option
@click.pass_context
def rotate(ctx: click.Context, queue: str | None, as_json: bool) -> None:
    """Seal every stored body and error again with the current key (the first of TQ_KEYS,
    or `current` of the keys file); the old keys must still be listed. Then the old key can
    go once results sealed with it have expired (result TTL)."""
    report = open_client(ctx).rotate_keys(queue)
    if as_json:
        out.echo_json(report)
        return
    total = sum(report.values())
    click.echo(f"re-sealed {total} stored bodies and errors with the current key"
               + (f" ({', '.join(f'{q}: {n}' for q, n in sorted(report.items()) if n)})"
                  if total else ""))


COMMANDS = (keys,)
