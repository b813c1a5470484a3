"""Redis ACL users with only the grants docs/operations.md documents run every part of tq."""

from __future__ import annotations

import pytest
from master_proc import eventually

import tq
from tq.dashboard.app import create_app
from tq.errors import NoPermission

# The documented rules (docs/operations.md, "Redis users and ACLs"), for namespace tq.
TQ_RULE = "on >s3cret-tq ~tq:* +@read +@write +@scripting +@connection +time -@dangerous +info"
PRODUCER_RULE = "on >s3cret-p ~tq:* +@read +@write +@scripting +@connection +time -@dangerous"
READONLY_RULE = "on >s3cret-ro ~tq:* +@read +@scripting +@connection +time -@write -@dangerous"
NO_INFO_RULE = "on >s3cret-tq ~tq:* +@read +@write +@scripting +@connection +time -@dangerous"


CLUSTER_GRANT = "+cluster|slots"   # on a cluster: the client reads the slot map


@pytest.fixture
def acl(redis_url, backend, request):
    """Create ACL users on the test's own server (on every node of the test's cluster, with
    the documented extra grant); removed after the test."""
    if backend == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        admins = [n.client() for n in cluster.live()]
    else:
        server = request.getfixturevalue("redis_server")
        admins = [server.client()]
    made: list[str] = []

    def user(name: str, rule: str) -> str:
        if backend == "cluster":
            rule = f"{rule} {CLUSTER_GRANT}"
        for admin in admins:
            admin.execute_command("ACL", "SETUSER", name, "reset", *rule.split())
        made.append(name)
        password = next(p[1:] for p in rule.split() if p.startswith(">"))
        if backend == "cluster":
            nodes = ",".join(f"127.0.0.1:{n.port}" for n in cluster.live())
            return f"redis+cluster://{name}:{password}@{nodes}"
        return f"redis://{name}:{password}@127.0.0.1:{server.port}/0"

    yield user
    for admin in admins:
        for name in made:
            admin.execute_command("ACL", "DELUSER", name)
        admin.close()


@pytest.mark.cluster_too
def test_the_documented_tq_user_runs_producer_master_and_dashboard(acl, masters):
    url = acl("tq-app", TQ_RULE)
    # a producer, a master (with its eviction check: +info) and the dashboard, all as tq-app
    with tq.Client(url) as client:
        m = masters("-c", "1", "-A", "procapp", "--queues", "acl", url=url)
        m.wait_ready(1)
        tid = client.enqueue("pid", {}, queue="acl")
        assert client.wait(tid, timeout=15) in m.child_pids()
        dead = client.enqueue("nosuch", {}, queue="acl")   # dead letter: no handler for it
        with pytest.raises(tq.TaskFailed):
            client.wait(dead, timeout=15)
        web = create_app(client).test_client()
        host = {"Host": "127.0.0.1:8080"}
        for path in ("/api/overview", "/api/queues", "/api/failed", "/api/masters",
                     f"/api/tasks/{tid}", "/api/history"):
            assert web.get(path, headers=host).status_code == 200, path
        assert client.retry_dead([dead], queue="acl") == 1
    log = m.log()
    assert "NOPERM" not in log and "no permissions" not in log and "Traceback" not in log


def test_a_user_without_info_or_config_is_told_what_to_grant(acl, masters):
    url = acl("tq-noinfo", NO_INFO_RULE)
    with tq.Client(url) as producer:   # the producer's rule: enough to enqueue and follow
        tid = producer.enqueue("pid", {}, queue="acl")
        assert producer.get(tid).state == "queued"
    m = masters("-c", "1", "-A", "procapp", "--queues", "acl", url=url)
    assert m.wait_exit(20) == 1
    assert "+config|get or +info" in m.log() and "Traceback" not in m.log()
    # with --allow-eviction it warns and runs
    m2 = masters("-c", "1", "-A", "procapp", "--queues", "acl", "--allow-eviction", url=url)
    m2.wait_ready(1)
    assert "cannot read Redis' maxmemory-policy" in m2.log()


def test_a_read_only_user_sees_everything_and_changes_nothing(acl, client):
    tid = client.enqueue("email", {"to": "a@example.com"})
    url = acl("tq-ro", READONLY_RULE)
    with tq.Client(url) as ro:
        assert ro.get(tid).state == "queued"
        assert ro.queue_sizes()["email"]["ready"] == 1
        web = create_app(ro).test_client()
        assert web.get("/api/queues", headers={"Host": "127.0.0.1:8080"}).status_code == 200
        with pytest.raises(tq.TQError, match=r"NOPERM|no permissions") as err:
            ro.enqueue("email", {})
        assert "s3cret" not in str(err.value)
    eventually(lambda: client.queue_sizes()["email"]["ready"] == 1, timeout=1)


def test_roles_stay_inside_their_grants(acl, client, redis_url):
    # Given a task of namespace "billing" that finished with a result
    with tq.Client(redis_url, namespace="billing") as billing:
        paid = billing.enqueue("invoice", {"amount": 42})
        from tq.store.broker import Ack, Broker, result_record

        broker = Broker(redis_url, "billing")
        task, = broker.claim("w", ["invoice"], 1).tasks
        broker.claim("w", ["invoice"], 0, acks=[Ack(task, result_record(task, '"secret"', "w",
                                                                         1, 2))])
        assert billing.get(paid).result == "secret"
    # a producer of namespace "shop" (the documented producer rule, for ~shop:*) works there
    url = acl("shop-producer", PRODUCER_RULE.replace("~tq:*", "~shop:*"))
    with tq.Client(url, namespace="shop") as shop:
        assert shop.get(shop.enqueue("order", {})).state == "queued"
    # and can read nothing of another namespace: neither its tasks nor its results
    with tq.Client(url, namespace="billing") as spy:
        with pytest.raises(NoPermission):
            spy.get(paid)
        with pytest.raises(NoPermission):
            spy.queue_sizes()
    # a read-only dashboard user: every page reads, every action is refused
    ro_url = acl("tq-dash", READONLY_RULE)
    dead = client.enqueue("send", {}, queue="email", max_retries=0)
    from tq.store.broker import Broker as B

    b = B(client.broker.url)
    t, = b.claim("w", ["email"], 1).tasks
    b.fail("w", t, "boom")
    client.enqueue("send", {}, queue="email")   # something for a purge to (not) delete
    with tq.Client(ro_url) as ro:
        web = create_app(ro).test_client()
        host = {"Host": "127.0.0.1:8080"}
        page = web.get("/", headers=host).get_data(as_text=True)
        csrf = {**host, "X-CSRF-Token": page.split('name="csrf-token" content="', 1)[1]
                .split('"', 1)[0]}
        for path in ("/api/overview", "/api/tasks?state=dead", f"/api/tasks/{dead}"):
            assert web.get(path, headers=host).status_code == 200, path
        for path, body in (("/api/failed/retry", {"ids": [dead], "queue": "email"}),
                           ("/api/failed/delete", {"ids": [dead], "queue": "email"}),
                           ("/api/queues/email/purge", {"confirm": "email"}),
                           ("/api/queues/email/pause", {})):
            reply = web.post(path, json=body, headers=csrf)
            assert reply.status_code == 403, (path, reply.get_data(as_text=True))
            assert "may only read" in reply.get_json()["error"]
    sizes = client.queue_sizes()["email"]
    assert client.get(dead).state == "dead" and sizes["ready"] == 1 and not sizes["paused"]
