"""Stored connections become working clients that refresh (and persist rotated tokens) on expiry."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import fakeredis
import pytest
import requests

from middleware import connections
from middleware.settings import Settings
from middleware.store import connections as repo
from sandbox.adapter import mount
from sandbox.constantcontact.app import create_app as create_cc
from sandbox.salesforce import create_app as create_sf

SF = "https://sf.sandbox.test"
CC = "https://cc.sandbox.test"
REDIRECT = "http://localhost:5000/oauth/{vendor}/callback"


@pytest.fixture
def parts(sqlite_store):
    sf_app, cc_app = create_sf(), create_cc({"RATE_PER_SECOND": 0})
    session = requests.Session()
    session.trust_env = False
    mount(session, SF, sf_app)
    mount(session, CC, cc_app)
    settings = Settings.for_tests(
        public_url="http://localhost:5000",
        salesforce_login_url=SF,
        salesforce_client_id="sandbox-client-id",
        salesforce_client_secret="sandbox-client-secret",
        cc_api_url=f"{CC}/v3",
        cc_auth_url=f"{CC}/oauth2/default/v1",
        cc_client_id="sandbox-client-id",
        cc_client_secret="sandbox-client-secret",
        cc_rate_per_second=100.0,
    )
    return settings, sqlite_store, fakeredis.FakeRedis(), session


def _code(session: requests.Session, url: str) -> str:
    r = session.get(url, allow_redirects=False)
    assert r.status_code == 302, r.text
    return parse_qs(urlsplit(r.headers["Location"]).query)["code"][0]


def test_salesforce_connection_refreshes_and_saves_the_new_token(parts) -> None:
    settings, store, redis, session = parts
    oauth = connections.salesforce_oauth(settings, session)
    tokens = oauth.exchange_code(_code(session, oauth.authorization_url("s1")))
    with store.transaction() as s:
        conn = repo.create(
            s,
            vendor="salesforce",
            base_url=tokens.instance_url,
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
        )
        conn_id = conn.id
    client = connections.salesforce_client(settings, store, redis, conn_id, session=session)
    assert list(client.query_iter("SELECT Id FROM Contact")) == []
    session.post(f"{SF}/_sandbox/tokens/expire")
    assert list(client.query_iter("SELECT Id FROM Contact")) == []
    with store.transaction() as s:
        stored = repo.tokens(s, conn_id)
    assert stored.version == 2
    assert stored.access_token != tokens.access_token


def test_constant_contact_connection_persists_rotated_refresh_tokens(parts) -> None:
    settings, store, redis, session = parts
    oauth = connections.constant_contact_oauth(settings, session)
    redirect = REDIRECT.format(vendor="constantcontact")
    tokens = oauth.exchange_code(_code(session, oauth.authorization_url(redirect, "s")), redirect)
    with store.transaction() as s:
        conn_id = repo.create(
            s,
            vendor="constantcontact",
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            expires_at=tokens.expires_at,
        ).id
    client = connections.constant_contact_client(settings, store, redis, conn_id, session=session)
    client.get_or_create_list("Main")
    session.post(f"{CC}/_sandbox/tokens/expire")
    client.get_or_create_list("Second")  # 401, one refresh, retried
    with store.transaction() as s:
        stored = repo.tokens(s, conn_id)
    assert stored.version == 2
    assert stored.refresh_token != tokens.refresh_token  # rotated and persisted before use
    # The old refresh token is dead: only the stored one works.
    with pytest.raises(Exception, match="invalid"):
        oauth.refresh(tokens.refresh_token)
