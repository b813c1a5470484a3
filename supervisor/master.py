"""The master: forks the children, watches them, replaces them; it never runs a task.

    tq-master ──fork──► worker[0] … worker[N-1]        (tq.worker.child)
        │ reads each child's pipe (ready, error, tally, exiting) and shared slot (task, heartbeat)
        │ signals (signals.py): TERM/INT drain, 2nd INT or QUIT stop now, HUP reload, TTIN/TTOU
        └ Redis (housekeeping.py): heartbeats, requeue of dead workers, promotion of due tasks

The main loop (run) waits on the signal self-pipe, every child pipe and the promotion
connections at once (≤ 100 ms, the granularity of time limits), then handles what happened, in
this order, every pass. Around it: boot.py (checks before the first fork), children.py (fork,
reap, why a child died), kills.py (which child to kill), reload.py (SIGHUP).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import time
from typing import Any

from setproctitle import setproctitle

from tq import exitcodes, logs
from tq.config import Config
from tq.ids import new_id
from tq.store.broker import Broker
from tq.store.embedded import ENV_HOME
from tq.store.grants import REFUSALS
from tq.store.groups import Group
from tq.store.link import OUTAGE
from tq.tally import Tally

from . import report
from .boot import check_redis, open_outputs, preload
from .children import ChildRecord, RestartPacer, account, fork_child, reap
from .housekeeping import Housekeeping
from .kills import why_kill
from .memory import measure
from .pidfile import Pidfile
from .recovery import Reap, Recovery
from .reload import DONE, SPAWN, STOP, Reload, next_step, reread_config
from .services import Services
from .signals import SignalQueue

log = logging.getLogger("tq.master")

WAIT_MAX = 0.1             # loop period: how late a time limit or a due task may be noticed
MIN_FORK_RATE = 10         # forks per second allowed whatever the pool size (2 x concurrency above)


class Supervisor:
    def __init__(self, config: Config, flags: dict[str, Any] | None = None) -> None:
        self.config = config
        self.flags = flags or {}
        self.concurrency = config.concurrency
        self.host = os.uname().nodename
        self.pid = os.getpid()
        self.master_id = f"{self.host}.{self.pid}.{new_id()[-4:]}"
        self.started = time.time()
        self.children: dict[int, ChildRecord] = {}
        self.generation = 1
        self.spawned = 0
        self.signals = SignalQueue()
        self.pacer = RestartPacer()
        self.reload: Reload | None = None
        self.draining = self.quitting = self.booted = False
        self.drain_deadline = 0.0
        self.boot_error: str | None = None
        self.status = "starting"
        self.tally = Tally()
        self.processed = self.failed = self.restarts = 0
        self.own_ids = {self.master_id}
        if config.home:   # the embedded Redis' state folder, for this process and its children
            os.environ[ENV_HOME] = config.home
        self.broker = Broker(config.redis_url, config.namespace, retries=0,
                             client_name="tq-master")
        if config.result_ttl:
            self.broker.result_ttl = config.result_ttl
        self.recovery = Recovery(self.broker, self.host, self.own_ids)
        self.recovery.max_kills = config.max_worker_kills
        self.pidfile = Pidfile(config.pidfile) if config.pidfile else None
        self.services = Services(self.broker, self.master_id, self.host, self.started)
        self.housekeeping = Housekeeping(self, self.broker, self.services, self.recovery)
        self.housekeeping.master_id = self.master_id

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> int:
        code = self.boot()
        if code != exitcodes.OK:
            return code
        while not self.finished():
            self.wait()
            self.handle_signals()
            self.read_pipes()
            self.reap_children()
            self.watch_children()
            self.maintain()
            self.tick()
        return self.shutdown()

    def finished(self) -> bool:
        if self.boot_error:
            return True
        return self.draining and not self.children

    def wait(self) -> None:
        now = time.monotonic()
        timeout = max(0.0, min(WAIT_MAX, self.housekeeping.due_in(now)))
        fds = [self.signals.reader] + [c.reader.fd for c in self.children.values()
                                       if not c.reader.eof]
        housekeeping_fds = self.housekeeping.fds()
        fds.extend(housekeeping_fds)
        try:
            ready, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            return
        if any(fd in ready for fd in housekeeping_fds):
            self.housekeeping.on_readable(ready)
        if self.signals.reader in ready:
            self.signals.clear_wakeups()
        self.services.watchdog()

    def boot(self) -> int:
        cfg = self.config
        check_redis(self.broker, cfg.allow_eviction, cfg.replica_acks)
        # before the preload: a metrics port in use stops the start at once, cleanly
        open_outputs(self.pidfile, self.services, cfg)
        if cfg.preload and not preload(cfg.app):
            return exitcodes.MASTER_BOOT_ERROR
        self.signals.install()
        self.heartbeat()
        self.recovery.at_startup()
        self.housekeeping.hold_reaping()
        log.info("master %s started (pid %d): %d children, app %s, queues %s, Redis %s",
                 self.master_id, self.pid, self.concurrency, ",".join(cfg.app or []) or "-",
                 ",".join(cfg.queues or []) or "from handlers", self.broker.safe_url)
        setproctitle(report.title(cfg.app or [], 0, self.concurrency, 0, 0, 0, "starting"))
        return exitcodes.OK

    # -- signals (recorded by their handlers, handled here) ---------------------------------
    def handle_signals(self) -> None:
        for name in self.signals.received():
            if name != "chld":   # SIGCHLD only wakes the loop: reap_children runs every pass
                log.info("received SIG%s", name.upper())
                getattr(self, f"handle_{name}")()

    def handle_term(self) -> None:
        self.begin_drain("SIGTERM")

    def handle_int(self) -> None:
        if self.draining:
            self.handle_quit()   # a second Ctrl-C: stop now
        else:
            self.begin_drain("SIGINT")

    def handle_quit(self) -> None:
        self.draining = self.quitting = True
        self.reload = None
        self.status = "stopping"
        log.info("stopping now: killing %d children, their tasks go back to the queues",
                 len(self.children))
        for c in self.children.values():
            c.kill(c.kill_reason or "quit")

    def handle_hup(self) -> None:
        if self.draining:
            return
        new = reread_config(self.config, self.flags)
        if new is None:
            return
        logs.configure(new.log_level, new.log_format, "master")
        self.reload = Reload.after(self.reload, self.config, self.concurrency, self.generation)
        self.generation = self.reload.generation
        self.config, self.concurrency = new, new.concurrency
        self.recovery.max_kills = new.max_worker_kills
        self.status = "reloading"
        self.services.reloading()
        log.info("reloading: replacing children one by one with generation %d (%d children)",
                 self.generation, self.concurrency)

    def handle_ttin(self) -> None:
        self.concurrency += 1
        log.info("one child more: %d", self.concurrency)

    def handle_ttou(self) -> None:
        if self.concurrency > 1:
            self.concurrency -= 1
            log.info("one child fewer: %d", self.concurrency)

    def begin_drain(self, why: str) -> None:
        if self.draining:
            return
        self.draining = True
        self.reload = None
        self.status = "draining"
        self.drain_deadline = time.monotonic() + self.config.drain_timeout
        self.services.stopping()
        log.info("draining (%s): no new tasks; %d children finish their current task within "
                 "%gs", why, len(self.children), self.config.drain_timeout)
        for c in self.children.values():
            c.stop(c.stop_reason or "drain")

    # -- children ---------------------------------------------------------------------------
    def spawn(self) -> ChildRecord:
        used = {c.index for c in self.children.values() if c.active}
        index = next(i for i in range(len(used) + 1) if i not in used)
        self.spawned += 1
        worker_id = f"{self.master_id}-{self.spawned}"
        close = [*self.signals.fds(), *self.services.fds()] + [
            c.reader.fd for c in self.children.values()]
        child = fork_child(index, worker_id, self.generation, self.pid, self.config, close,
                           self.config.preload)
        self.pacer.spawned()
        self.children[child.pid] = child
        self.own_ids.add(worker_id)
        log.info("started worker[%d] (pid %d, generation %d)", index, child.pid,
                 child.generation, extra={"worker": worker_id})
        return child

    def read_pipes(self) -> None:
        for c in list(self.children.values()):
            for msg in c.reader.read():
                self.on_message(c, msg)

    def on_message(self, c: ChildRecord, msg: dict[str, Any]) -> None:
        event = msg.get("e")
        if event == "ready":
            c.ready = True
            c.queues = [q for q in msg.get("queues", []) if isinstance(q, str)]
            self.housekeeping.add_periodic(c.index, msg.get("periodic"))
            log.debug("worker[%d] ready, queues %s", c.index, ",".join(c.queues),
                      extra={"worker": c.worker_id})
            if c.stop_reason and c.pid in self.children:   # not reaped: the pid is still its
                # Asked to stop while it started: a SIGTERM before its handler was lost (the
                # child still had the master's), so it is sent again now that it listens.
                c.signal(signal.SIGTERM)
            ready = sum(ch.ready for ch in self.children.values())
            if not self.booted and ready >= self.concurrency:
                self.booted = True
                self.status = "running"
                self.services.ready()
                log.info("all %d children are ready", self.concurrency)
        elif event == "tally":
            try:
                self.tally.merge(Tally.from_wire(msg.get("d") or {}))
            except (TypeError, ValueError, AttributeError):
                log.debug("ignored a malformed tally from worker[%d]", c.index)
        elif event == "error":
            c.error = str(msg.get("message", ""))
        elif event == "exiting":
            c.exited = str(msg.get("reason", ""))

    def reap_children(self) -> None:
        for pid, status in reap():
            child = self.children.pop(pid, None)
            if child is not None:
                self.on_exit(child, status)

    def on_exit(self, c: ChildRecord, status: int) -> None:
        for msg in c.reader.read():
            self.on_message(c, msg)
        c.reader.close()
        c.state = c.slot.read()
        c.slot.close()
        self.own_ids.discard(c.worker_id)
        d = account(c, status)
        extra = {"worker": c.worker_id, **({"task": c.state.task} if c.state.task else {})}
        quiet = d.clean or c.kill_reason in ("quit", "drain_timeout")
        log.log(logging.INFO if quiet else logging.WARNING, "worker[%d] (pid %d) %s%s", c.index,
                c.pid, d.how, f" [{d.note}]" if d.note else "", extra=extra)
        requeued = self.recovery.add(Reap(c.worker_id, None, running=d.counted,
                                          kind=d.kind, reason=d.reason, killed=d.killed))
        if d.counted and d.kind != "cancelled":   # a death is that task's failed run
            ttype = c.state.type or "?"
            self.tally.add(ttype, "failed")
            if requeued is not None:
                self.tally.add(ttype, "dead" if d.counted in requeued.dead else "retried")
        if self.draining:
            return
        if d.paced:
            delay = self.pacer.crashed()
            if delay:
                log.warning("children keep crashing with no task to blame: next start in "
                            "%.1fs", delay)
        self.restarts += 1
        self.services.child_restarted(d.cause)
        if not c.ready:
            self.on_boot_failure(c, d.how)

    def on_boot_failure(self, c: ChildRecord, how: str) -> None:
        why = c.error or how
        if self.reload and c.generation == self.reload.generation:
            self.abort_reload(why)
        elif not self.booted and c.error:
            log.critical("the first children cannot start: %s", why)
            self.boot_error = why

    def watch_children(self) -> None:
        now = time.monotonic()
        for c in self.children.values():
            c.state = c.slot.read()
            reason = None if c.kill_reason else why_kill(c, now, self.config)
            if reason:
                c.kill(reason)
        if self.draining and not self.quitting and now > self.drain_deadline:
            for c in self.children.values():
                if not c.kill_reason:
                    log.warning("drain timeout: killing worker[%d]; its task goes back to the "
                                "queue", c.index, extra={"worker": c.worker_id})
                    c.kill("drain_timeout")

    def maintain(self) -> None:
        """Fork or stop children toward the concurrency (or the next step of a reload)."""
        if self.draining or self.boot_error:
            return
        if self.reload:
            self.advance_reload(self.reload)
            return
        active = [c for c in self.children.values() if c.active]
        self.pacer.max_rate = max(MIN_FORK_RATE, 2 * self.concurrency)
        for _ in range(self.concurrency - len(active)):
            if not self.pacer.may_spawn():
                break
            self.spawn()
        for c in sorted(active, key=lambda ch: -ch.index)[:max(0, len(active) - self.concurrency)]:
            c.stop("scale_down")

    # -- reload (SIGHUP) --------------------------------------------------------------------
    def advance_reload(self, r: Reload) -> None:
        step, child = next_step(r, self.children.values(), self.concurrency)
        if step == SPAWN:
            self.spawn()
        elif step == STOP and child is not None:
            child.stop("reload")
        elif step == DONE:
            self.end_reload()
            log.info("reload done: %d children of generation %d", self.concurrency, self.generation)

    def abort_reload(self, why: str) -> None:
        r = self.reload
        assert r is not None
        log.error("reload failed, the running children stay: %s", why)
        for c in self.children.values():
            if c.generation == r.generation and c.active:
                c.stop("reload_aborted")
        self.config, self.concurrency = r.old_config, r.old_concurrency
        self.generation = r.old_generation
        self.recovery.max_kills = r.old_config.max_worker_kills
        self.end_reload()

    def end_reload(self) -> None:
        self.reload = None
        self.status = "running"
        self.services.ready()

    # -- every pass, every second ----------------------------------------------------------
    def tick(self, final: bool = False) -> None:
        """Housekeeping every pass (housekeeping.py); once a second (and at the end) also the
        children's measures, the statistics, the heartbeat and the process title."""
        if not self.housekeeping.every_pass(final):
            return
        for c in measure(self.children.values(), self.config.max_memory_per_child):
            c.stop("memory")
        done, self.tally = self.tally, Tally()
        failed = done.total("failed")
        self.processed += done.total("succeeded") + failed
        self.failed += failed
        self.services.observe(done, self.child_infos())
        self.housekeeping.every_second(done)
        report.show(self.services, self.config.app or [], self.children.values(), self.concurrency,
                    self.processed, self.failed, self.status)

    def serving(self) -> list[str]:
        """What this master's children consume: queue names and globs (-Q, or their
        handlers' queues), less the queues set aside as broken."""
        return self.broker.quarantine.active(list(dict.fromkeys(
            [*(self.config.queues or ()), *(q for c in self.children.values() for q in c.queues)])))

    def groups(self) -> list[Group]:
        """The consumer groups its children claim through (one, unless a reload changed -Q)."""
        cfg = self.config
        specs = {tuple(c.queues) for c in self.children.values() if c.queues}
        return [Group.of(list(s), cfg.weights(), cfg.strict) for s in sorted(specs)]

    def child_infos(self) -> list[dict[str, Any]]:
        return [report.child_info(c, self.host, self.master_id) for c in self.children.values()]

    def heartbeat(self) -> None:
        infos = self.child_infos()
        info = report.master_info(
            self.master_id, self.host, self.pid, self.started, self.config.app or [],
            self.serving(),
            self.concurrency, self.status, infos, self.processed, self.failed, self.restarts)
        self.broker.heartbeat(self.master_id, info, {i["id"]: i for i in infos if i["queues"]})

    # -- the end ----------------------------------------------------------------------------
    def shutdown(self) -> int:
        self.tick(final=True)   # the children's last tallies came with their exit: count them
        if self.boot_error:
            for c in self.children.values():
                c.kill("boot")
            deadline = time.monotonic() + 5
            while self.children and time.monotonic() < deadline:
                self.reap_children()
                time.sleep(0.01)
        self.recovery.finish(timeout=5)
        try:
            self.broker.unregister_master(self.master_id)
        except (*OUTAGE, *REFUSALS):
            pass
        self.services.close()
        self.housekeeping.close()
        if self.pidfile:
            self.pidfile.remove()
        if self.boot_error:
            return exitcodes.MASTER_BOOT_ERROR
        log.info("master stopped: %d tasks processed, %d failed", self.processed, self.failed)
        return exitcodes.OK
