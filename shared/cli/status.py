"""`tq status`, `tq workers`, `tq stats`: what the system holds and does, read from Redis."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from ..client import Client
from ..ids import created_ms
from ..store import views
from ..store.history import History
from ..store.periodic import entries as periodic_entries
from ..task import validate_name
from . import output as out
from .common import BadInput, json_option, open_client

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


def _health(s: dict[str, Any]) -> str:
    return "BROKEN" if s.get("broken") else ("PAUSED" if s.get("paused") else "ok")


def limits_line(limits: dict[str, dict[str, Any]]) -> str | None:
    """"limits: email 50/s (2 held), ..." for the types that have limits, else None."""
    parts = []
    for q, v in sorted(limits.items()):
        for t, e in sorted(v["types"].items()):
            if e["effective"] is None:
                continue
            extra = [f"{e['running']} running" if e["effective"].concurrency else "",
                     f"{e['held']} held" if e["held"] else "",
                     "set by operator" if e["override"] else ""]
            note = ", ".join(x for x in extra if x)
            parts.append(f"{t}{'' if t == q else f' (queue {q})'} "
                         f"{e['effective'].describe()}{f' [{note}]' if note else ''}")
    return "limits: " + "; ".join(parts) if parts else None


SHOWN_QUEUES = 20   # queues `tq status` lists unless --all (the busiest first)


def render_queues(sizes: dict[str, dict[str, Any]],
                  limits: dict[str, dict[str, Any]] | None = None,
                  shown: int | None = None) -> str:
    """The queues table: all of them in name order, or the `shown` busiest first with a line
    for the rest and a total line (a fleet of a thousand queues stays one screen)."""
    if not sizes:
        return "no queues yet"
    names = sorted(sizes) if shown is None or len(sizes) <= shown else \
        views.busiest(sizes, shown)
    text = out.table(
        ["QUEUE", "READY", "BY PRIORITY", "SCHEDULED", "RUNNING", "HELD", "DEAD", "STATE"],
        [[q, s["ready"], out.priorities(s["by_priority"]), s["scheduled"], s["running"],
          s.get("held", 0), s["dead"], _health(s)] for q, s in ((q, sizes[q]) for q in names)])
    t = views.totals(sizes)
    if len(names) < len(sizes):
        text += (f"\n... {len(sizes) - len(names)} more queue(s), the busiest first above "
                 "(tq status --all lists every queue)")
    if len(sizes) > 1:
        paused = f", {t['paused']} paused" if t["paused"] else ""
        text += (f"\ntotal: {t['queues']} queues ({t['busy_queues']} with work{paused}), "
                 f"{t['ready']} ready, {t['scheduled']} scheduled, {t['running']} running, "
                 f"{t['held']} held, {t['dead']} dead")
    line = limits_line(limits or {})
    if line:
        text += "\n" + line
    broken = [(q, s["broken"]) for q, s in sorted(sizes.items()) if s.get("broken")]
    for q, mark in broken:
        text += (f"\nqueue {q} is BROKEN and not served: {mark.get('problem', '?')}; "
                 f"run `tq queue repair {q}`")
    return text


def periodic_view(client: Client) -> list[dict[str, Any]]:
    """The periodic schedules the masters run (tq.periodic), with their last and next tick."""
    out = []
    for name, raw in sorted(periodic_entries(client.broker).items()):
        try:
            info = json.loads(raw)
        except ValueError:
            continue
        if isinstance(info, dict):
            out.append({**info, "name": name})
    return out


def render_periodic(entries: list[dict[str, Any]], now: float) -> str | None:
    if not entries:
        return None
    return out.table(["PERIODIC", "SCHEDULE", "TYPE", "TZ", "LAST", "NEXT"],
                     [[e["name"], e.get("schedule"), e.get("type"), e.get("tz"),
                       out.when(e.get("last"), now), out.when(e.get("next"), now)]
                      for e in entries])


def _rates_line(rates: dict[str, float]) -> str:
    return (f"throughput (last {RATE_WINDOW:.0f}s): {rates['processed']:.2f} processed/s, "
            f"{rates['failed']:.2f} failed/s")


def queue_view(client: Client, name: str, now: float) -> dict[str, Any]:
    """One queue in detail: its depths, counters, oldest ready task, next due, consumers."""
    sizes = client.queue_sizes().get(name)
    if sizes is None:
        raise click.ClickException(f"no queue named {name!r} (known: "
                                   f"{', '.join(client.queues()) or 'none'})")
    first, due_ms = views.heads(client.broker, name)
    oldest = min((c for c in map(created_ms, first) if c is not None), default=None)
    due = None if due_ms is None else due_ms / 1000
    consumers = [{"master": m["id"], "host": m.get("host"), "children": len(
        m.get("children") or [])} for m in client.broker.registry("masters")
        if name in (m.get("queues") or [])]
    limits = client.limits(name)[name]
    return {"queue": name, **sizes, "counters": client.stats()["by_queue"].get(name, {}),
            "oldest_ready_age": None if oldest is None else max(now - oldest / 1000, 0.0),
            "next_due": due, "consumers": consumers,
            "limits": {t: {"limits": e["effective"].describe(), "running": e["running"],
                           "held": e["held"], "set_by": "operator" if e["override"]
                           else "handler"}
                       for t, e in limits["types"].items() if e["effective"] is not None}}


def render_queue(view: dict[str, Any], now: float) -> str:
    counters = view["counters"]
    text = out.fields({
        "queue": view["queue"],
        "health": f"BROKEN: {view['broken'].get('problem', '?')} (run `tq queue repair "
                  f"{view['queue']}`)" if view.get("broken") else "ok",
        "ready": f"{view['ready']} ({out.priorities(view['by_priority'])})",
        "oldest ready": out.duration(view["oldest_ready_age"]),
        "scheduled": view["scheduled"], "next due": out.when(view["next_due"], now),
        "running": view["running"], "dead": view["dead"],
        "state": "PAUSED (`tq resume " + view["queue"] + "`)" if view.get("paused") else "serving",
        "held": view.get("held", 0),
        "limits": "; ".join(f"{t} {v['limits']} ({v['running']} running, {v['held']} held, "
                            f"set by {v['set_by']})" for t, v in view["limits"].items())
                  or "none",
        "counted": ", ".join(f"{n} {e}" for e, n in counters.items() if n) or "nothing yet",
        "consumed by": ", ".join(f"{c['master']} on {c['host']} ({c['children']} children)"
                                 for c in view["consumers"]) or "no live master",
    })
    return text


def _snapshot(client: Client, queue: str | None, as_json: bool, every: bool = False) -> str:
    """One frame of `tq status` (text, or one JSON document); every: all queues in the text
    (else the busiest SHOWN_QUEUES; JSON always has them all, and the totals)."""
    now = time.time()
    if queue is not None:
        view = queue_view(client, queue, now)
        return out.dumps(view) if as_json else render_queue(view, now)
    sizes = client.queue_sizes()
    workers = workers_view(client, now)
    rates = History(client.broker).rates(window=RATE_WINDOW)
    limits = client.limits()
    periodic = periodic_view(client)
    if as_json:
        wire = {q: {t: {"limits": e["effective"].describe(), "running": e["running"],
                        "held": e["held"]}
                    for t, e in v["types"].items() if e["effective"] is not None}
                for q, v in limits.items()}
        return out.dumps({"redis": client.safe_url, "namespace": client.namespace,
                          "time": now, "queues": sizes, "totals": views.totals(sizes),
                          "limits": wire, "rates": rates, "periodic": periodic, **workers})
    parts = [f"Redis {client.safe_url}, namespace {client.namespace}", _rates_line(rates), "",
             render_queues(sizes, limits, None if every else SHOWN_QUEUES), "",
             render_workers(workers)]
    table = render_periodic(periodic, now)
    if table:
        parts += ["", table]
    return "\n".join(parts)


@click.command()
@click.argument("queue", metavar="[QUEUE]", required=False)
@click.option("--watch", "-w", type=click.FloatRange(min=0.1), is_flag=False, flag_value=2.0,
              default=None, metavar="[SECONDS]",
              help="redraw every SECONDS (2 if not given) until Ctrl-C; with --json, one "
                   "JSON document per line")
@click.option("--all", "every", is_flag=True,
              help=f"list every queue (else the {SHOWN_QUEUES} busiest, then a total line)")
@json_option
@click.pass_context
def status(ctx: click.Context, queue: str | None, watch: float | None, every: bool,
           as_json: bool) -> None:
    """Queues (depth per priority, scheduled, running, dead: the busiest first, and a total),
    masters, children, throughput; with QUEUE, that queue in detail (oldest ready task, next
    due, counters, consumers)."""
    client = open_client(ctx)
    if queue is not None:
        try:
            validate_name("queue", queue)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
    if watch is None:
        frame = _snapshot(client, queue, as_json, every)
        click.echo(out.pretty_json(frame) if as_json else frame)
        return
    try:
        while True:
            frame = _snapshot(client, queue, as_json, every)
            if as_json:
                click.echo(frame)
            else:
                click.clear()
                click.echo(f"every {watch:g}s, Ctrl-C to stop    {time.strftime('%H:%M:%S')}")
                click.echo(frame)
            time.sleep(watch)   # a redraw interval, not synchronisation
    except KeyboardInterrupt:
        pass


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
    events = ("enqueued", "started", "succeeded", "failed", "retried", "dead", "throttled")
    rows = [[t, *(c.get(e, 0) for e in events)] for t, c in sorted(counts["by_type"].items())]
    rows.append(["(total)", *(counts["total"].get(e, 0) for e in events)])
    click.echo(out.table(["TYPE", *(e.upper() for e in events)], rows))
    click.echo()
    click.echo(_rates_line(rates))
    if latency:
        click.echo()
        click.echo(f"last {LATENCY_WINDOW / 60:.0f} minutes (each percentile is interpolated "
                   "within its histogram bucket, shown after it: the true value lies there):")
        click.echo(out.table(
            ["TYPE", "DONE", "MEAN", "P50", "P90", "P99", "WAIT P50", "WAIT P99"],
            [[t, v["duration"].get("n"), out.duration(v["duration"].get("mean")),
              *(out.percentile(v["duration"], k) for k in ("p50", "p90", "p99")),
              out.percentile(v["wait"], "p50"), out.percentile(v["wait"], "p99")]
             for t, v in latency.items()]))


COMMANDS = (status, workers, stats)
