"""What the master checks and opens before its first fork: a Redis it can use, its pidfile and
outputs, and the handler modules when they are preloaded in the master."""

from __future__ import annotations

import gc
import logging

from tq.app import import_app
from tq.config import Config
from tq.store.broker import Broker
from tq.store.upkeep import require_master

from .pidfile import Pidfile
from .services import Services

log = logging.getLogger("tq.master")


def check_redis(broker: Broker, allow_eviction: bool, replica_acks: int = 0) -> None:
    """Refuse a Redis the master cannot use: unreachable, refusing a command the master or its
    children run (an ACL user short of a grant: the grants to add are named), evicting keys
    (unless allowed), or refusing the scripts. Raises (tq-master says why and exits)."""
    broker.ping()
    require_master(broker, replica_acks)
    broker.check_eviction_policy(allow=allow_eviction)
    broker.load_scripts()


def open_outputs(pidfile: Pidfile | None, services: Services, config: Config) -> None:
    """Create the pidfile, then start the outputs (a metrics port in use stops the start
    cleanly: the pidfile is removed again)."""
    if pidfile:
        pidfile.create()
    try:
        services.start(config)
    except Exception:
        if pidfile:
            pidfile.remove()
        raise


def preload(app: list[str] | None) -> bool:
    """Import the handler modules in the master, so the children share them; False (logged)
    if they do not import."""
    error = import_app(app)
    if error:
        log.critical("%s", error)
        return False
    gc.freeze()   # keep the imported objects' pages shared with the children
    log.info("handlers preloaded in the master: forks are cheaper, but SIGHUP reloads "
             "the configuration only; new handler code needs a restart")
    return True
