"""Which machine and PID namespace a process is in: whether a registered pid is ours to probe.

A hostname is not unique (containers copy it), and a pid means something only inside its PID
namespace. The host id joins the kernel's boot id (new on every boot, per machine) with the
inode of this process' PID namespace, so two containers with one hostname differ, and a host
that rebooted does not mistake an old pid for a live one.
"""

from __future__ import annotations

import functools
import os


@functools.cache
def host_id() -> str:
    """'<boot id>/<pid namespace inode>'; parts Linux does not expose fall back to the name."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()
    except OSError:
        boot = os.uname().nodename
    try:
        pidns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        pidns = "-"
    return f"{boot}/{pidns}"


def same_host(info: dict[str, object], hostname: str) -> bool:
    """Was a registry entry written on this machine, in this PID namespace? Entries without a
    host id (older tq) are judged by hostname."""
    hid = info.get("hostid")
    if isinstance(hid, str) and hid:
        return hid == host_id()
    return info.get("host") == hostname
