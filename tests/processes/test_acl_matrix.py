"""Every path of every role under the Redis grants docs/operations.md documents, on a standalone
Redis and on a Redis Cluster: role x path, on real ACL users.

One master per backend (user `tq`, as the docs grant it) serves every path in turn, then drains
and must exit 0; the CLI and the dashboard run as `tq` too; a producer (`tq-producer`) and a
read-only user (`tq-ro`) do their part against the same master. At the end Redis' own ACL LOG
must hold no refusal of `tq` or `tq-producer`, and every command anyone sent must be one that
tq.store.grants lists (what a master checks at start).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from acl_users import AclUsers, documented_rules
from click.testing import CliRunner, Result
from master_proc import MasterProcess, eventually, run_master
from redis_server import free_port

import tq
from tq.cli import cli
from tq.dashboard.app import create_app
from tq.store import grants

pytestmark = pytest.mark.cluster_too   # the module's backends: standalone, then cluster

HOST = {"Host": "127.0.0.1:8080"}
APP_COMMANDS = {"incrby"}   # aclapp's own, through ctx.redis
CLEAN_LOG = ("NOPERM", "no permissions", "refused a command", "can't run")


@dataclass
class Env:
    backend: str
    users: AclUsers
    urls: dict[str, str]        # role user name -> URL
    master: MasterProcess
    metrics_port: int
    keys_file: Path
    admin: Any                  # a connection of the default (all-powerful) user

    def alive(self) -> None:
        assert self.master.proc.poll() is None, f"the master exited:\n{self.master.log()[-3000:]}"


def _keys_file(path: Path, current: str, *ids: str) -> None:
    keys = "\n".join(f'{i} = "{base64.b64encode(i.encode() * (32 // len(i))).decode()}"'
                     for i in ids)
    path.write_text(f'current = "{current}"\n[keys]\n{keys}\n')


@pytest.fixture(scope="module", params=["standalone", "cluster"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Env]:
    backend = request.param
    if backend == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        cluster.wait_ok()
        cluster.flush()
        users, admin = AclUsers(cluster.live(), cluster=True), cluster.client()
    else:
        server = request.getfixturevalue("redis_server")
        admin = server.client()
        admin.flushall()
        admin.config_set("maxmemory-policy", "noeviction")
        users = AclUsers([server], cluster=False)
    tmp = tmp_path_factory.mktemp(f"acl-{backend}")
    keys_file = tmp / "keys.toml"
    _keys_file(keys_file, "k1", "k1")
    try:
        urls = {name: users.make(name, rules) for name, rules in documented_rules().items()}
        assert set(urls) == {"tq", "tq-producer", "tq-ro"}
        users.reset()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("TQ_REDIS_URL", urls["tq"])
            mp.setenv("TQ_KEYS_FILE", str(keys_file))   # payloads sealed: key rotation
            mp.delenv("TQ_KEYS", raising=False)
            port = free_port()
            master = run_master(urls["tq"], tmp, "-c", "2", "-A", "aclapp", "--stall-timeout",
                                "2", "--forget-queues-after", "1", "--cancel-grace", "2",
                                "--metrics-bind", f"127.0.0.1:{port}")
            try:
                master.wait_ready(2, timeout=30)
                yield Env(backend, users, urls, master, port, keys_file, admin)
            finally:
                master.stop()
    finally:
        users.remove()
        admin.close()


@pytest.fixture
def client(env: Env) -> Iterator[tq.Client]:
    """A client of the `tq` user (made per test: it reads the keys file, which rotates)."""
    env.alive()
    with tq.Client(env.urls["tq"]) as c:
        yield c
    env.alive()


def tq_cli(*args: str, url: str | None = None) -> Result:
    """The `tq` CLI in this process, as the `tq` user (TQ_REDIS_URL) or `url`'s."""
    result = CliRunner().invoke(cli, [*(["--redis-url", url] if url else []), "-q", *args],
                                catch_exceptions=False)
    assert result.exit_code == 0, (args, result.output)
    assert not any(s in result.output for s in CLEAN_LOG), result.output
    return result


def tq_json(*args: str, url: str | None = None) -> Any:
    return json.loads(tq_cli(*args, "--json", url=url).stdout)


class Board:
    """The dashboard of one client, driven through Flask's test client."""

    def __init__(self, client: tq.Client) -> None:
        self.web = create_app(client).test_client()
        page = self.web.get("/", headers=HOST).get_data(as_text=True)
        token = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        self.post_headers = {**HOST, "X-CSRF-Token": token}

    def get(self, path: str) -> Any:
        reply = self.web.get(path, headers=HOST)
        assert reply.status_code == 200, (path, reply.get_data(as_text=True))
        return reply.get_json() if reply.is_json else reply.get_data(as_text=True)

    def post(self, path: str, body: dict[str, Any] | None = None, status: int = 200) -> Any:
        reply = self.web.post(path, json=body or {}, headers=self.post_headers)
        assert reply.status_code == status, (path, reply.get_data(as_text=True))
        return reply.get_json()


PAGES = ("/", "/api/overview", "/api/stats", "/stats", "/api/queues", "/queues", "/api/failed",
         "/failed", "/api/scheduled", "/api/masters", "/api/workers", "/api/tasks?state=dead",
         "/api/tasks?state=ready", "/api/tasks?state=scheduled", "/api/series",
         "/api/history", "/api/latency")


def child_pid(client: tq.Client, task_id: str) -> int:
    """The pid of the child running a task (from the registry, as `tq workers` shows it)."""
    def found() -> int | None:
        info = client.get(task_id)
        if info.state != "running" or not info.worker:
            return None
        entry = next((w for w in client.broker.registry("workers") if w["id"] == info.worker),
                     None)
        return entry.get("pid") if entry else None
    return eventually(found, 15, what=f"task {task_id} running in a child")


# -- the master's role (user tq): the master, its children, the CLI and the dashboard ---------
def test_start_status_and_claims(env: Env, client: tq.Client):
    status = tq_json("status")
    assert status["masters"] and "acl.ok" in status["queues"]
    assert len(tq_json("workers")["masters"][0]["children"]) == 2
    ids = client.enqueue_many([("acl.ok", {"n": i}) for i in range(20)])
    pids = {client.wait(t, timeout=15)["pid"] for t in ids}
    assert pids <= env.master.child_pids()
    assert tq_json("get", ids[0])["state"] == "succeeded"


def test_a_crashed_child_is_replaced_and_its_task_requeued(env: Env, client: tq.Client):
    before = env.master.child_pids()
    assert client.wait(client.enqueue("acl.crash", {}), timeout=20) == 2
    assert "killed by signal 9" in env.master.log()
    eventually(lambda: len(env.master.child_pids()) == 2 and env.master.child_pids() != before,
               what="a replacement child")


def test_a_stalled_child_is_killed_and_its_task_requeued(env: Env, client: tq.Client):
    tid = client.enqueue("acl.slow", {"s": 30})
    pid = child_pid(client, tid)
    eventually(lambda: (client.get(tid).progress or {}).get("message") == "half way",
               what="its progress")
    os.kill(pid, signal.SIGSTOP)
    assert client.wait(tid, timeout=20) == 2
    env.master.wait_log("showed no sign of life")
    eventually(lambda: len(env.master.child_pids()) == 2, what="a replacement child")


def test_ttin_and_ttou_scale_the_pool(env: Env, client: tq.Client):
    env.master.signal(signal.SIGTTIN)
    eventually(lambda: len(env.master.child_pids()) == 3, 15, what="a third child")
    env.master.signal(signal.SIGTTOU)
    eventually(lambda: len(env.master.child_pids()) == 2, 15, what="two children again")
    assert client.wait(client.enqueue("acl.ok", {}), timeout=15)["attempt"] == 1


def test_dead_letters_and_their_retry(env: Env, client: tq.Client):
    tid = client.enqueue("acl.flaky", {})
    with pytest.raises(tq.TaskFailed):
        client.wait(tid, timeout=15)
    assert tid in {d["id"] for d in tq_json("dead", "list")}
    assert "first run fails" in tq_cli("dead", "show", tid).stdout
    tq_cli("dead", "retry", tid, "--queue", "acl.flaky")
    assert client.wait(tid, timeout=15) == "retried"
    gone = client.enqueue("acl.nosuch", {}, queue="acl.ok")   # no handler: dead at once
    with pytest.raises(tq.TaskFailed):
        client.wait(gone, timeout=15)
    tq_cli("dead", "delete", gone, "--queue", "acl.ok")
    with pytest.raises(tq.TaskNotFound):
        client.get(gone)


def test_periodic_tasks_run(env: Env, client: tq.Client):
    eventually(lambda: client.stats()["by_type"].get("acl.tick", {}).get("succeeded"), 15,
               what="a periodic tick run")
    assert "acl.tick" in {p["type"] for p in tq_json("status")["periodic"]}


def test_workflows_hand_off_between_queues_and_cancel(env: Env, client: tq.Client):
    wf = client.workflow(tq.chain(tq.step("acl.wf1", {"n": 1}, queue="acl-wf1"),
                                  tq.step("acl.wf2", {"n": 2}, queue="acl-wf2"),
                                  tq.step("acl.wf1", {"n": 3}, queue="acl-wf1")))
    done = client.wait_workflow(wf.id, timeout=20)
    assert done.state == "succeeded" and done.members[-1]["result"] == 6
    assert tq_json("workflow", "show", wf.id)["state"] == "succeeded"
    stuck = client.workflow(tq.chain(tq.step("acl.slow", {"s": 30}), tq.step("acl.ok", {})))
    child_pid(client, next(iter(stuck.tasks.values())))
    tq_cli("workflow", "cancel", stuck.id)
    eventually(lambda: client.get_workflow(stuck.id).state == "cancelled", 15,
               what="the workflow cancelled")


def test_cancel_a_waiting_and_a_running_task(env: Env, client: tq.Client):
    later = client.enqueue("acl.ok", {}, delay=3600)
    assert client.cancel(later) == "cancelled"
    running = client.enqueue("acl.slow", {"s": 30})
    child_pid(client, running)
    assert "cancelling" in tq_cli("cancel", running).stdout
    with pytest.raises(tq.TaskCancelled):
        client.wait(running, timeout=15)


def test_limits(env: Env, client: tq.Client):
    tq_cli("limits", "set", "acl.limited", "50/s", "--concurrency", "1")
    shown = tq_json("limits", "show")
    assert shown["acl.limited"]["types"]["acl.limited"]["override"]
    ids = [client.enqueue("acl.limited", {"n": i}) for i in range(4)]
    assert [client.wait(t, timeout=15) for t in ids] == [0, 1, 2, 3]
    tq_cli("limits", "clear", "acl.limited")
    assert client.limits("acl.limited")["acl.limited"]["types"]["acl.limited"]["override"] \
        is None


def test_pause_key_rotation_reload_and_resume(env: Env, client: tq.Client):
    tq_cli("pause", "acl.vault")
    ids = [client.enqueue("acl.vault", {"secret": i}) for i in range(2)]
    assert client.queue_sizes()["acl.vault"]["paused"]
    # a new current key; the old one stays listed while tasks sealed with it remain
    _keys_file(env.keys_file, "k2", "k2", "k1")
    assert tq_json("keys", "rotate", "--queue", "acl.vault") == {"acl.vault": 2}
    env.master.signal(signal.SIGHUP)
    env.master.wait_log("reload done", timeout=30)
    tq_cli("resume", "acl.vault")
    with tq.Client(env.urls["tq"]) as fresh:   # reads the keys file again
        assert [fresh.wait(t, timeout=15) for t in ids] == [{"secret": 0}, {"secret": 1}]


def test_queue_repair(env: Env, client: tq.Client):
    env.admin.set("tq:{acl.fix}:dead", "oops")   # a corrupt key, as a bad deploy leaves
    with pytest.raises(tq.QueueBroken):
        client.retry_dead("all", queue="acl.fix")
    assert "tq:{acl.fix}:dead" in tq_cli("queue", "repair", "acl.fix").stdout
    # (the children look again at a queue they set aside every 5 s)
    assert client.wait(client.enqueue("acl.fix", {}), timeout=20) == "repaired"


def test_every_dashboard_action(env: Env, client: tq.Client):
    board = Board(client)
    dead = [client.enqueue("acl.nosuch", {"n": i}, queue="acl.ok") for i in range(3)]
    for t in dead:
        with pytest.raises(tq.TaskFailed):
            client.wait(t, timeout=15)
    for path in (*PAGES, f"/api/tasks/{dead[0]}"):
        board.get(path)
    assert board.post("/api/failed/retry", {"ids": [dead[0]], "queue": "acl.ok"}) == \
        {"retried": 1}
    assert board.post("/api/failed/delete", {"ids": [dead[1]], "queue": "acl.ok"}) == \
        {"deleted": 1}
    bulk = board.post("/api/tasks/bulk", {"state": "dead", "action": "delete",
                                          "queue": "acl.ok"})
    assert bulk["done"] >= 1
    later = [client.enqueue("acl.ok", {"n": i}, delay=3600) for i in range(3)]
    assert board.post("/api/scheduled/run", {"ids": [later[0]], "queue": "acl.ok"}) == \
        {"ran": 1}
    assert client.wait(later[0], timeout=15)["attempt"] == 1
    assert board.post("/api/scheduled/delete", {"ids": [later[1]], "queue": "acl.ok"}) == \
        {"deleted": 1}
    assert board.post(f"/api/tasks/{later[2]}/cancel")["outcome"] == "cancelled"
    delayed = [{"type": "acl.ok", "payload": {}, "queue": "acl-board", "delay": 3600}] * 3
    for action in ("delete", "run"):   # (run: ready, in a queue nobody serves)
        client.enqueue_many(delayed)
        assert board.post("/api/tasks/bulk", {"state": "scheduled", "action": action,
                                              "queue": "acl-board"})["done"] == 3
    assert client.queue_sizes()["acl-board"]["ready"] == 3
    wf = client.workflow(tq.chain(tq.step("acl.ok", {}, queue="acl-board"),
                                  tq.step("acl.ok", {})))
    board.get(f"/api/workflows/{wf.id}")
    assert board.post(f"/api/workflows/{wf.id}/cancel")["cancelled"] == 2
    client.enqueue_many([{"type": "acl.ok", "payload": {}, "queue": "acl-board"}] * 2)
    assert board.post("/api/queues/acl-board/purge", {"confirm": "acl-board"}) == \
        {"purged": 5}
    board.post("/api/queues/acl.ok/pause")
    assert client.queue_sizes()["acl.ok"]["paused"]
    board.post("/api/queues/acl.ok/resume")
    assert client.wait(client.enqueue("acl.ok", {}), timeout=15)["attempt"] == 1


def test_metrics(env: Env, client: tq.Client):
    with urllib.request.urlopen(f"http://127.0.0.1:{env.metrics_port}/metrics",
                                timeout=10) as reply:
        text = reply.read().decode()
    assert 'tq_queue_depth{queue="acl.ok"' in text and "tq_children" in text


def test_old_queues_are_forgotten(env: Env, client: tq.Client):
    client.enqueue("acl.ok", {}, queue="acl-old")      # a queue no master serves
    client.enqueue("acl.ok", {}, queue="acl-gone")
    assert tq_json("queue", "delete", "acl-gone", "--yes")["deleted"]
    client.purge("acl-old")
    eventually(lambda: "acl-old" not in client.queues(), 20, what="the old queue forgotten")
    assert "acl.ok" in client.queues()   # its handlers' queue stays


# -- the other roles, against the same master -------------------------------------------------
def test_the_producer_role(env: Env, client: tq.Client):
    by_cli = tq_cli("enqueue", "acl.ok", "--payload", '{"cli": 1}',
                    url=env.urls["tq-producer"]).stdout.strip()
    assert json.loads(tq_cli("wait", by_cli, url=env.urls["tq-producer"]).stdout)["attempt"] == 1
    with tq.Client(env.urls["tq-producer"]) as p:
        first = p.enqueue("acl.ok", {"u": 1}, unique_for=60)
        assert p.enqueue("acl.ok", {"u": 1}, unique_for=60) == first
        ids = p.enqueue_many([("acl.ok", {"n": i}) for i in range(5)])
        assert all(p.wait(t, timeout=15)["attempt"] == 1 for t in [first, *ids])
        later = p.enqueue("acl.ok", {}, delay=3600, priority=9)
        assert p.get(later).state == "scheduled" and p.cancel(later) == "cancelled"
        wf = p.workflow(tq.chain(tq.step("acl.wf1", {"n": 1}, queue="acl-wf1"),
                                 tq.step("acl.wf2", {"n": 1}, queue="acl-wf2")))
        assert p.wait_workflow(wf.id, timeout=20).state == "succeeded"
        assert p.stats()["by_type"]["acl.ok"]["succeeded"] >= 6
        assert p.queue_sizes()["acl.ok"]["ready"] >= 0 and isinstance(p.dead(), list)


def test_the_read_only_role_sees_everything_and_changes_nothing(env: Env, client: tq.Client):
    tid = client.enqueue("acl.ok", {}, queue="acl-ro")    # nobody serves it: stays queued
    later = client.enqueue("acl.ok", {}, queue="acl-ro", delay=3600)
    wf = client.workflow(tq.chain(tq.step("acl.ok", {}, queue="acl-ro"), tq.step("acl.ok", {})))
    dead = client.enqueue("acl.nosuch", {}, queue="acl.ok")
    with pytest.raises(tq.TaskFailed):
        client.wait(dead, timeout=15)
    ro_url = env.urls["tq-ro"]
    for args in (("status",), ("workers",), ("stats",), ("get", tid), ("dead", "list"),
                 ("limits", "show")):
        tq_cli(*args, "--json", url=ro_url)
    tq_cli("dead", "show", dead, url=ro_url)
    with tq.Client(ro_url) as ro:
        assert ro.get(tid).state == "queued" and ro.queue_sizes()["acl-ro"]["ready"] == 2
        with pytest.raises(tq.NoPermission, match=r"grant"):
            ro.enqueue("acl.ok", {})
        board = Board(ro)
        for path in (*PAGES, f"/api/tasks/{tid}", f"/api/tasks/{dead}",
                     f"/api/tasks/{dead}/value/payload", f"/api/tasks/{dead}/value/error"):
            board.get(path)
        for path, body in (("/api/failed/retry", {"ids": [dead], "queue": "acl.ok"}),
                           ("/api/failed/delete", {"ids": [dead], "queue": "acl.ok"}),
                           ("/api/queues/acl-ro/purge", {"confirm": "acl-ro"}),
                           ("/api/tasks/bulk", {"state": "dead", "action": "retry",
                                                "queue": "acl.ok"}),
                           ("/api/scheduled/run", {"ids": [later], "queue": "acl-ro"}),
                           ("/api/scheduled/delete", {"ids": [later], "queue": "acl-ro"}),
                           ("/api/queues/acl-ro/pause", {}),
                           ("/api/queues/acl-ro/resume", {}),
                           (f"/api/tasks/{tid}/cancel", {}),
                           (f"/api/workflows/{wf.id}/cancel", {})):
            assert "may only read" in board.post(path, body, status=403)["error"]
    sizes = client.queue_sizes()["acl-ro"]
    assert client.get(dead).state == "dead" and not sizes["paused"]
    assert (sizes["ready"], sizes["scheduled"], client.get_workflow(wf.id).state) == \
        (2, 1, "running")
    client.purge("acl-ro")
    refused = env.users.refusals("tq-ro")
    assert refused and {e["reason"] for e in refused} == {"command"}, refused


# -- the end: a drain under the same grants, and nothing was refused on the way ---------------
def test_drain_exits_0_and_no_grant_was_missing(env: Env):
    with tq.Client(env.urls["tq"]) as client:
        for t in client.enqueue_many([("acl.ok", {"n": i}) for i in range(10)]):
            client.wait(t, timeout=15)
    env.master.signal(signal.SIGTERM)
    assert env.master.wait_exit(40) == 0, env.master.log()[-3000:]
    log = env.master.log()
    assert not [s for s in CLEAN_LOG if s in log], log[-3000:]
    assert "exited [drain]" in log and "master stopped" in log
    for user in ("tq", "tq-producer"):
        assert env.users.refusals(user) == [], user
    listed = set(grants.master_commands(env.backend == "cluster")) | set(grants.OPERATOR)
    assert env.users.commands() - listed - APP_COMMANDS == set()
