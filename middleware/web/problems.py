"""Problems: RFC 9457 problem+json answers, and the HTTP status of each service exception.

Shared by every blueprint (admin API, OAuth pages, webhooks) and the app's own error handlers.
"""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify

from middleware.services.exceptions import (
    Conflict,
    Gone,
    Invalid,
    NotAvailable,
    NotFound,
    Rejected,
    ServiceError,
    VendorRefused,
)

# The HTTP answer to each service exception: (status, title).
SERVICE_STATUS: dict[type[ServiceError], tuple[int, str]] = {
    Rejected: (400, "Bad Request"),
    NotFound: (404, "Not Found"),
    Conflict: (409, "Conflict"),
    Gone: (410, "Gone"),
    Invalid: (422, "Unprocessable Content"),
    NotAvailable: (501, "Not Implemented"),
    VendorRefused: (502, "Bad Gateway"),
}


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


def service_status(exc: ServiceError) -> tuple[int, str]:
    """The status and title a service exception answers with (a bare one is our bug: 500)."""
    for cls in type(exc).__mro__:
        if cls in SERVICE_STATUS:
            return SERVICE_STATUS[cls]
    return 500, "Internal Server Error"


def service_problem(exc: ServiceError) -> Response:
    """A service exception as problem+json naming the offending fields."""
    status, title = service_status(exc)
    return problem(status, title, exc.detail, errors=exc.errors)
