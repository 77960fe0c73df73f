"""Salesforce OAuth 2.0 web-server flow, token refresh shared by several workers, and revocation.

`SalesforceOAuth` talks to the configured login host (`SALESFORCE_LOGIN_URL`: production,
test.salesforce.com, a My Domain, or the local sandbox): the authorization URL (state, optional
PKCE), the code exchange, refresh and revoke, all on `/services/oauth2/*`.

Tokens are the caller's to keep: the service persists them through a `TokenStore`
(`middleware.oauth_tokens`: load, and a compare-and-set save on a version).

`RefreshingTokenSource` is the shared one of `middleware.oauth_tokens` (persist before use, one
refresh at a time under a lock the caller supplies) with Salesforce's rules: it refreshes when a
call answers 401 (Salesforce does not say when a session ends), refresh tokens do not rotate by
default (when they do, the new one is kept), and what a refresh answer omits (identity, scope)
is kept from the stored tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import requests

from middleware import oauth_tokens
from middleware.oauth_tokens import MemoryTokenStore as MemoryTokenStore
from middleware.oauth_tokens import StoredTokens as StoredTokens
from middleware.oauth_tokens import TokenSource as TokenSource
from middleware.oauth_tokens import TokenStore as TokenStore
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

    def expired(self, now: datetime, margin: timedelta = timedelta(0)) -> bool:
        """Never known in advance: Salesforce does not say when a session ends (a 401 does)."""
        return False

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


class StaticTokenSource(oauth_tokens.StaticTokenSource):
    """A fixed token that cannot be refreshed (tests, one-off scripts): 401 stays an error."""

    def __init__(self, token: str) -> None:
        super().__init__(token, SessionExpired)


def _keep_identity(fresh: Tokens, stored: Tokens) -> Tokens:
    """Keep what the refresh response does not repeat (identity, scope)."""
    return replace(
        fresh,
        identity_url=fresh.identity_url or stored.identity_url,
        scope=fresh.scope or stored.scope,
    )


class RefreshingTokenSource(oauth_tokens.RefreshingTokenSource[Tokens]):
    """Tokens from a `TokenStore`, refreshed through `SalesforceOAuth` under a shared lock."""

    def __init__(
        self,
        store: TokenStore[Tokens],
        oauth: SalesforceOAuth,
        lock: AbstractContextManager[Any],
    ) -> None:
        self.oauth = oauth
        rules = oauth_tokens.TokenRules[Tokens](
            vendor="Salesforce",
            revoked=lambda message: AuthRevoked(f"{message}; connect Salesforce again"),
            unavailable=Retryable,
            keep=_keep_identity,
        )
        super().__init__(store, oauth.refresh, lambda: lock, rules)

    def instance_url(self) -> str:
        return self.current().tokens.instance_url
