"""Web: Flask blueprints (webhooks, admin API, OAuth connect, health) and accessors for handles.

Views reach the process's settings, store, Redis and queues through these accessors instead of
module globals, so every test app gets its own.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

from middleware.extension import EXTENSION, handles
from middleware.web.problems import problem
from schemas import json_input
from schemas.json_input import MAX_JSON_DEPTH
from schemas.setup import MAX_ID

if TYPE_CHECKING:
    from redis import Redis

    from middleware.settings import Settings
    from middleware.store.db import Store

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")


def request_id_for(incoming: str) -> str:
    """The request's id: the sender's ``X-Request-ID`` when it is a sane token, else a new one."""
    return incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex


__all__ = [
    "EXTENSION",
    "MAX_DB_ID",
    "BadInput",
    "check_text",
    "get_redis",
    "get_settings",
    "get_store",
    "handles",
    "parse_json",
    "problem",
    "request_id_for",
]


def get_settings() -> Settings:
    """The running app's ``Settings``."""
    return handles()["settings"]  # type: ignore[no-any-return]


def get_store() -> Store:
    """The running app's ``Store`` (engine, sessions, cipher)."""
    return handles()["store"]  # type: ignore[no-any-return]


def get_redis() -> Redis:
    """The running app's Redis client (real, or the embedded stand-in)."""
    return handles()["redis"]  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- request bodies

# The widest id the store can hold everywhere (PostgreSQL INTEGER primary keys); the schema owns it.
MAX_DB_ID = MAX_ID


class BadInput(Exception):
    """Input no route can use (not JSON, not UTF-8, nested too deeply...); the app answers 400.

    ``create_app`` registers the handler, so any view (admin API, webhooks) can raise it or call
    ``parse_json`` and get a problem+json 400 naming the problem instead of a 500.
    """

    def __init__(self, detail: str, status: int = 400, title: str = "Bad Request") -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.title = title


def parse_json(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH, where: str = "body") -> Any:
    """``schemas.json_input.load_json`` with ``BadInput`` (a 400) for what it refuses."""
    try:
        return json_input.load_json(raw, max_depth=max_depth, where=where)
    except json_input.BadJson as exc:
        raise BadInput(str(exc)) from None


def check_text(value: str, where: str) -> None:
    """Refuse a NUL character or a lone surrogate (``BadInput`` naming where it is)."""
    try:
        json_input.check_text(value, where)
    except json_input.BadJson as exc:
        raise BadInput(str(exc)) from None
