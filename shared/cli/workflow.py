"""`tq workflow show|cancel ID`: follow and stop workflows (see shared/workflow.py)."""

from __future__ import annotations

import click

from . import output as out
from .common import json_option, open_client


@click.group()
def workflow() -> None:
    """Chains, groups, chords and DAGs enqueued with client.workflow()."""


@workflow.command()
@click.argument("workflow_id", metavar="ID")
@json_option
@click.pass_context
def show(ctx: click.Context, workflow_id: str, as_json: bool) -> None:
    """A workflow's state and each member's: state, attempts, result or error."""
    info = open_client(ctx).get_workflow(workflow_id)
    if as_json:
        out.echo_json(info.to_dict())
        return
    click.echo(out.fields({
        "id": info.id, "state": info.state, "policy": info.policy,
        "created": out.when(info.created_at),
        "members": ", ".join(f"{n} {s}" for s, n in sorted(info.counts.items()))}))
    click.echo()
    rows = []
    for m in info.members:
        shown = m.get("error") if m["state"] == "dead" else (
            out.compact(m.get("result")) if m["state"] == "succeeded" else "")
        rows.append([m["name"], m["type"], m["queue"], m["state"], ",".join(m["after"]),
                     m["id"], (shown or "")[:60]])
    click.echo(out.table(["MEMBER", "TYPE", "QUEUE", "STATE", "AFTER", "TASK", "RESULT/ERROR"],
                         rows))


@workflow.command()
@click.argument("workflow_id", metavar="ID")
@json_option
@click.pass_context
def cancel(ctx: click.Context, workflow_id: str, as_json: bool) -> None:
    """Cancel every member that has not finished (running ones are interrupted)."""
    got = open_client(ctx).cancel_workflow(workflow_id)
    if as_json:
        out.echo_json({"id": workflow_id, **got})
        return
    click.echo(f"workflow {workflow_id}: " + ", ".join(f"{n} {k}" for k, n in
                                                     sorted(got.items()) if k != "unknown"))


COMMANDS = (workflow,)
