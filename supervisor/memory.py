"""A child's own memory: USS from /proc/PID/smaps_rollup (cheap), else RSS minus shared.

Pages a forked child still shares with the master (imported modules, preloaded handlers) are
not its own; counting them (plain RSS) recycles healthy children for memory they do not use.
"""

from __future__ import annotations

import os

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
