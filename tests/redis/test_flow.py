"""Flow control (tq.limits): rate limits, concurrency limits, pause/resume, weighted queues.

The claim script enforces limits, so most tests drive it through the Broker (a worker's
calls) against a real Redis; pause, weights and strict order run a real tq-master. The fleet
tests (2 masters x 2 children, SIGKILL storms) are in tests/faults/test_flow_fleet.py.
"""

from __future__ import annotations

import time
from itertools import pairwise

import pytest
from click.testing import CliRunner
from master_proc import eventually

import tq
from tq.cli import cli
from tq.handlers import REGISTRY
from tq.limits import Limits, Rate, parse_rate
from tq.store.broker import Ack, Broker, result_record


def ack_all(broker: Broker, worker: str, tasks: list) -> None:
    if tasks:
        broker.claim(worker, sorted({t.queue for t in tasks}), 0,
                     acks=[Ack(t, result_record(t, "null", worker, 1, 1)) for t in tasks])


# -- limits as written ---------------------------------------------------------------------------
def test_rates_parse_and_bad_ones_are_refused_clearly():
    assert parse_rate("100/s") == Rate(100, 1000)
    assert parse_rate("6000/m").interval_ms == 10
    assert parse_rate(" 10 / h ") == Rate(10, 3_600_000)
    assert str(parse_rate("2.5/s")) == "2.5/s"
    for bad, why in [("0/s", "more than 0"), ("-1/s", "COUNT/UNIT"), ("100", "COUNT/UNIT"),
                     ("100/fortnight", "COUNT/UNIT"), ("abc/s", "COUNT/UNIT"),
                     ("nan/s", "COUNT/UNIT"), (100, "a string")]:
        with pytest.raises(ValueError, match=why):
            parse_rate(bad)
    with pytest.raises(ValueError, match="burst must be"):
        Limits(parse_rate("1/s"), burst=0)
    with pytest.raises(ValueError, match="concurrency must be"):
        tq.handler("x-bad-conc", concurrency=0)
    with pytest.raises(ValueError, match="concurrency must be"):
        tq.handler("x-bad-conc", concurrency=-3)
    with pytest.raises(ValueError, match="need rate_limit"):
        tq.handler("x-bad-burst", burst=5)
    with pytest.raises(ValueError, match="rate_key must be"):
        tq.handler("x-bad-key", rate_limit="1/s", rate_key=42)
    assert "x-bad-conc" not in REGISTRY


def test_cli_refuses_bad_limits_and_unknown_queues(client, redis_url):
    client.enqueue("email", {})
    runner = CliRunner()
    env = {"TQ_REDIS_URL": redis_url}
    for args, why in [(["limits", "set", "email", "0/s"], "more than 0"),
                      (["limits", "set", "email", "fast"], "COUNT/UNIT"),
                      (["limits", "set", "email", "--concurrency", "-1"], "concurrency must"),
                      (["limits", "set", "email"], "rate_limit and/or concurrency"),
                      (["pause", "nosuch"], "unknown queue 'nosuch' (known: email)"),
                      (["resume", "nosuch"], "unknown queue")]:
        result = runner.invoke(cli, args, env=env)
        assert result.exit_code == 2, (args, result.output)
        assert why in result.output, (args, result.output)
    with pytest.raises(ValueError, match="unknown queue"):
        client.pause("nosuch")


# -- rate limits --------------------------------------------------------------------------------
@pytest.mark.cluster_too   # each queue's flow keys in its own slot
def test_over_its_rate_a_task_is_deferred_not_run_and_others_pass(client, broker, rconn):
    # Given a type limited to 20/s with ten tasks queued, behind them a task of another type
    client.set_limit("email", "20/s")
    limited = client.enqueue_many([("email", {"n": i}) for i in range(10)])
    other = client.enqueue("sms", {}, queue="email")
    # When a worker claims
    got = broker.claim("w", ["email"], 32)
    # Then one email runs, and the sms behind the nine others is not held back by them
    assert [t.id for t in got.tasks] == [limited[0], other]
    # the nine wait in the schedule, one slot (50 ms) apart, with no attempt charged
    due = [score for _, score in rconn.zrange("tq:{email}:sched", 0, -1, withscores=True)]
    assert len(due) == 9
    gaps = [b - a for a, b in pairwise(due)]
    assert all(49 <= g <= 51 for g in gaps), gaps
    assert not rconn.exists("tq:{email}:fails")
    assert client.stats()["by_type"]["email"]["throttled"] == 9
    assert client.get(limited[5]).state == "scheduled" and client.get(limited[5]).attempts == 0


def test_deferred_tasks_start_no_faster_than_the_rate(client, broker):
    client.set_limit("email", "20/s")
    ids = client.enqueue_many([("email", {"n": i}) for i in range(8)])
    starts, acks = {}, []
    deadline = time.monotonic() + 10
    while len(starts) < len(ids) and time.monotonic() < deadline:
        got = broker.claim("w", ["email"], 32, acks=acks)
        now = time.monotonic()
        for t in got.tasks:
            starts[t.id] = now
        acks = [Ack(t, result_record(t, "null", "w", 1, 1)) for t in got.tasks]
        if not got.tasks:   # the master would promote them on time: do it here
            broker.promote_due(["email"])
            time.sleep(0.005)   # a polling interval of this stand-in loop, not a synchronisation
    assert sorted(starts) == sorted(ids)
    times = sorted(starts.values())
    # GCRA with a quarter interval of jitter tolerance: never two starts closer than 37.5 ms
    # (30 allows for the claims' own jitter), and 8 starts take about 7 intervals
    assert min(b - a for a, b in pairwise(times)) >= 0.030
    assert times[-1] - times[0] >= 7 * 0.05 - 0.03
    assert client.stats()["by_type"]["email"]["failed"] == 0


@pytest.mark.cluster_too   # each queue's flow keys in its own slot
def test_per_key_limits_keep_tenants_apart(client, broker):
    client.set_limit("report", "1/s", rate_key="tenant")
    client.enqueue_many([("report", {"tenant": t, "i": i}) for i in range(3)
                         for t in ("acme", "globex")])
    client.enqueue("report", {"i": 9})   # no tenant: the type's own bucket
    got = broker.claim("w", ["report"], 32)
    # one of each tenant (and the task without one) now; the rest wait for their own slots
    assert sorted(t.payload.get("tenant", "-") for t in got.tasks) == ["-", "acme", "globex"]
    assert client.stats()["by_type"]["report"]["throttled"] == 4


def test_a_rate_key_function_is_evaluated_by_the_producer(client, broker, rconn):
    @tq.handler("invoice", rate_limit="1/s", rate_key=lambda p: p["org"]["id"])
    def invoice(payload, ctx):
        return None

    try:
        tid = client.enqueue("invoice", {"org": {"id": "o-1"}})
        odd = client.enqueue("invoice", {"org": {"id": 'a "quoted" key'}})
        assert rconn.hget("tq:{invoice}:tasks", tid).startswith(b'{"k":"o-1","p":')
        assert b'"k":"sha1:' in rconn.hget("tq:{invoice}:tasks", odd)
        Broker(client.broker.url).declare_limits({"invoice": {"invoice": REGISTRY["invoice"]
                                                               .limits}})
        client.enqueue("invoice", {"org": {"id": "o-1"}})
        got = broker.claim("w", ["invoice"], 32)
        # two buckets: one task of o-1 and the odd one start, the second o-1 waits
        assert sorted(t.id for t in got.tasks) == sorted([tid, odd])
    finally:
        REGISTRY.pop("invoice", None)


# -- concurrency limits -------------------------------------------------------------------------
@pytest.mark.cluster_too   # each queue's flow keys in its own slot
def test_concurrency_leases_are_taken_and_given_back_on_every_path(client, broker, rconn):
    client.set_limit("render", concurrency=2)
    client.enqueue_many([("render", {"n": i}) for i in range(6)])
    a = broker.claim("w1", ["render"], 32).tasks
    b = broker.claim("w2", ["render"], 32).tasks
    c = broker.claim("w3", ["render"], 32).tasks
    # one per claim (leases spread over workers), two at most
    assert (len(a), len(b), len(c)) == (1, 1, 0)
    info = client.limits("render")["render"]["types"]["render"]
    assert (info["running"], info["held"]) == (2, 4 - 1 + 1)   # 4 held, none ready
    # an ack gives its lease back: a held task is ready again and the next claim gets it
    ack_all(broker, "w1", a)
    d = broker.claim("w4", ["render"], 32).tasks
    assert len(d) == 1
    # a failure gives it back too (and the retry waits in the schedule)
    assert broker.fail("w2", b[0], "boom", delay=60).outcome == "retry"
    e = broker.claim("w5", ["render"], 32).tasks
    assert len(e) == 1
    # a dead worker's task is requeued by the reaper with its lease released
    broker.requeue_worker("w4", ["render"], count_head=True)
    broker.requeue_worker("w5", ["render"], count_head=True)
    info = client.limits("render")["render"]["types"]["render"]
    assert info["running"] == 0
    # no lease leaked: two run again
    f = [broker.claim(f"w{i}", ["render"], 32).tasks for i in (6, 7, 8)]
    assert [len(x) for x in f] == [1, 1, 0]


@pytest.mark.cluster_too   # each queue's flow keys in its own slot
def test_raising_or_clearing_a_concurrency_limit_releases_held_tasks(client, broker):
    client.set_limit("render", concurrency=1)
    client.enqueue_many([("render", {"n": i}) for i in range(4)])
    assert len(broker.claim("w1", ["render"], 32).tasks) == 1
    assert client.limits("render")["render"]["types"]["render"]["held"] == 3
    client.set_limit("render", concurrency=3)
    assert client.limits("render")["render"]["types"]["render"]["held"] == 1
    assert client.clear_limit("render") is None
    assert client.limits("render")["render"]["types"] == {
        "render": {"effective": None, "declared": None, "override": None, "running": 1,
                   "held": 0}}
    assert len(broker.claim("w2", ["render"], 32).tasks) == 3


@pytest.mark.cluster_too   # each queue's flow keys in its own slot
def test_an_override_sits_on_top_of_the_handlers_limits(client, broker):
    broker.declare_limits({"mail": {"mail": Limits(parse_rate("10/s"), burst=5)}})
    assert client.set_limit("mail", concurrency=2, queue="mail") == Limits(
        parse_rate("10/s"), burst=5, concurrency=2)
    assert client.set_limit("mail", "1/m") == Limits(parse_rate("1/m"), concurrency=2)
    assert client.clear_limit("mail") == Limits(parse_rate("10/s"), burst=5)


# -- pause / resume, with a real master ---------------------------------------------------------
def test_pause_stops_claims_but_not_enqueues_and_running_tasks_finish(client, masters, rconn):
    m = masters("-c", "2", "-A", "flowapp", "--queues", "flow,heavy")
    m.wait_ready(2)
    slow = client.enqueue("free", {"s": 0.5}, queue="flow")
    eventually(lambda: client.get(slow).state == "running", what="the slow task running")
    client.pause("flow")
    assert client.queue_sizes()["flow"]["paused"]
    waiting = client.enqueue("free", {}, queue="flow")   # enqueue goes on
    # the slow task that was running finishes
    assert client.wait(slow, timeout=10) is None
    # workers still claim other queues: once a heavy task ran, the paused one still waits
    other = client.enqueue("heavy", {})
    client.wait(other, timeout=10)
    assert client.get(waiting).state == "queued"
    result = CliRunner().invoke(cli, ["status"], env={"TQ_REDIS_URL": client.broker.url})
    assert "PAUSED" in result.output
    # resume: it starts within the usual pickup latency
    t0 = time.monotonic()
    client.resume("flow")
    client.wait(waiting, timeout=10)
    assert time.monotonic() - t0 < 1.0
    assert not client.queue_sizes()["flow"]["paused"]


# -- weighted-fair and strict queues ------------------------------------------------------------
def _order(rconn, kinds: tuple[str, ...]) -> list[str]:
    starts = []
    for kind in kinds:
        for line in rconn.lrange(f"flow:{kind}", 0, -1):
            parts = line.decode().split("|")
            if parts[0] == "start":
                starts.append((float(parts[3]), kind))
    return [k for _, k in sorted(starts)]


def test_weights_share_claims_and_strict_keeps_the_old_order(client, masters, rconn):
    # Given both queues full, one child claiming one task at a time
    client.enqueue_many([("heavy", {})] * 120 + [("light", {})] * 120)
    m = masters("-c", "1", "-A", "flowapp", "--queues", "heavy:5,light:1", "--prefetch", "1")
    m.wait_ready(1)
    eventually(lambda: rconn.llen("flow:heavy") + rconn.llen("flow:light") >= 2 * 120,
               timeout=20, what="120 starts")
    order = _order(rconn, ("heavy", "light"))[:120]
    # Then 5:1 (+-15 %), and light is never starved: it starts at least once every 12 tasks
    ratio = order.count("heavy") / order.count("light")
    assert 5 * 0.85 <= ratio <= 5 * 1.15, ratio
    gaps = [i for i, k in enumerate(order) if k == "light"]
    assert max(b - a for a, b in pairwise(gaps)) <= 12, order
    m.stop()
    # With --strict, the first queue drains before the second gets anything
    client.purge("heavy")
    client.purge("light")
    rconn.delete("flow:heavy", "flow:light")
    client.enqueue_many([("heavy", {})] * 20 + [("light", {})] * 20)
    s = masters("-c", "1", "-A", "flowapp", "--queues", "heavy,light", "--strict",
                "--prefetch", "1")
    s.wait_ready(1)
    eventually(lambda: rconn.llen("flow:light") >= 2 * 20, timeout=20, what="all started")
    order = _order(rconn, ("heavy", "light"))
    assert order.count("heavy") >= 20 and "heavy" not in order[order.index("light"):]


def test_limits_from_the_config_file_sit_on_top_of_the_handlers(client, masters, tmp_path):
    from tq.config import load

    toml = tmp_path / "tq.toml"
    toml.write_text('[tq]\nlimits = { free = "2/s burst=3", conc = "concurrency=1" }\n')
    assert load(config_file=str(toml), env={}).limits == {
        "free": Limits(parse_rate("2/s"), burst=3), "conc": Limits(concurrency=1)}
    bad = tmp_path / "bad.toml"
    bad.write_text('limits = { free = "fast" }\n')
    with pytest.raises(tq.ConfigError, match=r"limits of 'free'.*COUNT/UNIT"):
        load(config_file=str(bad), env={})
    # a master started with it declares them for its handlers (merged with their own)
    m = masters("-c", "1", "-A", "flowapp", "--config", str(toml))
    m.wait_ready(1)
    types = client.limits("flow")["flow"]["types"]
    assert types["free"]["declared"] == Limits(parse_rate("2/s"), burst=3)
    assert types["conc"]["declared"] == Limits(concurrency=1)   # the handler said 3
    assert types["limited"]["declared"] == Limits(parse_rate("50/s"))
