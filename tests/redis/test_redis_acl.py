"""Redis ACL users: the grants a master checks at start, what a refusal says, and namespaces
kept apart. Every path of every role under the documented grants, with real processes, is
tests/processes/test_acl_matrix.py; refusals met by a running master, test_acl_refusals.py."""

from __future__ import annotations

from contextlib import closing

import pytest
from acl_users import AclUsers, documented_rules

import tq
from tq.errors import NoPermission
from tq.store.broker import Ack, Broker, result_record
from tq.store.grants import master_commands, missing
from tq.store.upkeep import require_master


@pytest.fixture
def users(redis_url, redis_server):
    made = AclUsers([redis_server], cluster=False)
    yield made
    made.remove()


@pytest.fixture
def any_users(any_redis_url, any_redis_server):
    made = AclUsers([any_redis_server], cluster=False)
    yield made
    made.remove()


def rule(role: str) -> str:
    return documented_rules()[role]


def test_the_documented_master_user_passes_the_start_check_on_redis_6_and_7(any_users):
    with closing(Broker(any_users.make("tq", rule("tq")))) as b:
        require_master(b)
    # without scripts it cannot work anywhere, and both versions say so
    with closing(Broker(any_users.make("tq", f"{rule('tq')} -@scripting"))) as b, \
            pytest.raises(NoPermission, match=r"grant \+@scripting"):
        require_master(b)


def test_the_start_check_names_what_is_missing_and_runs_nothing(users, redis_server):
    admin = redis_server.client()
    before = admin.dbsize()
    with closing(Broker(users.make("tq", f"{rule('tq')} -zadd -hsetnx"))) as b:
        assert missing(b.conn, b.keys.workers, master_commands()) == ["hsetnx", "zadd"]
        with pytest.raises(NoPermission, match=r"may not run HSETNX, ZADD, .* grant "
                                               r"\+hsetnx \+zadd") as err:
            require_master(b)
    assert "s3cret" not in str(err.value) and admin.dbsize() == before


def test_a_user_without_info_or_config_is_told_what_to_grant(users, masters):
    url = users.make("tq", rule("tq").replace(" +info", ""))
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


def test_config_get_instead_of_info_reads_the_policy(users):
    url = users.make("tq", rule("tq").replace(" +info", " +config|get"))
    with closing(Broker(url)) as b:
        assert b.check_eviction_policy() == "noeviction"


def test_a_refusal_inside_a_script_names_the_script_and_its_grants(users):
    with closing(Broker(users.make("tq", f"{rule('tq')} -zadd"))) as b, \
            pytest.raises(NoPermission) as err:
        b.register_worker("w1", {"queues": ["q"]})
    text = str(err.value)
    assert "tq's heartbeat script" in text and "+zadd" in text, text
    assert "script:" not in text and "s3cret" not in text


def test_roles_stay_inside_their_namespace(users, redis_url):
    # Given a task of namespace "billing" that finished with a result
    with tq.Client(redis_url, namespace="billing") as billing:
        paid = billing.enqueue("invoice", {"amount": 42})
        broker = Broker(redis_url, "billing")
        task, = broker.claim("w", ["invoice"], 1).tasks
        broker.claim("w", ["invoice"], 0, acks=[Ack(task, result_record(task, '"secret"', "w",
                                                                         1, 2))])
        assert billing.get(paid).result == "secret"
    # a producer of namespace "shop" (the documented producer rule, for ~shop:*) works there
    url = users.make("shop-producer", rule("tq-producer").replace("~tq:*", "~shop:*"))
    with tq.Client(url, namespace="shop") as shop:
        assert shop.get(shop.enqueue("order", {})).state == "queued"
    # and can read nothing of another namespace: neither its tasks nor its results
    with tq.Client(url, namespace="billing") as spy:
        with pytest.raises(tq.NoPermission, match=r"grant the namespace's keys"):
            spy.get(paid)
        with pytest.raises(tq.NoPermission):
            spy.queue_sizes()
