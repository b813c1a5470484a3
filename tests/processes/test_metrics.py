"""Prometheus metrics of a master: scraped over HTTP and parsed with prometheus_client's parser."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from metrics_scrape import scrape
from needs import unavailable
from redis_server import free_port

import tq
from tq import ops
from tq.ids import new_id
from tq.store.broker import Broker
from tq.supervisor.metrics import Metrics
from tq.tally import Tally

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.cluster_too   # each test: on a standalone Redis, then on a Cluster


@pytest.fixture
def metrics(broker: Broker):
    m = Metrics(broker, "m-test", host="web-1", started=1_700_000_000.5)
    m.serve(f"127.0.0.1:{free_port()}")
    yield m
    m.close()


def test_tasks_histograms_children_restarts_and_queue_depth(metrics: Metrics, client):
    # Given tallies from two children, a registry snapshot, restarts, and tasks in Redis
    a, b = Tally(), Tally()
    for _ in range(3):
        a.add("email", "succeeded", duration=0.003, wait=0.0002)
    a.add("email", "failed", duration=2.0, wait=0.0002)   # a run that failed for good
    a.add("email", "dead")
    b.add("resize", "failed", duration=0.2, wait=1.5)
    b.add("resize", "retried")
    metrics.observe(a)
    metrics.observe(b)
    metrics.set_children([
        {"index": 0, "pid": 11, "state": "busy", "rss": 50_000_000, "uss": 20_000_000, "cpu": 97.5,
         "cpu_seconds": 12.25},
        {"index": 1, "pid": 12, "state": "idle", "rss": 40_000_000, "uss": 9_000_000, "cpu": 0.0},
    ])
    metrics.child_restarted("signal")
    metrics.child_restarted("signal")
    metrics.child_restarted("memory")
    client.enqueue("email", {"n": 1}, priority=5)
    client.enqueue("email", {"n": 2})
    client.enqueue("email", {"n": 3}, delay=60)

    got = scrape(metrics.address)

    tasks = got["tq_tasks_total"]
    assert tasks[(("outcome", "succeeded"), ("type", "email"))] == 3
    assert tasks[(("outcome", "failed"), ("type", "email"))] == 1
    assert tasks[(("outcome", "dead"), ("type", "email"))] == 1
    assert tasks[(("outcome", "retried"), ("type", "resize"))] == 1
    buckets = got["tq_task_duration_seconds_bucket"]
    assert buckets[(("le", "0.0025"), ("type", "email"))] == 0
    assert buckets[(("le", "0.005"), ("type", "email"))] == 3
    assert buckets[(("le", "2.5"), ("type", "email"))] == 4
    assert buckets[(("le", "+Inf"), ("type", "email"))] == 4
    assert got["tq_task_duration_seconds_count"][(("type", "email"),)] == 4
    assert got["tq_task_duration_seconds_sum"][(("type", "email"),)] == pytest.approx(2.009)
    assert got["tq_task_queue_wait_seconds_bucket"][(("le", "1.0"), ("type", "resize"))] == 0
    assert got["tq_task_queue_wait_seconds_bucket"][(("le", "2.5"), ("type", "resize"))] == 1
    assert got["tq_children"] == {(("state", "busy"),): 1, (("state", "idle"),): 1,
                                  (("state", "starting"),): 0, (("state", "stopping"),): 0}
    assert got["tq_child_rss_bytes"][(("child", "0"),)] == 50_000_000
    assert got["tq_child_uss_bytes"][(("child", "1"),)] == 9_000_000
    assert got["tq_child_cpu_seconds_total"][(("child", "0"),)] == 12.25
    assert not [name for name in got if "percent" in name]   # base units only
    restarts = got["tq_child_restarts_total"]
    assert restarts[(("reason", "signal"),)] == 2
    assert restarts[(("reason", "memory"),)] == 1
    assert restarts[(("reason", "timeout"),)] == 0   # every reason is exported from the start
    depth = got["tq_queue_depth"]
    assert depth[(("queue", "email"), ("state", "ready"))] == 2
    assert depth[(("queue", "email"), ("state", "scheduled"))] == 1
    assert depth[(("queue", "email"), ("state", "dead"))] == 0
    assert got["tq_redis_up"][()] == 1
    # no label that changes when the master restarts (its id does)
    assert got["tq_master_info"] == {(("host", "web-1"), ("version", tq.__version__)): 1}
    assert got["tq_master_start_time_seconds"][()] == 1_700_000_000.5
    assert got["tq_tasks_enqueued_total"] == {(("queue", "email"), ("type", "email")): 3}


def test_oldest_ready_age_per_queue(metrics: Metrics, client, broker: Broker, monkeypatch):
    # Given a task a producer created 90 s ago at priority 5, newer ones behind it, a queue
    # with only a delayed task, and one emptied by a claim
    now_ms = int(time.time() * 1000)
    monkeypatch.setattr(tq.packing, "new_id",
                        lambda queue=None: new_id(now_ms - 90_000, queue=queue))
    old = client.enqueue("email", {"n": 1}, priority=5)
    monkeypatch.undo()
    client.enqueue("email", {"n": 2})
    client.enqueue("email", {"n": 3}, priority=9)
    client.enqueue("later", {}, delay=600)
    client.enqueue("taken", {})
    assert len(broker.claim("w", ["taken"]).tasks) == 1

    age = scrape(metrics.address)["tq_queue_oldest_age_seconds"]

    # Then the age is the oldest head's, whatever its priority; 0 where nothing is ready
    assert 90 <= age[(("queue", "email"),)] < 90 + 30
    assert age[(("queue", "later"),)] == 0 and age[(("queue", "taken"),)] == 0
    # When the old task is claimed (priority 9 first, then 5), the next oldest counts
    got = broker.claim("w", ["email"], 2).tasks
    assert [t.id for t in got][-1] == old
    assert scrape(metrics.address)["tq_queue_oldest_age_seconds"][(("queue", "email"),)] < 30


def test_counters_accumulate_and_children_are_replaced(metrics: Metrics):
    for _ in range(3):
        t = Tally()
        t.add("noop", "succeeded", 0.0001, 0.0001)
        metrics.observe(t)
    metrics.set_children([{"index": 0, "pid": 1, "state": "busy", "rss": 1, "uss": 1, "cpu": 1}])
    metrics.set_children([{"index": 3, "pid": 2, "state": "starting"}])
    got = scrape(metrics.address)
    assert got["tq_tasks_total"][(("outcome", "succeeded"), ("type", "noop"))] == 3
    assert got["tq_children"][(("state", "starting"),)] == 1
    assert got["tq_children"][(("state", "busy"),)] == 0
    assert "tq_child_rss_bytes" not in got   # the new child has not reported memory yet


def test_redis_down_still_serves_process_metrics(redis_url: str):
    broker = Broker(f"redis://127.0.0.1:{free_port()}/0")   # nothing listens there
    m = Metrics(broker, "m-lonely")
    m.serve(f"127.0.0.1:{free_port()}")
    try:
        m.child_restarted("exited")
        got = scrape(m.address)
        assert got["tq_redis_up"][()] == 0
        assert "tq_queue_depth" not in got
        assert got["tq_child_restarts_total"][(("reason", "exited"),)] == 1
    finally:
        m.close()
        broker.close()


def test_close_stops_serving(broker: Broker):
    m = Metrics(broker, "m-closing")
    m.serve(f"127.0.0.1:{free_port()}")
    host, port = m.address
    scrape(m.address)
    (fd,) = m.fds()
    assert fd > 2
    m.close()
    assert m.fds() == []
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=2)


def test_the_grafana_example_only_uses_metrics_we_export(broker: Broker, client):
    import json
    import re

    client.enqueue("noop", {})   # so that the counters read from Redis have a sample
    m = Metrics(broker, "m-grafana")
    t = Tally()
    t.add("noop", "succeeded", 0.001, 0.001)
    m.observe(t)
    m.set_children([{"index": 0, "pid": 1, "state": "idle", "rss": 1, "uss": 1, "cpu": 0,
                     "cpu_seconds": 1.0}])
    families = list(m.registry.collect())
    exported = {f.name for f in families} | {s.name for f in families for s in f.samples}
    m.close()
    board = json.loads(ops.path(ops.GRAFANA).read_text())
    exprs = [target["expr"] for p in board["panels"] for target in p["targets"]]
    variables = {v["name"]: v["query"]["query"] for v in board["templating"]["list"]}
    used = {name for e in [*exprs, *variables.values()] for name in re.findall(r"\btq_[a-z_]+", e)}
    assert used and used <= exported, used - exported
    assert "tq_queue_oldest_age_seconds" in used
    # instance, queue and type pick what every panel shows, where its metric has that label
    assert set(variables) == {"instance", "queue", "type"}
    for e in exprs:
        for name, label in (("tq_tasks_total", "type"), ("tq_queue_depth", "queue"),
                            ("tq_queue_oldest_age_seconds", "queue"),
                            ("tq_children", "instance"), ("tq_child_uss_bytes", "instance")):
            if name + "{" in e:
                assert f'{label}=~"${label}"' in e, e


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        unavailable("promtool missing (apt-get install prometheus)")
    return path


def test_promtool_finds_nothing_to_lint(metrics: Metrics, client):
    """Prometheus' own linter on a full /metrics page: names, units, help, types."""
    client.enqueue("email", {})
    t = Tally()
    t.add("email", "succeeded", duration=0.003, wait=0.0002)
    metrics.observe(t)
    metrics.set_children([{"index": 0, "pid": 11, "state": "busy", "rss": 5, "uss": 4,
                           "cpu_seconds": 1.5}])
    metrics.child_restarted("signal")
    host, port = metrics.address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as reply:
        page = reply.read()
    done = subprocess.run([_promtool(), "check", "metrics"], input=page, capture_output=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert b"tq_child_cpu_seconds_total" in page and b"tq_tasks_enqueued_total" in page
    assert b'tq_queue_oldest_age_seconds{queue="email"}' in page


def _documented_autoscaling() -> list[dict[str, Any]]:
    """The YAML documents of docs/operations.md (KEDA ScaledObject, adapter rules, HPA)."""
    text = (ROOT / "docs" / "operations.md").read_text()
    blocks = re.findall(r"^```yaml\n(.*?)^```", text, re.S | re.M)
    return [d for b in blocks for d in yaml.safe_load_all(b) if d]


def _documented_queries(docs: list[dict[str, Any]]) -> list[str]:
    """Each PromQL query the examples make Prometheus run: KEDA's as written, the HPA's as
    prometheus-adapter fills its rule's template with the HPA's selector."""
    queries, rules = [], {}
    for d in docs:
        for rule in d.get("rules", {}).get("external", []):
            rules[re.match(r"(\w+)\{", rule["seriesQuery"])[1]] = rule["metricsQuery"]
    for d in docs:
        if d.get("kind") == "ScaledObject":
            for trigger in d["spec"]["triggers"]:
                assert trigger["type"] == "prometheus"
                assert float(trigger["metadata"]["threshold"]) > 0
                queries.append(trigger["metadata"]["query"])
        elif d.get("kind") == "HorizontalPodAutoscaler":
            for m in d["spec"]["metrics"]:
                metric = m["external"]["metric"]
                matchers = ",".join(f'{k}="{v}"' for k, v in
                                    metric["selector"]["matchLabels"].items())
                queries.append(rules[metric["name"]].replace("<<.Series>>", metric["name"])
                               .replace("<<.LabelMatchers>>", matchers))
    return queries


def test_the_autoscaling_examples_query_what_we_export(broker: Broker, client, tmp_path):
    # Given docs/operations.md's KEDA and HPA examples and what a master exports
    docs = _documented_autoscaling()
    assert {"ScaledObject", "HorizontalPodAutoscaler"} <= {d.get("kind") for d in docs}
    queries = _documented_queries(docs)
    assert len(queries) == 4, queries
    client.enqueue("email", {})
    m = Metrics(broker, "m-keda")
    families = {f.name: f for f in m.registry.collect()}
    m.close()
    for q in queries:
        for name, labels in re.findall(r"\b(tq_[a-z_]+)\{([^}]*)\}", q):
            exported = {k for s in families[name].samples for k in s.labels}
            assert set(re.findall(r"(\w+)=", labels)) <= exported, (q, exported)

    # When Prometheus runs the queries over two masters' pages (the same depth and age on
    # both: they read one Redis), with the label sets a master really exports
    values = {"tq_queue_oldest_age_seconds": 42.0, "tq_queue_depth": 500.0}
    series = []
    for name in values:
        for s in families[name].samples:
            if s.labels.get("queue") != "email":
                continue
            value = values[name] if s.labels.get("state", "ready") == "ready" else 7.0
            for instance in ("10.0.0.1:9808", "10.0.0.2:9808"):
                labels = ",".join(f'{k}="{v}"' for k, v in
                                  sorted({**s.labels, "instance": instance}.items()))
                series.append({"series": f"{name}{{{labels}}}", "values": f"{value:g}x10"})
    tests = []
    for q in queries:
        by = re.search(r"by \(([^)]*)\)", q)
        kept = [k.strip() for k in by[1].split(",")] if by else []
        found = dict(re.findall(r'(\w+)="([^"]*)"', q))
        labels = "{" + ",".join(f'{k}="{found[k]}"' for k in kept) + "}"
        name = re.search(r"\b(tq_[a-z_]+)", q)[1]
        tests.append({"expr": q, "eval_time": "5m",
                      "exp_samples": [{"labels": labels, "value": values[name]}]})
    spec = tmp_path / "autoscaling_test.yml"
    spec.write_text(yaml.safe_dump({"rule_files": [], "evaluation_interval": "1m", "tests": [
        {"interval": "1m", "input_series": series, "promql_expr_test": tests}]}))
    done = subprocess.run([_promtool(), "test", "rules", str(spec)], capture_output=True,
                          text=True, timeout=60, check=False)

    # Then each is the one queue's value, not the sum over masters
    assert done.returncode == 0, done.stdout + done.stderr
