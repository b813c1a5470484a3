"""What a refusal's message says to grant, and which commands a master's role needs (pure:
tq.store.grants; the check against a real Redis is in tests/redis/test_redis_acl.py)."""

from __future__ import annotations

import redis

from tq.store.grants import (
    CLUSTER,
    MASTER,
    Line,
    _explained,
    explain,
    grants,
    master_commands,
    refused_within,
    script_commands,
)
from tq.store.scripts import SCRIPTS


def test_a_refused_command_names_its_grant():
    assert explain("this user has no permissions to run the 'multi' command") == \
        "this user has no permissions to run the 'multi' command: grant +multi"
    assert explain("this user has no permissions to run the 'config|get' command or its "
                   "subcommand").endswith(": grant +config|get")


def test_a_refused_key_names_the_key_pattern():
    assert explain("this user has no permissions to access one of the keys used as "
                   "arguments").endswith("grant the namespace's keys (~NAMESPACE:*)")


def test_a_refusal_inside_a_script_names_the_script_and_what_it_calls():
    sha = SCRIPTS.unregister.sha
    text = explain(f"The user executing the script can't run this command or subcommand "
                   f"script: {sha}, on @user_script:9.")
    assert text == ("The user executing the script can't run this command or subcommand (in "
                    "tq's unregister script): grant what it calls, +del +zrem")
    # Redis 6.2's wording carries the SHA as the function's name
    old = explain(f"Error running script (call to f_{sha}): @user_script:9: @user_script: 9: "
                  "The user executing the script can't run this command or subcommand")
    assert "tq's unregister script" in old
    assert explain("something else script: 123") == "something else"


def test_the_commands_of_the_scripts_are_read_from_their_source():
    assert script_commands("unregister") == ["del", "zrem"]
    assert "hsetnx" in script_commands("enqueue")    # called through its write() helper
    assert "lmpop" in script_commands("claim")
    everything = master_commands(cluster=True, replica_acks=True)
    assert set(MASTER) | set(CLUSTER) | {"wait", "hsetnx", "lmpop"} <= set(everything)
    assert "multi" not in everything and "info" not in everything


def test_a_key_outside_the_patterns_is_reported_once_not_per_command():
    lines = [Line("~read", ("get", "k")), Line("~write", ("set", "k", "1")),
             Line("get", ("get", "k"), "read"), Line("hset", ("hset", "k", "k", "k"), "write"),
             Line("ping", ("ping",))]
    # every command on the key refused, and the key's checks: the key pattern
    assert _explained(lines, [lines[0], lines[1], lines[2], lines[3]]) == ["~read", "~write"]
    # the writes only: the key may be read-only (or no write commands): both are named
    assert _explained(lines, [lines[1], lines[3]]) == ["~write"]
    # single commands refused (the key is fine)
    assert _explained(lines, [lines[4]]) == ["ping"]
    assert grants(["~read", "~write", "ping"], "shop") == ["+@read", "~shop:*", "+@write",
                                                          "+ping"]


def test_the_refusal_behind_a_cluster_clients_error_is_found():
    # as redis-py raises it: "cluster mode is not enabled" while handling the refusal, then
    # "cannot be connected" from that
    def slot_map() -> None:
        try:
            raise redis.exceptions.NoPermissionError(
                "this user has no permissions to run the 'cluster|slots' command")
        except redis.exceptions.ResponseError:
            raise redis.exceptions.RedisClusterException("Cluster mode is not enabled")  # noqa: B904

    try:
        try:
            slot_map()
        except redis.exceptions.RedisClusterException as inner:
            raise redis.exceptions.RedisClusterException("cannot be connected") from inner
    except redis.exceptions.RedisClusterException as exc:
        found = refused_within(exc)
    assert found is not None and "cluster|slots" in str(found)
    assert refused_within(ValueError("no")) is None
