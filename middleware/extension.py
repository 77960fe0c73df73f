"""The app's handles: ``app.extensions["middleware"]`` holds settings, store, Redis, queues, worker,
listener (the embedded threads, or None).

The app factory fills it; web views and CLI commands read it (through the running app), so every
test app gets its own handles instead of module globals.
"""

from __future__ import annotations

from typing import Any

from flask import current_app

EXTENSION = "middleware"


def handles(app: Any = None) -> dict[str, Any]:
    """The ``app.extensions["middleware"]`` dict: settings, store, redis, queues, threads."""
    target = app if app is not None else current_app
    return target.extensions[EXTENSION]  # type: ignore[no-any-return]
