"""Redis URLs: which kind of deployment a URL names, its parts, and a form safe to log.

    redis://[user:pass@]host:port[/db]            rediss:// for TLS, unix:///path.sock
    redis+sentinel://[user:pass@]h:p[,h:p...]/SERVICE[/DB][?query]
    redis+cluster://[user:pass@]h:p[,h:p...][?query]

Plain URLs go to redis-py as they are; the multi-host forms are parsed here, once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote

SENTINEL_SCHEMES = ("redis+sentinel://", "rediss+sentinel://")
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


def is_cluster_url(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEMES)


def is_sentinel_url(url: str) -> bool:
    return url.startswith(SENTINEL_SCHEMES)


@dataclass
class MultiHostURL:
    """The parts of a redis+sentinel:// or redis+cluster:// URL."""

    tls: bool
    username: str | None
    password: str | None
    hosts: list[tuple[str, int]]
    path: list[str]                                        # unquoted, empty parts dropped
    params: dict[str, str] = field(default_factory=dict)   # the query (last value of each)


def parse_multi_host(url: str, what: str = "node") -> MultiHostURL:
    """Split scheme://[user:pass@]h:p[,h:p...][/path][?query]; ValueError naming `what` (the
    kind of address) when a host is not HOST:PORT."""
    scheme, _, rest = url.partition("://")
    rest, _, query = rest.partition("?")
    authority, _, path = rest.partition("/")
    userinfo, at, hosts = authority.rpartition("@")
    username = password = None
    if at:
        user, colon, pw = userinfo.partition(":")
        username, password = unquote(user) or None, unquote(pw) if colon else None
    addresses = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon or not port.isdigit() or not host:
            raise ValueError(f"{what} address {item!r} is not HOST:PORT")
        addresses.append((host.strip("[]"), int(port)))
    return MultiHostURL(
        tls=scheme.startswith("rediss"), username=username, password=password,
        hosts=addresses, path=[unquote(p) for p in path.split("/") if p],
        params={k: v[-1] for k, v in parse_qs(query).items()})


def redact(url: str) -> str:
    """The URL with any password replaced by ***, safe to log; the rest kept as written."""
    def userinfo(m: re.Match[str]) -> str:
        user, colon, _ = m.group(2).partition(":")
        return f"{m.group(1)}{user}:***@" if colon and user else f"{m.group(1)}***@"

    # Greedy up to the last @ of the whole URL: a password may hold unescaped @ / ? # (which
    # end the authority for a URL parser). Over-redacting an odd query is the safe mistake.
    out = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)(.*)@", userinfo, url, flags=re.DOTALL)
    return re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", out)
