"""tq.Client: the producer and admin API.

    client = tq.Client()                       # TQ_REDIS_URL, else the default Redis
    task_id = client.enqueue("email", {"to": "a@example.com"}, priority=5)
    client.wait(task_id, timeout=30)           # the handler's result, or TaskFailed
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn

import redis

from .config import protect_settings, replica_acks_setting
from .errors import (
    ConfigError,
    PayloadError,
    QueueBroken,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
    WaitTimeout,
)
from .handlers import REGISTRY
from .ids import created_ms, new_id
from .limits import Limits, declared, key_value
from .protect import (
    KeyRing,
    Rejected,
    SealedBody,
    error_aad,
    open_payload,
    open_text,
    progress_aad,
    reseal_body,
    reseal_error,
    result_aad,
    reveal,
    seal_body,
)
from .store.broker import DEFAULT_RESULT_TTL, Broker
from .store.connection import translated, translation
from .store.heads import oldest_created, queue_heads
from .store.integrity import RepairReport, read_marks, repair
from .store.keys import PRIORITY_LEVELS
from .store.scripts import SCRIPTS
from .task import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    MAX_PAYLOAD_BYTES,
    MAX_SECONDS,
    STATES,
    Task,
    TaskInfo,
    encode_body,
    encode_payload,
    validate_max_retries,
    validate_name,
    validate_priority,
    validate_timeout,
)
from .workflow import DEFAULT_TTL as DEFAULT_WORKFLOW_TTL
from .workflow import FINISHED as WORKFLOW_FINISHED
from .workflow import Workflow, WorkflowInfo, compile_workflow, downstream, validate_policy
from .workflow import record as workflow_record
from .workflow import summarize as summarize_workflow

ENQUEUE_CHUNK = 1000       # tasks per script call in enqueue_many
ADMIN_CHUNK = 1000         # tasks per script call when retrying/deleting/purging many
UNFINISHED = ("running", "cancelling", "queued", "failed-will-retry")   # progress shows
WAIT_SLICE = 5.0           # longest single blocking read in wait()
_canonical = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode

Progress = Callable[[int, int], None]


def _seconds(value: Any, name: str) -> float:
    if isinstance(value, dt.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, not {value!r}")
    if abs(value) > MAX_SECONDS:
        raise ValueError(f"{name} must be at most {MAX_SECONDS} seconds (ten years), "
                         f"not {value!r}")
    return float(value)


def _eta_ms(eta: Any) -> int:
    """A datetime (naive = local time) or Unix seconds, within ten years of now, in ms."""
    if isinstance(eta, dt.datetime):
        if eta.tzinfo is None:
            eta = eta.astimezone()
        eta = eta.timestamp()
    if isinstance(eta, bool) or not isinstance(eta, int | float) or not math.isfinite(eta):
        raise ValueError(f"eta must be a datetime or a Unix time, not {eta!r}")
    if abs(eta - time.time()) > MAX_SECONDS:
        raise ValueError(f"eta {eta!r} is more than ten years away")
    return int(eta * 1000)


class Client:
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
        self.broker = Broker(url, namespace, retries=3, socket_timeout=socket_timeout,
                             client_name="tq-client")
        # replica_acks=N: each enqueue returns once N replicas have the tasks (WAIT); None:
        # TQ_REPLICA_ACKS, else replica_acks in the config file, else 0.
        self.broker.replica_acks = replica_acks_setting(replica_acks)
        self.url = self.broker.url
        self.safe_url = self.broker.safe_url
        self.namespace = namespace
        self.max_payload_bytes = max_payload_bytes
        # Payload protection (tq.protect): keys= a KeyRing or "ID:BASE64[,...]"; None:
        # TQ_KEYS, else TQ_KEYS_FILE / keys_file in the config file; none: plain JSON.
        self.keys: KeyRing | None = keys if isinstance(keys, KeyRing) else protect_settings(
            keys)

    def __repr__(self) -> str:
        return f"<tq.Client {self.safe_url} namespace={self.namespace!r}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.broker.close()

    # -- enqueue ------------------------------------------------------------------------
    def _prepare(self, task_type: str, payload: Any, queue: str | None, priority: int,
                 delay: Any, eta: Any, max_retries: int | None, timeout: Any,
                 unique_for: Any, unique_key: str | None, workflow: str | None = None,
                 inputs: int = 0) -> tuple[str, list[Any], str | None]:
        """Validate one task; returns (queue, its 7 script arguments, unique lock key)."""
        validate_name("type", task_type)
        queue = task_type if queue is None else validate_name("queue", queue)
        validate_priority(priority)
        if max_retries is not None:
            validate_max_retries(max_retries)
        if timeout is not None:
            timeout = validate_timeout(_seconds(timeout, "timeout"))
        delay_ms = eta_ms = ""
        if delay is not None and eta is not None:
            raise ValueError("give delay or eta, not both")
        if delay is not None:
            d = _seconds(delay, "delay")
            if d < 0:
                raise ValueError("delay must not be negative")
            delay_ms = int(d * 1000)
        elif eta is not None:
            eta_ms = _eta_ms(eta)
        payload_json = encode_payload(payload)
        spec = REGISTRY.get(task_type)   # a rate_key function of a handler known here
        key = key_value(spec.rate_key, payload) if spec is not None and spec.rate_key \
            is not None and not isinstance(spec.rate_key, str) else None
        body = encode_body(task_type, queue, payload_json, priority, max_retries, timeout, key,
                           workflow, inputs)
        task_id = new_id()
        if self.keys is not None:
            body = seal_body(self.keys, queue, task_id, body)
        size = len(body.encode()) if not body.isascii() else len(body)
        if size > self.max_payload_bytes:
            raise PayloadError(f"task body is {size} bytes, over the limit of "
                               f"{self.max_payload_bytes} (max_payload_bytes)")
        lock_key = uniq_ttl = None
        if unique_key is not None and unique_for is None:
            raise ValueError("unique_key needs unique_for (how long the key holds)")
        if unique_for is not None:
            ttl = _seconds(unique_for, "unique_for")
            if ttl <= 0:
                raise ValueError("unique_for must be positive")
            uniq_ttl = max(int(ttl * 1000), 1)
            basis = f"k\0{unique_key}" if unique_key is not None else \
                f"p\0{task_type}\0{_canonical(payload)}"
            digest = hashlib.sha1(basis.encode()).hexdigest()
            lock_key = self.broker.qkeys(queue).uniq(digest)
        args = [task_id, body, priority, delay_ms, eta_ms, uniq_ttl or "", task_type]
        return queue, args, lock_key

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
        q, args, lock = self._prepare(type, {} if payload is None else payload, queue, priority,
                                      delay, eta, max_retries, timeout, unique_for, unique_key)
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
                q, args, lock = self._prepare(
                    task_type, payload, options.get("queue"), options.get("priority", 0),
                    options.get("delay"), options.get("eta"), options.get("max_retries"),
                    options.get("timeout"), options.get("unique_for"), options.get("unique_key"))
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
        """Run the enqueue script for tasks of one queue; locks: their unique keys, in order.

        tasks: [id, body, priority, delay_ms, eta_ms, uniq_ttl_ms, type] each.
        """
        q = self.broker.qkeys(queue)
        ready = q.ready   # index 0 is priority 9
        keys: list[Any] = [q.tasks, q.sched, q.wake, q.stats, q.soon]
        args: list[Any] = [len(tasks)]
        if len(tasks) == 1:   # enqueue(): the producer's hot path
            t = tasks[0]
            keys.append(ready[9 - t[2]])
            args.extend((t[0], t[1], 6, *t[3:]))
        else:
            index: dict[int, int] = {}
            for t in tasks:
                i = index.get(t[2])
                if i is None:
                    keys.append(ready[9 - t[2]])
                    i = index[t[2]] = len(keys)
                args.extend((t[0], t[1], i, *t[3:]))
        keys.extend(locks)
        broker = self.broker
        try:   # (translated(), without a context manager per call)
            broker.register_queues([queue])
            try:
                reply = broker.replicated(SCRIPTS.enqueue, keys, args)
            except redis.exceptions.ResponseError as exc:
                if not str(exc).startswith("TQBROKEN "):
                    raise
                why = str(exc)[len("TQBROKEN "):].split(" script:", 1)[0]
                broker.quarantine.contain([queue], exc)   # mark it, for status and workers
                raise QueueBroken(queue, why, "nothing was enqueued") from None
            broker.register_queues([queue])   # again if that call had to reconnect
        except Exception as exc:
            better = translation(self.url, exc)
            if better is None:
                raise
            raise better from None
        got = [g.decode() for g in reply]
        if len(got) > len(tasks):   # '+': the queue was new or forgotten (see enqueue.lua)
            got.pop()
            broker.register_queues([queue], again=True)
        collided = [i for i, g in enumerate(got) if not g]
        if collided:   # the id was taken (54 random bits per millisecond): fresh ids, once more
            if depth >= 3:
                raise RuntimeError("could not find a free task id")
            lock_of = iter(locks)
            their_locks = {i: next(lock_of) for i, t in enumerate(tasks) if t[5] != ""}
            for i in collided:
                tasks[i][0] = new_id()
                if isinstance(tasks[i][1], SealedBody):   # bound to its id: seal it again
                    tasks[i][1] = tasks[i][1].reseal(tasks[i][0])
            again = self._send(queue, [tasks[i] for i in collided],
                               [their_locks[i] for i in collided if i in their_locks], depth + 1)
            for i, tid in zip(collided, again, strict=True):
                got[i] = tid
        return got

    # -- follow a task ------------------------------------------------------------------
    def _inspect_many(self, pairs: list[tuple[str, str]], watch: bool = False) -> list[Any]:
        """inspect.lua for each (task id, queue), in one pipeline."""
        for attempt in (1, 2):
            pipe = self.broker.conn.pipeline(transaction=False)
            for task_id, q in pairs:
                SCRIPTS.inspect.queue(pipe, [*self.broker.block(q),
                                             self.broker.qkeys(q).result(task_id)],
                                      [task_id, "1" if watch else "0"])
            replies = pipe.execute(raise_on_error=False)
            if attempt == 1 and any(isinstance(r, redis.exceptions.NoScriptError)
                                    for r in replies):
                self.broker.load_scripts()   # Redis restarted: its script cache is empty
                continue
            break
        for (_, q), reply in zip(pairs, replies, strict=True):
            if len(pairs) > 1 and self.broker.quarantine.explains([q], reply):
                continue   # looking through every queue: a broken one does not hide the rest
            if isinstance(reply, Exception):
                self._raise_broken(q, reply)
        return replies

    def _queue_script(self, script: Any, queue: str, args: list[Any],
                      extra: Sequence[Any] = ()) -> Any:
        """A script over one queue's keys (then `extra`); QueueBroken if a corrupt key of it
        fails it."""
        try:
            keys = [*self.broker.block(queue), *extra] if extra else self.broker.block(queue)
            return script(self.broker.link, keys, args)
        except redis.exceptions.ResponseError as exc:
            self._raise_broken(queue, exc)

    def _raise_broken(self, queue: str, exc: Exception) -> NoReturn:
        """Raise QueueBroken if a corrupt key of `queue` explains the error `exc`, else exc."""
        if self.broker.quarantine.explains([queue], exc):
            raise QueueBroken(queue, self.broker.quarantine.queues[queue]) from None
        raise exc

    def _inspect(self, task_id: str, queue: str | None, watch: bool = False
                 ) -> tuple[str, list[Any]] | None:
        queues = [queue] if queue else self.broker.known_queues()
        if not queues:
            return None
        replies = self._inspect_many([(task_id, q) for q in queues], watch)
        for q, reply in zip(queues, replies, strict=True):
            if isinstance(reply, Exception):
                continue   # a broken queue (set aside above)
            if reply[0] is not None or reply[6] is not None:
                return q, reply
        return None

    def get(self, task_id: str, queue: str | None = None) -> TaskInfo:
        """What is known of a task now; TaskNotFound if nothing is."""
        with translated(self.url):
            found = self._inspect(task_id, queue)
            if found is None:
                raise TaskNotFound(task_id)
            info = _info(task_id, *found, ring=self.keys)
            self._read_progress([info])
        return info

    def _read_progress(self, infos: Sequence[TaskInfo | None]) -> None:
        """Fill in the last ctx.progress() of the tasks that have not finished (one
        pipeline)."""
        unfinished = [i for i in infos if i is not None and i.state in UNFINISHED]
        if not unfinished:
            return
        pipe = self.broker.conn.pipeline(transaction=False)
        for i in unfinished:
            pipe.get(self.broker.qkeys(i.queue).progress(i.id))
        for i, raw in zip(unfinished, pipe.execute(raise_on_error=False), strict=True):
            if not isinstance(raw, Exception):   # (a corrupt key: no progress shown)
                i.progress = _progress(raw, self.keys, i.queue, i.id)

    def wait(self, task_id: str, timeout: float | None = None, queue: str | None = None) -> Any:
        """Block until the task finishes; return its result.

        Raises TaskFailed if it ends in the dead-letter queue, WaitTimeout after `timeout`
        seconds (None: no limit), TaskNotFound for an unknown id. Blocks on Redis (a stream
        read), not in a polling loop. A task that succeeds with result_ttl 0 while waited for
        gives None; one that had already finished that way is unknown (TaskNotFound).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        conn = self.broker.conn
        succeeded = False   # an event said so: with result_ttl 0 nothing else is left of it
        with translated(self.url):
            while True:
                found = self._inspect(task_id, queue, watch=True)
                if found is None:
                    if succeeded:
                        return None
                    raise TaskNotFound(task_id)
                q, reply = found
                info = _info(task_id, q, reply, ring=self.keys)
                if info.state == "succeeded":
                    return info.result
                if info.state == "dead":
                    raise TaskFailed(task_id, info.error, info.traceback)
                if info.state == "cancelled":
                    raise TaskCancelled(task_id)
                queue = q
                last = reply[7].decode() if reply[7] else "0-0"
                events = self.broker.qkeys(q).events
                while True:
                    remaining = WAIT_SLICE if deadline is None else deadline - time.monotonic()
                    if remaining <= 0:
                        raise WaitTimeout(task_id, timeout or 0.0, info.state)
                    block = int(self.broker.block_limit(min(remaining, WAIT_SLICE)) * 1000) or 1
                    got = conn.xread({events: last}, count=100, block=block)
                    if not got:
                        break   # a slice passed: look at the task again
                    entries = got[0][1]
                    last = entries[-1][0].decode()
                    mine = [f for _, f in entries if f.get(b"id") == task_id.encode()]
                    if mine:
                        succeeded = mine[-1].get(b"s") == b"succeeded"
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
        keep = DEFAULT_WORKFLOW_TTL if ttl is None else _seconds(ttl, "ttl")
        if keep <= 0:
            raise ValueError("ttl must be positive")
        members = compile_workflow(spec)
        wid = new_id()
        below = downstream(members)
        bodies: list[str] = []
        for m in members:
            st = m.step
            try:
                q, args, _ = self._prepare(st.type, {} if st.payload is None else st.payload,
                                           st.queue, st.priority, None, None, st.max_retries,
                                           st.timeout, None, None, wid, len(m.deps))
            except ValueError as exc:
                raise type(exc)(f"member {m.name!r}: {exc}") from None
            m.id, m.queue = args[0], q
            bodies.append(args[1])
        with translated(self.url):
            broker = self.broker
            broker.register_queues(list(dict.fromkeys(m.queue for m in members)))
            broker.conn.set(broker.keys.workflow(wid), workflow_record(wid, policy, members),
                            px=int(keep * 1000))
            # waiting members first (every queue), ready ones last: no member can finish
            # before the members downstream of it exist
            for ready in (False, True):
                by_queue: dict[str, list[Any]] = {}
                for i, m in enumerate(members):
                    if (not m.deps) != ready:
                        continue
                    node = json.dumps({"x": [[members[j].queue, members[j].id, k]
                                             for j, k in below[i]],
                                       "n": len(m.deps), "p": policy}, separators=(",", ":"))
                    by_queue.setdefault(m.queue, []).extend(
                        (m.id, bodies[i], len(m.deps), node, m.step.type))
                for q, flat in by_queue.items():
                    for start in range(0, len(flat), 5 * ENQUEUE_CHUNK):
                        chunk = flat[start:start + 5 * ENQUEUE_CHUNK]
                        self._queue_script(SCRIPTS.wfadd, q, [q, len(chunk) // 5, *chunk])
        sinks = [m.id for i, m in enumerate(members) if not below[i]]
        return Workflow(wid, {m.name: m.id for m in members}, sinks)

    def _workflow_record(self, workflow_id: str) -> dict[str, Any]:
        with translated(self.url):
            raw = self.broker.conn.get(self.broker.keys.workflow(workflow_id))
        rec = _loads_or(raw, {})
        if not rec or not isinstance(rec.get("members"), list):
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
            for start in range(0, len(pairs), ADMIN_CHUNK):
                part = pairs[start:start + ADMIN_CHUNK]
                for (tid, q), reply in zip(part, self._inspect_many(part), strict=True):
                    if isinstance(reply, Exception) or (reply[0] is None and reply[6] is None):
                        infos.append(None)
                    else:
                        infos.append(_info(tid, q, reply, ring=self.keys))
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
                outcome = self._cancel_in(row[1], row[2])
                out[outcome] = out.get(outcome, 0) + 1
        return out

    def _cancel_in(self, queue: str, task_id: str) -> str:
        """cancel.lua for a task of `queue`: its outcome."""
        got = self._queue_script(SCRIPTS.cancel, queue,
                                 [queue, task_id, int(DEFAULT_RESULT_TTL * 1000)],
                                 extra=[self.broker.qkeys(queue).result(task_id)])
        return got.decode() if isinstance(got, bytes) else str(got)

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
            return "unknown" if found is None else self._cancel_in(found[0], task_id)

    # -- queues and counters ------------------------------------------------------------
    def queues(self) -> list[str]:
        return self.broker.known_queues()

    def queue_sizes(self) -> dict[str, dict[str, Any]]:
        """Per queue: ready (total and by priority), scheduled, running, dead, held (waiting
        for a concurrency lease), paused, broken (its mark, or None), oldest_ready (when the
        oldest ready task was created, Unix seconds; None when none is ready)."""
        queues = self.queues()
        with translated(self.url):
            pipe = self.broker.conn.pipeline(transaction=False)
            for q in queues:
                k = self.broker.qkeys(q)
                for key in k.ready:
                    pipe.llen(key)
                pipe.zcard(k.sched)
                pipe.hlen(k.run)
                pipe.zcard(k.dead)
                pipe.zcard(k.held)
                pipe.hexists(k.flow, "paused")
                queue_heads(pipe, k)
            replies = pipe.execute(raise_on_error=False)   # a corrupt key: that count only
            marks = read_marks(self.broker.conn, queues, self.broker.qkeys)
        out: dict[str, dict[str, Any]] = {}
        counts = PRIORITY_LEVELS + 5
        step = counts + PRIORITY_LEVELS
        for i, q in enumerate(queues):
            r = [n if isinstance(n, int) else 0 for n in replies[i * step:i * step + counts]]
            by_priority = {9 - p: n for p, n in enumerate(r[:PRIORITY_LEVELS]) if n}
            out[q] = {"ready": sum(r[:PRIORITY_LEVELS]), "by_priority": by_priority,
                      "scheduled": r[-5], "running": r[-4], "dead": r[-3],
                      "held": r[-2], "paused": bool(r[-1]), "broken": marks.get(q),
                      "oldest_ready": oldest_created(replies[i * step + counts:(i + 1) * step])}
        return out

    def delete_queue(self, queue: str, force: bool = False) -> dict[str, Any]:
        """Delete a queue and everything in it (ready, scheduled, dead tasks, counters) and
        forget its name. Refused while tasks of it run, unless force (their acks are then
        refused: nothing is left to ack). Returns {"deleted": bool, ready, scheduled, running,
        dead} as counted just before."""
        validate_name("queue", queue)
        broker = self.broker
        qk = broker.qkeys(queue)
        with translated(self.url):
            procs = []
            if force:   # the processing lists of the workers that hold its running tasks
                holders = {v.split(b"|", 1)[0] for v in broker.conn.hvals(qk.run)}
                procs = [qk.proc(w.decode()) for w in sorted(holders)]
            reply = self._queue_script(SCRIPTS.drop, queue, ["delete", "1" if force else "0"],
                                       extra=[qk.broken, *procs])
            outcome, counts = reply[0].decode(), [int(n) for n in reply[1:]]
            if outcome == "dropped":
                broker.forget_queue(queue)
        return {"queue": queue, "deleted": outcome == "dropped",
                **dict(zip(("ready", "scheduled", "running", "dead"), counts, strict=True))}

    # -- payload protection (tq.protect) -----------------------------------------------
    def rotate_keys(self, queue: str | None = None) -> dict[str, int]:
        """Seal every stored body and error (waiting, scheduled, running, dead) that is not
        sealed with the current key again with it; {queue: how many}. Needs the old keys
        too (listed after the current one). Results expire with the result TTL: keep an old
        key listed that long after rotating."""
        if self.keys is None:
            raise ConfigError("no keys configured (TQ_KEYS or keys_file)")
        queues = [validate_name("queue", queue)] if queue else self.queues()
        out = {}
        with translated(self.url):
            for q in queues:
                k = self.broker.qkeys(q)
                changes: list[Any] = []
                for field, raw in self.broker.conn.hscan_iter(k.tasks, count=500):
                    tid, text = field.decode(), raw.decode("utf-8", "replace")
                    new = reseal_body(self.keys, q, tid, text)
                    if new is not None:
                        changes += ["b", tid, raw, new]
                for field, raw in self.broker.conn.hscan_iter(k.errors, count=500):
                    tid = field.decode()
                    new = reseal_error(self.keys, q, tid, raw.decode("utf-8", "replace"))
                    if new is not None:
                        changes += ["e", tid, raw, new]
                done = 0
                for start in range(0, len(changes), 400):
                    chunk = changes[start:start + 400]
                    done += int(self._queue_script(SCRIPTS.rekey, q, [len(chunk) // 4, *chunk]))
                out[q] = done
        return out

    # -- flow control (tq.limits) ------------------------------------------------------
    def _known_queue(self, queue: str) -> str:
        validate_name("queue", queue)
        known = self.queues()
        if queue not in known:
            raise ValueError(f"unknown queue {queue!r} (known: {', '.join(known) or 'none'})")
        return queue

    def pause(self, queue: str) -> None:
        """Stop claims from a queue (on every host): enqueues go on, running tasks finish."""
        self._flow(self._known_queue(queue), "pause")

    def resume(self, queue: str) -> None:
        """Claims from a paused queue start again (within the usual pickup latency)."""
        self._flow(self._known_queue(queue), "resume")

    def set_limit(self, task_type: str, rate_limit: str | None = None, *,
                  burst: int | None = None, rate_key: str | None = None,
                  concurrency: int | None = None, queue: str | None = None) -> Limits:
        """An operator's override of a type's limits, across the fleet, until clear_limit():
        rate_limit "100/s" | "6000/m" | "10/h" (burst: starts allowed at once; rate_key: a
        payload field, one bucket per value) and/or concurrency (at most N running at once).
        Limits not given keep the handler's. Returns the type's effective limits."""
        validate_name("type", task_type)
        if rate_limit is None and concurrency is None:
            raise ValueError("give rate_limit and/or concurrency")
        given = declared(rate_limit, burst, rate_key, concurrency)
        assert given is not None
        q = self._queue_of_type(task_type, queue)
        wire = given.to_wire()
        eff, _ = self._flow(q, "set", task_type, json.dumps(wire, separators=(",", ":")))
        return Limits.from_wire(eff.get(task_type, wire))

    def clear_limit(self, task_type: str, queue: str | None = None) -> Limits | None:
        """Drop an operator's override: the handlers' own limits (if any) apply again."""
        validate_name("type", task_type)
        q = self._queue_of_type(task_type, queue)
        eff, _ = self._flow(q, "clear", task_type)
        return Limits.from_wire(eff[task_type]) if task_type in eff else None

    def limits(self, queue: str | None = None) -> dict[str, dict[str, Any]]:
        """Flow control per queue: {"paused", "types": {type: {"effective", "declared",
        "override", "running" (leases held), "held" (tasks waiting for one)}}}."""
        queues = [queue] if queue else self.queues()
        # Only the fields it shows: the flow hash also holds per-bucket and per-deferred-task
        # state, which grows with a backlog (two pipelines of bounded size instead).
        with translated(self.url):
            pipe = self.broker.conn.pipeline(transaction=False)
            for q in queues:
                pipe.hmget(self.broker.qkeys(q).flow, "paused", "limits")
                pipe.hlen(self.broker.qkeys(q).flow)
            first = pipe.execute(raise_on_error=False)
            heads = [r if isinstance(r, list) else [None, None] for r in first[0::2]]
            effective = {q: _loads_or(h[1], {}) for q, h in zip(queues, heads, strict=True)}
            wanted = [(q, t) for q in queues for t in effective[q]]
            for q, size in zip(queues, first[1::2], strict=True):
                if isinstance(size, int) and size > 0:
                    # leases of types whose limit was cleared (matched in Redis, not sent)
                    for f in self.broker.conn.hscan_iter(self.broker.qkeys(q).flow,
                                                         match="run:*", count=1000):
                        t = f[0].decode("utf-8", "replace")[4:]
                        if t not in effective[q]:
                            wanted.append((q, t))
            pipe = self.broker.conn.pipeline(transaction=False)
            for q, t in wanted:
                pipe.hmget(self.broker.qkeys(q).flow, f"d:{t}", f"o:{t}", f"run:{t}")
                pipe.zlexcount(self.broker.qkeys(q).held, f"[{t}\0", f"({t}\1")
            replies = pipe.execute(raise_on_error=False) if wanted else []
        out: dict[str, dict[str, Any]] = {
            q: {"paused": h[0] is not None, "types": {}} for q, h in zip(queues, heads,
                                                                       strict=True)}
        for i, (q, t) in enumerate(wanted):
            fields, held = replies[2 * i], replies[2 * i + 1]
            d, o, running = fields if isinstance(fields, list) else (None, None, None)
            out[q]["types"][t] = {
                "effective": _limits_or_none(effective[q].get(t)),
                "declared": _limits_or_none(_loads_or(d, {})),
                "override": _loads_or(o, {}) or None,
                "running": _int_or(running, 0),
                "held": held if isinstance(held, int) else 0}
        return out

    def _queue_of_type(self, task_type: str, queue: str | None) -> str:
        """The queue of a type's limits: given, else the one its handlers declared limits
        in, else the one whose override it has, else the type's own name."""
        if queue is not None:
            return validate_name("queue", queue)
        queues = self.queues()
        with translated(self.url):
            pipe = self.broker.conn.pipeline(transaction=False)
            for q in queues:
                pipe.hexists(self.broker.qkeys(q).flow, f"d:{task_type}")
                pipe.hexists(self.broker.qkeys(q).flow, f"o:{task_type}")
            replies = pipe.execute(raise_on_error=False)
        for want in (0, 1):
            for i, q in enumerate(queues):
                if replies[2 * i + want] is True:
                    return q
        return task_type

    def _flow(self, queue: str, mode: str, *args: Any) -> tuple[dict[str, Any], bool]:
        with translated(self.url):
            reply = self._queue_script(SCRIPTS.flow, queue, [queue, mode, *args])
            self.broker.register_queues([queue])
        return _loads_or(reply[0], {}), bool(reply[1])

    def repair_queue(self, queue: str) -> RepairReport:
        """Bring a broken queue back: corrupt keys moved aside, the queue re-indexed from its
        task bodies, its broken mark cleared (see tq.store.integrity). Safe on a healthy queue."""
        validate_name("queue", queue)
        with translated(self.url):
            return repair(self.broker, queue)

    def stats(self) -> dict[str, Any]:
        """Counters (enqueued, started, succeeded, failed, retried, dead) in total/by type/queue."""
        queues = self.queues()
        with translated(self.url):
            pipe = self.broker.conn.pipeline(transaction=False)
            for q in queues:
                pipe.hgetall(self.broker.qkeys(q).stats)
            # a corrupt counter hash (its queue is set aside) costs that queue's counters only
            replies = [r if isinstance(r, dict) else {}
                       for r in pipe.execute(raise_on_error=False)]
        events = ("enqueued", "started", "succeeded", "failed", "retried", "dead", "throttled")
        total = dict.fromkeys(events, 0)
        by_type: dict[str, dict[str, int]] = {}
        by_queue: dict[str, dict[str, int]] = {}
        by_queue_type: dict[str, dict[str, dict[str, int]]] = {}
        for q, fields in zip(queues, replies, strict=True):
            per_q = by_queue.setdefault(q, dict.fromkeys(events, 0))
            for f, v in fields.items():
                ttype, _, event = f.decode().rpartition(":")
                try:
                    n = int(v)
                except ValueError:   # a counter that is not a number: skipped, not fatal
                    continue
                by_queue_type.setdefault(q, {}).setdefault(ttype, {})[event] = n
                by_type.setdefault(ttype, dict.fromkeys(events, 0))
                by_type[ttype][event] = by_type[ttype].get(event, 0) + n
                per_q[event] = per_q.get(event, 0) + n
                total[event] = total.get(event, 0) + n
        return {"total": total, "by_type": by_type, "by_queue": by_queue,
                "by_queue_type": by_queue_type}

    # -- dead letters -------------------------------------------------------------------
    def dead(self, limit: int = 50, offset: int = 0, queue: str | None = None) -> list[TaskInfo]:
        """Dead-lettered tasks, newest first, with their last error and traceback."""
        if limit <= 0 or offset < 0:
            raise ValueError("limit must be positive and offset not negative")
        queues = [queue] if queue else self.queues()
        with translated(self.url):
            pipe = self.broker.conn.pipeline(transaction=False)
            for q in queues:
                pipe.zrevrange(self.broker.qkeys(q).dead, 0, offset + limit - 1, withscores=True)
            found = [(score, q, tid.decode()) for q, entries in zip(queues, pipe.execute(),
                                                                    strict=True)
                     for tid, score in entries]
            found.sort(key=lambda e: (-e[0], e[2]))
            page = [(tid, q) for _, q, tid in found[offset:offset + limit]]
            replies = self._inspect_many(page)
        return [_info(tid, q, reply, ring=self.keys)
                for (tid, q), reply in zip(page, replies, strict=True)
                if reply[0] is not None]   # one deleted meanwhile is left out

    def _dead_op(self, op: str, ids: Iterable[str] | str, queue: str | None,
                 progress: Progress | None) -> int:
        queues = [queue] if queue else self.queues()
        done = 0
        with translated(self.url):
            conn = self.broker.conn
            if ids == "all":
                totals = {}
                for q in queues:
                    try:
                        totals[q] = conn.zcard(self.broker.qkeys(q).dead)
                    except redis.exceptions.ResponseError as exc:
                        self._raise_broken(q, exc)
                grand = sum(totals.values())
                for q in queues:
                    left = totals[q]   # bounded: tasks failing again meanwhile are not re-read
                    kept = 0           # unrunnable dead letters stay first in line: skip them
                    while left > 0:
                        n, k = self._queue_script(SCRIPTS.dead, q,
                                                  [q, op, min(ADMIN_CHUNK, left), kept])
                        if n + k == 0:
                            break
                        left -= n + k
                        kept += k
                        done += n
                        if progress:
                            progress(done, grand)
                return done
            if isinstance(ids, str):
                raise ValueError('ids must be a list of task ids or "all"')
            wanted = list(dict.fromkeys(ids))
            pipe = conn.pipeline(transaction=False)
            for tid in wanted:
                for q in queues:
                    pipe.zscore(self.broker.qkeys(q).dead, tid)
            scores = pipe.execute(raise_on_error=False)
            for j, score in enumerate(scores):
                if isinstance(score, Exception):
                    self._raise_broken(queues[j % len(queues)], score)
            by_queue: dict[str, list[str]] = {}
            for i, tid in enumerate(wanted):
                for j, q in enumerate(queues):
                    if scores[i * len(queues) + j] is not None:
                        by_queue.setdefault(q, []).append(tid)
                        break
            for q, tids in by_queue.items():
                for start in range(0, len(tids), ADMIN_CHUNK):
                    part = tids[start:start + ADMIN_CHUNK]
                    done += int(self._queue_script(SCRIPTS.dead, q, [q, op, 0, 0, *part])[0])
                    if progress:
                        progress(done, len(wanted))
        return done

    def retry_dead(self, ids: Iterable[str] | str = "all", queue: str | None = None,
                   progress: Progress | None = None) -> int:
        """Put dead tasks back on their queues with attempts reset; returns how many.

        Malformed dead letters (nothing tq could run) stay dead: delete them instead.
        """
        return self._dead_op("retry", ids, queue, progress)

    def delete_dead(self, ids: Iterable[str] | str = "all", queue: str | None = None,
                    progress: Progress | None = None) -> int:
        """Delete dead tasks for good; returns how many."""
        return self._dead_op("delete", ids, queue, progress)

    def run_now(self, ids: Iterable[str], queue: str) -> int:
        """Make scheduled tasks (delayed, or waiting for a retry) of `queue` ready at once;
        returns how many were still scheduled."""
        return self._sched_op("now", ids, queue)

    def delete_scheduled(self, ids: Iterable[str], queue: str) -> int:
        """Delete scheduled tasks of `queue` before they run; returns how many."""
        return self._sched_op("delete", ids, queue)

    def _sched_op(self, op: str, ids: Iterable[str], queue: str) -> int:
        validate_name("queue", queue)
        if isinstance(ids, str):
            raise ValueError("ids must be a list of task ids")
        wanted = list(dict.fromkeys(ids))
        done = 0
        with translated(self.url):
            for i in range(0, len(wanted), ADMIN_CHUNK):
                done += int(self._queue_script(SCRIPTS.sched, queue,
                                               [queue, op, *wanted[i:i + ADMIN_CHUNK]]))
        return done

    def purge(self, queue: str) -> int:
        """Delete every waiting (ready or scheduled) task of a queue; returns how many."""
        validate_name("queue", queue)
        total = 0
        with translated(self.url):
            while True:
                n = int(self._queue_script(SCRIPTS.purge, queue, [ADMIN_CHUNK, queue]))
                total += n
                if n == 0:
                    return total


def _info(task_id: str, queue: str, reply: list[Any], ring: KeyRing | None = None) -> TaskInfo:
    body, claim, fails, error, sched, dead, result = reply[:7]
    waiting = reply[8] if len(reply) > 8 else None
    created = created_ms(task_id)
    info = TaskInfo(task_id, queue, queue, "queued",
                    created_at=created / 1000 if created is not None else None)
    failures = int(fails or 0)
    if error:
        try:
            err = json.loads(error)
            info.error = reveal(ring, err.get("message"), error_aad(queue, task_id, "message"))
            info.error_kind = err.get("kind")
            info.traceback = reveal(ring, err.get("traceback"),
                                    error_aad(queue, task_id, "traceback"))
            info.failed_at = err["at"] / 1000 if err.get("at") else None
            info.history = _history(err.get("history"), ring, queue, task_id)
        except (ValueError, TypeError, AttributeError):
            info.error = error.decode("utf-8", "replace")
    if body is not None:
        task = Task.from_body(task_id, queue, body, failures)
        if task.raw is not None and not task.malformed:   # signed or encrypted (tq.protect)
            try:
                opened = open_payload(ring, queue, task_id, task.raw, task.sealed)
                if opened is not None:
                    task = task.with_payload(opened)
            except Rejected as exc:
                info.encrypted = task.sealed
                info.extra["protection"] = str(exc)
        info.type, info.priority, info.payload = task.type, task.priority, task.payload
        info.workflow = task.workflow
        if info.encrypted:
            info.payload = None
        info.max_retries, info.timeout = task.max_retries, task.timeout
        if task.malformed:
            info.extra["malformed"] = task.malformed
        info.attempts = failures
        if dead is not None:
            info.state = "dead"
            info.finished_at = float(dead) / 1000
        elif claim:
            parts = claim.decode().split("|")
            info.state, info.attempts, info.worker = "running", failures + 1, parts[0]
            info.started_at = int(parts[2]) / 1000 if len(parts) > 2 else None
            if claim.endswith(b"|x"):   # a cancel was requested (cancel.lua)
                info.state = "cancelling"
        elif sched is not None:
            info.state = "failed-will-retry" if failures else "scheduled"
            info.eta = float(sched) / 1000
        elif waiting is not None:
            info.state = "waiting"
            info.extra["waiting_for"] = _int_or(waiting, 0)
        return info
    try:
        rec = json.loads(result)
    except ValueError:
        rec = None
    if not isinstance(rec, dict):   # a result key that is not tq's (total, like from_body)
        info.state = "succeeded"
        info.extra["result"] = "unreadable result record"
        return info
    info.state = rec.get("s") if rec.get("s") in STATES else "succeeded"
    info.type = rec.get("t") if isinstance(rec.get("t"), str) else queue
    info.result = rec.get("r")
    if isinstance(rec.get("x"), str):   # an encrypted result
        opened = open_text(ring, rec["x"], result_aad(queue, task_id))
        info.encrypted = opened is None
        try:
            info.result = json.loads(opened) if opened is not None else None
        except ValueError:   # opened, but not JSON: not what a worker seals
            info.result = None
    info.attempts = rec["a"] if isinstance(rec.get("a"), int) else 1
    info.worker = rec.get("w") if isinstance(rec.get("w"), str) else None
    info.workflow = rec.get("wf") if isinstance(rec.get("wf"), str) else None
    info.started_at = _ms(rec.get("st"))
    info.finished_at = _ms(rec.get("f"))
    if rec.get("e"):
        info.error = str(rec["e"])
    info.history = _history(rec.get("h"), ring, queue, task_id)
    return info


def _progress(raw: Any, ring: KeyRing | None, queue: str, task_id: str
              ) -> dict[str, Any] | None:
    """A stored ctx.progress() record, or None (none, or unreadable)."""
    rec = _loads_or(raw, {})
    if not isinstance(rec.get("f"), int | float):
        return None
    return {"fraction": rec["f"],
            "message": reveal(ring, rec.get("m", ""), progress_aad(queue, task_id)),
            "at": rec.get("at")}


def _ms(value: Any) -> float | None:
    """Unix ms as stored -> seconds; None for nothing or something else."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value:
        return None
    return value / 1000


def _history(raw: Any, ring: KeyRing | None = None, queue: str = "",
             task_id: str = "") -> list[dict[str, Any]]:
    """Earlier attempts' errors as stored ({kind, message, at ms, worker}), at in seconds."""
    if not isinstance(raw, list):
        return []
    aad = error_aad(queue, task_id, "message")
    return [{"kind": h.get("kind"), "message": reveal(ring, h.get("message"), aad),
             "at": h["at"] / 1000 if isinstance(h.get("at"), int | float) else None,
             "worker": h.get("worker")} for h in raw if isinstance(h, dict)]


def _loads_or(raw: Any, default: Any) -> Any:
    """JSON from Redis, or `default` for nothing or something unreadable (status must show
    the rest of a queue's state whatever one field holds)."""
    if not raw:
        return default
    try:
        value = json.loads(raw)
    except ValueError:
        return default
    return value if isinstance(value, type(default)) else default


def _int_or(raw: Any, default: int) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return default


def _limits_or_none(wire: Any) -> Limits | None:
    try:
        return Limits.from_wire(wire) if isinstance(wire, dict) and wire else None
    except (ValueError, TypeError, KeyError):
        return None
