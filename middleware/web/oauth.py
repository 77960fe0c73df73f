"""Web OAuth connect: the start-link and callback pages of the vendor consent flows.

An admin asks ``POST /admin/api/connections/start`` (bearer token) for a flow; the answer holds a
signed, single-use start link (``GET /oauth/<vendor>/start?flow=...``) to open in the browser that
will grant access, which redirects to the vendor's consent page. The vendor sends the browser back
to ``GET /oauth/<vendor>/callback?code&state``, which completes the flow and stores the connection.
The flows themselves are services (``middleware.services.connect``); these views answer browsers
with a small HTML page and scripts (``Accept: application/json``) with JSON or problem+json.
"""

from __future__ import annotations

from html import escape
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, redirect, request

from middleware.services.connect import (
    VENDOR_NAMES,
    complete_flow,
    open_start_link,
    take_flow,
)
from middleware.services.connections import vendor_session
from middleware.services.exceptions import NotFound, Rejected, ServiceError
from middleware.store.models import VENDORS
from middleware.web import get_redis, get_settings, get_store
from middleware.web.endpoints import Endpoint
from middleware.web.problems import service_problem, service_status
from schemas.admin import (
    CallbackQuerySchema,
    ConnectionCreatedSchema,
    ConnectionSchema,
    ProblemSchema,
    StartQuerySchema,
)

bp = Blueprint("oauth", __name__, url_prefix="/oauth")


# --------------------------------------------------------------------------- views


def _wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes["application/json"] > 0


def _page(title: str, body: str, status: int) -> Response:
    html = (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)}</title></head><body style='font-family:sans-serif'>"
        f"<h1>{escape(title)}</h1><p>{escape(body)}</p></body></html>"
    )
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


def _check_vendor(vendor: str) -> None:
    if vendor not in VENDORS:
        raise NotFound(f"Unknown vendor {vendor!r}; use one of {', '.join(VENDORS)}.")


@bp.errorhandler(ServiceError)
def _flow_error(exc: ServiceError) -> Response:
    if _wants_json():
        return service_problem(exc)
    return _page("Could not connect", exc.detail, service_status(exc)[0])


@bp.get("/<vendor>/start")
def start(vendor: str) -> Any:
    """Open a signed start link: redirect to the vendor's consent page."""
    _check_vendor(vendor)
    token = request.args.get("flow", "")
    if not token:
        raise Rejected("The start link has no `flow` token; copy the whole link.")
    url = open_start_link(get_settings(), get_redis(), vendor, token)
    response = redirect(url, code=302)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/<vendor>/callback")
def callback(vendor: str) -> Any:
    """Where the vendor sends the browser back: exchange the code and store the connection."""
    _check_vendor(vendor)
    args = request.args
    if args.get("error"):
        if args.get("state"):
            take_flow(get_redis(), args["state"])  # the flow is over either way
        text = args.get("error_description") or args["error"]
        raise Rejected(f"{VENDOR_NAMES[vendor]} did not grant access: {text}")
    view = complete_flow(
        get_settings(),
        get_store(),
        get_redis(),
        vendor,
        code=args.get("code", ""),
        state=args.get("state", ""),
        session=vendor_session(current_app.config, vendor),
    )
    reused = bool(view.get("reused"))
    if _wants_json():
        response = jsonify({"connection": ConnectionSchema().dump(view), "reused": reused})
        response.status_code = 201
        return response
    if view.get("return_to"):
        # Started from the dashboard: back to its page, which says what was stored.
        back = f"{view['return_to']}?connected={view['id']}&reused={int(reused)}"
        going = redirect(back, code=303)
        going.headers["Cache-Control"] = "no-store"
        return going
    account = f" ({view['account_id']})" if view.get("account_id") else ""
    if reused:
        stored = (
            f"This {'org' if vendor == 'salesforce' else 'account'}{account} was already "
            f"connected: connection {view['id']} now uses the new sign-in."
        )
    else:
        stored = f"Stored as connection {view['id']}{account}."
    return _page(
        f"{VENDOR_NAMES[vendor]} connected",
        f"{stored} You can close this window and pick it in a setup.",
        201,
    )


_VENDOR_PATH_ONLY = {404: ProblemSchema}
ENDPOINTS = [
    Endpoint(
        rule="/oauth/<vendor>/start",
        method="GET",
        view="oauth_start",
        summary="Open a signed start link (from POST /admin/api/connections/start)",
        tag="oauth",
        query=StartQuerySchema,
        responses={302: None, 400: ProblemSchema, 410: ProblemSchema, **_VENDOR_PATH_ONLY},
        auth=False,
        html=True,
        description="Redirects to the vendor's consent page. The link is the authentication: "
        "signed, single use, valid 10 minutes: 400 when it does not verify, 410 once used or "
        "expired. Errors are a small HTML page, or problem+json with `Accept: application/json`.",
    ),
    Endpoint(
        rule="/oauth/<vendor>/callback",
        method="GET",
        view="oauth_callback",
        summary="The vendor's redirect back with the authorization code",
        tag="oauth",
        query=CallbackQuerySchema,
        responses={
            201: ConnectionCreatedSchema,
            400: ProblemSchema,
            409: ProblemSchema,
            **_VENDOR_PATH_ONLY,
            502: ProblemSchema,
        },
        auth=False,
        html=True,
        description="Validates the state, exchanges the code (PKCE) and stores the connection. "
        "Answers a small HTML page, or JSON with `Accept: application/json`; `reused` is true when "
        "the org/account already had a connection, which got the new tokens instead of a second "
        "connection being added. 400: no pending "
        "sign-in has this state, or the vendor did not grant access; 409: re-authorised with "
        "another org or account; 502: the vendor refused the code.",
    ),
]
