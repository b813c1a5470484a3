"""Dashboard cost with 100,000 tasks in Redis: page load and poll times.

Fills a private redis-server with 100k tasks (ready in 4 queues, scheduled, dead, finished)
and a day of history, serves `tq dashboard` (waitress, as in production), and times what a
browser asks for: the page and its assets, the overview poll (every second), the lists
(first page, a page 40 deep, a filtered page that scans its 2,000-task budget), a task, the
day chart. Then, if Debian's Chromium is there, the time from navigation to the first drawn
poll in a real browser. Baseline: a bare redis-py PING round trip in the same process.

--huge: instead, tasks whose payloads, errors and results are ~0.9 MB each (within tq's
payload limit), in every state, and the bytes of every JSON response of the dashboard, then
what an idle overview tab downloads in 12 s (Chromium's resource timing, if it is there).

    python bench/dashboard.py [--tasks 100000] [--requests 20]
    python bench/dashboard.py --huge [--n 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import RedisServer, print_table
from dashboard_support import BIG, make_huge

import tq
from tq.store.broker import Broker
from tq.store.history import History
from tq.tally import Tally

ROOT = Path(__file__).resolve().parent.parent
TQ = str(Path(sys.executable).with_name("tq"))


def fill(url: str, total: int) -> dict[str, int]:
    """ready 40 %, scheduled 20 %, dead 30 % (claimed and failed for good), finished 10 %."""
    client, broker = tq.Client(url), Broker(url)
    counts = {"ready": int(total * 0.4), "scheduled": int(total * 0.2),
              "dead": int(total * 0.3), "finished": int(total * 0.1)}
    queues = ["email", "images", "reports", "sms"]
    specs = [{"type": q, "payload": {"n": i, "to": f"user{i}@example.com"},
              "priority": i % 3 * 4} for i in range(counts["ready"]) for q in [queues[i % 4]]]
    client.enqueue_many(specs)
    client.enqueue_many([{"type": "reports", "payload": {"n": i}, "delay": 3600 + i}
                         for i in range(counts["scheduled"])])
    for kind, n in (("dead", counts["dead"]), ("finished", counts["finished"])):
        q = f"{kind}-work"
        client.enqueue_many([{"type": q, "payload": {"n": i}, "max_retries": 0}
                             for i in range(n)])
        left = n
        while left:
            tasks = broker.fetch("w-bench", [q], max_tasks=min(500, left))
            left -= len(tasks)
            if kind == "finished":
                for t in tasks:
                    broker.ack("w-bench", t)
            else:
                for t in tasks:
                    broker.fail("w-bench", t, f"SMTPError: mailbox {t.payload['n'] % 97} "
                                "unavailable", traceback="Traceback (most recent call last):\n"
                                "  ...\nSMTPError: mailbox unavailable", retry=False)
    history = History(broker)
    now = history.now()
    for back in range(0, 86400, 60):   # a day of per-minute history, three types
        t = Tally()
        for ttype, n in (("email", 30), ("images", 5), ("reports", 2)):
            for i in range(n):
                t.add(ttype, "succeeded", 0.01 * (1 + i % 7), 0.002)
        history.record(t, now=now - back)
    client.close()
    broker.close()
    return counts


def timed(url: str, n: int) -> tuple[float, float, int]:
    """Median and p95 in ms of n GETs, and the reply size."""
    took, size = [], 0
    for _ in range(n):
        t0 = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as reply:
            size = len(reply.read())
        took.append((time.perf_counter() - t0) * 1000)
    took.sort()
    return statistics.median(took), took[max(0, int(len(took) * 0.95) - 1)], size


def deep_cursor(base: str, pages: int) -> str:
    import json

    cursor = ""
    for _ in range(pages):
        with urllib.request.urlopen(f"{base}/api/tasks?state=dead&cursor={cursor}") as r:
            cursor = json.loads(r.read())["next"]
    return cursor


def browser_load(base: str) -> float | None:
    """ms from navigation to the first poll drawn, in headless Chromium (None without it)."""
    if not (os.access("/usr/bin/chromium", os.X_OK) and os.access("/usr/bin/chromedriver",
                                                                  os.X_OK)):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        driver.get(base + "/static/dashboard.css")   # warm the browser itself
        took = []
        for _ in range(3):
            t0 = time.perf_counter()
            driver.get(base + "/")
            while "live" not in driver.find_element("id", "status").text:
                time.sleep(0.005)
            took.append((time.perf_counter() - t0) * 1000)
        return statistics.median(took)
    finally:
        driver.quit()


def fill_huge(url: str, n: int) -> dict[str, str]:
    """n tasks of each state whose payload, error and result are ~0.9 MB each
    (tests/dashboard_support.py); an id of each kind."""
    client, broker = tq.Client(url), Broker(url)
    try:
        return make_huge(client, broker, n)
    finally:
        client.close()
        broker.close()


def json_paths(ids: dict[str, str]) -> list[tuple[str, str]]:
    """Every JSON GET of the dashboard (dashboard/app.py's routes), with huge tasks in it."""
    paths = [("overview poll, first", "/api/overview"), ("stats", "/api/stats"),
             ("queues", "/api/queues"), ("dead letters, newest 50 (overview)",
                                         "/api/failed?limit=50"),
             ("scheduled", "/api/scheduled?limit=50"), ("masters", "/api/masters"),
             ("workers", "/api/workers"), ("series", "/api/series?span=3600"),
             ("history", "/api/history"), ("latency", "/api/latency")]
    paths += [(f"{s} list", f"/api/tasks?state={s}") for s in
              ("dead", "scheduled", "ready", "running", "finished")]
    paths += [(f"one task ({k})", f"/api/tasks/{ids[k]}") for k in
              ("dead", "retry", "done", "scheduled")]
    paths.append(("one workflow", f"/api/workflows/{ids['workflow']}"))
    return paths


def idle_tab(base: str, seconds: float) -> int | None:
    """Bytes an overview tab left open downloads in `seconds` (headless Chromium's resource
    timing: bodies and headers; None without Chromium)."""
    if not (os.access("/usr/bin/chromium", os.X_OK) and os.access("/usr/bin/chromedriver",
                                                                  os.X_OK)):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        driver.get(base + "/")
        while "live" not in driver.find_element("id", "status").text:
            time.sleep(0.05)
        driver.execute_script("performance.setResourceTimingBufferSize(100000);"
                              "performance.clearResourceTimings();")
        time.sleep(seconds)   # (a bench measuring a window of time, not a test waiting)
        return int(driver.execute_script(
            "return performance.getEntriesByType('resource')"
            ".reduce((a, e) => a + e.transferSize, 0)"))
    finally:
        driver.quit()


def serve(url: str, tmp: str) -> tuple[subprocess.Popen[bytes], str]:
    port = RedisServer(Path(tmp) / "unused").port   # a free port
    env = {**os.environ, "TQ_REDIS_URL": url}
    dash = subprocess.Popen([TQ, "-q", "dashboard", "--bind", f"127.0.0.1:{port}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(base + "/static/dashboard.css", timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    return dash, base


def again_and_in_full(base: str, ids: dict[str, str]) -> list[list[object]]:
    """The dead letters asked again with their ETag (a page's refresh when nothing changed),
    and one payload in full, on request (each when the dashboard answers them)."""
    import urllib.error

    rows: list[list[object]] = []
    with urllib.request.urlopen(base + "/api/failed?limit=50") as r:
        etag = r.headers.get("ETag")
    if etag:
        ask = urllib.request.Request(base + "/api/failed?limit=50",
                                     headers={"If-None-Match": etag})
        try:
            with urllib.request.urlopen(ask) as r:
                size = len(r.read())
        except urllib.error.HTTPError as exc:   # 304
            size = len(exc.read())
        rows.append(["dead letters again, unchanged (ETag: 304)", "/api/failed", size])
    path = f"/api/tasks/{ids['dead']}/value/payload"
    try:
        _, _, size = timed(base + path, 1)
        rows.append(["one payload in full, on request", path, size])
    except urllib.error.HTTPError:
        pass
    return rows


def huge_main(n: int) -> None:
    import json

    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis")
        server.start()
        try:
            ids = fill_huge(server.url, n)
            dash, base = serve(server.url, tmp)
            try:
                rows: list[list[object]] = []
                for name, path in json_paths(ids):
                    _, _, size = timed(base + path, 1)
                    rows.append([name, path.split("?")[0], size])
                with urllib.request.urlopen(base + "/api/overview") as r:
                    h = json.loads(r.read())["history"]
                since = h["start"] + len(h["processed"]) - 1
                _, _, size = timed(f"{base}/api/overview?since={since}", 1)
                rows.insert(1, ["overview poll, each second after", "/api/overview?since", size])
                rows.extend(again_and_in_full(base, ids))
                idle = idle_tab(base, 12.0)
                if idle is not None:
                    rows.append(["Chromium: an idle overview tab, 12 s", "(all requests)", idle])
                print_table(f"Dashboard response sizes with {n} tasks of each state whose "
                            f"payload, error and result are {BIG:,} characters",
                            ["response", "path", "bytes"], rows)
            finally:
                dash.terminate()
                dash.wait(10)
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--huge", action="store_true", help="response sizes with huge tasks")
    parser.add_argument("--n", type=int, default=8, help="huge tasks of each state")
    args = parser.parse_args()
    if args.huge:
        huge_main(args.n)
        return
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis")
        server.start()
        try:
            t0 = time.perf_counter()
            counts = fill(server.url, args.tasks)
            print(f"filled {sum(counts.values()):,} tasks ({counts}) in "
                  f"{time.perf_counter() - t0:.1f}s; Redis uses "
                  f"{server.client().info('memory')['used_memory_human']}")
            port = RedisServer(Path(tmp) / "unused").port   # a free port
            env = {**os.environ, "TQ_REDIS_URL": server.url}
            dash = subprocess.Popen([TQ, "-q", "dashboard", "--bind", f"127.0.0.1:{port}"],
                                    env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            base = f"http://127.0.0.1:{port}"
            try:
                for _ in range(200):
                    try:
                        urllib.request.urlopen(base + "/static/dashboard.css", timeout=1)
                        break
                    except OSError:
                        time.sleep(0.05)
                conn = server.client()
                ping = []
                for _ in range(200):
                    t1 = time.perf_counter()
                    conn.ping()
                    ping.append((time.perf_counter() - t1) * 1000)
                dead_id = conn.zrange("tq:{dead-work}:dead", 0, 0)[0].decode()
                deep = deep_cursor(base, 40)
                cases = [
                    ("page HTML /", "/"),
                    ("dashboard.js", "/static/dashboard.js"),
                    ("overview poll (every second)", "/api/overview"),
                    ("overview poll, incremental (?since)", None),
                    ("dead letters, newest 50 (overview)", "/api/failed?limit=50"),
                    ("dead list, first page", "/api/tasks?state=dead"),
                    ("dead list, page 41 (2,000 deep)", f"/api/tasks?state=dead&cursor={deep}"),
                    ("dead list filtered by error text", "/api/tasks?state=dead&text=mailbox%2096"),
                    ("ready list of one queue", "/api/tasks?state=ready&queue=email"),
                    ("scheduled list", "/api/tasks?state=scheduled"),
                    ("one task", f"/api/tasks/{dead_id}"),
                    ("day chart of one queue", "/api/series?span=86400&queue=email"),
                ]
                rows = []
                for name, path in cases:
                    if path is None:
                        import json

                        with urllib.request.urlopen(base + "/api/overview") as r:
                            since = json.loads(r.read())["history"]
                        last = since["start"] + len(since["processed"]) - 1
                        path = f"/api/overview?since={last}"
                    p50, p95, size = timed(base + path, args.requests)
                    rows.append([name, p50, p95, size])
                rows.append(["baseline: redis-py PING round trip", statistics.median(ping),
                             sorted(ping)[189], 0])
                loaded = browser_load(base)
                if loaded is not None:
                    rows.append(["Chromium: navigation to first poll drawn", loaded, loaded, 0])
                print_table(f"Dashboard with {sum(counts.values()):,} tasks in Redis",
                            ["request", "p50 ms", "p95 ms", "bytes"], rows)
            finally:
                dash.terminate()
                dash.wait(10)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
