"""A Sentinel-managed Redis for tests: a primary, a replica and three Sentinels, all started
by the test on free loopback ports (redis-server --sentinel: no other binary needed)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis
from redis_server import RedisServer, free_port

SERVICE = "tqprimary"


class Sentinels:
    def __init__(self, folder: Path, binary: str) -> None:
        self.folder = folder
        self.binary = binary
        self.ports = [free_port() for _ in range(3)]
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, primary_port: int) -> None:
        for port in self.ports:
            conf = self.folder / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.folder}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 10000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n")
            self.procs.append(subprocess.Popen(
                [self.binary, str(conf), "--sentinel", "--logfile",
                 str(self.folder / f"sentinel-{port}.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        deadline = time.monotonic() + 15
        while True:   # every Sentinel knows the primary and its replica
            try:
                if all(len(self.client(p).sentinel_slaves(SERVICE)) >= 1 for p in self.ports):
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the Sentinels did not discover the replica in time")
            time.sleep(0.05)

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)

    def primary(self) -> tuple[str, int]:
        host, port = self.client(self.ports[0]).sentinel_get_master_addr_by_name(SERVICE)
        return host if isinstance(host, str) else host.decode(), int(port)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait(10)


def start_replicated(folder: Path) -> tuple[RedisServer, RedisServer, Sentinels]:
    primary = RedisServer(folder / "a", extra=["--maxmemory-policy", "noeviction",
                                               "--repl-diskless-sync-delay", "0"]).start()
    replica = RedisServer(folder / "b", extra=["--maxmemory-policy", "noeviction",
                                               "--repl-diskless-sync-delay", "0",
                                               "--replicaof", "127.0.0.1",
                                               str(primary.port)]).start()
    deadline = time.monotonic() + 15
    while replica.client().info("replication").get("master_link_status") != "up":
        if time.monotonic() > deadline:
            raise RuntimeError("the replica did not sync")
        time.sleep(0.02)
    sentinels = Sentinels(folder, primary.binary)
    sentinels.start(primary.port)
    return primary, replica, sentinels
