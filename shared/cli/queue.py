"""`tq queue repair|delete`: look after one queue."""

from __future__ import annotations

import click

from ..task import validate_name
from . import output as out
from .common import BadInput, confirm, json_option, open_client, yes_option


@click.group()
def queue() -> None:
    """Look after one queue."""


def _name(name: str) -> str:
    try:
        return validate_name("queue", name)
    except ValueError as exc:
        raise BadInput(str(exc)) from None


@queue.command()
@click.argument("name", metavar="QUEUE")
@json_option
@click.pass_context
def repair(ctx: click.Context, name: str, as_json: bool) -> None:
    """Move a broken queue's corrupt keys aside, re-index its tasks, and serve it again."""
    report = open_client(ctx).repair_queue(_name(name))
    if as_json:
        out.echo_json({"queue": name, "moved": report.moved, "restored": report.restored,
                       "buried": report.buried, "was_broken": report.was_marked})
        return
    for key, where in report.moved.items():
        click.echo(f"moved corrupt key {key} to {where}")
    click.echo(f"queue {name}: {report.restored} task(s) put back on the ready lists, "
               f"{report.buried} unreadable dead-lettered; "
               f"{'no longer broken' if report.was_marked else 'it was not marked broken'}")


@queue.command()
@click.argument("name", metavar="QUEUE")
@click.option("--force", is_flag=True,
              help="delete even while tasks of it run (their acks are then refused)")
@yes_option
@json_option
@click.pass_context
def delete(ctx: click.Context, name: str, force: bool, yes: bool, as_json: bool) -> None:
    """Delete a queue: its ready, scheduled and dead tasks, its counters, and its name.

    Masters whose handlers consume it add the name back; stop them or drop the handler first.
    Empty queues that nobody consumes are also forgotten by the masters on their own
    (--forget-queues-after, a day by default).
    """
    client = open_client(ctx)
    sizes = client.queue_sizes().get(_name(name))
    if sizes is None:
        raise click.ClickException(f"no queue named {name!r}")
    held = sizes["ready"] + sizes["scheduled"] + sizes["dead"]
    confirm(f"Delete queue {name} with {sizes['ready']} ready, {sizes['scheduled']} scheduled "
            f"and {sizes['dead']} dead task(s)?", yes or held == 0)
    report = client.delete_queue(name, force=force)
    if not report["deleted"]:
        raise click.ClickException(f"queue {name} has {report['running']} running task(s): "
                                   "wait for them, stop its workers, or use --force")
    if as_json:
        out.echo_json(report)
    else:
        click.echo(f"deleted queue {name}: {report['ready']} ready, {report['scheduled']} "
                   f"scheduled, {report['dead']} dead task(s)")


COMMANDS = (queue,)
