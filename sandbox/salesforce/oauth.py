"""OAuth 2.0 web-server flow of the Salesforce sandbox: authorize, token, revoke.

Authorize approves at once unless the org's ``CONSENT_PAGE`` is on; then it shows an Allow /
Deny page first (`sandbox.common.consent_page`), for browser tests.

The sandbox connected app (CLIENT_ID/CLIENT_SECRET) takes any loopback redirect URI, the way a
developer's local callback works against a real connected app configured for it; anything else
gets Salesforce's `redirect_uri_mismatch` page. Error bodies and statuses follow Salesforce's
token endpoint: `{"error", "error_description"}`, 400 for grants, 401 for bad client credentials.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from html import escape
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Blueprint, Response, jsonify, redirect, request
from werkzeug.wrappers import Response as BaseResponse

from sandbox.common import consent_answer, consent_page
from sandbox.salesforce.auth import DEFAULT_SCOPE, OAuthError, authenticate
from sandbox.salesforce.org import SalesforceSandbox, current_sandbox

log = logging.getLogger(__name__)

bp = Blueprint("sf_oauth", __name__)

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def instance_url() -> str:
    """This sandbox's own base URL as the client reached it (https when served over TLS)."""
    return request.host_url.rstrip("/")


def redirect_allowed(sandbox: SalesforceSandbox, redirect_uri: str) -> bool:
    if redirect_uri in sandbox.config.get("REDIRECT_URIS", []):
        return True
    try:
        parts = urlsplit(redirect_uri)
        port = parts.port
    except ValueError:
        return False
    host = parts.netloc.rsplit("@", 1)[-1].rsplit(":", 1)[0] if parts.netloc else ""
    return parts.scheme == "http" and host in LOOPBACK_HOSTS and port is not None


def _with_params(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def _error_page(error: str, description: str) -> tuple[str, int, dict[str, str]]:
    # Salesforce shows an HTML page (not a redirect) when it cannot trust the redirect URI.
    body = (
        "<!DOCTYPE html><html><head><title>Error</title></head><body>"
        f"<h1>error={escape(error)}</h1><p>error_description={escape(description)}</p>"
        "</body></html>"
    )
    return body, 400, {"Content-Type": "text/html; charset=utf-8"}


@bp.get("/services/oauth2/authorize")
def authorize() -> BaseResponse | tuple[str, int, dict[str, str]]:
    sandbox = current_sandbox()
    args = request.args
    client_id = args.get("client_id", "")
    redirect_uri = args.get("redirect_uri", "")
    state = args.get("state")
    if client_id != sandbox.config["CLIENT_ID"]:
        return _error_page("invalid_client_id", "client identifier invalid")
    if not redirect_uri or not redirect_allowed(sandbox, redirect_uri):
        return _error_page("redirect_uri_mismatch", "redirect_uri must match configuration")

    def back(params: dict[str, str]) -> BaseResponse:
        if state is not None:
            params["state"] = state
        return redirect(_with_params(redirect_uri, params), code=302)

    if args.get("response_type") != "code":
        return back(
            {
                "error": "unsupported_response_type",
                "error_description": "response type not supported",
            }
        )
    method = args.get("code_challenge_method", "plain")
    if args.get("code_challenge") and method.upper() not in ("S256", "PLAIN"):
        return back(
            {"error": "invalid_request", "error_description": "invalid code_challenge_method"}
        )
    answer = consent_answer(sandbox.config, args)
    if answer is None:
        return consent_page("Salesforce", request.path, args)
    if answer == "deny":
        return back(
            {"error": "access_denied", "error_description": "end-user denied authorization"}
        )
    code = sandbox.auth.create_code(
        client_id,
        redirect_uri,
        args.get("scope") or DEFAULT_SCOPE,
        code_challenge=args.get("code_challenge") or None,
        code_challenge_method=method,
    )
    log.info("sandbox authorize: code issued for a loopback redirect")
    return back({"code": code})


def _client_credentials() -> tuple[str, str | None]:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:].strip()).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthError("invalid_client", "invalid client credentials", 401) from None
        client_id, _, secret = decoded.partition(":")
        return client_id, secret
    return request.form.get("client_id", ""), request.form.get("client_secret")


def _check_client(sandbox: SalesforceSandbox, client_id: str, secret: str | None) -> None:
    if client_id != sandbox.config["CLIENT_ID"]:
        raise OAuthError("invalid_client_id", "client identifier invalid")
    if secret is not None and not hmac.compare_digest(
        secret.encode(), str(sandbox.config["CLIENT_SECRET"]).encode()
    ):
        raise OAuthError("invalid_client", "invalid client credentials", 401)


@bp.post("/services/oauth2/token")
def token() -> Response | tuple[Response, int]:
    sandbox = current_sandbox()
    form = request.form
    try:
        client_id, secret = _client_credentials()
        _check_client(sandbox, client_id, secret)
        grant_type = form.get("grant_type", "")
        if grant_type == "authorization_code":
            verifier = form.get("code_verifier") or None
            if secret is None and verifier is None:
                # Without PKCE the web-server flow needs the secret, as "Require Secret" does.
                raise OAuthError("invalid_client", "invalid client credentials", 401)
            issued = sandbox.auth.redeem_code(
                form.get("code", ""), client_id, form.get("redirect_uri", ""), verifier
            )
        elif grant_type == "refresh_token":
            if secret is None:
                raise OAuthError("invalid_client", "invalid client credentials", 401)
            issued = sandbox.auth.refresh(form.get("refresh_token", ""), client_id)
        else:
            raise OAuthError("unsupported_grant_type", "grant type not supported")
    except OAuthError as exc:
        log.info("sandbox token endpoint refused: %s", exc.error)
        return exc.response()
    return jsonify(sandbox.auth.token_response(issued, instance_url()))


@bp.route("/services/oauth2/revoke", methods=["GET", "POST"])
def revoke() -> Response | tuple[str, int]:
    value = request.form.get("token") or request.args.get("token") or ""
    if not current_sandbox().auth.revoke(value):
        return OAuthError("unsupported_token_type", "this token type is not supported").response()
    return "", 200


@bp.get("/services/oauth2/userinfo")
def userinfo() -> Response:
    sandbox = current_sandbox()
    checked = authenticate(sandbox.auth)
    if isinstance(checked, Response):
        return checked
    return jsonify(_identity(sandbox))


@bp.get("/id/<org_id>/<user_id>")
def identity(org_id: str, user_id: str) -> Response:
    sandbox = current_sandbox()
    checked = authenticate(sandbox.auth)
    if isinstance(checked, Response):
        return checked
    if org_id != sandbox.config["ORG_ID"] or user_id != sandbox.config["USER_ID"]:
        resp = jsonify([{"message": "Bad_Id", "errorCode": "NOT_FOUND"}])
        resp.status_code = 404
        return resp
    return jsonify(_identity(sandbox))


def _identity(sandbox: SalesforceSandbox) -> dict[str, object]:
    config = sandbox.config
    base = instance_url()
    return {
        "id": f"{base}/id/{config['ORG_ID']}/{config['USER_ID']}",
        "user_id": config["USER_ID"],
        "organization_id": config["ORG_ID"],
        "username": "integration@sandbox.test",
        "display_name": "Sandbox Integration User",
        "email": "integration@sandbox.test",
        "active": True,
        "user_type": "STANDARD",
        "urls": {
            "rest": f"{base}/services/data/v{{version}}/",
            "sobjects": f"{base}/services/data/v{{version}}/sobjects/",
            "query": f"{base}/services/data/v{{version}}/query/",
            "limits": f"{base}/services/data/v{{version}}/limits/",
        },
    }
