"""`tq status`, `tq workers`, `tq stats`: what the system holds and does, read from Redis."""

from __future__ import annotations

import time
from typing import Any

import click

from ..client import Client
from ..history import History
from . import output as out
from .common import json_option, open_client

RATE_WINDOW = 60.0       # seconds of history behind the processed/failed rates
LATENCY_WINDOW = 300.0   # seconds of history behind the duration/wait percentiles


def workers_view(client: Client, now: float) -> dict[str, Any]:
    """Masters with their children (from masters' heartbeats), plus workers no master lists."""
    broker = client.broker
    masters = broker.registry("masters")
    listed = {c.get("id") for m in masters for c in m.get("children") or []}
    others = [w for w in broker.registry("workers") if w["id"] not in listed]
    for m in masters:
        m["heartbeat_age"] = _age(m.get("last_seen_ms"), now)
        for c in m.get("children") or []:
            c["task_age"] = now - c["since"] if c.get("task") and c.get("since") else None
    for w in others:
        w["heartbeat_age"] = _age(w.get("last_seen_ms"), now)
        w["task_age"] = now - w["since"] if w.get("task") and w.get("since") else None
    return {"masters": masters, "workers": others}


def _age(last_seen_ms: int | None, now: float) -> float | None:
    return None if last_seen_ms is None else max(now - last_seen_ms / 1000, 0.0)


def render_workers(view: dict[str, Any]) -> str:
    if not view["masters"] and not view["workers"]:
        return "no masters or workers are registered"
    parts = []
    if view["masters"]:
        parts.append(out.table(
            ["MASTER", "HOST", "PID", "STATUS", "CHILDREN", "PROCESSED", "FAILED", "SEEN"],
            [[m["id"], m.get("host"), m.get("pid"), m.get("status"),
              f"{len(m.get('children') or [])}/{m.get('concurrency', '?')}",
              m.get("processed"), m.get("failed"), _ago(m["heartbeat_age"])]
             for m in view["masters"]]))
    children = [(m["id"], c) for m in view["masters"] for c in m.get("children") or []]
    children += [(w.get("master"), w) for w in view["workers"]]
    if children:
        parts.append(out.table(
            ["CHILD", "MASTER", "PID", "STATE", "RSS", "USS", "CPU", "TASK", "TYPE", "AGE"],
            [[c.get("id"), master, c.get("pid"), c.get("state"), out.size(c.get("rss")),
              out.size(c.get("uss")), out.percent(c.get("cpu")), c.get("task"), c.get("type"),
              out.duration(c.get("task_age"))] for master, c in children]))
    return "\n\n".join(parts)


def _ago(age: float | None) -> str | None:
    return None if age is None else f"{out.duration(age)} ago"


def render_queues(sizes: dict[str, dict[str, Any]]) -> str:
    if not sizes:
        return "no queues yet"
    text = out.table(
        ["QUEUE", "READY", "BY PRIORITY", "SCHEDULED", "RUNNING", "DEAD", "HEALTH"],
        [[q, s["ready"], out.priorities(s["by_priority"]), s["scheduled"], s["running"],
          s["dead"], "BROKEN" if s.get("broken") else "ok"] for q, s in sorted(sizes.items())])
    broken = [(q, s["broken"]) for q, s in sorted(sizes.items()) if s.get("broken")]
    for q, mark in broken:
        text += (f"\nqueue {q} is BROKEN and not served: {mark.get('problem', '?')}; "
                 f"run `tq queue repair {q}`")
    return text


def _rates_line(rates: dict[str, float]) -> str:
    return (f"throughput (last {RATE_WINDOW:.0f}s): {rates['processed']:.2f} processed/s, "
            f"{rates['failed']:.2f} failed/s")


@click.command()
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Queues (depth per priority, scheduled, running, dead), masters, children, throughput."""
    client = open_client(ctx)
    now = time.time()
    sizes = client.queue_sizes()
    view = workers_view(client, now)
    rates = History(client.broker).rates(window=RATE_WINDOW)
    if as_json:
        out.echo_json({"redis": client.safe_url, "namespace": client.namespace, "time": now,
                       "queues": sizes, "rates": rates, **view})
        return
    click.echo(f"Redis {client.safe_url}, namespace {client.namespace}")
    click.echo(_rates_line(rates))
    click.echo()
    click.echo(render_queues(sizes))
    click.echo()
    click.echo(render_workers(view))


@click.command()
@json_option
@click.pass_context
def workers(ctx: click.Context, as_json: bool) -> None:
    """Masters and their children: host, pid, memory, CPU, current task and its age."""
    client = open_client(ctx)
    view = workers_view(client, time.time())
    if as_json:
        out.echo_json(view)
    else:
        click.echo(render_workers(view))


@click.command()
@json_option
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Task counters by type, throughput, and duration/wait percentiles of recent tasks."""
    client = open_client(ctx)
    counts = client.stats()
    history = History(client.broker)
    rates = history.rates(window=RATE_WINDOW)
    latency = history.latency(window=LATENCY_WINDOW)
    if as_json:
        out.echo_json({**counts, "rates": rates, "latency": latency})
        return
    events = ("enqueued", "started", "succeeded", "failed", "retried", "dead")
    rows = [[t, *(c.get(e, 0) for e in events)] for t, c in sorted(counts["by_type"].items())]
    rows.append(["(total)", *(counts["total"].get(e, 0) for e in events)])
    click.echo(out.table(["TYPE", *(e.upper() for e in events)], rows))
    click.echo()
    click.echo(_rates_line(rates))
    if latency:
        click.echo()
        click.echo(f"last {LATENCY_WINDOW / 60:.0f} minutes (percentiles are bucket bounds):")
        click.echo(out.table(
            ["TYPE", "DONE", "MEAN", "P50", "P90", "P99", "WAIT P50", "WAIT P99"],
            [[t, v["duration"].get("n"), *(out.duration(v["duration"].get(k))
                                           for k in ("mean", "p50", "p90", "p99")),
              out.duration(v["wait"].get("p50")), out.duration(v["wait"].get("p99"))]
             for t, v in latency.items()]))


COMMANDS = (status, workers, stats)
