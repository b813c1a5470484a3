"""Which child the master kills, and why: a task past its hard time limit or not stopping once
cancelled, or a child that is hung, stalled or stuck starting (its task, if any, is requeued)."""

from __future__ import annotations

import logging

from tq.channel import BUSY, IDLE, RECONNECTING, STARTING
from tq.config import Config

from .cancels import Cancels
from .children import ChildRecord, process_state

log = logging.getLogger("tq.master")

BOOT_TIMEOUT = 120.0       # a child that is not ready this long after fork is stuck


def why_kill(c: ChildRecord, now: float, config: Config) -> str | None:
    """The reason to kill `c` now (said in the log), or None. `c.state` is fresh."""
    st = c.state
    # An idle child beats at least every second; silent for twice the registry's TTL, it is
    # hung (deadlocked, stuck in C code) and is replaced.
    hung_after = 2 * config.heartbeat_ttl
    if st.state == BUSY and st.deadline and now > st.deadline:
        log.error("%s task exceeded its hard time limit: killing worker[%d]", st.type,
                  c.index, extra={"worker": c.worker_id, "task": st.task})
        return "timeout"
    if st.state in (IDLE, RECONNECTING) and now - st.heartbeat > hung_after:
        log.error("worker[%d] stopped reporting while idle (hung?): replacing it",
                  c.index, extra={"worker": c.worker_id})
        return "heartbeat"
    if Cancels.overdue(c, now):
        log.warning("%s task was cancelled and did not stop within %gs: killing "
                    "worker[%d]", st.type, config.cancel_grace, c.index,
                    extra={"worker": c.worker_id, "task": st.task})
        return "cancelled"
    if c.silent_for(now) > config.stall_timeout:
        log.error("worker[%d] showed no sign of life for %.0fs (%s): killing it; its "
                  "task goes back to the queue", c.index, c.silent_for(now),
                  process_state(c.pid), extra={"worker": c.worker_id,
                                               **({"task": st.task} if st.task else {})})
        return "stalled"
    if st.state == STARTING and not c.ready and now - c.born > BOOT_TIMEOUT:
        return "boot"
    return None
