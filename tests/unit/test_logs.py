"""Logs (tq.logs): JSON lines carry the role, the worker and the task ids."""

from __future__ import annotations

import json
import logging

from tq import logs


def test_json_logs_carry_ids(capsys):
    logs.configure("INFO", "json", "master")
    try:
        logging.getLogger("tq.master").warning("worker[%d] died", 3,
                                               extra={"worker": "w-1", "task": "t-9"})
        line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    finally:
        logs.configure("WARNING", "text", "tq")
    assert line["msg"] == "worker[3] died" and line["role"] == "master"
    assert (line["worker"], line["task"], line["level"]) == ("w-1", "t-9", "WARNING")
