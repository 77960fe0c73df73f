"""Web: Flask blueprints (webhooks, admin API, OAuth connect, health) and accessors for handles.

Views reach the process's settings, store, Redis and queues through these accessors instead of
module globals, so every test app gets its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import current_app

if TYPE_CHECKING:
    from redis import Redis

    from middleware.settings import Settings
    from middleware.store.db import Store

EXTENSION = "middleware"


def handles(app: Any = None) -> dict[str, Any]:
    """The ``app.extensions["middleware"]`` dict: settings, store, redis, queues, worker."""
    target = app if app is not None else current_app
    return target.extensions[EXTENSION]  # type: ignore[no-any-return]


def get_settings() -> Settings:
    """The running app's ``Settings``."""
    return handles()["settings"]  # type: ignore[no-any-return]


def get_store() -> Store:
    """The running app's ``Store`` (engine, sessions, cipher)."""
    return handles()["store"]  # type: ignore[no-any-return]


def get_redis() -> Redis:
    """The running app's Redis client (real, or the embedded stand-in)."""
    return handles()["redis"]  # type: ignore[no-any-return]
