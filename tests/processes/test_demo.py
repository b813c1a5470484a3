"""The example app: its handlers, its producer, and the demo run end to end (`make run`)."""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from needs import unavailable

import tq
from tq.handlers import REGISTRY
from tq.store.embedded import EmbeddedRedis

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))   # examples/ is a folder of the checkout, not an installed package

from examples import demo, producer  # noqa: E402 - neither needs Pillow

CTX = SimpleNamespace(task_id="t-1", log=logging.getLogger("test"), attempt=1)


@pytest.fixture(scope="module")
def app():
    """examples/app.py: its image handler needs Pillow, which only the `examples` extra
    installs, so it is imported here, for the tests that use it, not when the suite is
    collected."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        unavailable("Pillow missing (pip install -e '.[examples]')")
    before = dict(REGISTRY)
    from examples import app as module

    REGISTRY.clear()   # other tests register their own "email": leave them a clean registry
    REGISTRY.update(before)
    return module


def test_image_processing_does_real_work(app):
    started = time.process_time()
    got = app.ImageProcessing().handle(
        {"image_url": "https://example.com/images/1.jpg",
         "operations": ["resize", "compress", "watermark"]}, CTX)
    cpu = time.process_time() - started
    assert got["size"] == [800, 600] and got["bytes"] > 5000
    assert 0.01 < cpu < 5   # CPU-bound: tens to hundreds of milliseconds


def test_each_operation_changes_the_image(app):
    from PIL import Image

    source = app.source_image("x")
    small, _ = app.resize(source)
    assert small.size == (800, 600)
    marked, _ = app.watermark(small)
    assert marked.tobytes() != small.tobytes()
    decoded, data = app.compress(marked)
    assert data[:2] == b"\xff\xd8" and isinstance(decoded, Image.Image)


def test_bad_payloads_fail_for_good(app):
    with pytest.raises(tq.PermanentError):
        app.ImageProcessing().handle({}, CTX)
    with pytest.raises(tq.PermanentError, match="unknown operations"):
        app.ImageProcessing().handle({"image_url": "u", "operations": ["rotate"]}, CTX)
    with pytest.raises(tq.PermanentError, match="'to'"):
        app.send_email({"subject": "hi"}, CTX)


def test_email_fails_sometimes_and_succeeds_otherwise(app, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(app, "SMTP_LATENCY", (0, 0))
    monkeypatch.setattr(app.random, "random", lambda: 0.01)      # inside the 5 %
    with pytest.raises(app.SMTPUnavailable):
        app.send_email({"to": "a@example.com"}, CTX)
    monkeypatch.setattr(app.random, "random", lambda: 0.5)
    assert app.send_email({"to": "a@example.com"}, CTX)["to"] == "a@example.com"


def test_both_handler_forms_are_registered(app, clean_registry):
    importlib.reload(app)
    assert sorted(clean_registry) == ["email", "image_processing"]
    assert clean_registry["email"].max_retries == 3        # @tq.handler function
    assert clean_registry["image_processing"].timeout == 60  # tq.Handler class


def test_producer_enqueues_the_articles_tasks(client: tq.Client):
    ids = producer.produce(client, emails=100, images=10, max_delay=5.0)
    sizes = client.queue_sizes()
    assert sizes["email"]["by_priority"] == {9: 10, 0: 90}   # every 10th is high priority
    assert sizes["image_processing"]["scheduled"] + sizes["image_processing"]["ready"] == 10
    first = client.get(ids["email"][0])
    assert first.priority == 9 and first.payload["to"] == "user0@example.com"
    image = client.get(ids["image_processing"][0])
    assert image.payload["operations"] == ["resize", "compress", "watermark"]


def test_summary_reads_like_the_article():
    def info(state: str, attempts: int, took: float, ttype: str = "email") -> tq.TaskInfo:
        return tq.TaskInfo("id", ttype, ttype, state, attempts=attempts, started_at=100.0,
                           finished_at=100.0 + took)

    text = demo.summary([info("succeeded", 1, 0.2), info("succeeded", 2, 0.4),
                         info("dead", 4, 0.1, "image_processing")], 3.0, 2)
    assert "Tasks Enqueued: 3" in text and "Tasks Processed: 3" in text
    assert "Success Rate: 66.67%" in text
    assert "Average Processing Time: 300ms" in text
    assert "Failed Tasks: 4 failed attempts in 2 tasks (1 retried successfully, 1 not)" in text


@pytest.mark.slow
def test_demo_end_to_end(app, tmp_path: Path):   # its master imports examples.app
    home = tmp_path / ".tq"
    env = {k: v for k, v in os.environ.items() if k not in ("TQ_REDIS_URL", "TQ_CONFIG")}
    env.update(TQ_HOME=str(home), PYTHONUNBUFFERED="1")
    try:
        done = subprocess.run([sys.executable, "-m", "examples.demo", "--short", "-c", "2"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
        out = done.stdout + done.stderr
        assert done.returncode == 0, out[-4000:]
        assert "using embedded redis-server" in out and "(started)" in out
        assert "(reused)" in out                  # the master found the demo's server
        n = demo.SHORT["emails"] + demo.SHORT["images"]
        assert f"Tasks Enqueued: {n}" in done.stdout
        assert f"Tasks Processed: {n}" in done.stdout
        assert "Success Rate: " in done.stdout and "Average Processing Time: " in done.stdout
        assert "tq-master drained and exited with 0" in done.stdout
        with tq.Client(EmbeddedRedis(home).url) as client:   # the embedded Redis stays up
            assert client.stats()["by_type"]["email"]["succeeded"] == demo.SHORT["emails"]
    finally:
        EmbeddedRedis(home).stop()
