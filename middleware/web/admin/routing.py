"""Admin API routing: the blueprint, its bearer-token check, its problem answers and route registry.

Routes are declared with ``@endpoint``, which records what the OpenAPI document says about them,
so the document cannot drift from the routes.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, Response, request
from marshmallow import Schema

from middleware.services.exceptions import ServiceError
from middleware.web import get_settings
from middleware.web.endpoints import Endpoint
from middleware.web.problems import problem, service_problem

bp = Blueprint("admin_api", __name__, url_prefix="/admin/api")

ENDPOINTS: list[Endpoint] = []


class ApiError(Exception):
    """A request the views refuse before any service runs (bad JSON, no token); problem+json."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        errors: Mapping[str, list[str]] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = dict(errors) if errors else None


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    response = problem(exc.status, exc.title, exc.detail, errors=exc.errors)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="admin"'
    return response


@bp.errorhandler(ServiceError)
def _service_error(exc: ServiceError) -> Response:
    return service_problem(exc)


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison of a presented token with the configured one."""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


@bp.before_request
def _authenticate() -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token_matches(token.strip(), get_settings().admin_token):
        raise ApiError(
            401,
            "Unauthorized",
            "Send the admin token as `Authorization: Bearer <ADMIN_TOKEN>`.",
        )


def endpoint(
    rule: str,
    method: str,
    *,
    summary: str,
    tag: str,
    responses: dict[int, Any],
    body: Schema | type[Schema] | None = None,
    query: type[Schema] | None = None,
    auth: bool = True,
    body_required: bool = True,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a view on the blueprint and record its documentation."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        ENDPOINTS.append(
            Endpoint(
                rule=bp.url_prefix + rule if bp.url_prefix else rule,
                method=method,
                view=view.__name__,
                summary=summary,
                tag=tag,
                body=body,
                query=query,
                responses=responses,
                auth=auth,
                description=(view.__doc__ or "").strip() or None,
                body_required=body_required,
            )
        )
        bp.add_url_rule(rule, endpoint=view.__name__, view_func=view, methods=[method])
        return view

    return decorate
