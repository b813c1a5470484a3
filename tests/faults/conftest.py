"""The fault suite: real tq-master processes, real signals, and every run of a task recorded on
a second redis-server (the recorder), so each test counts lost and duplicated executions."""

from __future__ import annotations

import pytest
from faultkit import Runs
from redis_server import RedisServer


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.faults)


@pytest.fixture(scope="session")
def recorder_server(tmp_path_factory: pytest.TempPathFactory):
    server = RedisServer(tmp_path_factory.mktemp("recorder"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def runs(recorder_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Runs:
    conn = recorder_server.client()
    conn.flushall()
    monkeypatch.setenv("TQ_TEST_RECORDER_URL", recorder_server.url)
    return Runs(conn)


@pytest.fixture
def table():
    """Figures a fault test measured, printed as one table at the end of the run (-s or the
    terminal summary): the suite's report."""
    rows: list[tuple[str, str]] = []
    yield rows.append
    if rows:
        _REPORT.extend(rows)


_REPORT: list[tuple[str, str]] = []


def pytest_terminal_summary(terminalreporter) -> None:
    if _REPORT:
        terminalreporter.section("fault suite figures")
        width = max(len(k) for k, _ in _REPORT)
        for k, v in _REPORT:
            terminalreporter.write_line(f"{k.ljust(width)}  {v}")


