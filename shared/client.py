"""tq.Client: the producers' API -- enqueue tasks and workflows, follow them, cancel them --
plus the operators' calls it inherits from tq.admin.Admin.

    client = tq.Client()                       # TQ_REDIS_URL, else the default Redis
    task_id = client.enqueue("email", {"to": "a@example.com"}, priority=5)
    client.wait(task_id, timeout=30)           # the handler's result, or TaskFailed
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .admin import ADMIN_CHUNK, Admin, Progress
from .config import protect_settings, replica_acks_setting
from .errors import ConfigError, TaskCancelled, TaskFailed, TaskNotFound, WaitTimeout
from .ids import new_id
from .info import progress_info, task_info, workflow_record
from .packing import pack, seconds
from .protect import KeyRing, SealedBody
from .store import tasks as store
from .store.broker import Broker
from .store.connection import translated
from .store.tasks import Member, Snapshot
from .task import DEFAULT_MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES, TaskInfo, validate_name
from .workflow import DEFAULT_TTL as DEFAULT_WORKFLOW_TTL
from .workflow import FINISHED as WORKFLOW_FINISHED
from .workflow import Workflow, WorkflowInfo, compile_workflow, downstream, validate_policy
from .workflow import record as workflow_record_json
from .workflow import summarize as summarize_workflow

ENQUEUE_CHUNK = 1000       # tasks per script call in enqueue_many
UNFINISHED = ("running", "cancelling", "queued", "failed-will-retry")   # progress shows
WAIT_SLICE = 5.0           # longest single blocking read in wait()


class Client(Admin):
    """Enqueue tasks, follow them, and manage queues and dead letters."""

    def __init__(self, url: str | None = None, namespace: str = "tq", *,
                 max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
                 socket_timeout: float = 10.0, replica_acks: int | None = None,
                 keys: KeyRing | str | None = None) -> None:
        validate_name("namespace", namespace)
        if isinstance(max_payload_bytes, bool) or not isinstance(max_payload_bytes, int) \
                or not 0 < max_payload_bytes <= MAX_PAYLOAD_BYTES:
            raise ConfigError(f"max_payload_bytes must be an integer from 1 to "
                              f"{MAX_PAYLOAD_BYTES}, not {max_payload_bytes!r}")
        # A few transparent retries: a restarted Redis is reconnected to without an error.
        broker = Broker(url, namespace, retries=3, socket_timeout=socket_timeout,
                        client_name="tq-client")
        # replica_acks=N: each enqueue returns once N replicas have the tasks (WAIT); None:
        # TQ_REPLICA_ACKS, else replica_acks in the config file, else 0.
        broker.replica_acks = replica_acks_setting(replica_acks)
        # Payload protection (tq.protect): keys= a KeyRing or "ID:BASE64[,...]"; None:
        # TQ_KEYS, else TQ_KEYS_FILE / keys_file in the config file; none: plain JSON.
        super().__init__(broker, keys if isinstance(keys, KeyRing) else protect_settings(keys))
        self.max_payload_bytes = max_payload_bytes

    def __repr__(self) -> str:
        return f"<tq.Client {self.safe_url} namespace={self.namespace!r}>"

    # -- enqueue ------------------------------------------------------------------------
    def enqueue(self, type: str, payload: dict[str, Any] | None = None, *,
                queue: str | None = None, priority: int = 0, delay: Any = None, eta: Any = None,
                max_retries: int | None = None, timeout: Any = None, unique_for: Any = None,
                unique_key: str | None = None) -> str:
        """Enqueue one task and return its id.

        delay: seconds (or timedelta) from now, measured on Redis' clock; eta: a datetime or Unix
        time. max_retries / timeout default to the handler's. unique_for=seconds: while the
        lock holds, enqueuing the same type and payload (or the same unique_key) returns the
        first task's id instead of a new task.
        """
        q, args, lock = pack(type, {} if payload is None else payload, queue, priority, delay,
                             eta, max_retries, timeout, unique_for, unique_key, ring=self.keys,
                             max_bytes=self.max_payload_bytes, keys=self.broker.keys)
        return self._send(q, [args], [lock] if lock else [])[0]

    def enqueue_many(self, specs: Iterable[Mapping[str, Any] | Sequence[Any]],
                     progress: Progress | None = None) -> list[str]:
        """Enqueue many tasks in few round trips; returns their ids in order.

        Each spec is a mapping with the keyword arguments of enqueue() (type, payload, ...)
        or a (type, payload) pair. Every spec is validated before anything is written (an
        error names it as "spec #i"); progress(done, total) is called after each chunk.
        """
        groups: dict[str, list[tuple[int, list[Any], str | None]]] = {}
        n = 0
        for i, spec in enumerate(specs):
            if isinstance(spec, Mapping):
                options = dict(spec)
                try:
                    task_type = options.pop("type")
                except KeyError:
                    raise ValueError(f"spec #{i}: no 'type'") from None
                payload = options.pop("payload", {})
            elif isinstance(spec, Sequence) and not isinstance(spec, str) and len(spec) == 2:
                (task_type, payload), options = spec, {}
            else:
                raise ValueError(f"spec #{i}: must be a mapping or a (type, payload) pair")
            unknown = set(options) - {"queue", "priority", "delay", "eta", "max_retries",
                                      "timeout", "unique_for", "unique_key"}
            if unknown:
                raise ValueError(f"spec #{i}: unknown options {sorted(unknown)}")
            try:
                q, args, lock = pack(
                    task_type, payload, options.get("queue"), options.get("priority", 0),
                    options.get("delay"), options.get("eta"), options.get("max_retries"),
                    options.get("timeout"), options.get("unique_for"), options.get("unique_key"),
                    ring=self.keys, max_bytes=self.max_payload_bytes, keys=self.broker.keys)
            except ValueError as exc:
                raise type(exc)(f"spec #{i}: {exc}") from None
            groups.setdefault(q, []).append((i, args, lock))
            n += 1
        ids: list[str] = [""] * n
        done = 0
        for q, items in groups.items():
            for start in range(0, len(items), ENQUEUE_CHUNK):
                chunk = items[start:start + ENQUEUE_CHUNK]
                got = self._send(q, [a for _, a, _ in chunk], [lk for _, _, lk in chunk if lk])
                for (i, _, _), tid in zip(chunk, got, strict=True):
                    ids[i] = tid
                done += len(chunk)
                if progress:
                    progress(done, n)
        return ids

    def _send(self, queue: str, tasks: list[list[Any]], locks: list[str],
              depth: int = 0) -> list[str]:
        """Enqueue tasks of one queue (tq.store.tasks.enqueue); locks: their unique keys, in
        order. A task whose id was taken meanwhile gets a fresh one.

        tasks: [id, body, priority, delay_ms, eta_ms, uniq_ttl_ms, type] each.
        """
        got = store.enqueue(self.broker, queue, tasks, locks)
        collided = [i for i, g in enumerate(got) if not g]
        if collided:   # the id was taken (54 random bits per millisecond): fresh ids, once more
            if depth >= 3:
                raise RuntimeError("could not find a free task id")
            lock_of = iter(locks)
            their_locks = {i: next(lock_of) for i, t in enumerate(tasks) if t[5] != ""}
            for i in collided:
                tasks[i][0] = new_id(queue=queue)
                if isinstance(tasks[i][1], SealedBody):   # bound to its id: seal it again
                    tasks[i][1] = tasks[i][1].reseal(tasks[i][0])
            again = self._send(queue, [tasks[i] for i in collided],
                               [their_locks[i] for i in collided if i in their_locks], depth + 1)
            for i, tid in zip(collided, again, strict=True):
                got[i] = tid
        return got

    # -- follow a task ------------------------------------------------------------------
    def _inspect(self, task_id: str, queue: str | None, watch: bool = False
                 ) -> tuple[str, Snapshot] | None:
        """The queue that knows the task (the given one, else the queues its id's hint names:
        one, unless names share a hint; all of them for an id made before hints) and its
        snapshot."""
        looked: set[str] = set()
        for fresh in (False, True):   # (again with the queue set read anew: it may have grown)
            queues = [queue] if queue else [
                q for q in self.broker.queues_for_id(task_id, fresh) if q not in looked]
            if not queues:
                return None
            snaps = store.inspect_many(self.broker, [(task_id, q) for q in queues], watch)
            found = next(((q, s) for q, s in zip(queues, snaps, strict=True) if s is not None),
                         None)
            if found is not None or queue:
                return found
            looked.update(queues)
        return None

    def get(self, task_id: str, queue: str | None = None) -> TaskInfo:
        """What is known of a task now; TaskNotFound if nothing is."""
        with translated(self.url):
            found = self._inspect(task_id, queue)
            if found is None:
                raise TaskNotFound(task_id)
            info = task_info(task_id, *found, ring=self.keys)
            self._read_progress([info])
        return info

    def _read_progress(self, infos: Sequence[TaskInfo | None]) -> None:
        """Fill in the last ctx.progress() of the tasks that have not finished (one
        pipeline)."""
        unfinished = [i for i in infos if i is not None and i.state in UNFINISHED]
        if not unfinished:
            return
        raws = store.progress(self.broker, [(i.queue, i.id) for i in unfinished])
        for i, raw in zip(unfinished, raws, strict=True):
            i.progress = progress_info(raw, self.keys, i.queue, i.id)

    def wait(self, task_id: str, timeout: float | None = None, queue: str | None = None) -> Any:
        """Block until the task finishes; return its result.

        Raises TaskFailed if it ends in the dead-letter queue, WaitTimeout after `timeout`
        seconds (None: no limit), TaskNotFound for an unknown id. Blocks on Redis (a stream
        read), not in a polling loop. A task that succeeds with result_ttl 0 while waited for
        gives None; one that had already finished that way is unknown (TaskNotFound).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        succeeded = False   # an event said so: with result_ttl 0 nothing else is left of it
        mine = task_id.encode()
        with translated(self.url):
            while True:
                found = self._inspect(task_id, queue, watch=True)
                if found is None:
                    if succeeded:
                        return None
                    raise TaskNotFound(task_id)
                q, snap = found
                info = task_info(task_id, q, snap, ring=self.keys)
                if info.state == "succeeded":
                    return info.result
                if info.state == "dead":
                    raise TaskFailed(task_id, info.error, info.traceback)
                if info.state == "cancelled":
                    raise TaskCancelled(task_id)
                queue = q
                last = snap.last_event.decode() if snap.last_event else "0-0"
                while True:
                    remaining = WAIT_SLICE if deadline is None else deadline - time.monotonic()
                    if remaining <= 0:
                        raise WaitTimeout(task_id, timeout or 0.0, info.state)
                    block = int(self.broker.block_limit(min(remaining, WAIT_SLICE)) * 1000) or 1
                    entries = store.events(self.broker, q, last, block)
                    if not entries:
                        break   # a slice passed: look at the task again
                    last = entries[-1][0].decode()
                    about = [f for _, f in entries if f.get(b"id") == mine]
                    if about:
                        succeeded = about[-1].get(b"s") == b"succeeded"
                        break

    # -- workflows (shared/workflow.py) ---------------------------------------------------
    def workflow(self, spec: Any, *, policy: str = "stop", ttl: Any = None) -> Workflow:
        """Enqueue a workflow: a tq.chain / tq.group / tq.chord of tq.step()s, or a DAG as a
        dict {name: tq.step(..., after=[names])}. policy "stop": a member whose upstream
        member is dead or cancelled is dead-lettered too (kind upstream_dead /
        upstream_cancelled); "continue": it runs, that input being None. ttl: seconds the
        workflow's record is kept (default 7 days). Returns a Workflow (id, tasks by member
        name, sinks); members are ordinary tasks (client.get / wait / cancel work on them)."""
        validate_policy(policy)
        keep = DEFAULT_WORKFLOW_TTL if ttl is None else seconds(ttl, "ttl")
        if keep <= 0:
            raise ValueError("ttl must be positive")
        members = compile_workflow(spec)
        wid = new_id()
        below = downstream(members)
        bodies: list[str] = []
        for m in members:
            st = m.step
            try:
                q, args, _ = pack(st.type, {} if st.payload is None else st.payload, st.queue,
                                  st.priority, None, None, st.max_retries, st.timeout, None,
                                  None, ring=self.keys, max_bytes=self.max_payload_bytes,
                                  keys=self.broker.keys, workflow=wid, inputs=len(m.deps))
            except ValueError as exc:
                raise type(exc)(f"member {m.name!r}: {exc}") from None
            m.id, m.queue = args[0], q
            bodies.append(args[1])
        with translated(self.url):
            broker = self.broker
            broker.register_queues(list(dict.fromkeys(m.queue for m in members)))
            store.save_workflow(broker, wid, workflow_record_json(wid, policy, members),
                                int(keep * 1000))
            # waiting members first (every queue), ready ones last: no member can finish
            # before the members downstream of it exist
            for ready in (False, True):
                by_queue: dict[str, list[Member]] = {}
                for i, m in enumerate(members):
                    if (not m.deps) != ready:
                        continue
                    node = json.dumps({"x": [[members[j].queue, members[j].id, k]
                                             for j, k in below[i]],
                                       "n": len(m.deps), "p": policy}, separators=(",", ":"))
                    by_queue.setdefault(m.queue, []).append(
                        (m.id, bodies[i], len(m.deps), node, m.step.type))
                for q, items in by_queue.items():
                    for part in store.chunks(items, ENQUEUE_CHUNK):
                        store.add_members(broker, q, part)
        sinks = [m.id for i, m in enumerate(members) if not below[i]]
        return Workflow(wid, {m.name: m.id for m in members}, sinks)

    def _workflow_record(self, workflow_id: str) -> dict[str, Any]:
        with translated(self.url):
            rec = workflow_record(store.workflow(self.broker, workflow_id))
        if rec is None:
            raise TaskNotFound(workflow_id)
        return rec

    def get_workflow(self, workflow_id: str) -> WorkflowInfo:
        """A workflow's state (running, succeeded, failed, cancelled) and each member's
        (name, id, queue, type, after, state, result, error...); TaskNotFound once its
        record expired (its ttl) or for an unknown id."""
        rec = self._workflow_record(workflow_id)
        pairs = [(row[2], row[1]) for row in rec["members"]]
        infos: list[TaskInfo | None] = []
        with translated(self.url):
            for part in store.chunks(pairs, ADMIN_CHUNK):
                for (tid, q), snap in zip(part, store.inspect_many(self.broker, part),
                                          strict=True):
                    infos.append(None if snap is None else task_info(tid, q, snap,
                                                                     ring=self.keys))
            self._read_progress(infos)
        return summarize_workflow(rec, infos)

    def wait_workflow(self, workflow_id: str, timeout: float | None = None) -> WorkflowInfo:
        """Block until every member of the workflow has finished; returns get_workflow().
        WaitTimeout after `timeout` seconds. Blocks on Redis (each unfinished member in
        turn), not in a polling loop."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            info = self.get_workflow(workflow_id)
            if info.finished:
                return info
            m = next(m for m in info.members if m["state"] not in WORKFLOW_FINISHED)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise WaitTimeout(workflow_id, timeout or 0.0, info.state)
            try:
                self.wait(m["id"], timeout=left, queue=m["queue"])
            except (TaskFailed, TaskCancelled, TaskNotFound):
                pass
            except WaitTimeout:
                raise WaitTimeout(workflow_id, timeout or 0.0, info.state) from None

    def cancel_workflow(self, workflow_id: str) -> dict[str, int]:
        """Cancel every member that has not finished: waiting and queued ones never run,
        running ones are interrupted (see cancel()). Returns how many of each outcome."""
        rec = self._workflow_record(workflow_id)
        out: dict[str, int] = {}
        with translated(self.url):
            # downstream members first: cancelling their upstream ones then finds them gone
            for row in reversed(rec["members"]):
                outcome = store.cancel(self.broker, row[1], row[2])
                out[outcome] = out.get(outcome, 0) + 1
        return out

    # -- cancellation -------------------------------------------------------------------
    def cancel(self, task_id: str, queue: str | None = None) -> str:
        """Cancel a task. One that has not started (queued, scheduled, waiting for a retry, a
        concurrency lease or its upstream workflow members) is taken out of its queue, never
        runs, and reads "cancelled" (client.wait() raises tq.TaskCancelled) for the result
        TTL: returns "cancelled". A running one is interrupted: its handler gets tq.Cancelled
        (ctx.cancelled turns True) and, if it has not stopped after the master's cancel_grace,
        its worker is killed; it then reads "cancelled" too, no attempt counted: returns
        "cancelling". Else "finished" or "unknown"."""
        if queue is not None:
            validate_name("queue", queue)
        with translated(self.url):
            found = self._inspect(task_id, queue)   # which queue has it (one pipeline)
            return "unknown" if found is None else store.cancel(self.broker, found[0], task_id)
