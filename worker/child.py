"""The child process: its set-up after fork, its registration, its loop, and its exit.

Forked by the master (supervisor/children.py), which passes a ChildSpec. The child owns its
Redis connection, its processing lists and its handlers; it reports to the master through its
slot (per-task state, heartbeat) and its pipe (ready, error, tally, exiting). Signals: SIGTERM
finishes the current task, hands back prefetched ones and exits; the master uses SIGKILL for
anything harder. If the master dies, the kernel sends SIGTERM (PR_SET_PDEATHSIG).

The parts, each taking only those above it in this list:
    Runner (runner.py)           one task's run: its handler, under its time limits
    Stop (stop.py)               SIGTERM's flag, and the waits it may cut short
    Watch (watch.py)             the second thread: process title, sign of life, orphan duty
    Report (report.py)           the slot and the statistics the master reads
    Containment (containment.py) queues set aside as broken, acks held for them
    Outage (outage.py)           every Redis call of the loop, waiting out outages
    Acks (acks.py)               settling finished runs (acks batched, failures written)
    Fetcher (fetch.py)           claiming, the idle wait, and recovery after a failed claim
    Pool (pool.py)               many async tasks at once (--async-concurrency)
    Loop (loop.py)               claim -> run -> settle until it is time to go
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any, NoReturn

from tq import exitcodes, logs
from tq.app import handler_queues, import_app
from tq.channel import HELD_AT_FORK, IDLE, STOPPING, PipeWriter, Slot
from tq.config import Config, protect_settings
from tq.handlers import REGISTRY
from tq.identity import host_id
from tq.limits import merge
from tq.periodic_tasks import PERIODIC
from tq.protect import KeyRing
from tq.store.broker import Broker
from tq.store.groups import Group

from .acks import Acks
from .containment import Containment
from .fetch import IDLE_BLOCK, Fetcher
from .giveback import GiveBack
from .loop import Loop
from .outage import Outage
from .pool import Pool
from .prefetch import Prefetch
from .report import Report
from .runner import Runner
from .stop import Stop
from .watch import Watch, flush_logs

log = logging.getLogger("tq.worker")
PR_SET_PDEATHSIG = 1


@dataclass
class ChildSpec:
    index: int
    worker_id: str
    master_pid: int
    config: Config
    slot: Slot
    pipe_fd: int
    close_fds: tuple[int, ...] = ()
    preloaded: bool = False


def main(spec: ChildSpec) -> NoReturn:
    """Entry point right after fork; never returns into the master's code."""
    code = exitcodes.FAILURE
    try:
        code = WorkerProcess(spec).run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else exitcodes.FAILURE
    except BaseException:
        log.exception("worker crashed", extra={"worker": spec.worker_id})
    finally:
        flush_logs()
    os._exit(code)


class WorkerProcess:
    """One child process of tq-master (the master keeps its own record of each child, in
    supervisor/children.py)."""

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.config = spec.config
        self.wid = spec.worker_id
        self.slot = spec.slot
        self.pipe = PipeWriter(spec.pipe_fd)
        self.extra = {"worker": self.wid}
        self.stop = Stop()
        self.watch = Watch(spec.index, self.wid, spec.master_pid, spec.slot,
                           self.config.orphan_grace, self._orphan_beat)
        self.report = Report(self.slot, self.pipe, self.watch)
        self.queues: list[str] = []   # what it consumes: names and globs (-Q, or its handlers')
        self.group: Group | None = None
        self.keys: KeyRing | None = None
        self.broker: Broker | None = None   # made once the app is loaded
        self.runner: Runner | None = None
        self.started = time.time()
        self.leaving = False     # unregistering: the watch thread must not register it again

    # -- set-up -----------------------------------------------------------------------------
    def _setup_process(self) -> None:
        signal.set_wakeup_fd(-1)   # the master's self-pipe is not ours
        for fd in self.spec.close_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        signal.signal(signal.SIGTERM, self.stop.on_term)
        signal.signal(signal.SIGUSR1, self._on_cancel)
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU,
                    signal.SIGUSR2):
            signal.signal(sig, signal.SIG_IGN)
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_AT_FORK)   # held since the fork
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass   # not Linux: the getppid() check in the loop still catches an orphan
        logs.set_role(f"worker[{self.spec.index}]")
        self.watch.start()

    def _on_cancel(self, signum: int, frame: object) -> None:
        # The master asks to cancel the task named in the slot: raises tq.Cancelled in its
        # handler if that task runs now (nothing otherwise: it finished meanwhile).
        if self.runner is not None:
            self.runner.cancel(self.slot.cancel_target())

    def _load_app(self) -> bool:
        """Import the handlers, find the queues; False (the master is told why) if either fails."""
        if not self.spec.preloaded:
            error = import_app(self.config.app)
            if error:
                log.error("%s", error, extra=self.extra)
                self.pipe.send("error", kind="app", message=error)
                return False
        self.keys = protect_settings(config=self.config)   # checked by the master already
        self.queues = self.config.queues or handler_queues()
        if not self.queues:
            message = "no handlers registered (give -A MODULE) and no --queues"
            self.pipe.send("error", kind="app", message=message)
            log.error("%s", message, extra=self.extra)
            return False
        self.group = Group.of(self.queues, self.config.weights(), self.config.strict)
        return True

    def _connect(self) -> Broker:
        cfg = self.config
        broker = Broker(cfg.redis_url, cfg.namespace, retries=0,
                        socket_timeout=IDLE_BLOCK + 9, client_name="tq-worker")
        broker.replica_acks = cfg.replica_acks
        broker.replica_timeout_ms = int(cfg.replica_ack_timeout * 1000)
        if cfg.result_ttl:
            broker.result_ttl = cfg.result_ttl
        return broker

    def _assemble(self, broker: Broker, runner: Runner) -> Loop:
        """The loop and its parts, in the order of this module's docstring."""
        cfg, wid, report, stop = self.config, self.wid, self.report, self.stop
        prefetch = Prefetch(cfg.prefetch)
        assert self.group is not None
        containment = Containment(broker, wid)
        outage = Outage(broker, containment, report, self.watch, wid)
        acks = Acks(broker, wid, cfg.result_ttl, runner, containment, outage, report)
        fetcher = Fetcher(broker, wid, cfg.result_ttl, cfg.async_concurrency, acks,
                          containment, outage, report, stop, self.group, prefetch)
        containment.suspects = fetcher.in_line
        pool = Pool(cfg.async_concurrency, broker, runner, fetcher, acks, outage, report,
                    stop) if cfg.async_concurrency > 1 else None
        if pool is None:
            self.watch.duty = GiveBack(broker, wid, self.slot, fetcher).check
        return Loop(self.spec.master_pid, cfg.max_tasks_per_child, stop, fetcher, acks, runner,
                    pool, outage, report, prefetch)

    # -- the life of the process ------------------------------------------------------------
    def run(self) -> int:
        self._setup_process()
        if not self._load_app():
            return exitcodes.CHILD_APP_ERROR
        broker = self.broker = self._connect()
        runner = self.runner = Runner(broker, self.wid, self.keys)
        signal.signal(signal.SIGALRM, runner.on_alarm)
        loop = self._assemble(broker, runner)
        self.report.state(IDLE)
        loop.outage.call(lambda: self._register(broker))
        self.pipe.send("ready", worker=self.wid, queues=self.queues, pid=os.getpid(),
                       periodic=[e.to_wire() for e in PERIODIC.values()])
        self.watch.state = "idle"
        try:
            loop.run()
        finally:
            self.finish(loop, broker)
        return exitcodes.OK

    def _register(self, b: Broker) -> None:
        assert self.group is not None
        # before its first claim: producers enter queues in it; whoever made the group sweeps
        # for it, so what waited before the group existed is in line at once
        made = b.register_group(self.group)
        b.register_queues(self.group.names())
        if made:
            b.sweep_group(self.group)
        policies: dict[str, dict[str, dict[str, Any]]] = {}
        for spec in REGISTRY.values():
            policies.setdefault(spec.queue, {})[spec.type] = spec.policy()
        if policies:
            b.publish_policies(policies)
        limits: dict[str, dict[str, Any]] = {}
        configured = self.config.limits or {}
        for spec in REGISTRY.values():   # the config's limits on top of the handler's
            limits.setdefault(spec.queue, {})[spec.type] = merge(spec.limits,
                                                                 configured.get(spec.type))
        if limits:
            b.declare_limits(limits)
        self.started = time.time()
        b.register_worker(self.wid, self.registry_info(state="starting"))

    def registry_info(self, **fields: Any) -> dict[str, Any]:
        """This worker's registry entry (the master writes it each second while it lives)."""
        return {"id": self.wid, "host": os.uname().nodename, "hostid": host_id(),
                "pid": os.getpid(), "master": self.spec.master_pid, "index": self.spec.index,
                "queues": self.queues, "started": self.started,
                "procs": 1,   # its queues are in its procs set (Broker.queues_of)
                **fields}

    def _orphan_beat(self, **fields: Any) -> bool:
        """For the watch thread once the master is gone (see Watch)."""
        if self.broker is None or self.leaving:
            return False
        self.broker.register_worker(self.wid, self.registry_info(**fields))
        return True

    def finish(self, loop: Loop, broker: Broker) -> None:
        """Ack what finished, hand back what never started, leave the registry."""
        self.report.state(STOPPING)
        self.watch.state = "stopping"
        fetcher = loop.fetcher
        loop.acks.flush()
        if fetcher.pending or fetcher.unsure:
            n = fetcher.hand_back()
            if n:
                log.info("handed back %d claimed task(s) it had not started", n,
                         extra=self.extra)
            fetcher.pending.clear()
        self.leaving = True
        loop.outage.call(lambda: broker.unregister_worker(self.wid))
        self.report.send_tally(force=True)
        self.pipe.send("exiting", reason=loop.exit_reason)
        sys.stdout.flush()
