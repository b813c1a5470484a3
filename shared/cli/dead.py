"""`tq dead list|show|retry|delete` and `tq purge`: the dead-letter queue and emptying a queue."""

from __future__ import annotations

import time

import click

from ..client import Client
from ..errors import TaskNotFound
from . import output as out
from .common import confirm, json_option, open_client, progress, yes_option
from .tasks import render_task

queue_option = click.option("--queue", default=None, help="only this queue")


@click.group()
def dead() -> None:
    """The dead-letter queue: tasks that used up their retries."""


@dead.command("list")
@click.option("--limit", type=click.IntRange(1, 10**9), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0, 10**9), default=0, show_default=True)
@queue_option
@json_option
@click.pass_context
def list_(ctx: click.Context, limit: int, offset: int, queue: str | None,
          as_json: bool) -> None:
    """Dead tasks, newest first, with their last error."""
    infos = open_client(ctx).dead(limit=limit, offset=offset, queue=queue)
    if as_json:
        out.echo_json([i.to_dict() for i in infos])
        return
    if not infos:
        click.echo("the dead-letter queue is empty" + (f" for {queue}" if queue else ""))
        return
    now = time.time()
    click.echo(out.table(
        ["ID", "TYPE", "QUEUE", "ATTEMPTS", "DIED", "ERROR"],
        [[i.id, i.type, i.queue, i.attempts,
          f"{out.duration(now - i.finished_at)} ago" if i.finished_at else None,
          out.clip(i.error)] for i in infos]))


@dead.command()
@click.argument("task_id", metavar="ID")
@json_option
@click.pass_context
def show(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """One dead task in full: payload, error and traceback."""
    info = open_client(ctx).get(task_id)
    if info.state != "dead":
        raise click.ClickException(f"task {task_id} is not in the dead-letter queue "
                                   f"(state: {info.state})")
    if as_json:
        out.echo_json(info.to_dict())
    else:
        click.echo(render_task(info))


def _dead_ids(client: Client, ids: tuple[str, ...]) -> list[str]:
    """The given ids, each checked to be a dead task (a clear error for the first that is not)."""
    for task_id in ids:
        try:
            state = client.get(task_id).state
        except TaskNotFound:
            raise click.ClickException(f"no task with id {task_id!r}") from None
        if state != "dead":
            raise click.ClickException(f"task {task_id} is not in the dead-letter queue "
                                       f"(state: {state})")
    return list(ids)


def _dead_action(ctx: click.Context, verb: str, ids: tuple[str, ...], all_: bool,
                 queue: str | None, yes: bool, as_json: bool) -> None:
    if bool(ids) == all_:
        raise click.UsageError(f"give task ids to {verb}, or --all")
    client = open_client(ctx)
    run = client.retry_dead if verb == "retry" else client.delete_dead
    if all_:
        sizes = client.queue_sizes()
        total = sum(s["dead"] for q, s in sizes.items() if queue in (None, q))
        if total == 0:
            done = 0
        else:
            where = f" of queue {queue}" if queue else ""
            confirm(f"{verb.capitalize()} all {total} dead tasks{where}?", yes)
            with progress(total, f"{verb} dead tasks") as update:
                done = run("all", queue=queue, progress=update)
    else:
        done = run(_dead_ids(client, ids), queue=queue)
    past = "retried" if verb == "retry" else "deleted"
    if as_json:
        out.echo_json({past: done})
    else:
        click.echo(f"{past} {done} dead task{'s' if done != 1 else ''}")


def _action_command(verb: str, help_text: str) -> click.Command:
    @click.argument("ids", nargs=-1, metavar="[ID]...")
    @click.option("--all", "all_", is_flag=True, help=f"{verb} every dead task (asks first)")
    @queue_option
    @yes_option
    @json_option
    @click.pass_context
    def command(ctx: click.Context, ids: tuple[str, ...], all_: bool, queue: str | None,
                yes: bool, as_json: bool) -> None:
        _dead_action(ctx, verb, ids, all_, queue, yes, as_json)

    command.__doc__ = help_text
    return dead.command(verb)(command)


_action_command("retry", "Put dead tasks back on their queues, attempts reset.")
_action_command("delete", "Delete dead tasks for good.")


@click.command()
@click.argument("queue")
@yes_option
@json_option
@click.pass_context
def purge(ctx: click.Context, queue: str, yes: bool, as_json: bool) -> None:
    """Delete every waiting (ready or scheduled) task of QUEUE; running ones are left alone."""
    client = open_client(ctx)
    sizes = client.queue_sizes()
    if queue not in sizes:
        raise click.ClickException(f"no queue named {queue!r} (known: "
                                   f"{', '.join(sorted(sizes)) or 'none'})")
    waiting = sizes[queue]["ready"] + sizes[queue]["scheduled"]
    if waiting:
        confirm(f"Delete {waiting} waiting tasks of queue {queue}?", yes)
    n = client.purge(queue)
    if as_json:
        out.echo_json({"queue": queue, "purged": n})
    else:
        click.echo(f"purged {n} tasks from {queue}")


COMMANDS = (dead, purge)
