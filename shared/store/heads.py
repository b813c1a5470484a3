"""The heads of a queue's ready lists: its longest-waiting tasks, read for the queue's age.

Each priority level's ready list is FIFO (enqueues and promotions push at the tail, claims
take from the head), so its head is the task that has been ready there longest, and a task
id carries its creation time (tq.ids). The age of the oldest ready task is then one LINDEX
per level, pipelined with the depths, instead of a scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..ids import created_ms
from .keys import QueueKeys


def queue_heads(pipe: Any, qk: QueueKeys) -> None:
    """Add one LINDEX 0 per ready list of the queue to a pipeline (PRIORITY_LEVELS replies)."""
    for key in qk.ready:
        pipe.lindex(key, 0)


def oldest_created(heads: Sequence[Any]) -> float | None:
    """When the oldest of these heads (queue_heads' replies) was created, Unix seconds; None
    when every list is empty. A reply that is no task id of tq's (an error of a corrupt key,
    a hand-pushed value) is passed over."""
    times = [created_ms(h.decode("ascii", "replace")) for h in heads if isinstance(h, bytes)]
    oldest = min((ms for ms in times if ms is not None), default=None)
    return None if oldest is None else oldest / 1000
