"""Web: Flask blueprints (webhooks, admin API, OAuth connect, health) and accessors for handles.

Views reach the process's settings, store, Redis and queues through these accessors instead of
module globals, so every test app gets its own.
"""

from __future__ import annotations

import json
import math
import re
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


# --------------------------------------------------------------------------- request bodies

MAX_JSON_DEPTH = 32
# The widest id the store can hold everywhere: PostgreSQL INTEGER primary keys (SQLite's are wider).
MAX_DB_ID = 2**31 - 1


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
    """Decode a JSON document, refusing what would break later (``BadInput`` naming why).

    Refused: bytes that are not UTF-8, invalid JSON, nesting deeper than ``max_depth`` (Python's
    recursion limit would otherwise answer 500), ``NaN``/``Infinity`` and numbers too large for a
    float, and strings holding NUL or lone surrogates (PostgreSQL and UTF-8 cannot store them).
    """
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = raw[exc.start : exc.start + 1]
            raise BadInput(f"The {where} is not UTF-8 (byte {exc.start} is {bad!r}).") from None
    else:
        text = raw
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise BadInput(f"The {where} is nested too deeply (at most {max_depth} levels).") from None
    except _BadNumber as exc:
        raise BadInput(f"The {where} holds {exc}.") from None
    except ValueError as exc:
        raise BadInput(f"The {where} is not valid JSON: {exc}") from None
    check_json(data, max_depth=max_depth, where=where)
    return data


class _BadNumber(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _BadNumber(f"{name}, which is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _BadNumber(f"the number {text[:40]}, too large to represent")
    return value


def check_json(data: Any, *, max_depth: int = MAX_JSON_DEPTH, where: str = "body") -> None:
    """Walk decoded JSON without recursion: depth, and text a database can store."""
    stack: list[tuple[Any, str, int]] = [(data, where, 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            check_text(value, path)
            continue
        if not isinstance(value, (dict, list)):
            continue
        if depth > max_depth:
            raise BadInput(f"The {where} is nested too deeply (at most {max_depth} levels).")
        if isinstance(value, dict):
            for key, item in value.items():
                check_text(key, f"{path}.{key[:40]}")
                stack.append((item, f"{path}.{key[:40]}", depth + 1))
        else:
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def check_text(value: str, where: str) -> None:
    """Refuse a NUL character or a lone surrogate (``BadInput`` naming where it is)."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return
    char = found.group()
    what = "a NUL character" if char == "\x00" else f"a lone surrogate (\\u{ord(char):04x})"
    raise BadInput(f"{where} holds {what}, which cannot be stored.")
