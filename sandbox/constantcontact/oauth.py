"""OAuth2 as Constant Contact's authorization server does it: codes, 24-hour tokens, rotation.

Refresh tokens rotate: every refresh issues a new one and kills every earlier token of the same
grant (the chain that started with one authorization code), so a client that loses the newest
token, or two workers that refresh at once, end with `invalid_grant` and need a new consent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

from flask import Blueprint, Response, jsonify, redirect, request

from sandbox.common import consent_answer, consent_page
from sandbox.constantcontact.account import current_sandbox

bp = Blueprint("cc_oauth", __name__, url_prefix="/oauth2/default/v1")

CODE_TTL = 300  # seconds: authorization codes are single-use and live 5 minutes
SCOPES = {
    "contact_data",
    "campaign_data",
    "account_read",
    "account_update",
    "offline_access",
    "openid",
    "profile",
    "billing_data",
}


@dataclass
class Grant:
    """One consent: the chain of tokens issued from one authorization code."""

    client_id: str
    scope: str
    refresh_token: str | None = None  # the only valid one of the chain
    refresh_used_at: float = 0.0


@dataclass
class AccessToken:
    client_id: str
    scope: str
    expires_at: float


@dataclass
class Code:
    client_id: str
    redirect_uri: str
    scope: str
    expires_at: float
    challenge: str | None = None
    nonce: str | None = None


@dataclass
class TokenRegistry:
    sandbox: Any
    access: dict[str, AccessToken] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)  # keyed by the current refresh token
    codes: dict[str, Code] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _now(self) -> float:
        return float(self.sandbox.clock.now().timestamp())

    def reset(self) -> None:
        with self.lock:
            self.access.clear()
            self.grants.clear()
            self.codes.clear()

    def issue(self, client_id: str, scope: str, grant: Grant | None = None) -> dict[str, Any]:
        """A token response; with `offline_access`, a refresh token replacing the grant's last."""
        now = self._now()
        ttl = int(self.sandbox.config["ACCESS_TOKEN_TTL"])
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.access[token] = AccessToken(client_id, scope, now + ttl)
            body: dict[str, Any] = {
                "token_type": "Bearer",
                "expires_in": ttl,
                "access_token": token,
                "scope": scope,
            }
            if "offline_access" in scope.split():
                grant = grant or Grant(client_id, scope)
                if grant.refresh_token is not None:
                    self.grants.pop(grant.refresh_token, None)
                grant.refresh_token = secrets.token_urlsafe(32)
                grant.refresh_used_at = now
                self.grants[grant.refresh_token] = grant
                body["refresh_token"] = grant.refresh_token
        if "openid" in scope.split():
            body["id_token"] = _fake_jwt({"aud": client_id, "iat": int(now), "exp": int(now + ttl)})
        return body

    def check(self, token: str) -> AccessToken | None:
        with self.lock:
            found = self.access.get(token)
        if found is None or found.expires_at <= self._now():
            return None
        return found

    def expire_all(self) -> int:
        with self.lock:
            for token in self.access.values():
                token.expires_at = 0
            return len(self.access)

    def refresh(self, client_id: str, refresh_token: str) -> dict[str, Any] | None:
        idle = float(self.sandbox.config["REFRESH_TOKEN_IDLE_TTL"])
        with self.lock:
            grant = self.grants.get(refresh_token)
            if grant is None or grant.client_id != client_id:
                return None
            if self._now() - grant.refresh_used_at > idle:
                self.grants.pop(refresh_token, None)
                return None
        return self.issue(client_id, grant.scope, grant)


def _fake_jwt(claims: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.sandbox"


def oauth_error(error: str, description: str, status: int = 400) -> tuple[Response, int]:
    return jsonify(error=error, error_description=description), status


def _redirect_allowed(uri: str, extra: list[str]) -> bool:
    if uri in extra:
        return True
    parsed = urlparse(uri)
    return parsed.scheme == "http" and parsed.hostname in ("localhost", "127.0.0.1")


@bp.get("/authorize")
def authorize() -> Any:
    """Approves (after the consent page when ``CONSENT_PAGE`` is on) and sends the browser back
    with `code` and `state`."""
    sandbox = current_sandbox()
    args = request.args
    if args.get("client_id") != sandbox.config["CLIENT_ID"]:
        return oauth_error("invalid_client", "The client_id is not valid.")
    redirect_uri = args.get("redirect_uri", "")
    if not _redirect_allowed(redirect_uri, list(sandbox.config["REDIRECT_URIS"])):
        # Never redirect to an unregistered URI: the error is shown, not sent.
        return oauth_error("invalid_request", "The redirect_uri is not registered for this client.")
    state = args.get("state")
    if args.get("response_type") != "code":
        return _back(redirect_uri, {"error": "unsupported_response_type", "state": state})
    scope = " ".join(args.get("scope", "").split())
    unknown = [s for s in scope.split() if s not in SCOPES]
    if not scope or unknown:
        return _back(redirect_uri, {"error": "invalid_scope", "state": state})
    answer = consent_answer(sandbox.config, args)
    if answer is None:
        return consent_page("Constant Contact", request.path, args)
    if answer == "deny":
        return _back(redirect_uri, {"error": "access_denied", "state": state})
    code = secrets.token_urlsafe(24)
    challenge = args.get("code_challenge")
    if challenge and args.get("code_challenge_method", "S256") != "S256":
        return _back(redirect_uri, {"error": "invalid_request", "state": state})
    auth: TokenRegistry = sandbox.auth
    with auth.lock:
        auth.codes[code] = Code(
            client_id=args["client_id"],
            redirect_uri=redirect_uri,
            scope=scope,
            expires_at=auth._now() + CODE_TTL,
            challenge=challenge,
        )
    return _back(redirect_uri, {"code": code, "state": state})


def _back(uri: str, params: dict[str, Any]) -> Any:
    parsed = urlparse(uri)
    query = parse_qsl(parsed.query) + [(k, v) for k, v in params.items() if v is not None]
    return redirect(urlunparse(parsed._replace(query=urlencode(query))), code=302)


def _client_credentials() -> tuple[str | None, str | None]:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("basic "):
        try:
            raw = base64.b64decode(header[6:].strip()).decode()
        except (ValueError, UnicodeDecodeError):
            return None, None
        client_id, _, secret = raw.partition(":")
        return client_id, secret
    return request.form.get("client_id"), request.form.get("client_secret")


@bp.post("/token")
def token() -> tuple[Response, int] | Response:
    sandbox = current_sandbox()
    auth: TokenRegistry = sandbox.auth
    if request.mimetype != "application/x-www-form-urlencoded":
        return oauth_error("invalid_request", "The token request must be form-encoded.")
    client_id, secret = _client_credentials()
    grant_type = request.form.get("grant_type")
    public_pkce = grant_type == "authorization_code" and request.form.get("code_verifier")
    if client_id != sandbox.config["CLIENT_ID"] or (
        secret != sandbox.config["CLIENT_SECRET"] and not (public_pkce and secret is None)
    ):
        return oauth_error("invalid_client", "Client authentication failed.", 401)
    if grant_type == "authorization_code":
        with auth.lock:
            code = auth.codes.pop(request.form.get("code", ""), None)
        if code is None or code.expires_at <= auth._now() or code.client_id != client_id:
            return oauth_error("invalid_grant", "The authorization code is invalid or has expired.")
        if request.form.get("redirect_uri") != code.redirect_uri:
            return oauth_error(
                "invalid_grant",
                "The 'redirect_uri' does not match the redirection URI used in the"
                " authorization request.",
            )
        if code.challenge is not None:
            verifier = request.form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            if digest.rstrip(b"=").decode() != code.challenge:
                return oauth_error("invalid_grant", "PKCE verification failed.")
        elif public_pkce and secret is None:
            return oauth_error("invalid_client", "Client authentication failed.", 401)
        return jsonify(auth.issue(client_id, code.scope))
    if grant_type == "refresh_token":
        body = auth.refresh(client_id or "", request.form.get("refresh_token", ""))
        if body is None:
            return oauth_error("invalid_grant", "The refresh token is invalid or expired.")
        return jsonify(body)
    return oauth_error("unsupported_grant_type", "The authorization grant type is not supported.")
