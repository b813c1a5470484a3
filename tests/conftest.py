"""Fixtures: one private redis-server per test session (flushed before each test that asks)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    server = RedisServer(tmp_path_factory.mktemp("redis"), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """The private server's URL, emptied for this test and exported as TQ_REDIS_URL."""
    conn = redis_server.client()
    conn.flushall()
    conn.config_set("maxmemory-policy", "noeviction")
    conn.close()
    monkeypatch.setenv("TQ_REDIS_URL", redis_server.url)
    return redis_server.url


@pytest.fixture
def rconn(redis_url: str, redis_server: RedisServer):
    conn = redis_server.client()
    yield conn
    conn.close()


@pytest.fixture
def client(redis_url: str):
    import tq

    c = tq.Client(redis_url)
    yield c
    c.close()


@pytest.fixture
def broker(redis_url: str):
    from tq.broker import Broker

    b = Broker(redis_url)
    yield b
    b.conn.close()


@pytest.fixture
def clean_registry():
    """Handlers registered by a test are forgotten after it."""
    from tq.handlers import REGISTRY

    saved = dict(REGISTRY)
    REGISTRY.clear()
    yield REGISTRY
    REGISTRY.clear()
    REGISTRY.update(saved)
