"""`tq queue repair`: bring back a queue set aside because one of its keys is corrupt."""

from __future__ import annotations

import click

from ..task import validate_name
from . import output as out
from .common import BadInput, json_option, open_client


@click.group()
def queue() -> None:
    """Look after one queue."""


@queue.command()
@click.argument("name", metavar="QUEUE")
@json_option
@click.pass_context
def repair(ctx: click.Context, name: str, as_json: bool) -> None:
    """Move a broken queue's corrupt keys aside, re-index its tasks, and serve it again."""
    try:
        validate_name("queue", name)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    report = open_client(ctx).repair_queue(name)
    if as_json:
        out.echo_json({"queue": name, "moved": report.moved, "restored": report.restored,
                       "buried": report.buried, "was_broken": report.was_marked})
        return
    for key, where in report.moved.items():
        click.echo(f"moved corrupt key {key} to {where}")
    click.echo(f"queue {name}: {report.restored} task(s) put back on the ready lists, "
               f"{report.buried} unreadable dead-lettered; "
               f"{'no longer broken' if report.was_marked else 'it was not marked broken'}")


COMMANDS = (queue,)
