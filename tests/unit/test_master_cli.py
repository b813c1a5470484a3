"""tq-master's command line: usage errors exit 2 with a message, --help names every setting,
and the reserved exit codes are distinct."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from tq import exitcodes
from tq.supervisor.cli import main as master_cli


def test_cli_usage_errors_exit_2_with_a_message():
    runner = CliRunner()
    for args, text in ((["start", "-c", "0", "-A", "x"], "must be an integer from 1 to 1024"),
                       (["start"], "give the handler modules with -A"),
                       (["start", "--bogus"], "No such option")):
        result = runner.invoke(master_cli, args, env={"TQ_CONCURRENCY": ""})
        assert result.exit_code == 2, result.output
        assert text in result.output


def test_help_names_every_setting():
    out = subprocess.run([str(Path(sys.executable).with_name("tq-master")), "start", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for flag in ("-c, --concurrency", "-A, --app", "--queues", "--config", "--redis-url",
                 "--max-tasks-per-child", "--max-memory-per-child", "--drain-timeout",
                 "--prefetch", "--pidfile", "--log-level", "--log-format", "--preload"):
        assert flag in out


def test_exit_codes_are_distinct():
    codes = [exitcodes.OK, exitcodes.FAILURE, exitcodes.USAGE, exitcodes.CHILD_BOOT_ERROR,
             exitcodes.CHILD_APP_ERROR, exitcodes.MASTER_BOOT_ERROR]
    assert len(set(codes)) == len(codes)
