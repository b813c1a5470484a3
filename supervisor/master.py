"""The master: forks the children, watches them, replaces them; it never runs a task.

    tq-master ──fork──► worker[0] … worker[N-1]        (tq.worker.child)
        │ reads each child's pipe (ready, error, tally, exiting) and shared slot (task, heartbeat)
        │ signals: TERM/INT drain, second INT or QUIT stop now, HUP reload, TTIN/TTOU scale
        └ Redis: heartbeats, requeue of dead workers' lists, promotion of due tasks

The main loop waits on the signal self-pipe, every child pipe and the promotion connection at
once (≤ 100 ms, the granularity of time limits), then handles what happened, in this order,
every pass.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import select
import signal
import time
from dataclasses import dataclass
from typing import Any

import psutil
import redis
from setproctitle import setproctitle

from tq import exitcodes, logs
from tq.app import import_app
from tq.channel import BUSY, IDLE, RECONNECTING, STARTING
from tq.config import Config, load, protect_settings
from tq.errors import ConfigError, TQError
from tq.ids import new_id
from tq.periodic_tasks import Periodic, Scheduler
from tq.store.broker import Broker
from tq.store.embedded import ENV_HOME
from tq.store.grants import REFUSALS, note, refusal, require_master
from tq.store.link import OUTAGE
from tq.tally import Tally

from . import report
from .cancels import Cancels
from .children import Child, RestartPacer, account, fork_child, process_state, reap
from .forget import Forgetter, check_every
from .handoff import Handoffs
from .memory import own_memory
from .pidfile import Pidfile
from .recovery import Reap, Recovery
from .schedule import Promoter
from .services import Services

log = logging.getLogger("tq.master")

WAIT_MAX = 0.1             # loop period: how late a time limit or a due task may be noticed
TICK = 1.0                 # heartbeat, memory, titles, statistics
REAP_EXPIRED_EVERY = 5.0
BOOT_TIMEOUT = 120.0       # a child that is not ready this long after fork is stuck
MIN_FORK_RATE = 10         # forks per second allowed whatever the pool size (2 x target above)
SIGNALS = ("TERM", "INT", "QUIT", "HUP", "TTIN", "TTOU", "CHLD")


@dataclass
class Reload:
    generation: int
    old_config: Config
    old_target: int
    old_generation: int


class Supervisor:
    def __init__(self, config: Config, flags: dict[str, Any] | None = None) -> None:
        self.config = config
        self.flags = flags or {}
        self.target = config.workers
        self.host = os.uname().nodename
        self.pid = os.getpid()
        self.master_id = f"{self.host}.{self.pid}.{new_id()[-4:]}"
        self.started = time.time()
        self.children: dict[int, Child] = {}
        self.generation = 1
        self.spawned = 0
        self.sig_queue: list[int] = []
        self.pacer = RestartPacer()
        self.reload: Reload | None = None
        self.draining = self.quitting = self.booted = False
        self.drain_deadline = 0.0
        self.boot_error: str | None = None
        self.status = "starting"
        self.tally = Tally()
        self.processed = self.failed = self.restarts = 0
        self.next_tick = self.next_expired = self.next_error_log = self.next_forget = 0.0
        self.redis_down = False
        # Other masters' heartbeats read as expired right after an outage (theirs stopped too):
        # reap them only once everyone has had a TTL of good connection to beat again.
        self.reap_others_after = 0.0
        self.own_ids = {self.master_id}
        if config.home:   # the embedded Redis' state folder, for this process and its children
            os.environ[ENV_HOME] = config.home
        self.broker = Broker(config.redis_url, config.namespace, retries=0,
                             client_name="tq-master")
        self.recovery = Recovery(self.broker, self.host, self.own_ids)
        self.forgetter = Forgetter(self.broker)
        self.recovery.max_kills = config.max_worker_kills
        self.pidfile = Pidfile(config.pidfile) if config.pidfile else None
        self.services = Services(self.broker, self.master_id, self.host, self.started)
        self.promoter = Promoter(self.broker)
        self.handoffs = Handoffs(self.broker)
        self.cancels = Cancels(self.broker)
        if config.result_ttl:
            self.broker.result_ttl = config.result_ttl
        self.scheduler = Scheduler(self._periodic_client)   # periodic tasks (tq.periodic)
        self.scheduler.add(config.periodic or [])

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
        timeout = max(0.0, min(WAIT_MAX, self.next_tick - now, self.promoter.due_in(now),
                               self.scheduler.due_in(time.time())))
        fds = [self.sig_r] + [c.reader.fd for c in self.children.values() if not c.reader.eof]
        promoter_fds = self.promoter.filenos()
        fds.extend(promoter_fds)
        try:
            ready, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            return
        if any(fd in ready for fd in promoter_fds):
            self.promoter.on_readable(ready)
        if self.sig_r in ready:
            try:
                while os.read(self.sig_r, 4096):
                    pass
            except BlockingIOError:
                pass
        self.services.watchdog()

    # -- set-up -----------------------------------------------------------------------------
    def boot(self) -> int:
        cfg = self.config
        self.broker.ping()
        require_master(self.broker, cfg.replica_acks)   # what it and its children run, or exit 1
        self.broker.check_eviction_policy(allow=cfg.allow_eviction)
        self.broker.load_scripts()
        if self.pidfile:
            self.pidfile.create()
        try:
            self.services.start(cfg)   # first: a metrics port in use stops the start cleanly
        except Exception:
            if self.pidfile:
                self.pidfile.remove()
            raise
        if cfg.preload:
            error = import_app(cfg.app)
            if error:
                log.critical("%s", error)
                return exitcodes.MASTER_BOOT_ERROR
            gc.freeze()   # keep the imported objects' pages shared with the children
            log.info("handlers preloaded in the master: forks are cheaper, but SIGHUP reloads "
                     "the configuration only; new handler code needs a restart")
        self.init_signals()
        self.heartbeat()
        self.recovery.at_startup()
        self.reap_others_after = time.monotonic() + cfg.heartbeat_ttl
        log.info("master %s started (pid %d): %d children, app %s, queues %s, Redis %s",
                 self.master_id, self.pid, self.target, ",".join(cfg.app or []) or "-",
                 ",".join(cfg.queues or []) or "from handlers", self.broker.safe_url)
        setproctitle(report.title(cfg.app or [], 0, self.target, 0, 0, 0, "starting"))
        return exitcodes.OK

    def init_signals(self) -> None:
        self.sig_r, self.sig_w = os.pipe()
        os.set_blocking(self.sig_r, False)
        os.set_blocking(self.sig_w, False)
        signal.set_wakeup_fd(self.sig_w, warn_on_full_buffer=False)
        for name in SIGNALS:
            signal.signal(getattr(signal, f"SIG{name}"), self._record_signal)

    def _record_signal(self, signum: int, frame: object) -> None:
        # Only record it: logging, forking or reaping inside a handler can deadlock (gunicorn
        # learnt this the hard way); the wake-up fd makes the loop run at once.
        self.sig_queue.append(signum)

    # -- signals ----------------------------------------------------------------------------
    def handle_signals(self) -> None:
        while self.sig_queue:
            signum = self.sig_queue.pop(0)
            name = signal.Signals(signum).name[3:].lower()
            if name != "chld":
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
            c.kill_reason = c.kill_reason or "quit"
            c.signal(signal.SIGKILL)

    def handle_hup(self) -> None:
        if self.draining:
            return
        try:
            new = load(self.flags, config_file=self.config.config_file)
        except ConfigError as exc:
            log.error("reload: invalid configuration, keeping the current one: %s", exc)
            return
        except Exception:   # a reload must never take the running master down
            log.exception("reload: cannot read the configuration, keeping the current one")
            return
        fixed = {k: getattr(self.config, k)
                 for k in ("redis_url", "home", "namespace", "metrics_bind")}
        if any(getattr(new, k) != v for k, v in fixed.items()):
            log.warning("reload: redis_url, home, namespace and metrics_bind need a restart; "
                        "kept")
        new = dataclasses.replace(new, **fixed)
        if self.config.preload:
            log.warning("reload: handlers were preloaded in the master, so their code is not "
                        "re-imported (restart to load new code); the configuration is reloaded")
        logs.configure(new.log_level, new.log_format, "master")
        old = self.reload.old_config if self.reload else self.config
        old_gen = self.reload.old_generation if self.reload else self.generation
        old_target = self.reload.old_target if self.reload else self.target
        self.generation += 1
        self.reload = Reload(self.generation, old, old_target, old_gen)
        self.config, self.target = new, new.workers
        self.recovery.max_kills = new.max_worker_kills
        self.status = "reloading"
        self.services.reloading()
        log.info("reloading: replacing children one by one with generation %d (%d children)",
                 self.generation, self.target)

    def handle_ttin(self) -> None:
        self.target += 1
        log.info("one child more: %d", self.target)

    def handle_ttou(self) -> None:
        if self.target > 1:
            self.target -= 1
            log.info("one child fewer: %d", self.target)

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
            c.stop_reason = c.stop_reason or "drain"
            c.signal(signal.SIGTERM)

    # -- children ---------------------------------------------------------------------------
    def spawn(self) -> Child:
        used = {c.index for c in self.children.values() if c.active}
        index = next(i for i in range(len(used) + 1) if i not in used)
        self.spawned += 1
        worker_id = f"{self.master_id}-{self.spawned}"
        close = [self.sig_r, self.sig_w, *self.services.fds()] + [
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

    def on_message(self, c: Child, msg: dict[str, Any]) -> None:
        event = msg.get("e")
        if event == "ready":
            c.ready = True
            c.queues = [q for q in msg.get("queues", []) if isinstance(q, str)]
            self._periodic_from(c, msg.get("periodic"))
            log.debug("worker[%d] ready, queues %s", c.index, ",".join(c.queues),
                      extra={"worker": c.worker_id})
            if not self.booted and sum(ch.ready for ch in self.children.values()) >= self.target:
                self.booted = True
                self.status = "running"
                self.services.ready()
                log.info("all %d children are ready", self.target)
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

    def on_exit(self, c: Child, status: int) -> None:
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
        report = self.recovery.add(Reap(c.worker_id, c.queues or None, running=d.counted,
                                        kind=d.kind, reason=d.reason, killed=d.killed))
        if d.counted and d.kind != "cancelled":   # a death is that task's failed run
            ttype = c.state.type or "?"
            self.tally.add(ttype, "failed")
            if report is not None:
                self.tally.add(ttype, "dead" if d.counted in report.dead else "retried")
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

    def on_boot_failure(self, c: Child, how: str) -> None:
        why = c.error or how
        if self.reload and c.generation == self.reload.generation:
            self.abort_reload(why)
        elif not self.booted and c.error:
            log.critical("the first children cannot start: %s", why)
            self.boot_error = why

    def watch_children(self) -> None:
        now = time.monotonic()
        # An idle child beats at least every second; silent for twice the registry's TTL, it is
        # hung (deadlocked, stuck in C code) and is replaced.
        hung_after = 2 * self.config.heartbeat_ttl
        for c in self.children.values():
            st = c.state = c.slot.read()
            if c.kill_reason:
                continue
            if st.state == BUSY and st.deadline and now > st.deadline:
                log.error("%s task exceeded its hard time limit: killing worker[%d]", st.type,
                          c.index, extra={"worker": c.worker_id, "task": st.task})
                self.kill(c, "timeout")
            elif st.state in (IDLE, RECONNECTING) and now - st.heartbeat > hung_after:
                log.error("worker[%d] stopped reporting while idle (hung?): replacing it",
                          c.index, extra={"worker": c.worker_id})
                self.kill(c, "heartbeat")
            elif Cancels.overdue(c, now):
                log.warning("%s task was cancelled and did not stop within %gs: killing "
                            "worker[%d]", st.type, self.config.cancel_grace, c.index,
                            extra={"worker": c.worker_id, "task": st.task})
                self.kill(c, "cancelled")
            elif c.silent_for(now) > self.config.stall_timeout:
                log.error("worker[%d] showed no sign of life for %.0fs (%s): killing it; its "
                          "task goes back to the queue", c.index, c.silent_for(now),
                          process_state(c.pid), extra={"worker": c.worker_id,
                                                       **({"task": st.task} if st.task else {})})
                self.kill(c, "stalled")
            elif st.state == STARTING and not c.ready and now - c.born > BOOT_TIMEOUT:
                self.kill(c, "boot")
        if self.draining and not self.quitting and now > self.drain_deadline:
            for c in self.children.values():
                if not c.kill_reason:
                    log.warning("drain timeout: killing worker[%d]; its task goes back to the "
                                "queue", c.index, extra={"worker": c.worker_id})
                    self.kill(c, "drain_timeout")

    def kill(self, c: Child, reason: str) -> None:
        c.kill_reason = reason
        c.signal(signal.SIGKILL)

    def stop(self, c: Child, reason: str) -> None:
        c.stop_reason = reason
        c.signal(signal.SIGTERM)

    def maintain(self) -> None:
        if self.draining or self.boot_error:
            return
        if self.reload:
            self.advance_reload()
            return
        active = [c for c in self.children.values() if c.active]
        self.pacer.max_rate = max(MIN_FORK_RATE, 2 * self.target)
        for _ in range(self.target - len(active)):
            if not self.pacer.may_spawn():
                break
            self.spawn()
        for c in sorted(active, key=lambda ch: -ch.index)[:max(0, len(active) - self.target)]:
            self.stop(c, "scale_down")

    def advance_reload(self) -> None:
        r = self.reload
        assert r is not None
        kids = list(self.children.values())
        if any(c.generation == r.generation and c.active and not c.ready for c in kids):
            return   # wait until the newest child is up (an import error aborts the reload)
        old = [c for c in kids if c.generation < r.generation and c.active]
        active = sum(c.active for c in kids)
        if old:
            if active <= self.target:
                self.spawn()
            else:
                self.stop(min(old, key=lambda c: c.born), "reload")
        elif active < self.target:
            self.spawn()
        elif not any(c.generation < r.generation for c in kids):
            self.reload = None
            self.status = "running"
            self.services.ready()
            log.info("reload done: %d children of generation %d", self.target, self.generation)

    def abort_reload(self, why: str) -> None:
        r = self.reload
        assert r is not None
        log.error("reload failed, the running children stay: %s", why)
        for c in self.children.values():
            if c.generation == r.generation and c.active:
                self.stop(c, "reload_aborted")
        self.config, self.target, self.generation = r.old_config, r.old_target, r.old_generation
        self.recovery.max_kills = r.old_config.max_worker_kills
        self.reload = None
        self.status = "running"
        self.services.ready()

    def _periodic_client(self) -> Any:
        from tq import Client

        return Client(self.broker.url, self.config.namespace, socket_timeout=5.0,
                      keys=protect_settings(config=self.config) or "")

    def _periodic_from(self, c: Child, wire: Any) -> None:
        """The periodic tasks a child's handler modules declared (it imported them)."""
        if not isinstance(wire, list):
            return
        entries = []
        for item in wire:
            try:
                entries.append(Periodic(**item))
            except TypeError:
                log.warning("worker[%d] sent an unreadable periodic task: %r", c.index, item)
        self.scheduler.add(entries)

    def run_periodic(self) -> None:
        if self.draining or not self.scheduler.entries:
            return
        try:
            self.scheduler.run()
        except (*OUTAGE, TQError) as exc:   # the tick is tried again on the next pass
            if refusal(exc):
                note(exc, log, "periodic tasks")
            elif time.monotonic() >= self.next_error_log:
                self.next_error_log = time.monotonic() + 60
                log.warning("periodic tasks: %s", exc)

    # -- every second -----------------------------------------------------------------------
    def tick(self) -> None:
        self.run_periodic()
        now = time.monotonic()
        try:
            self.broker.quarantine.recheck()
        except OUTAGE:
            pass
        except REFUSALS as exc:
            note(exc, log, "the check for repaired queues")
        self.promoter.set_queues(self.serving())
        try:
            self.promoter.run(now)
        except redis.exceptions.ResponseError as exc:   # unexplained: no queue key is bad
            if now >= self.next_error_log:
                self.next_error_log = now + 60
                log.error("promoting due tasks failed: %s", exc)
        if self.promoter.woken or now >= self.next_tick:
            self.promoter.woken = False
            self.lifecycle()
        if now < self.next_tick:
            return
        self.next_tick = now + TICK
        self.measure()
        done, self.tally = self.tally, Tally()
        failed = done.total("failed")
        self.processed += done.total("succeeded") + failed
        self.failed += failed
        self.services.observe(done, self.child_infos())
        try:
            self.heartbeat()
            if self.redis_down:   # back: others' heartbeats are stale until they beat again
                log.info("Redis is reachable again")
                self.redis_down = False
                self.reap_others_after = now + self.config.heartbeat_ttl
            self.broker.register_queues(self.serving())   # cached; again after a reconnect
            self.recovery.flush()
            if now >= self.next_expired and now >= self.reap_others_after:
                self.next_expired = now + REAP_EXPIRED_EVERY
                self.recovery.expired(self.config.heartbeat_ttl)
            after = self.config.forget_queues_after
            if after and now >= self.next_forget and self.status == "running":
                self.next_forget = now + check_every(after)
                self.forgetter.run(after, self.serving())
            self.services.record(done)
        except OUTAGE as exc:
            if not self.redis_down:
                log.warning("Redis unavailable (%s): children wait for it; retrying", exc)
                self.redis_down = True
        except REFUSALS as exc:   # an ACL changed under it: said once, retried every second
            note(exc, log, "the master's bookkeeping")
        except redis.exceptions.ResponseError as exc:
            # Not an outage, and no queue's (those are set aside where they fail): a corrupt
            # registry or history key. Say so once a minute; the children go on.
            if now >= self.next_error_log:
                self.next_error_log = now + 60
                log.error("Redis refused the master's bookkeeping (%s): tasks still run; check "
                          "the registry and history keys", exc)
        kids = list(self.children.values())
        busy = sum(c.state.state == BUSY for c in kids)
        live = sum(c.active for c in kids)
        setproctitle(report.title(self.config.app or [], live, self.target, busy,
                                  self.processed, self.failed, self.status))
        self.services.status(report.summary(live, self.target, busy, self.processed,
                                            self.failed))

    def lifecycle(self) -> None:
        """Cancel requests for tasks its children run, and workflow hand-offs between queues
        (both push the queue's soon token, which wakes the promoter: at once, else every
        second)."""
        try:
            self.cancels.check(self.children.values(), self.config.cancel_grace)
            self.handoffs.run(self.serving())
        except OUTAGE:
            pass   # the tick says so
        except REFUSALS as exc:
            note(exc, log, "cancel requests / workflow hand-offs")
        except redis.exceptions.ResponseError as exc:
            if time.monotonic() >= self.next_error_log:
                self.next_error_log = time.monotonic() + 60
                log.error("cancel requests / workflow hand-offs: %s", exc)

    def serving(self) -> list[str]:
        """The queues this master's children consume (less those set aside as broken)."""
        return self.broker.quarantine.active(sorted(
            {q for c in self.children.values() for q in c.queues} | set(self.config.queues or ())))

    def measure(self) -> None:
        limit = self.config.max_memory_per_child
        for c in self.children.values():
            mem = own_memory(c.pid)
            if mem:
                c.uss, c.rss = mem
            try:
                proc = psutil.Process(c.pid)
                c.cpu = proc.cpu_percent(None) if c.cpu or c.ready else 0.0
                times = proc.cpu_times()
                c.cpu_seconds = times.user + times.system
            except psutil.Error:
                pass
            if limit and c.active and c.uss > limit * 1024 * 1024:
                log.warning("worker[%d] uses %.0f MB of its own (limit %g MB): replacing it "
                            "after its current task", c.index, c.uss / 2**20, limit,
                            extra={"worker": c.worker_id})
                self.stop(c, "memory")

    def child_infos(self) -> list[dict[str, Any]]:
        return [report.child_info(c, self.host, self.master_id) for c in self.children.values()]

    def heartbeat(self) -> None:
        infos = self.child_infos()
        info = report.master_info(
            self.master_id, self.host, self.pid, self.started, self.config.app or [],
            self.serving(),
            self.target, self.status, infos, self.processed, self.failed, self.restarts)
        self.broker.heartbeat(self.master_id, info, {i["id"]: i for i in infos if i["queues"]})

    # -- the end ----------------------------------------------------------------------------
    def shutdown(self) -> int:
        self.next_tick = 0.0
        self.tick()   # the children's last tallies came with their exit: count them
        self.scheduler.close()
        if self.boot_error:
            for c in self.children.values():
                self.kill(c, "boot")
            deadline = time.monotonic() + 5
            while self.children and time.monotonic() < deadline:
                self.reap_children()
                time.sleep(0.01)
        deadline = time.monotonic() + 5
        while self.recovery.pending and time.monotonic() < deadline:
            time.sleep(0.2)
            self.recovery.flush()
        if self.recovery.pending:
            log.error("Redis unreachable: %d dead worker(s) keep their tasks in Redis until a "
                      "master recovers them", len(self.recovery.pending))
        try:
            self.broker.unregister_master(self.master_id)
        except (*OUTAGE, *REFUSALS):
            pass
        self.services.close()
        self.promoter.close()
        self.forgetter.close()
        if self.pidfile:
            self.pidfile.remove()
        if self.boot_error:
            return exitcodes.MASTER_BOOT_ERROR
        log.info("master stopped: %d tasks processed, %d failed", self.processed, self.failed)
        return exitcodes.OK


