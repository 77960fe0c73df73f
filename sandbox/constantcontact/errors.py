"""Constant Contact's error shapes: arrays of `{error_key, error_message}`; objects for 401/429."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from sandbox.common import Fault

VALIDATION = "contacts.api.validation.error"
NOT_FOUND = "contacts.api.not_found"
CONFLICT = "contacts.api.conflict"
UNSUPPORTED_MEDIA = "contacts.api.unsupported.media.type"


class CCError(Exception):
    """A rejected call; rendered as Constant Contact renders it (see `response`)."""

    def __init__(self, status: int, error_key: str, message: str) -> None:
        super().__init__(f"{status} {error_key}: {message}")
        self.status = status
        self.error_key = error_key
        self.message = message

    def body(self) -> Any:
        item = {"error_key": self.error_key, "error_message": self.message}
        # 401 and 429 come from the API gateway as one object; the services answer with arrays.
        return item if self.status in (401, 429) else [item]

    def response(self) -> Response:
        resp = jsonify(self.body())
        resp.status_code = self.status
        return resp


def bad_request(message: str, key: str = VALIDATION) -> CCError:
    return CCError(400, key, message)


def not_found(message: str) -> CCError:
    return CCError(404, NOT_FOUND, message)


def conflict(message: str) -> CCError:
    return CCError(409, CONFLICT, message)


def unauthorized() -> CCError:
    return CCError(401, "unauthorized", "Unauthorized")


def throttled() -> CCError:
    return CCError(429, "throttled", "Too Many Requests")


def quota_exceeded() -> CCError:
    return CCError(429, "quota_exceeded", "Limit Exceeded")


FAULT_MESSAGES = {
    400: (VALIDATION, "Injected fault: bad request."),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: (NOT_FOUND, "Injected fault: not found."),
    409: (CONFLICT, "Injected fault: conflict."),
    429: ("throttled", "Too Many Requests"),
    500: ("server_error", "There was a problem with our internal service."),
    503: ("service_unavailable", "Our internal service is temporarily unavailable."),
}


def fault_response(fault: Fault) -> Response:
    """Injected faults answer with the body Constant Contact would send for that status."""
    status = fault.status or 500
    key, message = FAULT_MESSAGES.get(status, ("server_error", "Injected fault."))
    if fault.error_key:
        key = fault.error_key
        if status == 429 and key == "quota_exceeded":
            message = "Limit Exceeded"
    return CCError(status, key, message).response()
