"""OAuth web-server flow, refresh under a shared lock, and refresh-and-retry in the client."""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from middleware.salesforce import errors
from middleware.salesforce.client import SalesforceClient
from middleware.salesforce.oauth import (
    MemoryTokenStore,
    Pkce,
    RefreshingTokenSource,
    SalesforceOAuth,
    StaticTokenSource,
    Tokens,
)
from tests.middleware.salesforce.conftest import SF_BASE, SF_VERSION, issue_token

REDIRECT = "http://127.0.0.1:5000/oauth/salesforce/callback"


@pytest.fixture
def oauth(http: requests.Session) -> SalesforceOAuth:
    return SalesforceOAuth(SF_BASE, "sandbox-client-id", "sandbox-client-secret", REDIRECT, http)


def authorize(http: requests.Session, url: str) -> dict[str, list[str]]:
    resp = http.get(url, allow_redirects=False)
    assert resp.status_code == 302, resp.text
    location = resp.headers["Location"]
    assert location.startswith(REDIRECT)
    return parse_qs(urlsplit(location).query)


def connect(http: requests.Session, oauth: SalesforceOAuth) -> Tokens:
    pkce = Pkce.new()
    params = authorize(http, oauth.authorization_url("st-1", code_challenge=pkce.challenge))
    assert params["state"] == ["st-1"]
    return oauth.exchange_code(params["code"][0], code_verifier=pkce.verifier)


def test_web_server_flow_with_pkce(http: requests.Session, oauth: SalesforceOAuth) -> None:
    url = oauth.authorization_url("st-1", code_challenge="x" * 43, prompt="consent")
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["prompt"] == ["consent"]
    tokens = connect(http, oauth)
    assert tokens.instance_url == SF_BASE
    assert tokens.refresh_token and tokens.access_token
    assert tokens.issued_at is not None and tokens.identity_url
    assert "access_token" not in repr(tokens) and tokens.access_token not in repr(tokens)
    assert Tokens.from_dict(tokens.as_dict()) == tokens


def test_code_cannot_be_used_twice(http: requests.Session, oauth: SalesforceOAuth) -> None:
    params = authorize(http, oauth.authorization_url("s"))
    oauth.exchange_code(params["code"][0])
    with pytest.raises(errors.AuthRevoked):  # invalid_grant
        oauth.exchange_code(params["code"][0])


def test_wrong_secret_is_a_configuration_error(http: requests.Session) -> None:
    bad = SalesforceOAuth(SF_BASE, "sandbox-client-id", "wrong", REDIRECT, http)
    params = authorize(http, bad.authorization_url("s"))
    with pytest.raises(errors.OAuthFailed):
        bad.exchange_code(params["code"][0])


def test_refresh_keeps_the_refresh_token_and_revoke_ends_it(
    http: requests.Session, oauth: SalesforceOAuth
) -> None:
    tokens = connect(http, oauth)
    fresh = oauth.refresh(tokens.refresh_token or "")
    assert fresh.access_token != tokens.access_token
    assert fresh.refresh_token == tokens.refresh_token
    oauth.revoke(tokens.refresh_token or "")
    with pytest.raises(errors.AuthRevoked):
        oauth.refresh(tokens.refresh_token or "")


def test_client_refreshes_once_on_expiry_and_persists_the_token(
    http: requests.Session, oauth: SalesforceOAuth, sandbox: Any
) -> None:
    store = MemoryTokenStore(connect(http, oauth))
    source = RefreshingTokenSource(store, oauth, threading.Lock())
    client = SalesforceClient(source.instance_url(), source, http, SF_VERSION)
    client.create_many("Contact", [{"LastName": "Before"}])
    http.post(f"{SF_BASE}/_sandbox/tokens/expire")
    rows = list(client.query_iter("SELECT Id FROM Contact"))
    assert len(rows) == 1
    assert store.saves == 1
    stored = store.load()
    assert stored is not None and stored.version == 2


def test_workers_sharing_a_store_refresh_once(
    http: requests.Session, oauth: SalesforceOAuth, sandbox: Any
) -> None:
    store = MemoryTokenStore(connect(http, oauth))
    lock = threading.Lock()
    workers = [
        SalesforceClient(SF_BASE, RefreshingTokenSource(store, oauth, lock), http, SF_VERSION)
        for _ in range(3)
    ]
    http.post(f"{SF_BASE}/_sandbox/tokens/expire")
    for worker in workers:
        assert list(worker.query_iter("SELECT Id FROM Contact")) == []
    assert store.saves == 1  # the second and third found the fresh token after the lock


def test_revoked_grant_surfaces_as_auth_revoked(
    http: requests.Session, oauth: SalesforceOAuth
) -> None:
    tokens = connect(http, oauth)
    source = RefreshingTokenSource(MemoryTokenStore(tokens), oauth, threading.Lock())
    client = SalesforceClient(SF_BASE, source, http, SF_VERSION)
    oauth.revoke(tokens.refresh_token or "")
    with pytest.raises(errors.AuthRevoked):
        list(client.query_iter("SELECT Id FROM Contact"))


class StuckSource:
    """Hands out a new token that is already dead: the client must not loop."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.refreshes = 0

    def access_token(self) -> str:
        return self.token

    def refresh(self, stale_token: str) -> str:
        self.refreshes += 1
        self.token = f"dead-{self.refreshes}"
        return self.token


def test_a_second_401_after_refresh_is_raised_not_retried(http: requests.Session) -> None:
    source = StuckSource("dead-0")
    client = SalesforceClient(SF_BASE, source, http, SF_VERSION)
    with pytest.raises(errors.SessionExpired):
        client.describe("Contact")
    assert source.refreshes == 1


def test_static_token_cannot_refresh(http: requests.Session) -> None:
    token = issue_token(http)["access_token"]
    client = SalesforceClient(SF_BASE, StaticTokenSource(token), http, SF_VERSION)
    http.post(f"{SF_BASE}/_sandbox/tokens/expire")
    with pytest.raises(errors.SessionExpired):
        client.limits()


def test_memory_store_is_compare_and_set() -> None:
    store = MemoryTokenStore()
    t = Tokens("a", SF_BASE, "r")
    assert store.save(t, None) is True
    assert store.save(t, None) is False
    assert store.save(t, 1) is True and store.load().version == 2  # type: ignore[union-attr]
