"""The master's pidfile: a live master's is refused, a stale one replaced, and a path that
cannot be written is a config error."""

from __future__ import annotations

import os

import pytest

from tq.errors import ConfigError
from tq.supervisor.pidfile import Pidfile


def test_pidfile_refuses_a_live_master_and_replaces_a_stale_one(tmp_path):
    path = tmp_path / "tq.pid"
    path.write_text(f"{os.getppid()}\n")
    with pytest.raises(ConfigError, match="names a running process"):
        Pidfile(str(path)).create()
    path.write_text("999999999\n")
    pf = Pidfile(str(path))
    pf.create()
    assert path.read_text() == f"{os.getpid()}\n"
    pf.remove()
    assert not path.exists()


def test_a_pidfile_that_cannot_be_written_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot write pidfile"):
        Pidfile("/proc/nope/tq.pid").create()
