"""Dashboard connections: the Salesforce login host choice, end to end, and disconnecting."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from middleware import connections as factories
from middleware.services import connect
from middleware.services.exceptions import Invalid
from middleware.store import connections as connection_repo
from tests.middleware.web.test_admin import Api, api, connected, make_connection, new_setup
from tests.middleware.web.test_dashboard import csrf_of, post, sign_in, text, web
from tests.middleware.web.test_oauth import (
    SF_BASE,
    app_on_sandboxes,
    consent,
    http,
    local,
    sandboxes,
)

__all__ = ["api", "connected", "http", "sandboxes", "web"]

PRODUCTION = "https://login.example.test"


@pytest.fixture
def oauth_app(config: dict[str, Any], http: requests.Session) -> Iterator[Flask]:
    """Both sandboxes as the vendors; the Salesforce sandbox is the 'sandbox' login host only."""
    yield from app_on_sandboxes(
        config, http, SALESFORCE_LOGIN_URL=PRODUCTION, SALESFORCE_SANDBOX_LOGIN_URL=SF_BASE
    )


def _start(browser: FlaskClient, **form: str) -> str:
    """Press a Connect button; return the vendor consent URL the start link leads to."""
    started = browser.post("/connections/start", data={"csrf_token": csrf_of(browser, "/"), **form})
    assert started.status_code == 303, text(started)
    opened = browser.get(local(started.headers["Location"]))
    assert opened.status_code == 302
    return str(opened.headers["Location"])


def test_the_page_offers_production_and_sandbox(oauth_app: Flask) -> None:
    browser = oauth_app.test_client()
    sign_in(browser)
    page = text(browser.get("/connections"))
    assert "<legend>Salesforce org to sign in to</legend>" in page
    assert '<label for="login-host-production" class="choice">' in page
    assert f"Production or Developer Edition ({PRODUCTION})" in page
    assert f"Sandbox ({SF_BASE})" in page
    assert 'id="login-host-production" name="login_host" value="production" checked' in page


def test_the_choice_reaches_the_authorize_url(oauth_app: Flask) -> None:
    browser = oauth_app.test_client()
    sign_in(browser)
    url = _start(browser, vendor="salesforce", login_host="production")
    assert url.startswith(f"{PRODUCTION}/services/oauth2/authorize?")
    assert _start(browser, vendor="salesforce").startswith(f"{PRODUCTION}/services/oauth2/")
    url = _start(browser, vendor="salesforce", login_host="sandbox")
    assert url.startswith(f"{SF_BASE}/services/oauth2/authorize?")


def test_a_sandbox_connection_keeps_its_login_host(
    oauth_app: Flask, http: requests.Session
) -> None:
    browser = oauth_app.test_client()
    sign_in(browser)
    back = browser.get(
        local(consent(http, _start(browser, vendor="salesforce", login_host="sandbox")))
    )
    assert back.status_code == 303
    page = text(browser.get(back.headers["Location"]))
    assert "Connected: stored as connection 1" in page
    assert f"Sandbox sign-in ({SF_BASE})" in page
    store = oauth_app.extensions["middleware"]["store"]
    with store.transaction() as session:
        row = connection_repo.get(session, 1)
        assert row is not None and row.login_url == SF_BASE
    # Refreshes go to the host it signed in at, and so does a Reconnect.
    settings = oauth_app.extensions["middleware"]["settings"]
    redis = oauth_app.extensions["middleware"]["redis"]
    source = factories.salesforce_token_source(settings, store, redis, 1, session=http)
    assert source.oauth.login_url == SF_BASE
    url = _start(browser, vendor="salesforce", connection_id="1")
    assert url.startswith(f"{SF_BASE}/services/oauth2/authorize?")


def test_the_login_host_is_refused_where_it_means_nothing(web: FlaskClient, app: Flask) -> None:
    page = text(post(web, "/connections/start", vendor="constantcontact", login_host="sandbox"))
    assert "Only a Salesforce connection chooses its login host." in page
    page = text(post(web, "/connections/start", vendor="salesforce", login_host="staging"))
    assert "Choose the login host production or sandbox, not &#39;staging&#39;." in page
    settings = app.extensions["middleware"]["settings"]
    with pytest.raises(Invalid):
        connect.login_url_of(settings, "staging")
    assert connect.login_url_of(settings, None) == settings.salesforce_login_url


def test_the_admin_api_takes_the_login_host(oauth_app: Flask) -> None:
    client = oauth_app.test_client()
    auth = {"Authorization": "Bearer test-admin-token"}
    answer = client.post(
        "/admin/api/connections/start",
        json={"vendor": "salesforce", "login_host": "sandbox"},
        headers=auth,
    )
    assert answer.status_code == 201, answer.json
    assert answer.json["authorize_url"].startswith(f"{SF_BASE}/services/oauth2/authorize?")
    answer = client.post(
        "/admin/api/connections/start",
        json={"vendor": "salesforce", "login_host": "staging"},
        headers=auth,
    )
    assert answer.status_code in (400, 422)


# --------------------------------------------------------------------------- disconnect


def test_disconnect_asks_first(web: FlaskClient, api: Api) -> None:
    spare = make_connection(api, "salesforce", "Spare org")
    page = text(web.get("/connections"))
    assert f'href="/connections/{spare}/delete"' in page and "Disconnect…" in page
    confirm = text(web.get(f"/connections/{spare}/delete"))
    assert "Disconnect Salesforce connection" in confirm and "Spare org" in confirm
    assert "org 00D000000000001AAA" in confirm and 'id="confirm-disconnect"' in confirm
    with api.store.transaction() as session:
        assert connection_repo.get(session, spare) is not None  # asking deleted nothing
    page = text(post(web, f"/connections/{spare}/delete"))
    assert f"Connection {spare} deleted." in page


def test_disconnect_says_why_it_cannot(
    web: FlaskClient, api: Api, connected: dict[str, int]
) -> None:
    setup = new_setup(api, **connected)
    used = connected["constant_contact_connection"]
    confirm = text(web.get(f"/connections/{used}/delete"))
    assert f"Connection {used} is used by setup(s) {setup['id']}" in confirm
    assert 'role="alert"' in confirm and 'id="confirm-disconnect"' not in confirm
    assert web.get("/connections/999/delete").status_code == 404
