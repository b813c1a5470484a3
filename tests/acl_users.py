"""Redis ACL users with exactly the grants docs/operations.md documents, for the ACL tests:
made on a private server or on every node of the private cluster, with what Redis logged of
them (ACL LOG) and of the commands everyone sent (INFO commandstats)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis

DOCS = Path(__file__).resolve().parent.parent / "docs" / "operations.md"
CLUSTER_GRANT = "+cluster|slots"   # on a cluster the client reads the slot map (documented)
# what the tests' own admin connections send (not tq's) and what primaries get from replicas
ADMIN_COMMANDS = {"acl|setuser", "acl|deluser", "acl|log", "config|resetstat", "config|set",
                  "config|get", "info", "flushall", "cluster|info", "cluster|slots",
                  "cluster|keyslot", "cluster|nodes", "cluster|myid", "command",
                  "client|list", "replconf", "psync", "sync", "auth"}


def documented_rules() -> dict[str, str]:
    """User name -> its rules, from the ACL SETUSER lines of docs/operations.md ('Redis users
    and ACLs'), without `on` and the password."""
    section = DOCS.read_text().split("### Redis users and ACLs", 1)[1]
    block = section.split("```redis", 1)[1].split("```", 1)[0]
    out = {}
    for line in block.splitlines():
        if line.startswith("ACL SETUSER "):
            _, _, name, *rules = line.split()
            out[name] = " ".join(r for r in rules if r != "on" and not r.startswith(">"))
    assert out, f"no ACL SETUSER line in {DOCS}"
    return out


class AclUsers:
    """Users made on every node of one Redis (a server, or a cluster's nodes)."""

    def __init__(self, nodes: list[Any], cluster: bool) -> None:
        self.nodes = nodes          # tests' RedisServer objects
        self.cluster = cluster
        self.admins = [n.client() for n in nodes]
        self.made: list[str] = []

    def make(self, name: str, rules: str, password: str = "s3cret",
             cluster_grant: bool = True) -> str:
        """Create (or reset) a user (on a cluster with the documented extra grant, unless
        told not to); returns its URL."""
        if self.cluster and cluster_grant:
            rules = f"{rules} {CLUSTER_GRANT}"
        for admin in self.admins:
            admin.execute_command("ACL", "SETUSER", name, "reset", "on", f">{password}",
                                  *rules.split())
        if name not in self.made:
            self.made.append(name)
        if self.cluster:
            nodes = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
            return f"redis+cluster://{name}:{password}@{nodes}"
        return f"redis://{name}:{password}@127.0.0.1:{self.nodes[0].port}/0"

    def change(self, name: str, *rules: str) -> None:
        """Change a user's rules on every node (its connections feel it at once)."""
        for admin in self.admins:
            admin.execute_command("ACL", "SETUSER", name, *rules)

    def refusals(self, name: str) -> list[dict[str, Any]]:
        """What Redis refused this user (ACL LOG entries of every node)."""
        out = []
        for admin in self.admins:
            for entry in admin.execute_command("ACL", "LOG", "128"):
                e = _entry(entry)
                if e.get("username") == name and e.get("reason") != "auth":
                    out.append(e)
        return out

    def reset(self) -> None:
        """Forget the ACL LOG and the command counters."""
        for admin in self.admins:
            admin.execute_command("ACL", "LOG", "RESET")
            admin.config_resetstat()

    def commands(self) -> set[str]:
        """Every command sent since reset() (INFO commandstats of the primaries: a replica
        also counts what replication sends it, MULTI and SELECT included)."""
        out: set[str] = set()
        for admin in self.admins:
            if admin.info("replication").get("role") == "master":
                out |= {k[len("cmdstat_"):] for k in admin.info("commandstats")}
        return out - ADMIN_COMMANDS

    def remove(self) -> None:
        for admin in self.admins:
            for name in self.made:
                try:
                    admin.execute_command("ACL", "DELUSER", name)
                except redis.exceptions.RedisError:
                    pass
            admin.close()


def _entry(raw: Any) -> dict[str, Any]:
    """One ACL LOG entry (a flat list of field, value) as a dict of str."""
    items = raw.items() if isinstance(raw, dict) else zip(raw[0::2], raw[1::2], strict=True)
    return {(k.decode() if isinstance(k, bytes) else k):
            (v.decode() if isinstance(v, bytes) else v) for k, v in items}
