"""What the fault tests share: counting runs on the recorder, waiting for tasks to settle."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import tq


@dataclass
class Runs:
    """Executions as the recorder saw them: started and finished runs per task id."""

    conn: Any

    def _count(self, event: str) -> Counter[str]:
        return Counter(e.split(b"|")[0].decode() for e in self.conn.lrange(f"runs:{event}", 0, -1))

    def started(self) -> Counter[str]:
        return self._count("started")

    def finished(self) -> Counter[str]:
        return self._count("finished")

    def pids(self, task_id: str) -> list[int]:
        return [int(e.split(b"|")[1]) for e in self.conn.lrange("runs:started", 0, -1)
                if e.split(b"|")[0].decode() == task_id]

    def lost_and_duplicated(self, ids: list[str]) -> tuple[list[str], list[str]]:
        done = self.finished()
        return [i for i in ids if done[i] == 0], [i for i in ids if done[i] > 1]


def wait_all(client: tq.Client, ids: list[str], timeout: float) -> dict[str, str]:
    """Poll until every task is succeeded or dead; returns id -> state."""
    deadline = time.monotonic() + timeout
    while True:
        states = {i: client.get(i).state for i in ids}
        if all(s in ("succeeded", "dead") for s in states.values()):
            return states
        if time.monotonic() > deadline:
            left = Counter(states.values())
            raise AssertionError(f"tasks not finished after {timeout}s: {dict(left)}")
        time.sleep(0.1)




def jobs(n: int, queue: str = "a", **options: Any) -> list[dict[str, Any]]:
    """Specs for enqueue_many: n recorded jobs of faultapp on `queue` (a or b)."""
    ttype = "job" if queue == "a" else "job_b"
    return [{"type": ttype, "queue": queue, "payload": {"n": i}, **options} for i in range(n)]
