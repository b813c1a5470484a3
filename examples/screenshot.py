"""The dashboard screenshots of the docs, taken from a real run of the example app.

Starts the example app (`tq-master start -A examples.app -c 2`) on an embedded Redis in a
fresh folder, feeds it the article's producer every few seconds for a few minutes (so the
charts show real load: e-mails with their occasional failures and retries, images), serves
`tq dashboard`, and lets Debian's headless Chromium photograph the overview and one task's
page into docs/. Then it stops everything it started.

    python -m examples.screenshot [--minutes 4]   # apt-get install chromium chromium-driver
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import tq

from .demo import master_command
from .producer import produce

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1500", "--force-prefers-reduced-motion"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="of load before the photos")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="tq-shots-"))
    env = {**os.environ, "TQ_HOME": str(home)}
    env.pop("TQ_REDIS_URL", None)
    os.environ.update(TQ_HOME=str(home))
    os.environ.pop("TQ_REDIS_URL", None)
    client = tq.Client()   # starts the embedded Redis of that folder
    master = subprocess.Popen([*master_command(), "start", "-A", "examples.app", "-c", "2"],
                              cwd=ROOT, env=env)
    port = free_port()
    dashboard = subprocess.Popen([str(Path(sys.executable).with_name("tq")), "dashboard",
                                  "--bind", f"127.0.0.1:{port}"], cwd=ROOT, env=env)
    driver = None
    try:
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                with urllib.request.urlopen(url + "/static/dashboard.css", timeout=1):
                    return True
            except OSError:
                return False

        wait_until(answers, 30, "the dashboard")
        rng = random.Random(7)
        end = time.monotonic() + args.minutes * 60
        ids: list[str] = []
        while time.monotonic() < end:   # waves of the article's load, bigger and smaller
            wave = 10 + int(25 * abs(rng.gauss(0, 1)))
            got = produce(client, emails=wave, images=rng.randint(1, 4), max_delay=20, rng=rng)
            ids += got["email"]
            time.sleep(rng.uniform(3, 9))
        driver = browser()
        driver.get(url + "/")
        wait_until(lambda: "live" in driver.find_element("id", "status").text, 20, "the page")
        driver.find_element("id", "range-15m").click()   # the run fits in 15 minutes
        time.sleep(3)   # let the run-time chart's first fetch land (it refreshes every 10 s)
        driver.save_screenshot(str(args.out / "dashboard.png"))
        retried = [i for i in ids[-400:] if client.get(i).attempts > 1]
        shown = retried[-1] if retried else ids[-1]
        driver.get(f"{url}/#/task/{shown}")
        wait_until(lambda: driver.find_element("id", "task-state").text, 20, "the task page")
        driver.set_window_size(1400, 1000)
        driver.save_screenshot(str(args.out / "dashboard-task.png"))
        print(f"wrote {args.out / 'dashboard.png'} and {args.out / 'dashboard-task.png'}")
        return 0
    finally:
        if driver is not None:
            driver.quit()
        dashboard.send_signal(signal.SIGINT)
        dashboard.wait(10)
        master.send_signal(signal.SIGTERM)
        master.wait(60)
        client.close()
        subprocess.run([str(Path(sys.executable).with_name("tq")), "-q", "embedded", "stop"],
                       env=env, check=False)


if __name__ == "__main__":
    sys.exit(main())
