"""client.wait() against a real Redis (7.x and 6.2): results, failures, timeouts, and that it
blocks on Redis rather than polling."""

from __future__ import annotations

import threading
import time

import pytest
from master_proc import clients

import tq
from tq.store.broker import Broker

pytestmark = pytest.mark.cluster_too   # each test: on a standalone Redis, then on a Cluster


class Later(threading.Thread):
    """Run fn(broker) once wait() is blocked in XREAD (seen in CLIENT LIST), and note when."""

    def __init__(self, url: str, rconn, fn) -> None:
        super().__init__(daemon=True)
        self.broker = Broker(url)
        self.rconn = rconn
        self.fn = fn
        self.at: float | None = None

    def run(self) -> None:
        deadline = time.monotonic() + 5
        while not any(c.get("cmd") == "xread" for c in clients(self.rconn)):
            assert time.monotonic() < deadline, "wait() never blocked in XREAD"
            time.sleep(0.002)
        self.fn(self.broker)
        self.at = time.monotonic()
        self.broker.close()


def test_wait_returns_a_finished_tasks_result_at_once(any_client, any_broker):
    tid = any_client.enqueue("t", {})
    task, = any_broker.claim("w", ["t"]).tasks
    any_broker.ack("w", task, {"answer": 42})
    assert any_client.wait(tid, timeout=1) == {"answer": 42}


def test_wait_blocks_on_redis_and_returns_within_milliseconds_of_the_ack(
        any_redis_url, any_client, any_broker, any_rconn):
    tid = any_client.enqueue("t", {})
    task, = any_broker.claim("w", ["t"]).tasks
    later = Later(any_redis_url, any_rconn, lambda b: b.ack("w", task, "done"))
    later.start()
    calls = any_rconn.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    assert any_client.wait(tid, timeout=10) == "done"
    returned = time.monotonic()
    later.join()
    assert returned - later.at < 0.1
    # blocked, not polling: one inspect before the block, one after (plus the ack itself)
    assert any_rconn.info("commandstats")["cmdstat_evalsha"]["calls"] - calls <= 4


def test_wait_sees_through_a_retry(any_redis_url, any_client, any_broker, any_rconn):
    tid = any_client.enqueue("t", {})

    def fail_then_succeed(b: Broker) -> None:
        task, = b.claim("w", ["t"]).tasks
        b.fail("w", task, "flaky", delay=0)
        task, = b.claim("w", ["t"]).tasks
        b.ack("w", task, "second time lucky")

    later = Later(any_redis_url, any_rconn, fail_then_succeed)
    later.start()
    assert any_client.wait(tid, timeout=10) == "second time lucky"


def test_wait_raises_task_failed_for_a_dead_task(any_redis_url, any_client, any_broker,
                                                 any_rconn):
    tid = any_client.enqueue("t", {}, max_retries=0)

    def kill(b: Broker) -> None:
        task, = b.claim("w", ["t"]).tasks
        b.fail("w", task, "it broke", traceback="Traceback ... it broke")

    later = Later(any_redis_url, any_rconn, kill)
    later.start()
    with pytest.raises(tq.TaskFailed) as err:
        any_client.wait(tid, timeout=10)
    assert (err.value.task_id, err.value.error, err.value.traceback) == \
        (tid, "it broke", "Traceback ... it broke")
    with pytest.raises(tq.TaskFailed):   # and at once when it is dead already
        any_client.wait(tid, timeout=0.01)


def test_wait_timeout_names_the_state(any_client, any_broker):
    tid = any_client.enqueue("t", {})
    t = time.monotonic()
    with pytest.raises(tq.WaitTimeout, match="state: queued") as err:
        any_client.wait(tid, timeout=0.2)
    assert 0.19 < time.monotonic() - t < 1
    assert isinstance(err.value, TimeoutError) and err.value.state == "queued"
    any_broker.claim("w", ["t"])
    with pytest.raises(tq.WaitTimeout, match="state: running"):
        any_client.wait(tid, timeout=0.05)


def test_wait_for_an_unknown_task(any_client):
    with pytest.raises(tq.TaskNotFound):
        any_client.wait("no-such-task", timeout=1)


def test_wait_with_result_ttl_zero_returns_none(any_redis_url, any_client, any_broker, any_rconn):
    tid = any_client.enqueue("t", {})
    task, = any_broker.claim("w", ["t"]).tasks
    later = Later(any_redis_url, any_rconn, lambda b: b.ack("w", task, "gone", result_ttl=0))
    later.start()
    assert any_client.wait(tid, timeout=10) is None


def test_wait_longer_than_the_socket_timeout(any_redis_url, any_broker):
    with tq.Client(any_redis_url, socket_timeout=0.3) as c:
        tid = c.enqueue("t", {})
        with pytest.raises(tq.WaitTimeout):
            c.wait(tid, timeout=0.8)
