"""Redis itself dies under load: with AOF `always`, what it acknowledged survives."""

from __future__ import annotations

import time

from faultkit import wait_all
from master_proc import eventually
from redis_server import RedisServer


def test_redis_kill9_and_restart_with_aof_always_loses_nothing(masters, client, runs, table,
                                                              tmp_path):
    # Given a Redis with appendfsync always, and a master working through 400 tasks
    server = RedisServer(tmp_path / "redis", appendonly=True,
                         extra=["--maxmemory-policy", "noeviction"])
    server.start()
    try:
        import tq
        c = tq.Client(server.url)
        m = masters("-c", "2", "-A", "faultapp", "--queues", "a", url=server.url)
        m.wait_ready(2)
        ids = c.enqueue_many([{"type": "job", "queue": "a", "payload": {"n": i, "s": 0.005}}
                              for i in range(400)])
        eventually(lambda: sum(runs.finished().values()) >= 100, timeout=30,
                   what="100 tasks to finish before the kill")
        # When Redis is killed with SIGKILL mid-run and started again on its port
        server.stop(kill=True)
        down = time.monotonic()
        time.sleep(0.5)   # the outage itself: half a second without Redis
        server.start()
        back = time.monotonic()
        before = sum(runs.finished().values())
        while sum(runs.finished().values()) == before and time.monotonic() - back < 10:
            time.sleep(0.01)
        resumed = time.monotonic() - back
        # Then every task finishes, none lost, none run twice
        states = wait_all(c, ids, 60)
        lost, dup = runs.lost_and_duplicated(ids)
        table(("Redis kill -9 + restart, AOF always",
               f"down {back - down:.1f}s, work resumed {resumed:.2f}s after; lost {len(lost)}, "
               f"duplicated {len(dup)}"))
        assert set(states.values()) == {"succeeded"}
        assert lost == [] and dup == []
        assert resumed < 5
        assert m.proc.poll() is None
        c.close()
    finally:
        server.stop()
