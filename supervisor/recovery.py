"""Putting back what dead workers held.

- A child of this master dies: its lists are requeued at once; the task it was running counts a
  failed attempt (so a task that kills every child ends dead, not in a crash loop).
- At start-up: workers registered on this host whose process is gone (the previous master was
  killed with its children), and processing lists nobody is registered for.
- Periodically: workers and masters of any host whose heartbeat expired (a machine died).
Every requeue is one Lua script per queue that also deletes the list, so two masters reaping
the same worker cannot requeue a task twice. While Redis is unreachable, or refuses a command
(an ACL), reaps wait in a list and are retried; the registry keeps the worker until its tasks
are back.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

import psutil

from tq.identity import same_host
from tq.store.broker import Broker, RequeueReport
from tq.store.grants import REFUSALS, note
from tq.store.link import OUTAGE

log = logging.getLogger("tq.master")


@dataclass
class Reap:
    worker_id: str
    queues: list[str] | None
    running: str | None = None      # the task that was running: counts an attempt
    count_head: bool = False        # running task unknown: the first claimed one counts
    kind: str = "died"
    reason: str = "worker died"
    killed: bool = False            # the running task crashed its worker (counts a kill)


def process_alive(pid: int, started: float | None) -> bool:
    """Is `pid` still the process that registered at `started` (pids get reused)?"""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:   # killed, not yet reaped by its new parent
            return False
        return started is None or proc.create_time() <= started + 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def reap_of(info: dict[str, Any], reason: str) -> Reap:
    """How to requeue a worker found dead from its registry entry. Its master wrote its state
    and current task there every second: that task failed with it; an idle worker charges
    nothing. With no such record (it died before its master's first heartbeat), the first
    claimed task is taken as the running one."""
    queues = None   # every queue it may hold tasks of (Broker.queues_of: its procs set...)
    state, task = info.get("state"), info.get("task")
    if state == "busy" and isinstance(task, str) and task:
        return Reap(info["id"], queues, running=task, reason=reason)
    if state in ("idle", "stopping", "reconnecting"):
        return Reap(info["id"], queues, reason=reason)
    return Reap(info["id"], queues, count_head=True, reason=reason)


class Recovery:
    def __init__(self, broker: Broker, host: str, own: set[str]) -> None:
        self.broker = broker
        self.host = host
        self.own = own          # ids of this master and its live children: never reaped here
        self.pending: list[Reap] = []
        self.max_kills = 3      # the master's max_worker_kills
        self._warned = False

    def add(self, reap: Reap) -> RequeueReport | None:
        """Requeue a dead worker's tasks now; None if Redis refused (retried later)."""
        self.pending.append(reap)
        done = self.flush()
        return done[-1] if done and not self.pending else None

    def flush(self) -> list[RequeueReport]:
        """Requeue what is pending; what Redis refuses now stays for the next call."""
        reports: list[RequeueReport] = []
        while self.pending:
            r = self.pending[0]
            try:
                report = self.broker.requeue_worker(
                    r.worker_id, r.queues, running_task_id=r.running, count_head=r.count_head,
                    kind=r.kind, reason=r.reason, killed=r.killed, max_kills=self.max_kills)
                self.broker.unregister_worker(r.worker_id)
            except OUTAGE as exc:
                if not self._warned:
                    log.warning("cannot requeue tasks of %s yet (Redis: %s); will retry",
                                r.worker_id, exc)
                    self._warned = True
                return reports
            except REFUSALS as exc:   # an ACL: said once, naming the grant; retried like that
                note(exc, log, f"requeue of the tasks of {r.worker_id}",
                     extra={"worker": r.worker_id})
                return reports
            self._warned = False
            self.pending.pop(0)
            reports.append(report)
            if report.requeued:
                log.info("requeued %d task(s) of %s", report.requeued, r.worker_id,
                         extra={"worker": r.worker_id})
            for tid in report.dead:   # its worker's death was its last attempt, or its Nth kill
                log.error("task is dead: its run ended with its worker (%s); `tq dead show %s` "
                          "has the details", r.reason, tid,
                          extra={"worker": r.worker_id, "task": tid})
        return reports

    def finish(self, timeout: float) -> None:
        """At shutdown: retry what Redis refused for up to `timeout` s, then say what is left."""
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.2)
            self.flush()
        if self.pending:
            log.error("Redis unreachable: %d dead worker(s) keep their tasks in Redis until a "
                      "master recovers them", len(self.pending))

    def at_startup(self) -> None:
        """Recover workers of this host that are gone, and orphaned lists (expired hosts are
        the periodic check's, once this master has been connected for a TTL)."""
        for w in self.broker.registry("workers"):
            wid = w["id"]
            if wid in self.own or not same_host(w, self.host):
                continue
            pid = w.get("pid")
            if isinstance(pid, int) and not process_alive(pid, w.get("started")):
                self.add(reap_of(w, "worker died: found gone when a master started on its host"))
        for m in self.broker.registry("masters"):
            pid = m.get("pid")
            if (m["id"] not in self.own and same_host(m, self.host) and isinstance(pid, int)
                    and not process_alive(pid, m.get("started"))):
                self.broker.unregister_master(m["id"])
        for wid in self.broker.orphaned_workers():
            if wid not in self.own:
                self.add(Reap(wid, None, reason="processing list without a registered worker"))

    def _stop_if_local(self, info: dict[str, Any]) -> None:
        """An expired worker that still runs on this host (a stuck orphan, or the child of a
        stuck master) is killed before its tasks are requeued: else it could finish one of
        them after another worker started it again."""
        pid = info.get("pid")
        if not (isinstance(pid, int) and same_host(info, self.host)
                and process_alive(pid, info.get("started"))):
            return
        log.warning("worker %s (pid %d) stopped heartbeating but still runs: killing it before "
                    "its tasks are requeued", info.get("id"), pid, extra={"worker": info.get("id")})
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass

    def expired(self, heartbeat_ttl: float) -> None:
        """Recover workers (and forget masters) whose heartbeat is older than the TTL."""
        _, masters, workers = self.broker.expired(heartbeat_ttl)
        dead = set(workers) - self.own
        if dead:
            infos = {w["id"]: w for w in self.broker.registry("workers") if w["id"] in dead}
            reason = (f"worker died: no heartbeat for {heartbeat_ttl:g}s "
                      "(its host or master is gone)")
            for wid in sorted(dead):
                info = infos.get(wid, {"id": wid})
                self._stop_if_local(info)
                self.add(reap_of(info, reason))
        for mid in masters:
            if mid not in self.own:
                log.warning("master %s stopped heartbeating: forgetting it", mid)
                self.broker.unregister_master(mid)
