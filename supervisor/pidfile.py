"""The master's pidfile: refuses to start over a live master, replaces a stale file."""

from __future__ import annotations

import os
from pathlib import Path

from tq.errors import ConfigError


class Pidfile:
    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def create(self) -> None:
        try:
            old = int(self.path.read_text().strip() or 0)
        except (OSError, ValueError):
            old = 0
        if old and old != os.getpid() and _alive(old):
            raise ConfigError(f"pidfile {self.path} names a running process ({old})")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            tmp.write_text(f"{os.getpid()}\n")
            tmp.replace(self.path)   # atomic: a reader never sees a half-written pid
        except OSError as exc:
            raise ConfigError(f"cannot write pidfile {self.path}: {exc.strerror}") from None

    def remove(self) -> None:
        try:
            if int(self.path.read_text().strip() or 0) == os.getpid():
                self.path.unlink()
        except (OSError, ValueError):
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
