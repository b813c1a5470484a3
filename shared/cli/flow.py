"""`tq pause|resume QUEUE`, `tq limits show|set|clear`: flow control across the fleet."""

from __future__ import annotations

from typing import Any

import click

from ..admin import known_queue
from ..limits import Limits
from . import output as out
from .common import BadInput, json_option, open_client


@click.command()
@click.argument("queue", metavar="QUEUE")
@click.pass_context
def pause(ctx: click.Context, queue: str) -> None:
    """Stop every worker claiming from QUEUE (enqueues go on, running tasks finish)."""
    try:
        open_client(ctx).pause(queue)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    click.echo(f"paused queue {queue}: nothing more starts until `tq resume {queue}`")


@click.command()
@click.argument("queue", metavar="QUEUE")
@click.pass_context
def resume(ctx: click.Context, queue: str) -> None:
    """Let workers claim from a paused QUEUE again."""
    try:
        open_client(ctx).resume(queue)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    click.echo(f"resumed queue {queue}")


@click.group()
def limits() -> None:
    """Rate and concurrency limits of task types, fleet-wide (see docs/flow.md)."""


def _describe(lim: Limits | None) -> str:
    return lim.describe() if lim is not None else "-"


def _wire(lim: Limits | None) -> dict[str, Any] | None:
    if lim is None:
        return None
    return {"rate": str(lim.rate) if lim.rate else None, "burst": lim.burst, "key": lim.key,
            "concurrency": lim.concurrency}


@limits.command("show")
@click.argument("queue", required=False, metavar="[QUEUE]")
@json_option
@click.pass_context
def show(ctx: click.Context, queue: str | None, as_json: bool) -> None:
    """Each queue's pause state and its types' limits: effective, declared by handlers,
    overridden by an operator; leases in use and tasks waiting for one."""
    client = open_client(ctx)
    try:
        info = client.limits(known_queue(queue, client.queues()) if queue else None)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    if as_json:
        out.echo_json({q: {"paused": v["paused"], "types": {
            t: {"effective": _wire(e["effective"]), "declared": _wire(e["declared"]),
                "override": e["override"], "running": e["running"], "held": e["held"]}
            for t, e in v["types"].items()}} for q, v in info.items()})
        return
    rows = []
    for q, v in sorted(info.items()):
        if not v["types"]:
            if v["paused"]:
                rows.append([q, "PAUSED", "-", "-", "-", "-"])
            continue
        for t, e in sorted(v["types"].items()):
            rows.append([q + (" (PAUSED)" if v["paused"] else ""), t,
                         _describe(e["effective"]), "operator" if e["override"] else "handler",
                         e["running"], e["held"]])
    if not rows:
        click.echo("no limits and no paused queue")
        return
    click.echo(out.table(["QUEUE", "TYPE", "LIMITS", "SET BY", "LEASES", "HELD"], rows))


@limits.command("set")
@click.argument("task_type", metavar="TYPE")
@click.argument("rate", required=False, metavar="[RATE]")
@click.option("--burst", type=int,
              help="starts allowed at once (default: what RATE allows in 10 ms, at least 1)")
@click.option("--key", "rate_key", metavar="FIELD",
              help="one rate bucket per value of this payload field (e.g. tenant)")
@click.option("--concurrency", type=int, metavar="N", help="at most N running at once")
@click.option("--queue", metavar="QUEUE", help="the type's queue (default: found, or TYPE)")
@click.pass_context
def set_limit(ctx: click.Context, task_type: str, rate: str | None, burst: int | None,
              rate_key: str | None, concurrency: int | None, queue: str | None) -> None:
    """Override TYPE's limits fleet-wide: RATE like 50/s, 6000/m, 10/h; --concurrency N.

    What is not given keeps the handler's own limit. Takes effect on the next claim."""
    try:
        eff = open_client(ctx).set_limit(task_type, rate, burst=burst, rate_key=rate_key,
                                         concurrency=concurrency, queue=queue)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    click.echo(f"{task_type}: {eff.describe()}")


@limits.command("clear")
@click.argument("task_type", metavar="TYPE")
@click.option("--queue", metavar="QUEUE", help="the type's queue (default: found, or TYPE)")
@click.pass_context
def clear(ctx: click.Context, task_type: str, queue: str | None) -> None:
    """Drop the operator's override of TYPE: its handlers' own limits apply again."""
    try:
        eff = open_client(ctx).clear_limit(task_type, queue=queue)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    click.echo(f"{task_type}: {_describe(eff) if eff else 'no limits'}")


COMMANDS = (pause, resume, limits)
