"""Constant Contact OAuth2: consent URL, code exchange, and refresh with rotating refresh tokens.

Constant Contact's default refresh tokens *rotate*: each refresh returns a new pair and kills every
earlier refresh token at once (api-notes §1, §11). :class:`RefreshingTokenSource` is the shared
one of :mod:`middleware.oauth_tokens` (persist before use, one refresh at a time under a lock)
with Constant Contact's rules: rotating pairs, a throttled refresh retried, and the reconnect
advice naming the connection.

The token endpoint allows 1 request/s per application, so the OAuth client takes its own limiter.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import requests

from middleware import oauth_tokens
from middleware.constantcontact.errors import (
    AuthRevoked,
    CCError,
    ServerError,
    Throttled,
    Validation,
    error_for,
    reconnect_advice,
)
from middleware.constantcontact.limiter import RateLimiter
from middleware.oauth_tokens import MemoryTokenStore as MemoryTokenStore
from middleware.oauth_tokens import RefreshLock
from middleware.oauth_tokens import StoredTokens as StoredTokens
from middleware.oauth_tokens import TokenSource as TokenSource
from middleware.oauth_tokens import TokenStore as TokenStore
from middleware.oauth_tokens import thread_lock as thread_lock

log = logging.getLogger(__name__)

DEFAULT_AUTH_URL = "https://authz.constantcontact.com/oauth2/default/v1"
DEFAULT_SCOPES: tuple[str, ...] = ("contact_data", "campaign_data", "offline_access")


@dataclass(frozen=True)
class Tokens:
    """One token pair as Constant Contact issued it."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: datetime | None = None  # None: unknown; we then learn it from a 401
    scope: str = ""
    token_type: str = "Bearer"

    def expired(self, now: datetime, margin: timedelta = timedelta(minutes=5)) -> bool:
        return self.expires_at is not None and now + margin >= self.expires_at

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form for stores (encrypt it at rest: it holds secrets)."""
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "scope": self.scope,
            "token_type": self.token_type,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tokens:
        expires = data.get("expires_at")
        return cls(
            access_token=data["access_token"],
            refresh_token=data.get("refresh_token"),
            expires_at=datetime.fromisoformat(expires) if expires else None,
            scope=data.get("scope") or "",
            token_type=data.get("token_type") or "Bearer",
        )


class RedisRefreshLock(oauth_tokens.RedisRefreshLock):
    """The shared cross-process refresh lock; one held too long is a retryable ``ServerError``."""

    unavailable = ServerError


def make_pkce_pair() -> tuple[str, str]:
    """``(code_verifier, code_challenge)`` for PKCE with S256."""
    verifier = secrets.token_urlsafe(64)[:96]
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return verifier, challenge


class OAuthClient:
    """Talks to Constant Contact's authorization server (``…/oauth2/default/v1``)."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        session: requests.Session,
        *,
        auth_url: str = DEFAULT_AUTH_URL,
        limiter: RateLimiter | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        timeout: float = 30.0,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.session = session
        self.auth_url = auth_url.rstrip("/")
        self.limiter = limiter
        self.now = now
        self.timeout = timeout
        self.calls = 0

    def authorization_url(
        self,
        redirect_uri: str,
        state: str,
        *,
        scopes: Sequence[str] = DEFAULT_SCOPES,
        code_challenge: str | None = None,
    ) -> str:
        """The consent page URL (``GET /authorize``); ``state`` must be checked on the callback."""
        params = {
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": " ".join(scopes),
            "state": state,
        }
        if code_challenge:
            params["code_challenge"] = code_challenge
            params["code_challenge_method"] = "S256"
        return f"{self.auth_url}/authorize?{urlencode(params)}"

    def exchange_code(
        self, code: str, redirect_uri: str, *, code_verifier: str | None = None
    ) -> Tokens:
        """``POST /token`` with ``grant_type=authorization_code`` (the code lives 5 minutes)."""
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if code_verifier:
            data["code_verifier"] = code_verifier
        return self._token_call(data)

    def refresh(self, refresh_token: str) -> Tokens:
        """``POST /token`` with ``grant_type=refresh_token``; the answer may carry a new pair."""
        tokens = self._token_call({"grant_type": "refresh_token", "refresh_token": refresh_token})
        if tokens.refresh_token is None:
            # Long-lived refresh tokens may come back omitted: the old one stays valid.
            tokens = replace(tokens, refresh_token=refresh_token)
        return tokens

    def _token_call(self, data: dict[str, str]) -> Tokens:
        if self.limiter is not None:
            self.limiter.acquire()
        headers = {"Accept": "application/json"}
        auth: tuple[str, str] | None = None
        if self.client_secret:
            auth = (self.client_id, self.client_secret)  # HTTP Basic, as Constant Contact asks
        else:
            data = {**data, "client_id": self.client_id}  # PKCE public client
        self.calls += 1
        try:
            response = self.session.post(
                f"{self.auth_url}/token",
                data=data,
                headers=headers,
                auth=auth,
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise ServerError(f"token endpoint unreachable: {type(exc).__name__}") from exc
        if response.status_code == 200:
            return self._parse_tokens(response)
        raise self._token_error(response, data["grant_type"])

    def _parse_tokens(self, response: requests.Response) -> Tokens:
        try:
            payload = response.json()
            access = payload["access_token"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ServerError("token endpoint answered 200 without an access token") from exc
        expires_at = None
        if payload.get("expires_in"):
            expires_at = self.now() + timedelta(seconds=int(payload["expires_in"]))
        else:
            expires_at = _jwt_expiry(access)
        return Tokens(
            access_token=access,
            refresh_token=payload.get("refresh_token"),
            expires_at=expires_at,
            scope=payload.get("scope") or "",
            token_type=payload.get("token_type") or "Bearer",
        )

    def _token_error(self, response: requests.Response, grant_type: str) -> CCError:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        error = body.get("error", "") if isinstance(body, dict) else ""
        description = body.get("error_description", "") if isinstance(body, dict) else ""
        where: dict[str, Any] = {"method": "POST", "path": "/token", "status": response.status_code}
        if error == "invalid_grant":
            what = "refresh token" if grant_type == "refresh_token" else "authorization code"
            message = f"Constant Contact refused the {what} ({description or error})"
            return AuthRevoked(message, error_key=error, advice=reconnect_advice(), **where)
        if error in {"invalid_client", "unauthorized_client"}:
            message = f"Constant Contact refused the client credentials ({error})"
            advice = "check CC_CLIENT_ID and CC_CLIENT_SECRET"
            return AuthRevoked(message, error_key=error, advice=advice, **where)
        if response.status_code == 429:
            return Throttled("token endpoint: too many requests", error_key=error, **where)
        if error:
            return Validation(f"token endpoint: {description or error}", error_key=error, **where)
        return error_for(response.status_code, body, now=self.now(), method="POST", path="/token")


def _jwt_expiry(token: str) -> datetime | None:
    """The ``exp`` claim of a JWT access token, read without verifying (only to plan a refresh)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
        return datetime.fromtimestamp(int(claims["exp"]), UTC)
    except (ValueError, KeyError, TypeError):
        return None


class StaticTokenSource(oauth_tokens.StaticTokenSource):
    """A fixed access token (sandbox demos, tests); a 401 cannot be repaired."""

    def __init__(self, token: str) -> None:
        super().__init__(token, AuthRevoked)


class RefreshingTokenSource(oauth_tokens.RefreshingTokenSource[Tokens]):
    """One connection's tokens, refreshed before expiry or after a 401: once, for all workers."""

    def __init__(
        self,
        oauth: OAuthClient,
        store: TokenStore[Tokens],
        lock: RefreshLock,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        margin: timedelta = timedelta(minutes=5),
        sleep: Callable[[float], None] = time.sleep,
        connection_id: str | int | None = None,
    ) -> None:
        self.oauth = oauth
        self.sleep = sleep
        #: The stored connection's id, named in the advice of an `AuthRevoked`.
        self.connection_id = connection_id
        advice = reconnect_advice(connection_id)
        rules = oauth_tokens.TokenRules[Tokens](
            vendor="Constant Contact",
            revoked=lambda message: AuthRevoked(message, advice=advice),
            unavailable=ServerError,
            rotates=True,
        )
        super().__init__(store, self._refresh_call, lock, rules, now=now, margin=margin)

    def _refresh_call(self, refresh_token: str) -> Tokens:
        # The token endpoint's 1/s limit: a throttled refresh is safe to repeat, since a 429 did
        # not consume the refresh token.
        for attempt in range(3):
            try:
                return self.oauth.refresh(refresh_token)
            except Throttled:
                if attempt == 2:
                    raise
                self.sleep(1.0 + attempt)
            except AuthRevoked as exc:
                if exc.error_key == "invalid_grant":
                    exc.advice = reconnect_advice(self.connection_id)
                raise
        raise AssertionError("unreachable")
