"""Service exceptions as HTTP problems: one status per class, the fields kept."""

from __future__ import annotations

import pytest
from flask import Flask

from middleware.services import exceptions as exc
from middleware.web.problems import service_problem, service_status


@pytest.mark.parametrize(
    ("error", "status", "title"),
    [
        (exc.Rejected("bad link"), 400, "Bad Request"),
        (exc.not_found("Setup", 7), 404, "Not Found"),
        (exc.Conflict("paused"), 409, "Conflict"),
        (exc.Gone("expired"), 410, "Gone"),
        (exc.Invalid({"name": ["Required."]}), 422, "Unprocessable Content"),
        (exc.NotAvailable("later"), 501, "Not Implemented"),
        (exc.VendorRefused("no"), 502, "Bad Gateway"),
        (exc.ServiceError("unclassified"), 500, "Internal Server Error"),
    ],
)
def test_each_service_exception_has_one_status(
    error: exc.ServiceError, status: int, title: str
) -> None:
    assert service_status(error) == (status, title)
    with Flask(__name__).test_request_context():
        response = service_problem(error)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["title"] == title and body["detail"] == error.detail
    assert body.get("errors") == error.errors


def test_not_found_says_what_does_not_exist() -> None:
    assert exc.not_found("Setup", 7).detail == "Setup 7 does not exist."
