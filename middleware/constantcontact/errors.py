"""Constant Contact errors, grouped by what the caller should do, and the one status→error table.

Constant Contact answers most errors with a JSON *array* of ``{error_key, error_message}``, but the
API gateway answers 401 and 429 with a single *object* of the same shape (api-notes §9). Both are
parsed by :func:`parse_error_body`; :func:`error_for` turns a status, a body and the request path
into one of the classes below. The table is data (``ERROR_TABLE``) so it is tested without HTTP.

Each class is one kind of :mod:`middleware.vendor_errors`, which says what the caller does:

- retry later: ``Throttled``, ``TooManyActivities``, ``ServerError``, ``ActivityTimeout`` are
  retried by the client with backoff; when retries run out they propagate and the job is retried.
- quota pause: ``QuotaExceeded`` means nothing more can be sent until ``resume_at`` (next
  00:00 UTC): the job pauses the setup and says so.
- needs reauth: ``AuthExpired`` is refreshed once by the client (a 401 after that refresh
  propagates); ``AuthRevoked`` / ``Forbidden`` need a person to reconnect the account, so they are
  shown on the connection.
- record rejected: ``Validation``, ``Conflict``, ``NotFound`` are about the record: don't retry
  it unchanged; record a visible sync error for that record and let the batch go on.
- ``ActivityFailed`` (a bulk activity ended badly) is neither: its callers read its errors.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from middleware.vendor_errors import (
    NeedsReauth,
    QuotaPause,
    RecordRejected,
    RetryLater,
    VendorError,
)


class CCError(VendorError):
    """A Constant Contact call that did not do what was asked."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_key: str = "",
        errors: list[tuple[str, str]] | None = None,
        method: str = "",
        path: str = "",
        advice: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_key = error_key
        self.errors = errors or []
        self.method = method
        self.path = path
        #: What a person should do, said after the call that failed (never read as its target).
        self.advice = advice

    def __str__(self) -> str:
        where = f" ({self.method} {self.path})" if self.method or self.path else ""
        status = f"{self.status} " if self.status is not None else ""
        key = f"{self.error_key}: " if self.error_key else ""
        advice = f"; {self.advice}" if self.advice else ""
        return f"{status}{key}{self.message}{where}{advice}"


class Throttled(CCError, RetryLater):
    """429 ``throttled``: more than 4 requests/s for the application; retry in a moment."""


class TooManyActivities(CCError, RetryLater):
    """429 on ``/activities/*``: 1,000 bulk activities already queued; back off for longer."""


class QuotaExceeded(CCError, QuotaPause):
    """429 ``quota_exceeded`` (or our own daily budget): stop until ``resume_at`` (00:00 UTC)."""

    def __init__(self, message: str, *, resume_at: datetime, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.resume_at: datetime = resume_at


class AuthExpired(CCError, NeedsReauth):
    """401: the access token is expired or invalid; refresh it once and retry.

    The client does that refresh itself; a 401 that survives it needs a reconnect.
    """


class AuthRevoked(CCError, NeedsReauth):
    """The refresh token was refused (``invalid_grant``): the account must be connected again."""


def reconnect_advice(connection_id: str | int | None = None) -> str:
    """How a person gives a Constant Contact connection new tokens (the admin API's OAuth flow)."""
    target = str(connection_id) if connection_id is not None else "<id>"
    return (
        "connect the account again: POST /admin/api/connections/start "
        f'{{"vendor": "constantcontact", "connection_id": {target}}}'
    )


class Forbidden(CCError, NeedsReauth):
    """403: missing scope, missing user privilege, or the application was deactivated."""


class NotFound(CCError, RecordRejected):
    """404: no such contact, list or activity (also Constant Contact's answer to malformed ids)."""


class Conflict(CCError, RecordRejected):
    """409: e.g. ``contacts.api.conflict`` – the email already exists, even as a deleted contact."""


class Validation(CCError, RecordRejected):
    """400/405/415 and other 4xx: the request or record is wrong; never retry it unchanged."""


class ServerError(CCError, RetryLater):
    """5xx, timeouts and broken connections: retried with backoff, then a visible failure."""


class ActivityFailed(CCError):
    """A bulk activity ended ``failed``, ``cancelled`` or ``timed_out``; carries its errors."""

    def __init__(
        self,
        message: str,
        *,
        activity: dict[str, Any],
        activities: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.activity = activity
        #: every activity of a `wait_for_activities` call, final states, in the order asked
        self.activities = activities or [activity]
        self.activity_errors: list[Any] = list(activity.get("activity_errors") or [])


class ActivityTimeout(CCError, RetryLater):
    """We stopped waiting for an activity; it still runs at Constant Contact. Wait again later."""

    def __init__(self, message: str, *, activity: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.activity = activity


# (status, error_key) → class, and through the class → kind (`vendor_errors.kind_of`). error_key
# None matches any key for that status. Looked up first with the exact key, then with None, then
# by status class (see `error_class_for`).
ERROR_TABLE: dict[tuple[int, str | None], type[CCError]] = {
    (400, None): Validation,
    (401, None): AuthExpired,
    (403, None): Forbidden,
    (404, None): NotFound,
    (405, None): Validation,
    (409, None): Conflict,
    (415, None): Validation,
    (429, "throttled"): Throttled,
    (429, "quota_exceeded"): QuotaExceeded,
    (429, None): Throttled,
    (500, None): ServerError,
    (502, None): ServerError,
    (503, None): ServerError,
    (504, None): ServerError,
}

# Constant Contact's 429 for the activity queue has no documented key; its message is documented.
_QUEUED_ACTIVITIES_HINT = "queued activities"


def parse_error_body(body: Any) -> list[tuple[str, str]]:
    """``(error_key, error_message)`` pairs from an array, a single object, or anything else."""
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body) if body else None
        except ValueError:
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            return [("", text.strip()[:500])] if text.strip() else []
    items = body if isinstance(body, list) else [body]
    pairs = []
    for item in items:
        if isinstance(item, dict):
            key = item.get("error_key") or item.get("error") or ""
            message = (
                item.get("error_message")
                or item.get("error_description")
                or item.get("message")
                or ""
            )
            pairs.append((str(key), str(message)))
        elif item is not None:
            pairs.append(("", str(item)))
    return pairs


def next_utc_midnight(now: datetime) -> datetime:
    """When Constant Contact's daily counter resets: the next 00:00:00 UTC after ``now``."""
    now = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)


def error_class_for(status: int, error_key: str, path: str = "") -> type[CCError]:
    """The table lookup on its own: exact key, then any key, then the status class."""
    cls = ERROR_TABLE.get((status, error_key)) or ERROR_TABLE.get((status, None))
    if cls is None:
        cls = ServerError if status >= 500 else Validation
    if cls is Throttled and error_key != "throttled" and path.lstrip("/").startswith("activities"):
        cls = TooManyActivities
    return cls


def error_for(
    status: int,
    body: Any,
    *,
    now: datetime,
    method: str = "",
    path: str = "",
) -> CCError:
    """The typed error for a non-2xx answer. ``path`` is relative to ``/v3`` (``/activities/…``)."""
    pairs = parse_error_body(body)
    error_key, message = pairs[0] if pairs else ("", "")
    cls = error_class_for(status, error_key, path)
    if cls is Throttled and _QUEUED_ACTIVITIES_HINT in message.lower():
        cls = TooManyActivities
    message = "; ".join(m for _, m in pairs if m) or f"HTTP {status}"
    kwargs: dict[str, Any] = {
        "status": status,
        "error_key": error_key,
        "errors": pairs,
        "method": method,
        "path": path,
    }
    if cls is QuotaExceeded:
        return QuotaExceeded(message, resume_at=next_utc_midnight(now), **kwargs)
    return cls(message, **kwargs)
