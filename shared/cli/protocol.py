"""`tq protocol`: the wire protocol's version and the exact Lua text of its scripts, for
producers written in other languages (docs/protocol.md)."""

from __future__ import annotations

import sys

import click

from ..store.scripts import NAMES, script_text

# The version of the contract docs/protocol.md states: key names, bodies, ids, the enqueue
# script's KEYS/ARGV/reply, result and error records. It changes only when a producer or
# reader built on the documented contract would have to change.
WIRE_PROTOCOL = 1


@click.group(invoke_without_command=True)
@click.pass_context
def protocol(ctx: click.Context) -> None:
    """The wire protocol a producer in another language implements (docs/protocol.md)."""
    if ctx.invoked_subcommand is None:
        click.echo(f"tq wire protocol {WIRE_PROTOCOL}")


@protocol.command()
@click.argument("name", type=click.Choice(NAMES))
@click.option("--sha", is_flag=True, help="print the SHA1 of the text (EVALSHA's) instead")
def script(name: str, sha: bool) -> None:
    """Print the exact text tq loads for a Lua script (its helpers included): what a producer
    in another language ships and calls with EVALSHA."""
    source, digest = script_text(name)
    if sha:
        click.echo(digest)
    else:   # byte for byte (click.echo may alter what it prints): its SHA1 must be tq's
        sys.stdout.buffer.write(source.encode("utf-8"))
        sys.stdout.flush()


COMMANDS = (protocol,)
