"""What the master tells the outside: its registry entry, its process title, systemd's STATUS."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from setproctitle import setproctitle

from tq import __version__
from tq.channel import BUSY
from tq.identity import host_id

from .children import ChildRecord
from .services import Services


def child_info(c: ChildRecord, host: str, master_id: str) -> dict[str, Any]:
    st = c.state
    return {
        "id": c.worker_id, "index": c.index, "pid": c.pid, "host": host, "hostid": host_id(),
        "master": master_id,
        "queues": c.queues, "generation": c.generation, "procs": 1,
        "state": "stopping" if (c.stop_reason or c.kill_reason) and st.state != BUSY
        else st.state_name,
        "task": st.task or None, "type": st.type or None, "queue": st.queue or None,
        "since": st.started if st.state == BUSY else None,
        "rss": c.rss, "uss": c.uss, "cpu": round(c.cpu, 1),
        "cpu_seconds": round(c.cpu_seconds, 3),
        "processed": st.processed, "failed": st.failed,
        "started": time.time() - (time.monotonic() - c.born),
    }


def master_info(master_id: str, host: str, pid: int, started: float, app: list[str],
                queues: list[str], concurrency: int, status: str, children: list[dict[str, Any]],
                processed: int, failed: int, restarts: int) -> dict[str, Any]:
    return {
        "id": master_id, "host": host, "hostid": host_id(), "pid": pid, "started": started,
        "app": app,
        "queues": queues, "concurrency": concurrency, "status": status, "processed": processed,
        "failed": failed, "restarts": restarts, "version": __version__, "children": children,
    }


def title(app: list[str], live: int, concurrency: int, busy: int, processed: int, failed: int,
          status: str) -> str:
    what = "+".join(app) if app else "-"
    extra = "" if status == "running" else f" {status}"
    return (f"tq-master: app={what} children={live}/{concurrency} busy={busy} "
            f"processed={processed} failed={failed}{extra}")


def summary(live: int, concurrency: int, busy: int, processed: int, failed: int) -> str:
    return f"children={live}/{concurrency} busy={busy} processed={processed} failed={failed}"


def show(services: Services, app: list[str], children: Iterable[ChildRecord], concurrency: int,
         processed: int, failed: int, status: str) -> None:
    """The pool at a glance, in the process title and in systemd's STATUS."""
    kids = list(children)
    busy = sum(c.state.state == BUSY for c in kids)
    live = sum(c.active for c in kids)
    setproctitle(title(app, live, concurrency, busy, processed, failed, status))
    services.status(summary(live, concurrency, busy, processed, failed))
