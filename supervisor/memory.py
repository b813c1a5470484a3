"""Children's resource use and memory limit: their own memory (USS from /proc/PID/smaps_rollup,
cheap; else RSS minus shared) and their CPU.

Pages a forked child still shares with the master (imported modules, preloaded handlers) are
not its own; counting them (plain RSS) recycles healthy children for memory they do not use.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

import psutil

from .children import ChildRecord

log = logging.getLogger("tq.master")

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def own_memory(pid: int) -> tuple[int, int] | None:
    """(uss, rss) in bytes, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            uss = rss = 0
            for line in f:
                if line.startswith((b"Private_Clean:", b"Private_Dirty:")):
                    uss += int(line.split()[1]) * 1024
                elif line.startswith(b"Rss:"):
                    rss = int(line.split()[1]) * 1024
            return uss, rss
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        return None
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            fields = f.read().split()
        rss, shared = int(fields[1]) * _PAGE, int(fields[2]) * _PAGE
        return rss - shared, rss
    except (OSError, ValueError, IndexError):
        return None


def measure(children: Iterable[ChildRecord], limit_mb: float | None) -> list[ChildRecord]:
    """Update each record's memory and CPU figures; returns the active children over the
    memory limit (logged), to be replaced after their current task."""
    over = []
    for c in children:
        mem = own_memory(c.pid)
        if mem:
            c.uss, c.rss = mem
        try:
            proc = psutil.Process(c.pid)
            c.cpu = proc.cpu_percent(None) if c.cpu or c.ready else 0.0
            times = proc.cpu_times()
            c.cpu_seconds = times.user + times.system
        except psutil.Error:
            pass
        if limit_mb and c.active and c.uss > limit_mb * 1024 * 1024:
            log.warning("worker[%d] uses %.0f MB of its own (limit %g MB): replacing it "
                        "after its current task", c.index, c.uss / 2**20, limit_mb,
                        extra={"worker": c.worker_id})
            over.append(c)
    return over
