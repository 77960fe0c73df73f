"""Connections: stored OAuth connections turned into working Salesforce and CC clients.

The vendor clients want a `TokenStore` (load / compare-and-swap save) and a lock that serialises
refreshes across every worker; here both are backed by the service's database and Redis, so a
rotated refresh token is durably saved before anyone uses it and never refreshed twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import requests
from redis import Redis

from middleware import api_budget, oauth_tokens
from middleware.constantcontact import oauth as cc_oauth
from middleware.constantcontact import wiring as cc_wiring
from middleware.constantcontact.client import ConstantContactClient
from middleware.salesforce import errors as sf_errors
from middleware.salesforce import oauth as sf_oauth
from middleware.salesforce.client import SalesforceClient
from middleware.settings import Settings
from middleware.store import connections as repo
from middleware.store.db import Store

log = logging.getLogger(__name__)

SF_ACCESS_TOKEN_LIFETIME = timedelta(hours=2)  # Salesforce does not say; its default session


def _session(ca_bundle: str | None = None) -> requests.Session:
    session = requests.Session()
    # REQUESTS_CA_BUNDLE and proxy variables must not override what we configured.
    session.trust_env = False
    if ca_bundle:
        session.verify = ca_bundle
    return session


def _present(**values: Any) -> dict[str, Any]:
    """Only the values we have: `save_tokens` keeps what it is not given."""
    return {k: v for k, v in values.items() if v}


T = TypeVar("T", bound=oauth_tokens.OAuthTokens)


class SqlTokenStore(Generic[T]):
    """`oauth_tokens.TokenStore` over one row of the connections table, for either vendor.

    `read` turns the row's decrypted tokens into the vendor's (None: the row has none usable);
    `columns` gives `save_tokens` the columns to write. The row format is the same for both.
    """

    def __init__(
        self,
        store: Store,
        connection_id: int,
        read: Callable[[repo.Tokens], T | None],
        columns: Callable[[T], dict[str, Any]],
    ) -> None:
        self.store = store
        self.connection_id = connection_id
        self.read = read
        self.columns = columns

    def load(self) -> oauth_tokens.StoredTokens[T] | None:
        with self.store.transaction() as session:
            row = repo.tokens(session, self.connection_id)
        tokens = self.read(row)
        return None if tokens is None else oauth_tokens.StoredTokens(tokens, row.version)

    def save(self, tokens: T, expected_version: int | None) -> bool:
        try:
            with self.store.transaction() as session:
                repo.save_tokens(
                    session,
                    self.connection_id,
                    expected_version=expected_version or 0,
                    **self.columns(tokens),
                )
        except repo.StaleTokens:
            return False
        return True


def _salesforce_read(row: repo.Tokens) -> sf_oauth.Tokens | None:
    if not row.access_token or not row.base_url:
        return None
    return sf_oauth.Tokens(
        access_token=row.access_token,
        instance_url=row.base_url,
        refresh_token=row.refresh_token,
        scope=" ".join(str(s) for s in row.scopes) or None,
    )


def _salesforce_columns(tokens: sf_oauth.Tokens) -> dict[str, Any]:
    return {
        "access_token": tokens.access_token,
        "expires_at": datetime.now(UTC) + SF_ACCESS_TOKEN_LIFETIME,
        **_present(refresh_token=tokens.refresh_token, base_url=tokens.instance_url),
    }


def _constant_contact_read(row: repo.Tokens) -> cc_oauth.Tokens | None:
    if not row.access_token:
        return None
    return cc_oauth.Tokens(
        access_token=row.access_token,
        refresh_token=row.refresh_token,
        expires_at=row.expires_at,
        scope=" ".join(str(s) for s in row.scopes),
    )


def _constant_contact_columns(tokens: cc_oauth.Tokens) -> dict[str, Any]:
    return {
        "access_token": tokens.access_token,
        "expires_at": tokens.expires_at,
        "refresh_token": tokens.refresh_token,
        "scopes": tokens.scope.split() if tokens.scope else None,
    }


def salesforce_tokens(store: Store, connection_id: int) -> SqlTokenStore[sf_oauth.Tokens]:
    """The stored Salesforce connection's tokens."""
    return SqlTokenStore(store, connection_id, _salesforce_read, _salesforce_columns)


def constant_contact_tokens(store: Store, connection_id: int) -> SqlTokenStore[cc_oauth.Tokens]:
    """The stored Constant Contact connection's tokens."""
    return SqlTokenStore(store, connection_id, _constant_contact_read, _constant_contact_columns)


def salesforce_oauth(
    settings: Settings, session: requests.Session | None = None, login_url: str | None = None
) -> Any:
    """The OAuth client at ``login_url`` (a connection's own login host), else the configured
    ``SALESFORCE_LOGIN_URL``."""
    return sf_oauth.SalesforceOAuth(
        login_url or settings.salesforce_login_url,
        settings.salesforce_client_id,
        settings.salesforce_client_secret,
        f"{settings.public_url.rstrip('/')}/oauth/salesforce/callback",
        session or _session(settings.salesforce_ca_bundle),
    )


def constant_contact_oauth(settings: Settings, session: requests.Session | None = None) -> Any:
    return cc_wiring.oauth_client(settings, session or _session())


def salesforce_token_source(
    settings: Settings,
    store: Store,
    redis: Redis,
    connection_id: int,
    *,
    session: requests.Session | None = None,
) -> sf_oauth.RefreshingTokenSource:
    """The stored connection's tokens, refreshed after a refusal once for every process (the
    REST client's and the Pub/Sub listener's): `access_token()`, `refresh(rejected)`,
    `instance_url()`."""
    with store.transaction() as db:
        row = repo.get(db, connection_id)
        login_url = row.login_url if row is not None else None
    return sf_oauth.RefreshingTokenSource(
        salesforce_tokens(store, connection_id),
        # A sandbox org's refresh token is honoured at the host it signed in at.
        salesforce_oauth(settings, session or _session(settings.salesforce_ca_bundle), login_url),
        # redis-py's Lock keeps its token per thread, so one instance serves every refresh of
        # this client from any thread; entering it waits (60 s at most) for another worker's.
        redis.lock(
            f"ctct:refresh-lock:salesforce:{connection_id}", timeout=30, blocking_timeout=60
        ),
    )


def salesforce_client(
    settings: Settings,
    store: Store,
    redis: Redis,
    connection_id: int,
    *,
    session: requests.Session | None = None,
    get_retries: int = 2,
) -> SalesforceClient:
    """A client for a stored Salesforce connection (refreshing, with our call-options tag).

    ``get_retries``: how often a GET is retried on an outage (0 where an answer now matters
    more, as when a setup is saved)."""
    session = session or _session(settings.salesforce_ca_bundle)
    source = salesforce_token_source(settings, store, redis, connection_id, session=session)
    stored = source.store.load()
    if stored is None:
        raise sf_errors.AuthRevoked(
            f"Salesforce connection {connection_id} has no tokens; connect it first"
        )
    client = SalesforceClient(
        stored.tokens.instance_url,
        source,
        session=session,
        version=settings.salesforce_api_version,
        call_client=settings.salesforce_call_client,
        ca_bundle=settings.salesforce_ca_bundle,
        get_retries=get_retries,
    )
    client.on_org_usage = api_budget.salesforce_recorder(redis, connection_id)
    return client


def constant_contact_client(
    settings: Settings,
    store: Store,
    redis: Redis,
    connection_id: int,
    *,
    session: requests.Session | None = None,
) -> ConstantContactClient:
    """A client for a stored Constant Contact connection, on the application's shared limits."""
    return cc_wiring.build_client(
        settings,
        session or _session(),
        constant_contact_tokens(store, connection_id),
        str(connection_id),
        redis,
    )
