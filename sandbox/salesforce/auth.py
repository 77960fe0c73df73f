"""Access tokens of the Salesforce sandbox: issue, refresh, revoke, expire, and the bearer check.

Tokens live in memory and age on the sandbox clock, so a test can move the clock past
ACCESS_TOKEN_TTL and watch every API call answer 401 INVALID_SESSION_ID, as a real org does when a
session times out. Authorization codes are single-use and short-lived, like Salesforce's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import Response, jsonify, request

CODE_TTL = 15 * 60  # seconds an authorization code stays redeemable (Salesforce: 15 minutes)
DEFAULT_SCOPE = "api refresh_token"


class OAuthError(Exception):
    """An OAuth endpoint refusal: `{"error", "error_description"}` with its HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def response(self) -> Response:
        resp = jsonify(error=self.error, error_description=self.description)
        resp.status_code = self.status
        return resp


@dataclass
class Token:
    """One access token (and the refresh token it came with, if any)."""

    access_token: str
    client_id: str
    scope: str
    issued_at: datetime
    expires_at: datetime
    refresh_token: str | None = None
    revoked: bool = False

    def valid(self, now: datetime) -> bool:
        return not self.revoked and now < self.expires_at


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    scope: str
    expires_at: datetime
    code_challenge: str | None = None
    code_challenge_method: str = "plain"


@dataclass
class _Refresh:
    client_id: str
    scope: str
    access_tokens: list[str] = field(default_factory=list)
    revoked: bool = False


class TokenRegistry:
    """Every token the sandbox org has issued. Thread-safe; ages tokens on the sandbox clock."""

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        self._lock = threading.Lock()
        self._tokens: dict[str, Token] = {}
        self._codes: dict[str, _Code] = {}
        self._refresh: dict[str, _Refresh] = {}

    # -- issuing -------------------------------------------------------------------------------

    def _now(self) -> datetime:
        return self.sandbox.clock.now()  # type: ignore[no-any-return]

    def _new_access_token(self) -> str:
        # Salesforce session ids are "<15-char org id>!<opaque>"; clients sometimes split on "!".
        return f"{self.sandbox.config['ORG_ID'][:15]}!{secrets.token_urlsafe(72)}"

    def issue(
        self,
        *,
        client_id: str | None = None,
        scope: str = DEFAULT_SCOPE,
        with_refresh: bool = False,
        ttl: float | None = None,
    ) -> Token:
        """A fresh access token (plus a refresh token when asked) valid for ACCESS_TOKEN_TTL."""
        now = self._now()
        seconds = float(ttl if ttl is not None else self.sandbox.config["ACCESS_TOKEN_TTL"])
        token = Token(
            access_token=self._new_access_token(),
            client_id=client_id or self.sandbox.config["CLIENT_ID"],
            scope=scope,
            issued_at=now,
            expires_at=now + timedelta(seconds=seconds),
        )
        with self._lock:
            if with_refresh:
                token.refresh_token = "5Aep" + secrets.token_urlsafe(64)
                self._refresh[token.refresh_token] = _Refresh(
                    client_id=token.client_id, scope=scope, access_tokens=[token.access_token]
                )
            self._tokens[token.access_token] = token
        return token

    def create_code(
        self,
        client_id: str,
        redirect_uri: str,
        scope: str,
        code_challenge: str | None = None,
        code_challenge_method: str = "plain",
    ) -> str:
        code = "aPrx" + secrets.token_urlsafe(48)
        with self._lock:
            self._codes[code] = _Code(
                client_id=client_id,
                redirect_uri=redirect_uri,
                scope=scope,
                expires_at=self._now() + timedelta(seconds=CODE_TTL),
                code_challenge=code_challenge,
                code_challenge_method=code_challenge_method,
            )
        return code

    def redeem_code(
        self, code: str, client_id: str, redirect_uri: str, code_verifier: str | None = None
    ) -> Token:
        """Exchange an authorization code for tokens. A code works once, for its own client."""
        with self._lock:
            grant = self._codes.pop(code, None)  # single-use, even when the exchange fails
        if grant is None or grant.client_id != client_id:
            raise OAuthError("invalid_grant", "invalid authorization code")
        if self._now() >= grant.expires_at:
            raise OAuthError("invalid_grant", "expired authorization code")
        if redirect_uri != grant.redirect_uri:
            raise OAuthError("redirect_uri_mismatch", "redirect_uri must match configuration")
        if grant.code_challenge is not None:
            if not code_verifier:
                raise OAuthError("invalid_grant", "invalid code verifier")
            if grant.code_challenge_method.upper() == "S256":
                digest = hashlib.sha256(code_verifier.encode()).digest()
                expected = base64.urlsafe_b64encode(digest).decode().rstrip("=")
            else:
                expected = code_verifier
            if not hmac.compare_digest(expected, grant.code_challenge):
                raise OAuthError("invalid_grant", "invalid code verifier")
        return self.issue(client_id=client_id, scope=grant.scope, with_refresh=True)

    def refresh(self, refresh_token: str, client_id: str) -> Token:
        """A new access token for a refresh token (which stays the same, as in Salesforce)."""
        with self._lock:
            grant = self._refresh.get(refresh_token)
        if grant is None or grant.revoked or grant.client_id != client_id:
            raise OAuthError("invalid_grant", "expired access/refresh token")
        token = self.issue(client_id=client_id, scope=grant.scope)
        with self._lock:
            grant.access_tokens.append(token.access_token)
        return token

    # -- checking and ending -------------------------------------------------------------------

    def check(self, access_token: str | None) -> Token | None:
        """The live token for this string, or None if unknown, expired or revoked."""
        if not access_token:
            return None
        with self._lock:
            token = self._tokens.get(access_token)
        if token is None or not token.valid(self._now()):
            return None
        return token

    def revoke(self, value: str) -> bool:
        """Revoke an access token, or a refresh token and every access token it produced."""
        with self._lock:
            grant = self._refresh.get(value)
            if grant is not None:
                grant.revoked = True
                for access in grant.access_tokens:
                    if access in self._tokens:
                        self._tokens[access].revoked = True
                return True
            token = self._tokens.get(value)
            if token is None:
                return False
            token.revoked = True
            return True

    def expire_all(self) -> int:
        """End every access token now (refresh tokens keep working). Returns how many were live."""
        now = self._now()
        ended = 0
        with self._lock:
            for token in self._tokens.values():
                if token.valid(now):
                    ended += 1
                token.expires_at = min(token.expires_at, now)
        return ended

    def counts(self) -> dict[str, int]:
        now = self._now()
        with self._lock:
            live = sum(1 for t in self._tokens.values() if t.valid(now))
            return {
                "active": live,
                "inactive": len(self._tokens) - live,
                "refresh_tokens": sum(1 for g in self._refresh.values() if not g.revoked),
            }

    def reset(self) -> None:
        with self._lock:
            self._tokens.clear()
            self._codes.clear()
            self._refresh.clear()

    # -- the wire shape ------------------------------------------------------------------------

    def token_response(self, token: Token, instance_url: str) -> dict[str, Any]:
        """The body Salesforce's token endpoint answers with, signed with the client secret."""
        config = self.sandbox.config
        identity = f"{instance_url}/id/{config['ORG_ID']}/{config['USER_ID']}"
        issued_at = str(int(token.issued_at.timestamp() * 1000))
        mac = hmac.new(
            str(config["CLIENT_SECRET"]).encode(), (identity + issued_at).encode(), hashlib.sha256
        )
        body: dict[str, Any] = {
            "access_token": token.access_token,
            "signature": base64.b64encode(mac.digest()).decode(),
            "scope": token.scope,
            "instance_url": instance_url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
        }
        if token.refresh_token:
            body["refresh_token"] = token.refresh_token
        return body


def bearer_token() -> str | None:
    """The session id of the current request: `Authorization: Bearer x` (or the older `OAuth x`)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("bearer", "oauth") and value.strip():
        return value.strip()
    return None


def invalid_session() -> Response:
    """Salesforce's 401: a JSON array, which simple-salesforce indexes with `[0]['errorCode']`."""
    resp = jsonify([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    resp.status_code = 401
    resp.headers["WWW-Authenticate"] = 'Token realm="sandbox", error="invalid_token"'
    return resp


def authenticate(registry: TokenRegistry) -> Token | Response:
    """The current request's token, or the 401 response to send instead."""
    token = registry.check(bearer_token())
    return token if token is not None else invalid_session()
