"""The user's application: importing its handler modules (-A) and the queues they declare."""

from __future__ import annotations

import importlib
import traceback

from .handlers import REGISTRY


def import_app(modules: list[str] | None) -> str | None:
    """Import the handler modules; the formatted error if one fails."""
    for name in modules or ():
        try:
            importlib.import_module(name)
        except BaseException:
            return f"cannot import handler module {name!r}:\n{traceback.format_exc()}"
    return None


def handler_queues() -> list[str]:
    """The queues of the registered handlers, in registration order."""
    return list(dict.fromkeys(spec.queue for spec in REGISTRY.values()))
