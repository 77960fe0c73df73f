"""OAuth connect flows: begin, open the start link, complete (Salesforce and Constant Contact).

A flow's state, PKCE verifier and redirect URI are kept in Redis for ten minutes under a hash of
the state; the caller gets a signed, single-use start link that leads to the vendor's consent page.
``complete_flow`` takes the state back from Redis (single use), exchanges the code through the
vendor's OAuth client and stores the tokens encrypted as a new connection, or as fresh tokens of
the connection being re-authorised, also when the signed-in org (Salesforce) or account (Constant
Contact, when its id is known) already has a connection: that one is re-authorised and the answer
says ``"reused": true``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from redis import Redis
from sqlalchemy.orm import Session

from middleware import connections as factories
from middleware import vendor_errors
from middleware.constantcontact.oauth import make_pkce_pair
from middleware.services.connections import setups_using
from middleware.services.exceptions import (
    Conflict,
    Gone,
    Invalid,
    NotFound,
    Rejected,
    VendorRefused,
)
from middleware.services.lookups import get_connection
from middleware.services.shapes import connection_view
from middleware.settings import SALESFORCE_LOGIN_HOSTS, Settings
from middleware.store import connections as connection_repo
from middleware.store.db import Store
from middleware.store.models import VENDORS, Connection, utcnow

log = logging.getLogger(__name__)

FLOW_TTL_SECONDS = 600
_FLOW_PREFIX = "ctct:oauth:flow:"
_START_PREFIX = "ctct:oauth:start:"
_SALT = "oauth-start-link"
VENDOR_NAMES = {"salesforce": "Salesforce", "constantcontact": "Constant Contact"}
# Where a Salesforce connection signs in: a production (or Developer Edition) org, or a sandbox.
LOGIN_HOSTS = SALESFORCE_LOGIN_HOSTS
_ORG_ID = re.compile(r"/id/(00D[A-Za-z0-9]{12,15})/")


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


def login_url_of(settings: Settings, login_host: str | None) -> str:
    """The Salesforce login host of a choice: ``production`` (``SALESFORCE_LOGIN_URL``, the
    default) or ``sandbox`` (``SALESFORCE_SANDBOX_LOGIN_URL``)."""
    if login_host in (None, "", "production"):
        return settings.salesforce_login_url
    if login_host == "sandbox":
        return settings.salesforce_sandbox_login_url
    message = f"Choose the login host production or sandbox, not {login_host!r}."
    raise Invalid({"login_host": [message]}, message)


def begin_flow(
    settings: Settings,
    redis: Redis,
    vendor: str,
    label: str = "",
    *,
    connection_id: int | None = None,
    redirect_uri: str | None = None,
    return_to: str | None = None,
    login_url: str | None = None,
) -> Flow:
    """Create a flow: state and PKCE kept server-side, a signed start link, the consent URL.

    ``return_to`` is a path on this site where the callback sends the browser once the
    connection is stored (the dashboard); kept server-side, so no link can redirect elsewhere.
    ``login_url``: the Salesforce login host to sign in at (``login_url_of``); the code is
    exchanged there too and the connection remembers it for its refreshes.
    """
    if vendor not in VENDORS:
        raise NotFound(f"Unknown vendor {vendor!r}; use one of {', '.join(VENDORS)}.")
    state = secrets.token_urlsafe(32)
    verifier, challenge = make_pkce_pair()
    redirect_to = redirect_uri or callback_uri(settings, vendor)
    if vendor == "salesforce":
        login_url = login_url or settings.salesforce_login_url
        sf = factories.salesforce_oauth(settings, login_url=login_url)
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
        "return_to": _local_path(return_to),
        "login_url": login_url if vendor == "salesforce" else None,
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


def _local_path(path: str | None) -> str | None:
    """A path on this site, or ``None`` (another host, ``//host`` or a scheme is refused)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return None
    return path


def open_start_link(settings: Settings, redis: Redis, vendor: str, token: str) -> str:
    """Check a start link (signature, age, vendor, not used before); return the consent URL."""
    try:
        data = _signer(settings).loads(token, max_age=FLOW_TTL_SECONDS)
    except SignatureExpired:
        raise Gone("This start link has expired; start connecting again.") from None
    except BadSignature:
        raise Rejected("This start link is not valid.") from None
    if not isinstance(data, dict) or data.get("v") != vendor or not data.get("s"):
        raise Rejected("This start link is not for this vendor.")
    state = str(data["s"])
    if not redis.delete(_key(_START_PREFIX, state)):
        raise Gone("This start link was already used or has expired; start again.")
    raw = redis.get(_key(_FLOW_PREFIX, state))
    if raw is None:
        raise Gone("This connect flow has expired; start connecting again.")
    return str(json.loads(raw)["authorize_url"])


def take_flow(redis: Redis, state: str) -> dict[str, Any] | None:
    """Take a pending flow out of Redis (single use); ``None`` when unknown or expired."""
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
    flow = take_flow(redis, state) if state else None
    if flow is None:
        raise Rejected("This sign-in is unknown, already used or expired; start again.")
    if flow["vendor"] != vendor:
        raise Rejected(f"This sign-in was started for {flow['vendor']}, not {vendor}.")
    if not code:
        raise Rejected("The vendor sent no authorization code.")
    try:
        if vendor == "salesforce":
            values = _exchange_salesforce(settings, flow, code, session)
        else:
            values = _exchange_constant_contact(settings, flow, code, session)
    except vendor_errors.VendorError as exc:
        log.warning("%s refused the authorization code: %s", vendor, type(exc).__name__)
        raise VendorRefused(f"{VENDOR_NAMES[vendor]} refused the sign-in: {exc}") from None
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
        view["return_to"] = flow.get("return_to")
        return view


def _default_label(vendor: str, values: dict[str, Any]) -> str:
    account = values.get("account_id")
    return f"{VENDOR_NAMES[vendor]} {account}" if account else VENDOR_NAMES[vendor]


def _exchange_salesforce(
    settings: Settings, flow: dict[str, Any], code: str, session: requests.Session | None
) -> dict[str, Any]:
    login_url = flow.get("login_url") or settings.salesforce_login_url
    oauth = factories.salesforce_oauth(settings, session, login_url)
    oauth.redirect_uri = flow["redirect_uri"]
    tokens = oauth.exchange_code(code, code_verifier=flow["verifier"])
    return {
        "login_url": login_url,
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


def _reauthorise(
    db: Session, connection_id: int, vendor: str, values: dict[str, Any]
) -> Connection:
    row = connection_repo.get(db, connection_id)
    if row is None or row.vendor != vendor:
        raise NotFound(f"Connection {connection_id} no longer exists; connect anew.")
    if row.account_id and values["account_id"] and row.account_id != values["account_id"]:
        raise Conflict(
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
    row = get_connection(db, connection_id)
    if values.get("login_url") and row.login_url != values["login_url"]:
        row.login_url = values["login_url"]
        db.flush()
    if values["account_id"] and not row.account_id:
        row.account_id = values["account_id"]
        db.flush()
    log.info("%s connection %s re-authorised", vendor, connection_id)
    return row


def start_connection(
    settings: Settings,
    store: Store,
    redis: Redis,
    vendor: str,
    label: str = "",
    connection_id: int | None = None,
    return_to: str | None = None,
    login_host: str | None = None,
) -> Flow:
    """Begin a flow for a new connection, or to re-authorise ``connection_id`` (same vendor);
    ``return_to``: see ``begin_flow``. ``login_host`` (Salesforce only): ``production`` or
    ``sandbox``; a reconnect without one signs in where the connection signed in before."""
    if login_host and vendor != "salesforce":
        message = "Only a Salesforce connection chooses its login host."
        raise Invalid({"login_host": [message]}, message)
    login_url = login_url_of(settings, login_host) if vendor == "salesforce" else None
    if connection_id is not None:
        with store.transaction() as session:
            row = get_connection(session, connection_id)
            if row.vendor != vendor:
                raise Invalid(
                    {"connection_id": [f"Connection {row.id} is a {row.vendor} connection."]}
                )
            if not login_host and row.login_url:
                login_url = row.login_url
    return begin_flow(
        settings,
        redis,
        vendor,
        label,
        connection_id=connection_id,
        return_to=return_to,
        login_url=login_url,
    )
