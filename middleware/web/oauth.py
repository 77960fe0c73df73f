"""Web OAuth connect: start and callback of the Salesforce and Constant Contact consent flows.

An admin asks ``POST /admin/api/connections/start`` (bearer token) for a flow. The flow's state,
PKCE verifier and redirect URI are kept in Redis for ten minutes under a hash of the state; the
answer holds a signed, single-use start link (``GET /oauth/<vendor>/start?flow=...``) to open in
the browser that will grant access, which redirects to the vendor's consent page. The vendor sends
the browser back to ``GET /oauth/<vendor>/callback?code&state``: the state is taken from Redis
(single use), the code is exchanged through the vendor's OAuth client, and the tokens are stored
encrypted as a new connection, or as fresh tokens of the connection being re-authorised — also
when the signed-in org (Salesforce) or account (Constant Contact, when its id is known) already has
a connection: that one is re-authorised and the answer says ``"reused": true``.

``begin_flow`` and ``complete_flow`` are plain functions: ``flask sandbox connect`` runs the same
path without a browser.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from typing import Any

import requests
from flask import Blueprint, Response, jsonify, redirect, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from redis import Redis

from middleware import connections as factories
from middleware import vendor_errors
from middleware.constantcontact.oauth import make_pkce_pair
from middleware.settings import Settings
from middleware.store import connections as connection_repo
from middleware.store.db import Store
from middleware.store.models import VENDORS, utcnow
from middleware.web import get_redis, get_settings, get_store
from middleware.web.admin import Endpoint, connection_view, setups_using, vendor_session
from schemas.admin import (
    CallbackQuerySchema,
    ConnectionCreatedSchema,
    ConnectionSchema,
    ProblemSchema,
    StartQuerySchema,
)

log = logging.getLogger(__name__)

bp = Blueprint("oauth", __name__, url_prefix="/oauth")

FLOW_TTL_SECONDS = 600
_FLOW_PREFIX = "ctct:oauth:flow:"
_START_PREFIX = "ctct:oauth:start:"
_SALT = "oauth-start-link"
VENDOR_NAMES = {"salesforce": "Salesforce", "constantcontact": "Constant Contact"}
_ORG_ID = re.compile(r"/id/(00D[A-Za-z0-9]{12,15})/")


class FlowError(Exception):
    """A connect flow that cannot go on; ``status`` is the HTTP answer to give."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Flow:
    """One pending consent flow."""

    vendor: str
    label: str
    state: str
    redirect_uri: str
    authorize_url: str
    start_url: str
    expires_at: datetime
    connection_id: int | None = None

    def public(self) -> dict[str, Any]:
        """What the admin API answers (the state travels inside the URLs only)."""
        return {
            "vendor": self.vendor,
            "label": self.label,
            "start_url": self.start_url,
            "authorize_url": self.authorize_url,
            "redirect_uri": self.redirect_uri,
            "expires_at": self.expires_at,
        }


def callback_uri(settings: Settings, vendor: str) -> str:
    """The redirect URI to register with the vendor: ``<PUBLIC_URL>/oauth/<vendor>/callback``."""
    return f"{settings.public_url}/oauth/{vendor}/callback"


def _key(prefix: str, state: str) -> str:
    # Keyed by a hash: reading Redis does not hand out live states.
    return prefix + hashlib.sha256(state.encode()).hexdigest()


def _signer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt=_SALT)


def begin_flow(
    settings: Settings,
    redis: Redis,
    vendor: str,
    label: str = "",
    *,
    connection_id: int | None = None,
    redirect_uri: str | None = None,
) -> Flow:
    """Create a flow: state and PKCE kept server-side, a signed start link, the consent URL."""
    if vendor not in VENDORS:
        raise FlowError(404, f"Unknown vendor {vendor!r}; use one of {', '.join(VENDORS)}.")
    state = secrets.token_urlsafe(32)
    verifier, challenge = make_pkce_pair()
    redirect_to = redirect_uri or callback_uri(settings, vendor)
    if vendor == "salesforce":
        sf = factories.salesforce_oauth(settings)
        sf.redirect_uri = redirect_to
        authorize_url = sf.authorization_url(state, code_challenge=challenge)
    else:
        cc = factories.constant_contact_oauth(settings)
        authorize_url = cc.authorization_url(redirect_to, state, code_challenge=challenge)
    record = {
        "vendor": vendor,
        "label": label,
        "verifier": verifier,
        "redirect_uri": redirect_to,
        "authorize_url": authorize_url,
        "connection_id": connection_id,
    }
    with redis.pipeline() as pipe:
        pipe.set(_key(_FLOW_PREFIX, state), json.dumps(record), ex=FLOW_TTL_SECONDS)
        pipe.set(_key(_START_PREFIX, state), "1", ex=FLOW_TTL_SECONDS)
        pipe.execute()
    token = _signer(settings).dumps({"s": state, "v": vendor})
    log.info("%s connect flow started (reauthorising %s)", vendor, connection_id or "none")
    return Flow(
        vendor=vendor,
        label=label,
        state=state,
        redirect_uri=redirect_to,
        authorize_url=authorize_url,
        start_url=f"{settings.public_url}/oauth/{vendor}/start?flow={token}",
        expires_at=utcnow() + timedelta(seconds=FLOW_TTL_SECONDS),
        connection_id=connection_id,
    )


def open_start_link(settings: Settings, redis: Redis, vendor: str, token: str) -> str:
    """Check a start link (signature, age, vendor, not used before); return the consent URL."""
    try:
        data = _signer(settings).loads(token, max_age=FLOW_TTL_SECONDS)
    except SignatureExpired:
        raise FlowError(410, "This start link has expired; start connecting again.") from None
    except BadSignature:
        raise FlowError(400, "This start link is not valid.") from None
    if not isinstance(data, dict) or data.get("v") != vendor or not data.get("s"):
        raise FlowError(400, "This start link is not for this vendor.")
    state = str(data["s"])
    if not redis.delete(_key(_START_PREFIX, state)):
        raise FlowError(410, "This start link was already used or has expired; start again.")
    raw = redis.get(_key(_FLOW_PREFIX, state))
    if raw is None:
        raise FlowError(410, "This connect flow has expired; start connecting again.")
    return str(json.loads(raw)["authorize_url"])


def _take_flow(redis: Redis, state: str) -> dict[str, Any] | None:
    raw = redis.getdel(_key(_FLOW_PREFIX, state))
    redis.delete(_key(_START_PREFIX, state))
    return json.loads(raw) if raw is not None else None  # type: ignore[arg-type]


def org_id_of(identity_url: str | None) -> str | None:
    """The org id in a Salesforce identity URL (``.../id/<org id>/<user id>``)."""
    match = _ORG_ID.search(identity_url or "")
    return match.group(1) if match else None


def complete_flow(
    settings: Settings,
    store: Store,
    redis: Redis,
    vendor: str,
    *,
    code: str,
    state: str,
    session: requests.Session | None = None,
) -> dict[str, Any]:
    """Exchange the code of a pending flow and store the tokens; return the connection view."""
    flow = _take_flow(redis, state) if state else None
    if flow is None:
        raise FlowError(400, "This sign-in is unknown, already used or expired; start again.")
    if flow["vendor"] != vendor:
        raise FlowError(400, f"This sign-in was started for {flow['vendor']}, not {vendor}.")
    if not code:
        raise FlowError(400, "The vendor sent no authorization code.")
    try:
        if vendor == "salesforce":
            values = _exchange_salesforce(settings, flow, code, session)
        else:
            values = _exchange_constant_contact(settings, flow, code, session)
    except vendor_errors.VendorError as exc:
        log.warning("%s refused the authorization code: %s", vendor, type(exc).__name__)
        raise FlowError(502, f"{VENDOR_NAMES[vendor]} refused the sign-in: {exc}") from None
    with store.transaction() as db:
        reused = False
        if flow.get("connection_id"):
            row = _reauthorise(db, int(flow["connection_id"]), vendor, values)
        elif (
            same := connection_repo.find_by_account(db, vendor, values["account_id"])
        ) is not None:
            # The same org / account again: fresh tokens for the connection it already has, not
            # a second connection whose setups would race the first one's refreshes.
            row = _reauthorise(db, same.id, vendor, values)
            reused = True
        else:
            row = connection_repo.create(
                db, vendor=vendor, label=flow["label"] or _default_label(vendor, values), **values
            )
        view = connection_view(row, setups_using(db, row.id))
        view["reused"] = reused
        return view


def _default_label(vendor: str, values: dict[str, Any]) -> str:
    account = values.get("account_id")
    return f"{VENDOR_NAMES[vendor]} {account}" if account else VENDOR_NAMES[vendor]


def _exchange_salesforce(
    settings: Settings, flow: dict[str, Any], code: str, session: requests.Session | None
) -> dict[str, Any]:
    oauth = factories.salesforce_oauth(settings, session)
    oauth.redirect_uri = flow["redirect_uri"]
    tokens = oauth.exchange_code(code, code_verifier=flow["verifier"])
    return {
        "base_url": tokens.instance_url,
        "account_id": org_id_of(tokens.identity_url),
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "expires_at": utcnow() + factories.SF_ACCESS_TOKEN_LIFETIME,
        "scopes": (tokens.scope or "").split(),
    }


def _exchange_constant_contact(
    settings: Settings, flow: dict[str, Any], code: str, session: requests.Session | None
) -> dict[str, Any]:
    oauth = factories.constant_contact_oauth(settings, session)
    tokens = oauth.exchange_code(code, flow["redirect_uri"], code_verifier=flow["verifier"])
    if not tokens.refresh_token:
        log.warning("Constant Contact issued no refresh token (offline_access not granted)")
    return {
        "base_url": settings.cc_api_url,
        "account_id": _cc_account_id(settings, tokens.access_token, session),
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "expires_at": tokens.expires_at,
        "scopes": tokens.scope.split(),
    }


def _cc_account_id(
    settings: Settings, access_token: str, session: requests.Session | None
) -> str | None:
    """The account's ``encoded_account_id`` (``GET /account/summary``), or ``None``.

    The token answer does not name the account. The real API answers this call; where it does
    not (the local sandbox has no such route, or the call fails), the account stays unknown and
    the connection is stored as before: a second connect to it then adds a second connection.
    """
    http = session or requests.Session()
    try:
        answer = http.get(
            f"{settings.cc_api_url}/account/summary",
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            timeout=15,
        )
        answer.close()
        if answer.status_code != 200:
            log.info("Constant Contact account summary answered %s", answer.status_code)
            return None
        account = answer.json().get("encoded_account_id")
    except (requests.RequestException, ValueError, AttributeError) as exc:
        log.info("Constant Contact account summary failed: %s", type(exc).__name__)
        return None
    finally:
        if session is None:
            http.close()
    return str(account)[:100] if account else None


def _reauthorise(db: Any, connection_id: int, vendor: str, values: dict[str, Any]) -> Any:
    row = connection_repo.get(db, connection_id)
    if row is None or row.vendor != vendor:
        raise FlowError(404, f"Connection {connection_id} no longer exists; connect anew.")
    if row.account_id and values["account_id"] and row.account_id != values["account_id"]:
        raise FlowError(
            409,
            f"You signed in to {values['account_id']}, but connection {connection_id} is for "
            f"{row.account_id}; sign in to that one, or add a new connection.",
        )
    connection_repo.save_tokens(
        db,
        connection_id,
        expected_version=row.version,
        access_token=values["access_token"],
        expires_at=values["expires_at"],
        refresh_token=values["refresh_token"],
        scopes=values["scopes"],
        base_url=values["base_url"],
    )
    row = connection_repo.get(db, connection_id)
    if values["account_id"] and row is not None and not row.account_id:
        row.account_id = values["account_id"]
        db.flush()
    log.info("%s connection %s re-authorised", vendor, connection_id)
    return row


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


def _failure(status: int, message: str) -> Response:
    if _wants_json():
        from middleware.web.admin import problem_response

        titles = {
            400: "Bad Request",
            403: "Forbidden",
            404: "Not Found",
            409: "Conflict",
            410: "Gone",
        }
        return problem_response(status, titles.get(status, "Bad Gateway"), message)
    return _page("Could not connect", message, status)


def _check_vendor(vendor: str) -> None:
    if vendor not in VENDORS:
        raise FlowError(404, f"Unknown vendor {vendor!r}; use one of {', '.join(VENDORS)}.")


@bp.errorhandler(FlowError)
def _flow_error(exc: FlowError) -> Response:
    return _failure(exc.status, exc.message)


@bp.get("/<vendor>/start")
def start(vendor: str) -> Any:
    """Open a signed start link: redirect to the vendor's consent page."""
    _check_vendor(vendor)
    token = request.args.get("flow", "")
    if not token:
        raise FlowError(400, "The start link has no `flow` token; copy the whole link.")
    url = open_start_link(get_settings(), get_redis(), vendor, token)
    response = redirect(url, code=302)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/<vendor>/callback")
def callback(vendor: str) -> Response:
    """Where the vendor sends the browser back: exchange the code and store the connection."""
    _check_vendor(vendor)
    args = request.args
    if args.get("error"):
        if args.get("state"):
            _take_flow(get_redis(), args["state"])  # the flow is over either way
        text = args.get("error_description") or args["error"]
        raise FlowError(400, f"{VENDOR_NAMES[vendor]} did not grant access: {text}")
    view = complete_flow(
        get_settings(),
        get_store(),
        get_redis(),
        vendor,
        code=args.get("code", ""),
        state=args.get("state", ""),
        session=vendor_session(vendor),
    )
    reused = bool(view.get("reused"))
    if _wants_json():
        response = jsonify({"connection": ConnectionSchema().dump(view), "reused": reused})
        response.status_code = 201
        return response
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
