"""Pure logic of the master and the child: no processes, no Redis (except the CLI checks)."""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tq import exitcodes, logs
from tq.channel import BUSY, IDLE, STARTING, ChildState, PipeReader, PipeWriter, Slot
from tq.config import load
from tq.errors import ConfigError
from tq.supervisor import children
from tq.supervisor.children import ChildRecord, RestartPacer, account, describe_exit
from tq.supervisor.cli import main as master_cli
from tq.supervisor.pidfile import Pidfile
from tq.supervisor.reload import DONE, SPAWN, STOP, WAIT, Reload, next_step
from tq.worker.prefetch import ACK_WINDOW, BUDGET, MAX_BATCH, Prefetch
from tq.worker.watch import orphan_deadline


def _status(code: int | None = None, sig: int | None = None) -> int:
    """A real waitpid status from a real child that exits or is killed."""
    pid = os.fork()
    if pid == 0:
        if sig:
            faulthandler.disable()   # pytest's would print a traceback for the SIGSEGV
            os.kill(os.getpid(), sig)
        os._exit(code or 0)
    _, status = os.waitpid(pid, 0)
    return status


def test_exit_statuses_are_explained():
    assert describe_exit(_status(0)) == (True, "exited")
    assert describe_exit(_status(4)) == (False, "exited with code 4 (handler modules failed "
                                                "to import)")
    clean, why = describe_exit(_status(sig=signal.SIGKILL))
    assert not clean and why == "killed by signal 9 (SIGKILL) - out of memory?"
    assert "segmentation fault" in describe_exit(_status(sig=signal.SIGSEGV))[1]


def _child(state: int = BUSY, task: str = "t1", **marks: str) -> ChildRecord:
    c = ChildRecord(0, 123, "w", 1, Slot(), PipeReader(os.pipe()[0]))
    c.state = ChildState(state, task=task if state == BUSY else "", type="email")
    for k, v in marks.items():
        setattr(c, k, v)
    return c


def test_a_crash_while_busy_is_the_tasks_kill_and_not_the_pools():
    d = account(_child(ready=True), _status(sig=signal.SIGSEGV))
    assert (d.counted, d.kind, d.crashed, d.cause) == ("t1", "died", True, "signal")
    assert d.reason.startswith("worker died: killed by signal 11 (SIGSEGV)")
    assert d.killed and not d.paced   # charged to the task; the replacement forks at once
    exited = account(_child(ready=True), _status(7))   # os._exit in the handler
    assert exited.killed and not exited.paced


@pytest.mark.parametrize("state, ready, status, paced", [
    (IDLE, True, _status(sig=signal.SIGKILL), False),   # killed from outside while idle
    (IDLE, True, _status(1), True),                     # the child's own error, no task
    (IDLE, False, _status(sig=signal.SIGKILL), True),   # died before it was ready
    (STARTING, False, _status(4), True),                # its handlers do not import
])
def test_only_deaths_no_task_explains_back_off(state, ready, status, paced):
    d = account(_child(state, ready=ready), status)
    assert d.counted is None and not d.killed
    assert d.paced == paced


def test_a_stalled_child_fails_its_task_as_stalled_without_a_kill():
    d = account(_child(ready=True, kill_reason="stalled"), _status(sig=signal.SIGKILL))
    assert (d.counted, d.kind, d.crashed, d.killed) == ("t1", "stalled", False, False)


def test_the_fork_rate_is_bounded_whatever_the_cause(monkeypatch):
    now = [50.0]
    monkeypatch.setattr(children.time, "monotonic", lambda: now[0])
    pacer = RestartPacer(max_forks_per_second=4)
    for _ in range(4):
        assert pacer.may_spawn()
        pacer.spawned()
    assert not pacer.may_spawn()     # a fifth fork within the same second waits
    now[0] += 1.0
    assert pacer.may_spawn()


def _record(index: int, generation: int, born: float, ready: bool = True) -> ChildRecord:
    return ChildRecord(index, 1000 + index, f"w{index}", generation, Slot(),
                       PipeReader(os.pipe()[0]), born=born, ready=ready)


def test_a_reload_starts_a_new_child_before_it_stops_an_old_one():
    old = [_record(0, 1, born=1.0), _record(1, 1, born=2.0)]
    r = Reload.after(None, load({}, env={}), 2, 1)
    assert (r.generation, r.old_generation, r.old_concurrency) == (2, 1, 2)
    assert next_step(r, old, 2) == (SPAWN, None)
    new = _record(2, 2, born=3.0, ready=False)
    assert next_step(r, [*old, new], 2) == (WAIT, None)     # the new one is not up yet
    new.ready = True
    assert next_step(r, [*old, new], 2) == (STOP, old[0])   # the oldest goes first
    old[0].stop_reason = "reload"
    assert next_step(r, [*old, new], 2) == (SPAWN, None)
    old[1].stop_reason = "reload"
    assert next_step(r, [*old, new, _record(3, 2, born=4.0)], 2) == (WAIT, None)   # exiting
    assert next_step(r, [new, _record(3, 2, born=4.0)], 2) == (DONE, None)


def test_a_reload_over_a_reload_goes_back_to_where_the_first_one_began():
    config = load({}, env={})
    first = Reload.after(None, config, 4, 1)
    second = Reload.after(first, load({"concurrency": "2"}, env={}), 2, first.generation)
    assert (second.generation, second.old_config, second.old_concurrency,
            second.old_generation) == (3, config, 4, 1)


def test_an_orphan_gives_up_at_its_hard_limit_else_after_the_grace():
    assert orphan_deadline(120.0, 100.0, 300.0) == 120.0
    assert orphan_deadline(0.0, 100.0, 300.0) == 400.0


def test_the_slot_tells_a_live_child_from_a_stopped_one():
    slot = Slot()
    slot.state = ChildState(BUSY, heartbeat=10.0)
    slot.publish()
    assert slot.alive() == 10.0
    slot.beat(25.0)                   # the child's watch thread
    assert slot.alive() == 25.0


def test_a_child_that_has_not_beaten_yet_is_as_old_as_its_fork():
    c = _child(STARTING)              # a zeroed slot: it never wrote a sign of life
    assert 0 <= c.silent_for(time.monotonic()) < 1
    c.slot.beat(c.born + 5)
    assert c.silent_for(c.born + 6) == pytest.approx(1.0)


@pytest.mark.parametrize("flags, message", [
    ({"heartbeat_ttl": "1e-300"}, "--heartbeat-ttl: must be a finite number from 1 to 3600, "
                                  "not '1e-300'"),
    ({"result_ttl": "1e17"}, "--result-ttl: must be a finite number from 0 to 315360000"),
    ({"concurrency": "inf"}, "--concurrency: must be an integer from 1 to 1024, not 'inf'"),
    ({"prefetch": "2.5"}, "--prefetch: must be an integer from 1 to 1000"),
    ({"max_worker_kills": "0"}, "--max-worker-kills: must be an integer from 1 to 100"),
    ({"stall_timeout": "0.1"}, "--stall-timeout: must be a finite number from 1 to 86400"),
    ({"orphan_grace": "-1"}, "--orphan-grace: must be a finite number from 0 to 86400"),
    ({"metrics_bind": "no-such-host.invalid:9808"}, "--metrics-bind: cannot resolve host"),
    ({"metrics_bind": "127.0.0.1:70000"}, "port from 1 to 65535"),
])
def test_every_setting_has_a_range(flags, message):
    with pytest.raises(ConfigError) as err:
        load(flags, env={})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_hard_timeout_fails_the_task_as_a_timeout_but_is_no_crash():
    d = account(_child(kill_reason="timeout"), _status(sig=signal.SIGKILL))
    assert (d.counted, d.kind, d.crashed, d.cause) == ("t1", "timeout", False, "timeout")
    assert d.reason.startswith("hard time limit exceeded")


@pytest.mark.parametrize("marks", [{"kill_reason": "drain_timeout"}, {"kill_reason": "quit"}])
def test_killing_for_a_drain_or_a_quit_charges_the_task_nothing(marks):
    d = account(_child(**marks), _status(sig=signal.SIGKILL))
    assert d.counted is None and not d.crashed


def test_graceful_exits_count_nothing_and_say_why():
    assert account(_child(IDLE, stop_reason="memory"), _status(0)).note == "memory"
    d = account(_child(IDLE, exited="max_tasks"), _status(0))
    assert (d.counted, d.crashed, d.cause, d.note) == (None, False, "max_tasks", "max_tasks")
    idle_crash = account(_child(IDLE), _status(3))
    assert idle_crash.crashed and idle_crash.counted is None and idle_crash.cause == "exited"


def test_restart_pacing_backs_off_then_resets(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(children.time, "monotonic", lambda: now[0])
    pacer = RestartPacer()
    assert pacer.crashed() == 0.0          # the first crash is replaced at once
    delays = [pacer.crashed() for _ in range(12)]
    assert 0.08 <= delays[0] <= 0.12       # then 100 ms, doubling, with jitter
    assert delays[1] > delays[0] and max(delays) <= children.BACKOFF_CAP * 1.2
    assert not pacer.may_spawn()
    now[0] += children.HEALTHY_AFTER + 1   # a healthy minute
    assert pacer.may_spawn() and pacer.crashed() == 0.0


def test_prefetch_is_one_for_slow_tasks_and_grows_for_fast_ones():
    p = Prefetch()
    assert p.size() == 1                   # nothing known yet: one at a time
    for _ in range(20):
        p.observe(0.5)
    assert p.size() == 1
    for _ in range(50):
        p.observe(0.00002)
    assert p.size() == MAX_BATCH
    assert Prefetch(fixed=7).size() == 7
    # tasks of a few ms: a batch of about BUDGET (10 ms) of work; 10 ms or more: one at a time
    p = Prefetch()
    for _ in range(50):
        p.observe(0.002)
    assert p.size() == int(BUDGET / 0.002)
    for _ in range(50):
        p.observe(BUDGET)
    assert p.size() == 1
    now = time.monotonic()
    assert Prefetch.flush_before_next(0.05, now)                        # after a slow task
    assert Prefetch.flush_before_next(0.0001, now - ACK_WINDOW - 0.001)  # acks waited too long
    assert not Prefetch.flush_before_next(0.0001, now - ACK_WINDOW / 2)


def test_slot_is_shared_across_fork():
    slot = Slot()
    pid = os.fork()
    if pid == 0:
        slot.state = ChildState(BUSY, 1.5, 2.5, 3.5, 7, 1, 3, "task-id", "email", "mail")
        slot.publish()
        os._exit(0)
    os.waitpid(pid, 0)
    got = slot.read()
    assert (got.state, got.task, got.type, got.queue, got.processed, got.max_retries) == (
        BUSY, "task-id", "email", "mail", 7, 3)
    assert got.state_name == "busy" and ChildState(IDLE).state_name == "idle"


def test_pipe_messages_survive_partial_reads():
    r, w = os.pipe()
    reader, writer = PipeReader(r), PipeWriter(w)
    writer.send("ready", queues=["a"])
    os.write(w, b'{"e":"tally","d":')
    assert [m["e"] for m in reader.read()] == ["ready"]
    os.write(w, b'{}}\nnot json\n')
    assert reader.read() == [{"e": "tally", "d": {}}]
    os.close(w)
    reader.read()
    assert reader.eof


def test_config_precedence_flags_over_env_over_file_over_defaults(tmp_path):
    f = tmp_path / "tq.toml"
    f.write_text('concurrency = 3\ndrain_timeout = 9\nqueues = ["a", "b"]\nlog_level = "debug"\n')
    env = {"TQ_DRAIN_TIMEOUT": "7", "TQ_LOG_LEVEL": "warning"}
    c = load({"log_level": "error"}, config_file=str(f), env=env)
    assert (c.concurrency, c.drain_timeout, c.queues, c.log_level) == (3, 7.0, ["a", "b"], "ERROR")
    assert c.sources == {"concurrency": f"file {f}", "drain_timeout": "environment",
                         "queues": f"file {f}", "log_level": "flag"}
    assert load({}, env={}).drain_timeout == 25.0 and load({}, env={}).concurrency == os.cpu_count()


@pytest.mark.parametrize("flags,env,message", [
    ({"concurrency": "0"}, {}, "--concurrency: must be an integer from 1 to 1024, not '0'"),
    ({}, {"TQ_DRAIN_TIMEOUT": "soon"}, "TQ_DRAIN_TIMEOUT"),
    ({"queues": "a,{b}"}, {}, "queue"),
    ({"metrics_bind": "9808x"}, {}, "HOST:PORT"),
    ({"log_format": "xml"}, {}, "text, json"),
])
def test_invalid_settings_say_where_they_came_from(flags, env, message):
    with pytest.raises(ConfigError, match=message):
        load(flags, env=env)


def test_config_file_errors_are_clear(tmp_path):
    f = tmp_path / "tq.toml"
    f.write_text("concurrency = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load({}, config_file=str(f), env={})
    f.write_text("concurrency = 2\nworkers = 3\n")
    with pytest.raises(ConfigError, match="unknown settings workers"):
        load({}, config_file=str(f), env={})


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


def test_exit_codes_are_distinct():
    codes = [exitcodes.OK, exitcodes.FAILURE, exitcodes.USAGE, exitcodes.CHILD_BOOT_ERROR,
             exitcodes.CHILD_APP_ERROR, exitcodes.MASTER_BOOT_ERROR]
    assert len(set(codes)) == len(codes)


def test_a_metrics_port_in_use_stops_the_start_in_one_line(masters, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        m = masters("-c", "1", "-A", "procapp", "--metrics-bind", f"127.0.0.1:{port}",
                    "--pidfile", str(tmp_path / "tq.pid"))
        assert m.wait_exit(20) == 2
    assert f"--metrics-bind 127.0.0.1:{port}: cannot listen there" in m.log()
    assert "Traceback" not in m.log()
    assert not (tmp_path / "tq.pid").exists()   # nothing left behind
