"""Settings (tq.config): every value in its range and finite, precedence defaults < file < env
< flags, and errors that say where a bad value came from."""

from __future__ import annotations

import os

import pytest

from tq.config import load
from tq.errors import ConfigError


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


@pytest.mark.parametrize("flags", [{"heartbeat_ttl": "inf"}, {"result_ttl": "nan"},
                                   {"drain_timeout": "inf"}, {"max_memory_per_child": "inf"}])
def test_settings_must_be_finite(flags):
    with pytest.raises(ConfigError, match="finite"):
        load(flags, env={})


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


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path):
    f = tmp_path / "tq.toml"
    f.write_bytes(b"# caf\xe9\nconcurrency = 2\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load({}, config_file=str(f), env={})
