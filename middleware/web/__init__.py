"""Web: Flask blueprints (webhooks, admin API, OAuth connect, health) and accessors for handles.

Views reach the process's settings, store, Redis and queues through these accessors instead of
module globals, so every test app gets its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Response, current_app, g, jsonify

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


def problem(status: int, title: str, detail: str | None = None, **extra: Any) -> Response:
    """An RFC 9457 problem+json response, with the request id; extras that are None are left out."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    rid = g.get("request_id") if g else None
    if rid:
        body["request_id"] = rid
    body.update({k: v for k, v in extra.items() if v is not None})
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    return response
