"""The child process: claim -> run -> ack/fail, one task at a time, until told to stop.

Forked by the master (supervisor/children.py), which passes a ChildSpec. The child owns its
Redis connection, its processing lists and its handlers; it reports to the master through its
slot (per-task state, heartbeat) and its pipe (ready, error, tally, exiting). Signals: SIGTERM
finishes the current task, hands back prefetched ones and exits; the master uses SIGKILL for
anything harder. If the master dies, the kernel sends SIGTERM (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import random
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, NoReturn

import redis

from tq import exitcodes, logs
from tq.app import handler_queues, import_app
from tq.channel import BUSY, HELD_AT_FORK, IDLE, RECONNECTING, STOPPING, PipeWriter, Slot
from tq.config import Config, protect_settings
from tq.errors import NoPermission
from tq.handlers import REGISTRY
from tq.identity import host_id
from tq.limits import merge
from tq.periodic_tasks import PERIODIC
from tq.store.broker import Ack, Broker, ClaimResult
from tq.store.grants import note, refusal
from tq.store.link import OUTAGE
from tq.tally import Tally
from tq.task import Task

from .order import QueueOrder
from .prefetch import ACK_WINDOW, Prefetch
from .runner import Failure, Runner, queue_wait
from .watch import Watch, flush_logs

log = logging.getLogger("tq.worker")
TALLY_EVERY = 0.25       # seconds between statistics messages to the master
STRAY_SWEEP = 1.0        # s between a busy worker's looks for strays (idle: each wake-up)
PARENT_CHECK = 0.1   # s between getppid() checks in the loop (PR_SET_PDEATHSIG is first)
IDLE_BLOCK = 1.0         # longest wait on Redis while idle: the heartbeat's period
PR_SET_PDEATHSIG = 1
ORPHAN_REDIS_PATIENCE = 10   # seconds an orphan waits out a Redis outage before it just exits
POOL_CANCEL_CHECK = 0.5   # s between looks for cancel requests of pooled async tasks
POOL_REFILL = 0.05        # s a pool with room waits before claiming again after finding none


def _no_start(*args: Any) -> None:
    """Pooled async tasks are published by the pool (_publish_pool), not one by one."""


class _Interrupt(BaseException):  # control flow, raised by the SIGTERM handler
    """Breaks an idle wait on Redis when the child is told to stop."""


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
        code = Child(spec).run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else exitcodes.FAILURE
    except BaseException:
        log.exception("worker crashed", extra={"worker": spec.worker_id})
    finally:
        flush_logs()
    os._exit(code)


class Child:
    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.config = spec.config
        self.wid = spec.worker_id
        self.slot = spec.slot
        self.pipe = PipeWriter(spec.pipe_fd)
        self.stopping = False
        self.blocking = False
        self.unsure = False      # a claim's reply may have been lost: lists hold unknown tasks
        self.outage_delay: float | None = None   # set while Redis is unavailable
        self.exit_reason = "stopped"
        self.queues: list[str] = []
        self.pending: deque[Task] = deque()
        self.acks: list[Ack] = []
        self.held_acks: list[Ack] = []   # acks of tasks whose queue was found broken
        self.tally = Tally()
        self.tally_sent = time.monotonic()
        self.prefetch = Prefetch(self.config.prefetch)
        self.order = QueueOrder(self.config.weights(), self.config.strict)
        self.pooled = self.config.async_concurrency > 1   # async tasks many at once
        self.leaving = False     # unregistering: the watch thread must not register it again
        self.started = time.time()
        self.outage_since = 0.0
        self.title = Watch(self)
        self.extra = {"worker": self.wid}
        self.broker: Broker
        self.runner: Runner

    # -- set-up -----------------------------------------------------------------------------
    def _setup_process(self) -> None:
        signal.set_wakeup_fd(-1)   # the master's self-pipe is not ours
        for fd in self.spec.close_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        signal.signal(signal.SIGTERM, self._on_term)
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
        self.title.start()

    def _on_term(self, signum: int, frame: object) -> None:
        # Only a flag (and, while idle on Redis, a way out of the blocking read): the work of
        # stopping happens in the loop, outside the handler.
        self.stopping = True
        if self.blocking:
            raise _Interrupt

    def _on_cancel(self, signum: int, frame: object) -> None:
        # The master asks to cancel the task named in the slot: raises tq.Cancelled in its
        # handler if that task runs now (nothing otherwise: it finished meanwhile).
        runner = getattr(self, "runner", None)
        if runner is not None:
            runner.cancel(self.slot.cancel_target())

    def run(self) -> int:
        self._setup_process()
        if not self.spec.preloaded:
            error = import_app(self.config.app)
            if error:
                log.error("%s", error, extra=self.extra)
                self.pipe.send("error", kind="app", message=error)
                return exitcodes.CHILD_APP_ERROR
        self.keys = protect_settings(config=self.config)   # checked by the master already
        self.queues = self.config.queues or handler_queues()
        if not self.queues:
            message = "no handlers registered (give -A MODULE) and no --queues"
            self.pipe.send("error", kind="app", message=message)
            log.error("%s", message, extra=self.extra)
            return exitcodes.CHILD_APP_ERROR
        self.broker = Broker(self.config.redis_url, self.config.namespace, retries=0,
                             socket_timeout=IDLE_BLOCK + 9, client_name="tq-worker")
        self.broker.replica_acks = self.config.replica_acks
        self.broker.replica_timeout_ms = int(self.config.replica_ack_timeout * 1000)
        if self.config.result_ttl:
            self.broker.result_ttl = self.config.result_ttl
        self.runner = Runner(self.broker, self.wid, self.keys)
        signal.signal(signal.SIGALRM, self.runner.on_alarm)
        self._publish(IDLE)
        self.redis(self._register)
        self.pipe.send("ready", worker=self.wid, queues=self.queues, pid=os.getpid(),
                       periodic=[e.to_wire() for e in PERIODIC.values()])
        self.title.state = "idle"
        try:
            self.loop()
        finally:
            self.finish()
        return exitcodes.OK

    def _register(self) -> None:
        b = self.broker
        b.register_queues(self.queues)
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
                "queues": self.queues, "started": self.started, **fields}

    # -- the loop ---------------------------------------------------------------------------
    def loop(self) -> None:
        max_tasks = self.config.max_tasks_per_child
        done = 0
        next_parent_check = 0.0
        while not self.stopping:
            # PR_SET_PDEATHSIG tells a child its master died at once (Linux); this check is the
            # fallback, and a syscall per task would show in a profile: ten times a second.
            now = time.monotonic()
            if now >= next_parent_check:
                next_parent_check = now + PARENT_CHECK
                if os.getppid() != self.spec.master_pid:
                    self.exit_reason = "master gone"
                    break
            if not self.pending and not self._claim():
                continue
            task = self.pending.popleft()
            if self.pooled and self.runner.is_async(task):
                done += self._run_pool(task)
            else:
                self._run(task)
                done += 1
            if max_tasks and done >= max_tasks:
                self.exit_reason = "max_tasks"
                break
        if self.stopping and self.exit_reason == "stopped":
            self.exit_reason = "told to stop"

    @property
    def serving(self) -> list[str]:
        """The queues this worker claims from: its queues less those found broken."""
        return self.broker.quarantine.active(self.queues)

    def _claim(self) -> bool:
        """Send waiting acks and claim more; blocks while there is nothing. True if claimed."""
        self._publish(IDLE)
        if self.broker.quarantine.queues:   # some queue is set aside: repaired yet?
            back = self.redis(self.broker.quarantine.recheck)
            if back:
                self._resume(back)
        if not self.serving:
            self._idle_without_queues()
            return False
        try:
            # Called with nothing pending: once these acks are settled this worker holds no
            # task, so Redis hands back any claim made in its name whose reply was lost.
            order = self.order.next(self.serving)
            got = self.broker.claim(self.wid, order, self._batch(),
                                    acks=self.acks, result_ttl=self.config.result_ttl,
                                    holds_nothing=self._sweep_due())
        except OUTAGE as exc:
            self._recover(exc)
            return False
        except redis.exceptions.ResponseError as exc:
            self._contain(exc)
            return False
        self._settled(got)
        if not got.tasks and not self.stopping:
            got = self._wait_and_claim(got.next_due, order)
            self._strays(got)
        self.pending.extend(got.tasks)
        return bool(got.tasks)

    def _sweep_due(self) -> bool:
        """Should this claim look for strays (see Broker.claim's holds_nothing)? Called with
        nothing pending, so the worker will hold nothing once its acks are settled. A stray
        is a claim made in its name whose reply never came (a call delivered late after a
        network cut): rare, so a busy worker looks once every STRAY_SWEEP seconds, not on
        every claim (each look reads every queue's processing list)."""
        now = time.monotonic()
        if now < self._next_sweep:
            return False
        self._next_sweep = now + STRAY_SWEEP
        return True

    _next_sweep = 0.0

    def _batch(self) -> int:
        """Tasks per claim: the prefetch's, or async_concurrency when that is larger."""
        size = self.prefetch.size()
        return size if size >= self.config.async_concurrency else self.config.async_concurrency

    def _wait_and_claim(self, next_due: float | None, order: list[str]) -> ClaimResult:
        """Idle: block on the queues' wake-up lists with the next claim queued behind."""
        self._send_tally(force=True)
        timeout = IDLE_BLOCK if next_due is None else min(IDLE_BLOCK, next_due)
        nothing = ClaimResult([])
        self.blocking = True
        try:
            return self.broker.wait_and_claim(self.wid, order, timeout,
                                              self._batch(), self.config.result_ttl,
                                              holds_nothing=not self.pending)
        except _Interrupt:
            # Told to stop mid-read: the connection is unusable, and the queued claim may have
            # run. finish() hands back whatever this worker's lists hold.
            self.broker.link.close()
            self.unsure = True
            return nothing
        except OUTAGE as exc:
            self.blocking = False
            self._recover(exc)
            return nothing
        except redis.exceptions.ResponseError as exc:
            self.blocking = False
            self._contain(exc)
            return nothing
        finally:
            self.blocking = False

    def _idle_without_queues(self) -> None:
        """Every queue of this worker is broken: wait (stoppable) for a repair."""
        self.blocking = True
        try:
            time.sleep(IDLE_BLOCK)
        except _Interrupt:
            pass
        finally:
            self.blocking = False

    def _contain(self, exc: redis.exceptions.ResponseError) -> None:
        """An error reply that is no outage (WRONGTYPE, a counter that is not a number...):
        set the queue with the corrupt key aside and go on with the others. The failed call
        may have claimed tasks of healthy queues: hand them back (nothing of them started)."""
        queues = self.serving
        found = self.redis(lambda: self.broker.quarantine.explains(queues, exc, self._proc))
        if not found:
            now = time.monotonic()
            if refusal(exc):
                note(exc, log, "claim", self.extra)
            elif now >= self._unexplained_logged + 60:
                self._unexplained_logged = now
                log.error("Redis refused a claim and no queue key explains it (%s): retrying "
                          "with a pause", exc, extra=self.extra)
            self._pause_briefly()
        self.pending = deque(t for t in self.pending if t.queue in self.serving)
        self._flush_acks()
        self.redis(lambda: self.broker.release(self.wid, self.serving))

    def _resume(self, queues: list[str]) -> None:
        """Queues repaired: settle what finished while they were broken, then hand back the
        rest of their lists (claims whose reply was lost, prefetched tasks set aside)."""
        held = [a for a in self.held_acks if a.task.queue in queues]
        self.held_acks = [a for a in self.held_acks if a.task.queue not in queues]
        self._flush_acks(held, keep=True)
        self.redis(lambda: self.broker.release(self.wid, queues))

    _unexplained_logged = -60.0

    def _proc(self, queue: str) -> str:
        return self.broker.qkeys(queue).proc(self.wid)

    def _pause_briefly(self) -> None:
        self.blocking = True
        try:
            time.sleep(0.5 + random.random())
        except _Interrupt:
            pass
        finally:
            self.blocking = False

    def _flush_acks(self, acks: list[Ack] | None = None, result_ttl: float | None = None,
                    keep: bool = False) -> None:
        """Send acks now (a claim of nothing): the waiting batch, or `acks`."""
        batch = self.acks if acks is None else acks
        if self.broker.quarantine.queues:   # acks of a broken queue wait for its repair
            self.held_acks += [a for a in batch if a.task.queue not in self.serving]
            batch = [a for a in batch if a.task.queue in self.serving]
            if acks is None:
                self.acks = batch
        if not batch:
            return
        queues = self.queues if not self.broker.quarantine.queues else \
            list(dict.fromkeys([*self.serving, *(a.task.queue for a in batch)]))
        ttl = self.config.result_ttl if result_ttl is None else result_ttl
        self.redis(lambda: self._settled(self.broker.claim(self.wid, queues, 0, acks=batch,
                                                           result_ttl=ttl), keep=keep))

    def _strays(self, got: ClaimResult) -> None:
        if got.strays:
            log.warning("%d task(s) were claimed in this worker's name by a call whose reply "
                        "never came back: handed back to their queues", got.strays,
                        extra=self.extra)

    def _settled(self, got: ClaimResult, keep: bool = False) -> None:
        """Log acks the fence refused; forget the batch of acks just sent (unless `keep`)."""
        self._strays(got)
        for tid in got.stale:
            log.warning("task was requeued while this worker ran it (stale claim): its result "
                        "was dropped", extra={**self.extra, "task": tid})
        if not keep:
            self.acks = []

    def _run(self, task: Task) -> None:
        if self.acks and self.prefetch.flush_before_next(self._last_run, self.acks_since):
            self._flush_acks()
        started = time.time()
        inputs = self.redis(lambda: self.runner.read_inputs(task)) if task.inputs else None
        outcome, elapsed = self.runner.run(task, self._on_start, inputs)
        self._last_run = elapsed
        self.prefetch.observe(elapsed)
        self._settle(task, outcome, elapsed, started)
        self.title.task = None
        self._send_tally()

    def _settle(self, task: Task, outcome: Ack | Failure, elapsed: float,
                started: float) -> None:
        """Record a finished run: its ack waits for the next claim, a failure is written."""
        wait = queue_wait(task, started)
        s = self.slot.state
        s.processed += 1
        if isinstance(outcome, Failure) and outcome.kind == "cancelled":
            self.redis(lambda: self.runner.record(outcome))   # not a failure: no attempt
        elif isinstance(outcome, Failure):
            s.failed += 1
            result = self.redis(lambda: self.runner.record(outcome))
            self.tally.add(task.type, "failed", elapsed, wait)
            if result is not None and result.outcome in ("retry", "dead"):
                self.tally.add(task.type, "retried" if result.outcome == "retry" else "dead")
        elif outcome.result_ttl is not None and outcome.result_ttl != self.config.result_ttl:
            ack = outcome   # its handler keeps results for its own time: sent on its own
            self._flush_acks([ack], ack.result_ttl or 0.0, keep=True)
            self.tally.add(task.type, "succeeded", elapsed, wait)
        else:
            if not self.acks:
                self.acks_since = time.monotonic()
            self.acks.append(outcome)
            self.tally.add(task.type, "succeeded", elapsed, wait)

    # -- many async tasks at once (async_concurrency) ---------------------------------------
    def _run_pool(self, first: Task) -> int:
        """Run async handlers' tasks concurrently on this child's loop, up to
        async_concurrency at once, refilled from the queue as they finish; returns how many
        ran. A sync task met meanwhile waits until the pool is empty."""
        return self.runner.loop().run_until_complete(self._pool(first))

    async def _pool(self, first: Task) -> int:
        n = self.config.async_concurrency
        running: dict[asyncio.Future[Any], tuple[Task, float]] = {}
        waiting: deque[Task] = deque([first])
        later: list[Task] = []     # sync tasks claimed meanwhile: run after the pool
        ran = 0
        next_check = time.monotonic() + POOL_CANCEL_CHECK
        next_claim = 0.0   # after a claim that found nothing, the next one waits POOL_REFILL
        while True:
            while len(running) < n and not self.stopping:
                while not waiting and self.pending and self.runner.is_async(self.pending[0]):
                    waiting.append(self.pending.popleft())
                if not waiting:
                    if self.pending or later or time.monotonic() < next_claim:
                        break   # a sync task is next (the pool drains first), or too soon
                    got = self._claim_more(n - len(running))
                    if not got:
                        next_claim = time.monotonic() + POOL_REFILL
                        break
                    for t in got:
                        (waiting if self.runner.is_async(t) else later).append(t)
                    continue
                task = waiting.popleft()
                inputs = self.redis(lambda t=task: self.runner.read_inputs(t)) \
                    if task.inputs else None
                fut = asyncio.ensure_future(self.runner.run_async(task, _no_start, inputs))
                running[fut] = (task, time.time())
            if not running:
                break
            self._publish_pool(running)
            # room in the pool: look for new tasks again soon (an idle child of the fleet is
            # woken at once; this one picks up within POOL_REFILL)
            timeout = POOL_REFILL if len(running) < n else POOL_CANCEL_CHECK
            done, _ = await asyncio.wait(running, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            for fut in done:
                task, started = running.pop(fut)
                outcome, elapsed = fut.result()
                self._settle(task, outcome, elapsed, started)
                ran += 1
            if self.acks and time.monotonic() - self.acks_since > ACK_WINDOW:
                self._flush_acks()
            self._send_tally()
            if time.monotonic() >= next_check and running:
                next_check = time.monotonic() + POOL_CANCEL_CHECK
                self.redis(lambda: self._pool_cancels(running))
        self.pending.extendleft(reversed([*waiting, *later]))   # not started: first in line
        self.title.task = None
        return ran

    def _claim_more(self, k: int) -> list[Task]:
        """A claim that does not block (the pool has work running): sends the acks too."""
        if not self.serving:
            return []
        try:
            got = self.broker.claim(self.wid, self.order.next(self.serving), k, acks=self.acks,
                                    result_ttl=self.config.result_ttl)
        except OUTAGE:
            self.unsure = True   # its reply may be lost with tasks in it: handed back at exit
            return []
        except redis.exceptions.ResponseError as exc:
            self._contain(exc)
            return []
        self._settled(got)
        return got.tasks

    def _publish_pool(self, running: dict[Any, tuple[Task, float]]) -> None:
        """The slot shows the oldest running task (the master's cancel and death accounting
        name it); pooled tasks have no hard limit (their time limit cancels the coroutine)."""
        task, started = min(running.values(), key=lambda v: v[1])
        s = self.slot.state
        if s.state != BUSY or s.task != task.id:
            s.state, s.task, s.type, s.queue = BUSY, task.id, task.type, task.queue
            s.started, s.deadline, s.max_retries = started, 0.0, -1
        s.heartbeat = time.monotonic()
        self.slot.publish()
        self.title.task = (task.type, task.id, s.heartbeat)

    def _pool_cancels(self, running: dict[Any, tuple[Task, float]]) -> None:
        """Cancel requests for pooled tasks (the master only knows the slot's task)."""
        pipe = self.broker.conn.pipeline(transaction=False)
        tasks = [t for t, _ in running.values()]
        for t in tasks:
            pipe.hget(self.broker.qkeys(t.queue).run, t.id)
        for t, claim in zip(tasks, pipe.execute(), strict=True):
            if isinstance(claim, bytes) and claim.endswith(b"|x"):
                self.runner.cancel(t.id)

    _last_run = 0.0
    acks_since = 0.0   # when the oldest ack still waiting to be sent was made

    def _on_start(self, task: Task, hard_deadline: float, max_retries: int) -> None:
        s = self.slot.state
        s.state, s.task, s.type, s.queue = BUSY, task.id, task.type, task.queue
        s.started, s.deadline, s.max_retries = time.time(), hard_deadline, max_retries
        s.heartbeat = time.monotonic()
        self.slot.publish()
        self.title.task = (task.type, task.id, s.heartbeat)

    def _publish(self, state: int) -> None:
        s = self.slot.state
        s.state, s.heartbeat = state, time.monotonic()
        if state != BUSY:
            s.task = s.type = s.queue = ""
            s.deadline = 0.0
        self.slot.publish()

    def _send_tally(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.tally and (force or now - self.tally_sent >= TALLY_EVERY):
            self.pipe.send("tally", d=self.tally.to_wire())
            self.tally = Tally()
            self.tally_sent = now

    # -- Redis outages ----------------------------------------------------------------------
    def redis(self, op: Any) -> Any:
        """Run a Redis operation, waiting out outages and refusals (OOM, READONLY...).

        What is retried here is fenced or idempotent (acks, fails, releases), so repeating one
        whose reply was lost is safe.
        """
        while True:
            try:
                result = op()
            except OUTAGE as exc:
                self._pause(exc)
                continue
            except (NoPermission, redis.exceptions.ResponseError) as exc:
                if refusal(exc):   # an ACL: said once, naming the grant; retried like an outage
                    note(exc, log, "worker", self.extra)
                    self._pause_briefly()
                    continue
                # Not an outage: a corrupt key (or a bug). Set the queue aside if a key
                # explains it; the operation is dropped and its task stays claimed, to be
                # handed back when this worker leaves (or re-indexed by the queue's repair).
                try:
                    self.broker.quarantine.explains(self.serving, exc, self._proc)
                except OUTAGE:
                    pass
                log.error("Redis refused an operation (%s): dropped", exc, extra=self.extra)
                return None
            if self.outage_delay is not None:
                log.info("Redis is back", extra=self.extra)
                self.outage_delay = None
                self.title.state = "idle"
            return result

    def _pause(self, exc: BaseException) -> None:
        """One wait of an outage: warn when it starts, back off to 2 s, keep the heartbeat."""
        if self.outage_delay is None:
            log.warning("Redis unavailable (%s): waiting for it", exc, extra=self.extra)
            self.title.state = "reconnecting"
            self.outage_delay = 0.05
            self.outage_since = time.monotonic()
        if self.title.orphaned_at is not None and \
                time.monotonic() - self.outage_since > ORPHAN_REDIS_PATIENCE:
            # No master to wait for: leave what this worker holds to the reapers (its
            # registry entry ages out) rather than retry for ever as a stray process.
            log.error("master gone and Redis unavailable for %ds (%s): exiting; a reaper "
                      "requeues what this worker holds", ORPHAN_REDIS_PATIENCE, exc,
                      extra=self.extra)
            flush_logs()
            os._exit(exitcodes.FAILURE)
        self.broker.link.close()
        self._publish(RECONNECTING)
        time.sleep(self.outage_delay * (0.5 + random.random()))
        self.outage_delay = min(self.outage_delay * 2, 2.0)

    def _recover(self, exc: BaseException) -> None:
        """After a failed claim: its reply may be lost with tasks claimed in it. Settle the
        acks, then hand back whatever this worker's lists hold (nothing of it has started)."""
        self._pause(exc)
        self._flush_acks()
        self.redis(lambda: self.broker.release(self.wid, self.serving))

    # -- stopping ---------------------------------------------------------------------------
    def finish(self) -> None:
        """Ack what finished, hand back what never started, leave the registry."""
        self._publish(STOPPING)
        self.title.state = "stopping"
        self._flush_acks()
        if self.pending or self.unsure:
            n = self.redis(lambda: self.broker.release(self.wid, self.serving))
            if n:
                log.info("handed back %d claimed task(s) it had not started", n,
                         extra=self.extra)
            self.pending.clear()
        self.leaving = True
        self.redis(lambda: self.broker.unregister_worker(self.wid))
        self._send_tally(force=True)
        self.pipe.send("exiting", reason=self.exit_reason)
        sys.stdout.flush()
