"""Every Redis key tq uses, in one place.

All keys of one queue share the hash tag `{queue}`, so each Lua script (which only touches one
queue's keys, all passed in KEYS) stays inside one Redis Cluster slot, and queues spread over the
cluster's shards. The registry, the queue set and the history are global; on a Redis Cluster
they share the tag {#} (`ns:{#}:workers`...; `#` cannot be in a queue name), so the registry's
scripts and MGETs stay in one slot. On a standalone or Sentinel-managed Redis they keep their
untagged names below, which older tq versions of a fleet being upgraded also use.

| key                          | type   | holds                                                   |
|------------------------------|--------|---------------------------------------------------------|
| ns:queues                    | set    | every queue name enqueued to or consumed (forgotten     |
|                              |        | when empty, unserved and idle: --forget-queues-after)   |
| ns:idle                      | hash   | queue -> Redis ms since when it is empty and unserved   |
| ns:periodic                  | hash   | periodic schedule name -> JSON: schedule, type, last and |
|                              |        | next tick (shared/periodic_tasks.py)                    |
| ns:workers                   | zset   | worker id -> last heartbeat (Redis ms)                  |
| ns:worker:W                  | hash   | worker info: host, pid, master, queues, started         |
| ns:masters                   | zset   | master id -> last heartbeat (Redis ms)                  |
| ns:master:M                  | hash   | master info: host, pid, children, counters              |
| ns:groups, ns:groupseen      | hash,  | consumer groups (groups.py): id -> spec; id -> last     |
|                              | zset   | heartbeat of a master using it                          |
| ns:gready:G                  | zset   | group G's ready index: queue -> pass or rank            |
| ns:gwake:G                   | list   | a wake-up token for one idle worker of group G          |
| ns:gnames:G                  | hash   | the plain queue names group G lists -> rank and stride  |
| ns:ggen:G                    | hash   | queue -> joins to G's index (fences drained verdicts)   |
| ns:due                       | zset   | the masters' agenda: queue -> earliest time (Redis ms)  |
|                              |        | it needs a master (a due task, a hand-off, a cancel)    |
| ns:soon                      | list   | token for the masters: the agenda's first time moved    |
| ns:procs:W                   | set    | queues whose processing list of worker W may hold tasks |
| ns:sweep                     | string | lock: which master sweeps the indexes now               |
| ns:{Q}:ready:P               | list   | ids ready to run at priority P (0-9), FIFO              |
| ns:{Q}:tasks                 | hash   | id -> body (JSON)                                       |
| ns:{Q}:sched                 | zset   | id -> due time (Redis ms): delayed tasks and retries    |
| ns:{Q}:run                   | hash   | id -> "worker|token|claimed_ms" for claimed tasks       |
|                              |        | (+ "|c": holds a concurrency lease, + "|x": a cancel    |
|                              |        | was requested)                                          |
| ns:{Q}:proc:W                | list   | ids claimed by worker W, in the order it runs them      |
| ns:{Q}:fails                 | hash   | id -> failed attempts so far (absent: none);            |
|                              |        | "id:k" -> how many workers its runs killed (crashes)    |
| ns:{Q}:errors                | hash   | id -> last error (JSON: message, kind, traceback, time, |
|                              |        | history: earlier attempts' errors, up to 20)            |
| ns:{Q}:dead                  | zset   | id -> time it was dead-lettered (Redis ms)              |
| ns:{Q}:res:ID                | string | result record (JSON), expires after the result TTL     |
| ns:{Q}:prog:ID               | string | a running task's last ctx.progress() (JSON: f, m, at),  |
|                              |        | expires after a day                                     |
| ns:{Q}:uniq:DIGEST           | string | id of the task holding a unique_for lock                |
| ns:{Q}:wake                  | list   | wake-up token for workers blocked on an empty queue     |
| ns:{Q}:soon                  | -      | (no longer written: the masters' agenda, ns:due, took   |
|                              |        | its place; still named in a queue's key block)          |
| ns:{Q}:seq                   | string | claim counter (fencing tokens)                          |
| ns:{Q}:stats                 | hash   | "type:event" -> count                                   |
| ns:{Q}:policy                | hash   | type -> handler policy (JSON), published by workers     |
| ns:{Q}:waiters               | hash   | id -> clients blocked in wait()                         |
| ns:{Q}:events                | stream | finished ids, for waiters (capped)                      |
| ns:{Q}:done                  | list   | ids of the last 1000 succeeded tasks, newest first      |
| ns:{Q}:flow                  | hash   | flow control (shared/limits.py): "paused", "limits"     |
|                              |        | (effective, JSON), "d:T"/"o:T" declared/operator limits |
|                              |        | of type T, "tat:T[:K]" GCRA state, "next:T[:K]" next    |
|                              |        | deferral slot, "run:T" leases held of type T            |
| ns:{Q}:held                  | zset   | "T\0id" (score 0, lexical: oldest first): tasks waiting |
|                              |        | for a concurrency lease of type T                       |
| ns:{Q}:wf                    | hash   | workflow members (shared/workflow.py):                  |
|                              |        | "n:ID" a member's edges (JSON), "d:ID" upstream tasks   |
|                              |        | it still waits for, "i:ID:K" the result of its K-th     |
|                              |        | upstream member                                         |
| ns:{Q}:out                   | list   | hand-offs to members in other queues (JSON), applied by |
|                              |        | the masters serving this queue                         |
| ns:{Q}:groups                | -      | (cluster only, never written: stands for ns:groups in a |
|                              |        | queue's key block, see lua/_lib.lua finish_q)           |
| ns:{Q}:broken                | string | set when a key of the queue is corrupt (JSON: key,      |
|                              |        | problem, error, by, at); the queue is not served        |
| ns:{Q}:KEY:corrupt:MS        | any    | a corrupt key, moved aside by `tq queue repair`         |
| ns:wf:W                      | string | workflow W (JSON: policy, members, edges), with a TTL   |
| ns:history:R:B               | hash   | throughput/latency history, resolution R, bucket B      |

Registry info (JSON strings, written by masters' heartbeats):
  ns:master:M  {"id", "host", "pid", "started", "app": [modules], "queues": [...],
                "concurrency", "status": "starting|running|reloading|draining",
                "processed", "failed", "version",
                "children": [{"id", "index", "pid", "state": "starting|idle|busy|stopping",
                              "task", "type", "since", "rss", "uss", "cpu",
                              "processed", "failed"}]}
  ns:worker:W  {"id", "host", "pid", "master", "index", "queues": [...], "started",
                "state", "task", "type", "since"}
  (times are Unix seconds, memory in bytes, cpu in percent of one core)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

PRIORITY_LEVELS = 10
GLOBAL_TAG = "{#}"   # the hash tag of the global keys on a Redis Cluster


class Keys:
    """Key names of one namespace."""

    def __init__(self, namespace: str = "tq", cluster: bool = False) -> None:
        self.ns = namespace
        self.cluster = cluster
        g = self.global_prefix = f"{namespace}:{GLOBAL_TAG}:" if cluster else f"{namespace}:"
        self.queues = f"{g}queues"
        self.workers = f"{g}workers"
        self.masters = f"{g}masters"
        self.idle = f"{g}idle"
        self.periodic = f"{g}periodic"
        self.groups = f"{g}groups"
        self.groupseen = f"{g}groupseen"
        self.due = f"{g}due"
        self.soon = f"{g}soon"
        self.sweep = f"{g}sweep"
        self._queue_cache: dict[str, QueueKeys] = {}

    def worker(self, worker_id: str) -> str:
        return f"{self.global_prefix}worker:{worker_id}"

    def master(self, master_id: str) -> str:
        return f"{self.global_prefix}master:{master_id}"

    def procs(self, worker_id: str) -> str:
        return f"{self.global_prefix}procs:{worker_id}"

    def group_ready(self, group_id: str) -> str:
        return f"{self.global_prefix}gready:{group_id}"

    def group_wake(self, group_id: str) -> str:
        return f"{self.global_prefix}gwake:{group_id}"

    def group_names(self, group_id: str) -> str:
        return f"{self.global_prefix}gnames:{group_id}"

    def group_gens(self, group_id: str) -> str:
        return f"{self.global_prefix}ggen:{group_id}"

    def workflow(self, workflow_id: str) -> str:
        return f"{self.global_prefix}wf:{workflow_id}"

    def history(self, resolution: str, bucket: int) -> str:
        """History bucket: resolution 's' or 'm'; bucket is a Unix time divided by its span."""
        return f"{self.global_prefix}history:{resolution}:{bucket}"

    def queue(self, name: str) -> QueueKeys:
        qk = self._queue_cache.get(name)
        if qk is None:
            prefix = f"{self.ns}:{{{name}}}:"
            # the global groups hash where queue scripts can reach it; on a cluster a key of
            # the queue's own slot that says it cannot (lua/_lib.lua finish_q)
            groups = prefix + "groups" if self.cluster else self.groups
            if len(self._queue_cache) >= 100_000:
                self._queue_cache.clear()
            qk = self._queue_cache[name] = QueueKeys(prefix, name, groups)
        return qk


@dataclass(frozen=True)
class QueueKeys:
    """Key names of one queue (all in one cluster slot)."""

    prefix: str
    name: str
    groups: str   # the groups hash (standalone), else a stand-in in the queue's slot

    @cached_property
    def ready(self) -> tuple[str, ...]:
        """Ready lists, highest priority first (index 0 is priority 9)."""
        return tuple(f"{self.prefix}ready:{p}" for p in reversed(range(PRIORITY_LEVELS)))

    def ready_at(self, priority: int) -> str:
        return f"{self.prefix}ready:{priority}"

    def proc(self, worker_id: str) -> str:
        return f"{self.prefix}proc:{worker_id}"

    def result(self, task_id: str) -> str:
        return f"{self.prefix}res:{task_id}"

    def progress(self, task_id: str) -> str:
        return f"{self.prefix}prog:{task_id}"

    def uniq(self, digest: str) -> str:
        return f"{self.prefix}uniq:{digest}"

    @cached_property
    def tasks(self) -> str:
        return self.prefix + "tasks"

    @cached_property
    def sched(self) -> str:
        return self.prefix + "sched"

    @cached_property
    def run(self) -> str:
        return self.prefix + "run"

    @cached_property
    def fails(self) -> str:
        return self.prefix + "fails"

    @cached_property
    def errors(self) -> str:
        return self.prefix + "errors"

    @cached_property
    def dead(self) -> str:
        return self.prefix + "dead"

    @cached_property
    def wake(self) -> str:
        return self.prefix + "wake"

    @cached_property
    def soon(self) -> str:
        return self.prefix + "soon"

    @cached_property
    def seq(self) -> str:
        return self.prefix + "seq"

    @cached_property
    def stats(self) -> str:
        return self.prefix + "stats"

    @cached_property
    def policy(self) -> str:
        return self.prefix + "policy"

    @cached_property
    def waiters(self) -> str:
        return self.prefix + "waiters"

    @cached_property
    def events(self) -> str:
        return self.prefix + "events"

    @cached_property
    def done(self) -> str:
        return self.prefix + "done"

    @cached_property
    def flow(self) -> str:
        return self.prefix + "flow"

    @cached_property
    def held(self) -> str:
        return self.prefix + "held"

    @cached_property
    def wf(self) -> str:
        return self.prefix + "wf"

    @cached_property
    def out(self) -> str:
        return self.prefix + "out"

    @cached_property
    def broken(self) -> str:
        return self.prefix + "broken"
