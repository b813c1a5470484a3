"""Redis URLs as tq shows them in logs and errors: the password redacted, whatever characters
it holds."""

from __future__ import annotations

import pytest

from tq.store.urls import redact


@pytest.mark.parametrize("url, safe", [
    ("redis://:s3cret@h:6379/0", "redis://***@h:6379/0"),
    ("redis://user:s3cret@h:6379/0", "redis://user:***@h:6379/0"),
    ("rediss://default:p%40ss@h/1", "rediss://default:***@h/1"),
    ("redis://tokenonly@h", "redis://***@h"),
    ("redis://u:s3cret@with@at@h:1/0", "redis://u:***@h:1/0"),
    ("unix:///run/r.sock?db=0&password=s3cret", "unix:///run/r.sock?db=0&password=***"),
    ("redis://h:6379/0", "redis://h:6379/0"),
])
def test_redact(url, safe):
    assert redact(url) == safe
    assert "s3cret" not in redact(url)


@pytest.mark.parametrize("url,secret", [
    ("redis://u:p#w@host:6379/0", "p#w"), ("redis://:s/ec?ret@host/0", "s/ec?ret"),
    ("rediss://user:pa@ss@host:6380", "pa@ss"), ("redis://host/0?password=hunter2", "hunter2"),
])
def test_passwords_never_survive_redaction(url, secret):
    assert secret not in redact(url) and "***" in redact(url)
