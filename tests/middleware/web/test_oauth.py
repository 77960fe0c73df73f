"""Tests for OAuth connect against both sandboxes mounted in-process, and connection checks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import time_machine
from flask import Flask
from flask import request as flask_request
from flask.testing import FlaskClient

from app import create_app
from middleware.services import connect as flows
from middleware.store import connections as connection_repo
from middleware.store.models import Connection
from sandbox.adapter import mount

SF_BASE = "https://sf.sandbox.test"
CC_BASE = "http://cc.sandbox.test"
AUTH = {"Authorization": "Bearer test-admin-token"}
JSON = {"Accept": "application/json"}


@pytest.fixture
def sandboxes() -> Iterator[dict[str, Flask]]:
    from sandbox.constantcontact.app import create_app as create_cc
    from sandbox.salesforce import create_app as create_sf

    sf = create_sf({"sleep": lambda _s: None})
    cc = create_cc({"sleep": lambda _s: None, "RATE_PER_SECOND": 0, "DAILY_QUOTA": 0})
    yield {"salesforce": sf, "constantcontact": cc}
    events = sf.extensions["sf_sandbox"].events
    if hasattr(events, "close"):
        events.close(timeout=1)


@pytest.fixture
def http(sandboxes: dict[str, Flask]) -> requests.Session:
    """One session reaching both sandboxes in-process (what the browser and our clients use)."""
    session = requests.Session()
    session.trust_env = False
    mount(session, SF_BASE, sandboxes["salesforce"])
    mount(session, CC_BASE, sandboxes["constantcontact"])
    return session


def app_on_sandboxes(
    config: dict[str, Any], http: requests.Session, **overrides: Any
) -> Iterator[Flask]:
    """The service with both in-process sandboxes as its vendors (their OAuth apps' ids), its
    vendor calls going through ``http``; ``overrides`` change settings (e.g. login hosts)."""
    config.update(
        {
            "SALESFORCE_LOGIN_URL": SF_BASE,
            "SALESFORCE_CLIENT_ID": "sandbox-client-id",
            "SALESFORCE_CLIENT_SECRET": "sandbox-client-secret",
            "CC_AUTH_URL": f"{CC_BASE}/oauth2/default/v1",
            "CC_API_URL": f"{CC_BASE}/v3",
            "CC_CLIENT_ID": "sandbox-client-id",
            "CC_CLIENT_SECRET": "sandbox-client-secret",
            "VENDOR_SESSION": lambda _vendor: http,
            **overrides,
        }
    )
    application = create_app(config)
    yield application
    application.extensions["middleware"]["store"].dispose()


@pytest.fixture
def app(config: dict[str, Any], http: requests.Session) -> Iterator[Flask]:
    yield from app_on_sandboxes(config, http)


def local(url: str) -> str:
    """The path and query of one of our own URLs, for the test client."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def start(client: FlaskClient, vendor: str, **body: Any) -> dict[str, Any]:
    response = client.post(
        "/admin/api/connections/start", json={"vendor": vendor, **body}, headers=AUTH
    )
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def consent(http: requests.Session, authorize_url: str) -> str:
    """What the browser does at the vendor: the sandbox approves and redirects to our callback."""
    answer = http.get(authorize_url, allow_redirects=False)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def connect(client: FlaskClient, http: requests.Session, vendor: str, **body: Any) -> Any:
    flow = start(client, vendor, **body)
    opened = client.get(local(flow["start_url"]))
    assert opened.status_code == 302
    back = consent(http, opened.headers["Location"])
    return client.get(local(back), headers=JSON)


@pytest.mark.parametrize("vendor", ["salesforce", "constantcontact"])
def test_connect_stores_an_encrypted_connection_that_works(
    app: Flask, client: FlaskClient, http: requests.Session, vendor: str
) -> None:
    flow = start(client, vendor, label="Main account")
    assert flow["redirect_uri"] == f"http://localhost:5000/oauth/{vendor}/callback"
    query = parse_qs(urlsplit(flow["authorize_url"]).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == [flow["redirect_uri"]]
    assert "token" not in flow["start_url"].split("?")[0]

    opened = client.get(local(flow["start_url"]))
    assert opened.status_code == 302
    assert opened.headers["Location"] == flow["authorize_url"]
    back = consent(http, flow["authorize_url"])
    assert back.startswith(flow["redirect_uri"] + "?")

    done = client.get(local(back), headers=JSON)
    assert done.status_code == 201, done.get_data(as_text=True)
    conn = done.json["connection"]
    assert conn["vendor"] == vendor
    assert conn["label"] == "Main account"
    assert conn["status"] == "active"
    store = app.extensions["middleware"]["store"]
    with store.transaction() as session:
        tokens = connection_repo.tokens(session, conn["id"])
        row = session.get(Connection, conn["id"])
        assert tokens.access_token and tokens.refresh_token
        assert tokens.access_token not in (row.access_token_encrypted or "")
    assert tokens.access_token not in done.get_data(as_text=True)
    if vendor == "salesforce":
        assert conn["base_url"] == SF_BASE  # the sandbox's https instance_url
        assert conn["account_id"].startswith("00D")
    else:
        assert conn["base_url"] == f"{CC_BASE}/v3"
        assert "offline_access" in conn["scopes"]

    checked = client.post(f"/admin/api/connections/{conn['id']}/check", headers=AUTH)
    assert checked.status_code == 200
    assert checked.json["ok"] is True, checked.json
    assert checked.json["connection"]["status"] == "active"

    # The state is single use: replaying the callback is refused, nothing more is stored.
    replay = client.get(local(back), headers=JSON)
    assert replay.status_code == 400
    assert replay.mimetype == "application/problem+json"
    listed = client.get("/admin/api/connections", headers=AUTH).json["items"]
    assert [c["id"] for c in listed] == [conn["id"]]


def test_the_callback_answers_a_small_html_page_to_browsers(
    client: FlaskClient, http: requests.Session
) -> None:
    flow = start(client, "constantcontact")
    back = consent(http, flow["authorize_url"])
    page = client.get(local(back), headers={"Accept": "text/html"})
    assert page.status_code == 201
    assert page.mimetype == "text/html"
    assert "Constant Contact connected" in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"


def test_start_links_work_once(client: FlaskClient) -> None:
    flow = start(client, "salesforce")
    assert client.get(local(flow["start_url"])).status_code == 302
    again = client.get(local(flow["start_url"]))
    assert again.status_code == 410
    assert "already used" in again.get_data(as_text=True)


def test_start_links_expire_after_ten_minutes(client: FlaskClient) -> None:
    flow = start(client, "salesforce")
    later = datetime.now(UTC) + timedelta(seconds=flows.FLOW_TTL_SECONDS + 60)
    with time_machine.travel(later, tick=False):
        expired = client.get(local(flow["start_url"]))
    assert expired.status_code == 410
    assert "expired" in expired.get_data(as_text=True)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda path: path[:-3] + ("xyz" if not path.endswith("xyz") else "abc"),  # tampered
        lambda path: path.replace("/salesforce/", "/constantcontact/"),  # other vendor's route
        lambda path: path.split("?")[0],  # no token at all
    ],
)
def test_forged_start_links_are_refused(client: FlaskClient, mangle: Any) -> None:
    flow = start(client, "salesforce")
    response = client.get(mangle(local(flow["start_url"])))
    assert response.status_code == 400
    # The real link still works: a forgery does not burn it.
    assert client.get(local(flow["start_url"])).status_code == 302


def test_unknown_vendor_is_404(client: FlaskClient) -> None:
    assert client.get("/oauth/hubspot/start?flow=x").status_code == 404
    refused = client.post("/admin/api/connections/start", json={"vendor": "hubspot"}, headers=AUTH)
    assert refused.status_code == 422
    assert "vendor" in refused.json["errors"]


def test_starting_needs_the_admin_token(client: FlaskClient) -> None:
    response = client.post("/admin/api/connections/start", json={"vendor": "salesforce"})
    assert response.status_code == 401


def test_callbacks_with_an_unknown_state_are_refused(client: FlaskClient) -> None:
    response = client.get("/oauth/salesforce/callback?code=abc&state=made-up", headers=JSON)
    assert response.status_code == 400
    assert "start again" in response.json["detail"]


def test_a_state_from_the_other_vendor_is_refused(
    client: FlaskClient, http: requests.Session
) -> None:
    flow = start(client, "constantcontact")
    back = consent(http, flow["authorize_url"])
    query = urlsplit(back).query
    response = client.get(f"/oauth/salesforce/callback?{query}", headers=JSON)
    assert response.status_code == 400
    assert "constantcontact" in response.json["detail"]


def test_a_refused_consent_is_shown_and_ends_the_flow(
    client: FlaskClient, http: requests.Session
) -> None:
    flow = start(client, "salesforce")
    state = parse_qs(urlsplit(flow["authorize_url"]).query)["state"][0]
    denied = client.get(
        f"/oauth/salesforce/callback?error=access_denied&error_description=end-user+denied"
        f"&state={state}"
    )
    assert denied.status_code == 400
    assert "end-user denied" in denied.get_data(as_text=True)
    back = consent(http, flow["authorize_url"])
    assert client.get(local(back), headers=JSON).status_code == 400


def test_a_code_the_vendor_refuses_is_502(client: FlaskClient, http: requests.Session) -> None:
    flow = start(client, "constantcontact")
    back = consent(http, flow["authorize_url"])
    parts = parse_qs(urlsplit(back).query)
    response = client.get(
        f"/oauth/constantcontact/callback?code=wrong&state={parts['state'][0]}", headers=JSON
    )
    assert response.status_code == 502
    assert "Constant Contact refused" in response.json["detail"]


@pytest.mark.parametrize("vendor", ["salesforce", "constantcontact"])
def test_reauthorising_updates_the_same_connection(
    app: Flask, client: FlaskClient, http: requests.Session, vendor: str
) -> None:
    first = connect(client, http, vendor).json["connection"]
    store = app.extensions["middleware"]["store"]
    with store.transaction() as session:
        before = connection_repo.tokens(session, first["id"])
        connection_repo.mark_status(session, first["id"], "needs_reauth", "refresh token revoked")
    again = connect(client, http, vendor, connection_id=first["id"])
    assert again.status_code == 201
    assert again.json["connection"]["id"] == first["id"]
    assert again.json["connection"]["status"] == "active"
    assert again.json["connection"]["last_error"] is None
    with store.transaction() as session:
        after = connection_repo.tokens(session, first["id"])
    assert after.access_token != before.access_token
    assert after.version > before.version
    assert len(client.get("/admin/api/connections", headers=AUTH).json["items"]) == 1


def test_connecting_the_same_org_again_reauthorises_its_connection(
    app: Flask, client: FlaskClient, http: requests.Session
) -> None:
    first = connect(client, http, "salesforce", label="Main org")
    assert first.json["reused"] is False
    conn = first.json["connection"]
    assert conn["account_id"].startswith("00D")
    store = app.extensions["middleware"]["store"]
    with store.transaction() as session:
        before = connection_repo.tokens(session, conn["id"])
        connection_repo.mark_status(session, conn["id"], "needs_reauth", "refresh token revoked")

    again = connect(client, http, "salesforce", label="Another label")
    assert again.status_code == 201
    assert again.json["reused"] is True
    assert again.json["connection"]["id"] == conn["id"]
    assert again.json["connection"]["label"] == "Main org"
    assert again.json["connection"]["status"] == "active"
    with store.transaction() as session:
        after = connection_repo.tokens(session, conn["id"])
    assert after.access_token != before.access_token
    assert after.version > before.version
    assert len(client.get("/admin/api/connections", headers=AUTH).json["items"]) == 1

    flow = start(client, "salesforce")
    back = consent(http, client.get(local(flow["start_url"])).headers["Location"])
    page = client.get(local(back), headers={"Accept": "text/html"})
    assert page.status_code == 201
    assert f"already connected: connection {conn['id']} now uses the new sign-in" in page.get_data(
        as_text=True
    )


def test_a_constant_contact_account_is_matched_when_its_id_is_known(
    app: Flask, client: FlaskClient, http: requests.Session
) -> None:
    # The sandbox names its account (GET /account/summary), as the real API does: the same
    # account connected twice is one connection.
    first = connect(client, http, "constantcontact").json
    assert first["reused"] is False
    assert first["connection"]["account_id"] == "a07e1ldsbx01"
    again = connect(client, http, "constantcontact").json
    assert again["reused"] is True
    assert again["connection"]["id"] == first["connection"]["id"]

    # Where the summary cannot be read, the account stays unknown and a connect adds one.
    summary = Flask("account-summary")
    seen: list[str] = []

    @summary.get("/v3/account/summary")
    def account_summary() -> Any:
        seen.append(str(flask_request.headers.get("Authorization")))
        return {"error_key": "unavailable"}, 503

    mount(http, f"{CC_BASE}/v3/account", summary)
    unknown = [connect(client, http, "constantcontact").json for _ in range(2)]
    assert [a["reused"] for a in unknown] == [False, False]
    assert unknown[0]["connection"]["account_id"] is None
    assert unknown[0]["connection"]["id"] != unknown[1]["connection"]["id"]
    assert len(seen) == 2 and all(s.startswith("Bearer ") for s in seen)
    assert len(client.get("/admin/api/connections", headers=AUTH).json["items"]) == 3


def test_reauthorising_needs_a_connection_of_that_vendor(
    client: FlaskClient, http: requests.Session
) -> None:
    cc = connect(client, http, "constantcontact").json["connection"]
    response = client.post(
        "/admin/api/connections/start",
        json={"vendor": "salesforce", "connection_id": cc["id"]},
        headers=AUTH,
    )
    assert response.status_code == 422
    assert "connection_id" in response.json["errors"]
    missing = client.post(
        "/admin/api/connections/start",
        json={"vendor": "salesforce", "connection_id": 42},
        headers=AUTH,
    )
    assert missing.status_code == 404


@pytest.mark.parametrize("vendor", ["salesforce", "constantcontact"])
def test_a_check_with_revoked_tokens_marks_the_connection(
    app: Flask, client: FlaskClient, http: requests.Session, vendor: str
) -> None:
    conn = connect(client, http, vendor).json["connection"]
    store = app.extensions["middleware"]["store"]
    with store.transaction() as session:
        current = connection_repo.tokens(session, conn["id"])
        connection_repo.save_tokens(
            session,
            conn["id"],
            expected_version=current.version,
            access_token="revoked-access",
            refresh_token="revoked-refresh",
            expires_at=current.expires_at,
        )
    checked = client.post(f"/admin/api/connections/{conn['id']}/check", headers=AUTH)
    assert checked.status_code == 200
    assert checked.json["ok"] is False
    assert checked.json["connection"]["status"] == "needs_reauth"
    assert checked.json["connection"]["last_error"]
    assert "revoked-" not in checked.get_data(as_text=True)


def test_org_id_is_read_from_the_identity_url() -> None:
    url = "https://x.my.salesforce.com/id/00D5g000004ABCDEAZ/0055g00000XYZabAAA"
    assert flows.org_id_of(url) == "00D5g000004ABCDEAZ"
    assert flows.org_id_of(None) is None
    assert flows.org_id_of("https://x/id/") is None
