"""A tq.Client's own settings (namespace, payload limit, URL) are checked and resolved
without connecting to Redis."""

from __future__ import annotations

import pytest

import tq
from tq.errors import ConfigError, PayloadError


def test_client_settings_are_checked_without_connecting():
    url = "redis://:hunter2@127.0.0.1:1/0"   # nothing listens there; nothing connects yet
    with tq.Client(url, namespace="app1", max_payload_bytes=10) as c:
        assert c.namespace == "app1" and c.max_payload_bytes == 10
        assert "hunter2" not in repr(c) and "***" in repr(c)
        with pytest.raises(PayloadError, match="over the limit of 10"):
            c.enqueue("t", {"text": "longer than ten bytes"})   # checked before any I/O
    with pytest.raises(ValueError, match="namespace"):
        tq.Client(url, namespace="a:b")
    with pytest.raises(ConfigError, match="max_payload_bytes"):
        tq.Client(url, max_payload_bytes=0)


def test_the_url_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("TQ_REDIS_URL", "redis://127.0.0.1:1/3")
    with tq.Client() as c:
        assert c.url == "redis://127.0.0.1:1/3"
    with tq.Client("redis://127.0.0.1:2/0") as c:   # an explicit URL wins
        assert c.url == "redis://127.0.0.1:2/0"
