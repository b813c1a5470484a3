"""Logging for the master and its children: text or JSON lines on stderr.

Every line carries the process role (master or worker[i]) and pid; task and worker ids go in
`extra={"task": ..., "worker": ...}` and are rendered in both formats. Children inherit the
configuration through fork and only change their role.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

_role = "tq"


class _Context(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.role = _role
        record.pid = os.getpid()
        ids = [f"{k}={getattr(record, k)}" for k in ("worker", "task") if hasattr(record, k)]
        record.ids = (" [" + " ".join(ids) + "]") if ids else ""
        return True


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "role": getattr(record, "role", _role),
            "pid": getattr(record, "pid", os.getpid()),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("worker", "task", "type", "queue", "reason"):
            if hasattr(record, key):
                doc[key] = getattr(record, key)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def configure(level: str = "INFO", fmt: str = "text", role: str = "master") -> None:
    """Send tq's logs (and the handlers' own) to stderr in `fmt` ("text" or "json")."""
    global _role
    _role = role
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Context())
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)-7s %(role)s[%(pid)d] %(message)s%(ids)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def set_role(role: str) -> None:
    """Name this process in log lines (a child calls it right after fork)."""
    global _role
    _role = role
