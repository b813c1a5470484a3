"""`tq enqueue`, `tq get`, `tq wait`: put tasks in and follow them."""

from __future__ import annotations

import inspect
import json
import re
from typing import IO, Any

import click

from .. import exitcodes
from ..client import Client
from ..errors import TaskFailed, WaitTimeout
from ..task import MAX_RETRIES, TaskInfo
from . import output as out
from .common import BadInput, json_option, open_client, progress


def _payload(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        payload = json.loads(value)
    except RecursionError:
        raise click.BadParameter("not valid JSON: nested too deep") from None
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise click.BadParameter("must be a JSON object, e.g. '{\"to\": \"a@example.com\"}'")
    return payload


def _read_specs(stream: IO[bytes], task_type: str | None,
                options: dict[str, Any]) -> tuple[list[dict[str, Any]], list[int]]:
    """Parse a JSONL file into enqueue_many specs (and each spec's line number).

    Read as bytes and decoded line by line, so a file that is not UTF-8 text (or not text at
    all) is one error naming its line, like bad JSON or a payload nested too deep.
    """
    specs, lines = [], []
    name = getattr(stream, "name", "-")

    def bad(number: int, why: str) -> BadInput:
        return BadInput(f"{name}: line {number}: {why}")

    for number, raw in enumerate(stream, 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise bad(number, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except RecursionError:
            raise bad(number, "invalid JSON: nested too deep") from None
        except ValueError as exc:
            raise bad(number, f"invalid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise bad(number, "expected a JSON object")
        if task_type is not None:        # each line is a payload of TYPE
            spec = {"type": task_type, "payload": doc, **options}
        elif not isinstance(doc.get("type"), str):
            raise bad(number, 'no "type" (give TYPE to read lines as payloads)')
        else:                            # each line is a spec: type, payload, options
            spec = {**options, **doc}
        specs.append(spec)
        lines.append(number)
    return specs, lines


# What a spec line may hold: the type, the payload and enqueue()'s options.
_SPEC_KEYS = frozenset({"type", "payload"} | {
    p.name for p in inspect.signature(Client.enqueue).parameters.values()
    if p.kind is inspect.Parameter.KEYWORD_ONLY})


@click.command()
@click.argument("task_type", metavar="[TYPE]", required=False)
@click.option("--payload", "-p", callback=_payload, metavar="JSON",
              help="the payload, a JSON object (default: {})")
@click.option("--priority", type=click.IntRange(0, 9), default=None, help="0 (default) to 9")
@click.option("--delay", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="run no earlier than this many seconds from now")
@click.option("--queue", default=None, help="queue (default: the type's name)")
@click.option("--max-retries", type=click.IntRange(0, MAX_RETRIES), default=None,
              help="override the handler's max_retries")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS", help="override the handler's hard timeout")
@click.option("--file", "-f", "file", type=click.File("rb"), default=None,
              help="enqueue every line of a JSONL file ('-': stdin): payloads of TYPE, or "
                   "objects with type, payload and options")
@json_option
@click.pass_context
def enqueue(ctx: click.Context, task_type: str | None, payload: dict[str, Any] | None,
            priority: int | None, delay: float | None, queue: str | None,
            max_retries: int | None, timeout: float | None, file: IO[bytes] | None,
            as_json: bool) -> None:
    """Enqueue a task of TYPE, or many from a JSONL file; prints the new ids."""
    options: dict[str, Any] = {k: v for k, v in (("priority", priority), ("delay", delay),
                                                 ("queue", queue),
                                 ("max_retries", max_retries), ("timeout", timeout))
               if v is not None}
    if file is None:
        if task_type is None:
            raise click.UsageError("give a TYPE (and --payload), or --file tasks.jsonl")
        client = open_client(ctx, start=True)
        try:
            task_id = client.enqueue(task_type, payload or {}, **options)
        except ValueError as exc:   # a bad name or payload: bad input, like a bad option
            raise BadInput(str(exc)) from None
        if as_json:
            out.echo_json({"id": task_id})
        else:
            click.echo(task_id)
        return
    if payload is not None:
        raise click.UsageError("--payload and --file exclude each other")
    specs, lines = _read_specs(file, task_type, options)
    client = open_client(ctx, start=True)
    name = getattr(file, "name", "-")
    with progress(len(specs), "enqueuing") as update:
        try:   # enqueue_many checks every spec before it sends any: a bad line sends nothing
            ids = client.enqueue_many(specs, progress=update)
        except ValueError as exc:   # PayloadError and ConfigError are ValueErrors too
            m = re.match(r"spec #(\d+): (.*)", str(exc), re.DOTALL)
            where = f"{name}: line {lines[int(m[1])]}: {m[2]}" if m else f"{name}: {exc}"
            raise BadInput(where) from None
    if as_json:
        out.echo_json({"enqueued": len(ids), "ids": ids})
    else:
        click.echo(f"enqueued {len(ids)} tasks", err=True)
        click.echo("\n".join(ids))


def render_task(info: TaskInfo) -> str:
    """Everything known of a task, one field a line; the traceback last, as it was."""
    text = out.fields({
        "id": info.id, "type": info.type, "queue": info.queue, "state": info.state,
        "priority": info.priority, "attempts": info.attempts,
        "max retries": info.max_retries, "timeout": out.duration(info.timeout),
        "created": out.when(info.created_at), "eta": out.when(info.eta),
        "started": out.when(info.started_at), "finished": out.when(info.finished_at),
        "failed": out.when(info.failed_at), "worker": info.worker,
        "payload": "encrypted (start with the keys to read it)" if info.encrypted
        and info.state != "succeeded" else (out.compact(info.payload)
                                            if info.payload is not None else None),
        "result": ("encrypted" if info.encrypted else out.compact(info.result))
        if info.state == "succeeded" else None,
        "error": f"{info.error} ({info.error_kind})" if info.error_kind else info.error,
        "progress": f"{info.progress['fraction']:.0%} {info.progress['message']}".rstrip()
        if info.progress else None,
        "workflow": info.workflow,
    })
    if info.traceback:
        text += "\n\n" + info.traceback.rstrip()
    return text


@click.command()
@click.argument("task_id", metavar="ID")
@click.option("--queue", default=None, help="look only in this queue (faster)")
@json_option
@click.pass_context
def cancel(ctx: click.Context, task_id: str, queue: str | None, as_json: bool) -> None:
    """Cancel a task: one that has not started leaves its queue and never runs; a running
    one is interrupted (tq.Cancelled in its handler; its worker is killed after the master's
    cancel_grace). Exit 1 if it has finished or is unknown."""
    outcome = open_client(ctx).cancel(task_id, queue)
    if as_json:
        out.echo_json({"id": task_id, "outcome": outcome})
    if outcome not in ("cancelled", "cancelling"):
        why = {"finished": "it has finished", "unknown": "no such task"}.get(outcome, outcome)
        raise click.ClickException(f"task {task_id} was not cancelled: {why}")
    if not as_json:
        click.echo(f"cancelled {task_id}" if outcome == "cancelled" else
                   f"cancelling {task_id}: it runs, its worker is interrupting it")


@click.command()
@click.argument("task_id", metavar="ID")
@click.option("--queue", default=None, help="look only in this queue (faster)")
@json_option
@click.pass_context
def get(ctx: click.Context, task_id: str, queue: str | None, as_json: bool) -> None:
    """Show what is known of a task: state, attempts, payload, result or error."""
    info = open_client(ctx).get(task_id, queue)
    if as_json:
        out.echo_json(info.to_dict())
    else:
        click.echo(render_task(info))


@click.command()
@click.argument("task_id", metavar="ID")
@click.option("--timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help=f"give up after this long (exit {exitcodes.TIMED_OUT}); default: wait for "
                   "ever")
@click.option("--queue", default=None, help="the task's queue, if known")
@json_option
@click.pass_context
def wait(ctx: click.Context, task_id: str, timeout: float | None, queue: str | None,
         as_json: bool) -> None:
    """Wait for a task to finish and print its result.

    Exit 0 when it succeeded, 1 when it ended dead (its error on stderr), 124 when --timeout
    ran out first (it may still run).
    """
    client = open_client(ctx)
    try:
        result = client.wait(task_id, timeout=timeout, queue=queue)
    except TaskFailed as exc:
        if not as_json:
            raise
        out.echo_json({"id": task_id, "state": "dead", "error": exc.error,
                       "traceback": exc.traceback})
        ctx.exit(exitcodes.FAILURE)
    except WaitTimeout as exc:
        if not as_json:
            raise TimedOut(str(exc)) from None
        out.echo_json({"id": task_id, "state": exc.state, "timeout": timeout})
        ctx.exit(exitcodes.TIMED_OUT)
    if as_json:
        out.echo_json({"id": task_id, "state": "succeeded", "result": result})
    else:
        click.echo(out.compact(result))


class TimedOut(click.ClickException):
    exit_code = exitcodes.TIMED_OUT


COMMANDS = (enqueue, get, wait, cancel)
