"""Salesforce OAuth 2.0 web-server flow, token refresh shared by several workers, and revocation.

`SalesforceOAuth` talks to the configured login host (`SALESFORCE_LOGIN_URL`: production,
test.salesforce.com, a My Domain, or the local sandbox): the authorization URL (state, optional
PKCE), the code exchange, refresh and revoke, all on `/services/oauth2/*`.

Tokens are the caller's to keep. The service persists them through a `TokenStore`:

    load() -> StoredTokens | None
        The connection's current tokens and their version (any integer that changes on every
        save, e.g. a row version column). None when the connection has no tokens.
    save(tokens, expected_version) -> bool
        Compare-and-set: store `tokens` only if the stored version is still `expected_version`,
        and return whether it did. (None as expected_version: there must be no tokens yet.)

`RefreshingTokenSource` hands the client its access token and refreshes it when a call answers
401. Several RQ workers share one connection, so refreshes are serialised by a lock the caller
supplies (a `redis.lock.Lock`, or a `threading.Lock` in one process): inside the lock we reload
first, and if another worker already replaced the token we use theirs instead of refreshing again.
Salesforce does not rotate refresh tokens by default; when it does, the new one is kept.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlencode

import requests

from middleware.salesforce.errors import (
    AuthRevoked,
    OAuthFailed,
    Retryable,
    SessionExpired,
    error_from_response,
)

log = logging.getLogger(__name__)

DEFAULT_SCOPE = "api refresh_token"
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Tokens:
    """What the token endpoint gave us. `repr` never shows the secrets."""

    access_token: str = field(repr=False)
    instance_url: str
    refresh_token: str | None = field(default=None, repr=False)
    issued_at: datetime | None = None
    identity_url: str | None = None
    scope: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form for the store (which encrypts it at rest)."""
        return {
            "access_token": self.access_token,
            "instance_url": self.instance_url,
            "refresh_token": self.refresh_token,
            "issued_at": self.issued_at.isoformat() if self.issued_at else None,
            "identity_url": self.identity_url,
            "scope": self.scope,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tokens:
        issued = data.get("issued_at")
        return cls(
            access_token=data["access_token"],
            instance_url=data["instance_url"],
            refresh_token=data.get("refresh_token"),
            issued_at=datetime.fromisoformat(issued) if issued else None,
            identity_url=data.get("identity_url"),
            scope=data.get("scope"),
        )


@dataclass(frozen=True)
class StoredTokens:
    tokens: Tokens
    version: int


class TokenStore(Protocol):
    """Where one connection's tokens live (see the module docstring for the contract)."""

    def load(self) -> StoredTokens | None: ...

    def save(self, tokens: Tokens, expected_version: int | None) -> bool: ...


class MemoryTokenStore:
    """A `TokenStore` in memory: for tests, the demo and one-off CLI runs."""

    def __init__(self, tokens: Tokens | None = None) -> None:
        self._lock = threading.Lock()
        self._stored = StoredTokens(tokens, 1) if tokens is not None else None
        self.saves = 0

    def load(self) -> StoredTokens | None:
        with self._lock:
            return self._stored

    def save(self, tokens: Tokens, expected_version: int | None) -> bool:
        with self._lock:
            current = self._stored.version if self._stored else None
            if current != expected_version:
                return False
            self._stored = StoredTokens(tokens, (current or 0) + 1)
            self.saves += 1
            return True


@dataclass(frozen=True)
class Pkce:
    """A PKCE pair: keep `verifier` with the state, send `challenge` in the authorization URL."""

    verifier: str = field(repr=False)
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(64)
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        return cls(verifier, challenge)


class SalesforceOAuth:
    """The web-server flow against one login host for one connected app."""

    def __init__(
        self,
        login_url: str,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        session: requests.Session,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.login_url = login_url.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.session = session
        self.timeout = timeout

    def authorization_url(
        self,
        state: str,
        *,
        scope: str = DEFAULT_SCOPE,
        code_challenge: str | None = None,
        prompt: str | None = None,
    ) -> str:
        """`GET /services/oauth2/authorize`: where to send the admin to grant access."""
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "state": state,
            "scope": scope,
        }
        if code_challenge:
            params["code_challenge"] = code_challenge
            params["code_challenge_method"] = "S256"
        if prompt:
            params["prompt"] = prompt
        return f"{self.login_url}/services/oauth2/authorize?{urlencode(params)}"

    def exchange_code(self, code: str, *, code_verifier: str | None = None) -> Tokens:
        """`POST /services/oauth2/token` (authorization_code): the callback's code for tokens."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
        }
        if code_verifier:
            form["code_verifier"] = code_verifier
        return self._token(form, previous_refresh=None)

    def refresh(self, refresh_token: str) -> Tokens:
        """`POST /services/oauth2/token` (refresh_token). `AuthRevoked` means: connect again."""
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return self._token(form, previous_refresh=refresh_token)

    def revoke(self, token: str) -> None:
        """`POST /services/oauth2/revoke`: end the grant (a refresh token ends all its tokens)."""
        resp = self._post("/services/oauth2/revoke", {"token": token})
        if resp.status_code != 200:
            raise error_from_response(resp.status_code, resp.content, resp.url)
        log.info("salesforce grant revoked")

    # -- internals -------------------------------------------------------------------------------

    def _post(self, path: str, form: dict[str, str]) -> requests.Response:
        url = self.login_url + path
        try:
            return self.session.post(
                url,
                data=form,
                headers={"Accept": "application/json"},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise Retryable(f"cannot reach {self.login_url}: {type(exc).__name__}") from exc

    def _token(self, form: dict[str, str], previous_refresh: str | None) -> Tokens:
        form = {**form, "client_id": self.client_id, "client_secret": self._client_secret}
        resp = self._post("/services/oauth2/token", form)
        if resp.status_code != 200:
            err = error_from_response(resp.status_code, resp.content, resp.url)
            log.warning("salesforce token endpoint refused %s: %s", form["grant_type"], err.code)
            raise err
        try:
            body = resp.json()
            access_token = body["access_token"]
            instance_url = body["instance_url"].rstrip("/")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise OAuthFailed(
                "the token endpoint answered 200 without access_token and instance_url"
            ) from None
        self._check_signature(body)
        issued = body.get("issued_at")
        return Tokens(
            access_token=access_token,
            instance_url=instance_url,
            # Salesforce omits refresh_token on refresh unless rotation is on: keep the old one.
            refresh_token=body.get("refresh_token") or previous_refresh,
            issued_at=datetime.fromtimestamp(int(issued) / 1000, UTC) if issued else None,
            identity_url=body.get("id"),
            scope=body.get("scope"),
        )

    def _check_signature(self, body: Mapping[str, Any]) -> None:
        # The signature proves the identity URL and issue time came from Salesforce with our
        # client secret; a mismatch means a proxy or a wrong login host answered.
        signature, identity, issued = body.get("signature"), body.get("id"), body.get("issued_at")
        if not (signature and identity and issued and self._client_secret):
            return
        expected = hmac.new(
            self._client_secret.encode(), f"{identity}{issued}".encode(), hashlib.sha256
        ).digest()
        if not hmac.compare_digest(base64.b64encode(expected).decode(), str(signature)):
            raise OAuthFailed("the token response signature does not match our client secret")


class TokenSource(Protocol):
    """What `SalesforceClient` needs: the current access token, and a fresh one on demand."""

    def access_token(self) -> str: ...

    def refresh(self, stale_token: str) -> str: ...


class StaticTokenSource:
    """A fixed token that cannot be refreshed (tests, one-off scripts): 401 stays an error."""

    def __init__(self, token: str) -> None:
        self._token = token

    def access_token(self) -> str:
        return self._token

    def refresh(self, stale_token: str) -> str:
        raise SessionExpired("the session expired and this token source cannot refresh it")


class RefreshingTokenSource:
    """Tokens from a `TokenStore`, refreshed through `SalesforceOAuth` under a shared lock."""

    def __init__(
        self,
        store: TokenStore,
        oauth: SalesforceOAuth,
        lock: AbstractContextManager[Any],
    ) -> None:
        self.store = store
        self.oauth = oauth
        self.lock = lock

    def current(self) -> StoredTokens:
        stored = self.store.load()
        if stored is None:
            raise AuthRevoked("this Salesforce connection has no tokens; connect it first")
        return stored

    def access_token(self) -> str:
        return self.current().tokens.access_token

    def instance_url(self) -> str:
        return self.current().tokens.instance_url

    def refresh(self, stale_token: str) -> str:
        with self.lock:
            stored = self.current()
            if stored.tokens.access_token != stale_token:
                # Another worker refreshed while we waited for the lock.
                return stored.tokens.access_token
            if not stored.tokens.refresh_token:
                raise AuthRevoked("no refresh token stored; connect Salesforce again")
            fresh = self.oauth.refresh(stored.tokens.refresh_token)
            # Keep what the refresh response does not repeat (identity, scope).
            fresh = replace(
                fresh,
                identity_url=fresh.identity_url or stored.tokens.identity_url,
                scope=fresh.scope or stored.tokens.scope,
            )
            if self.store.save(fresh, stored.version):
                log.info("salesforce access token refreshed")
                return fresh.access_token
            # Lost a race with a writer that did not take our lock: theirs is as good as ours.
            return self.current().tokens.access_token
