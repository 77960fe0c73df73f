"""Dashboard tests through the Flask test client: sessions, CSRF, headers, pages, actions."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from middleware.services import runs as run_services
from middleware.store import connections as connection_repo
from middleware.store import errors as error_repo
from middleware.store import runs as run_repo
from middleware.store import setups as setup_repo
from middleware.web.dashboard import auth
from tests.middleware.web.test_admin import (
    TOKEN,
    Api,
    _fail_one_job,
    api,
    connected,
    make_connection,
    new_setup,
)
from tests.middleware.web.test_oauth import (
    app_on_sandboxes,
    consent,
    http,
    local,
    sandboxes,
)

# Fixtures reused from the admin API and OAuth tests.
__all__ = ["api", "connected", "http", "sandboxes"]

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(client: FlaskClient, path: str = "/sign-in") -> str:
    """The session's CSRF token, read from a page's form as a browser would."""
    match = _CSRF.search(client.get(path).get_data(as_text=True))
    assert match, f"no CSRF field on {path}"
    return match.group(1)


def sign_in(client: FlaskClient) -> str:
    token = csrf_of(client)
    response = client.post("/sign-in", data={"token": TOKEN, "csrf_token": token})
    assert response.status_code == 303
    return csrf_of(client, "/")


@pytest.fixture
def web(client: FlaskClient) -> FlaskClient:
    """A signed-in browser."""
    sign_in(client)
    return client


def post(client: FlaskClient, path: str, **data: Any) -> Any:
    data.setdefault("csrf_token", csrf_of(client, "/"))
    return client.post(path, data=data, follow_redirects=True)


def text(response: Any) -> str:
    return str(response.get_data(as_text=True))


# --------------------------------------------------------------------------- sessions


def test_pages_need_a_session(client: FlaskClient) -> None:
    for path in ("/", "/setups/1", "/setups/1/errors", "/setups/1/full-sync"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/sign-in?next=")


def test_sign_in_with_the_admin_token_opens_the_dashboard(client: FlaskClient) -> None:
    token = csrf_of(client)
    response = client.post(
        "/sign-in", data={"token": TOKEN, "csrf_token": token, "next": "/setups/1"}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/setups/1"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Expires=" in cookie
    assert "Secure" not in cookie  # plain http in tests
    assert client.get("/").status_code == 200


def test_the_session_is_renewed_at_sign_in(client: FlaskClient) -> None:
    before = csrf_of(client)
    client.post("/sign-in", data={"token": TOKEN, "csrf_token": before})
    assert csrf_of(client, "/") != before


def test_a_wrong_token_opens_nothing(client: FlaskClient) -> None:
    token = csrf_of(client)
    response = client.post("/sign-in", data={"token": "wrong", "csrf_token": token})
    assert response.status_code == 401
    assert "not the right one" in text(response)
    assert client.get("/").status_code == 302


def test_next_never_leaves_the_site(app: Flask) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        client = app.test_client()
        token = csrf_of(client)
        response = client.post(
            "/sign-in", data={"token": TOKEN, "csrf_token": token, "next": target}
        )
        assert response.headers["Location"] == "/"


def test_the_cookie_is_secure_over_https(client: FlaskClient) -> None:
    token = csrf_of(client)
    response = client.post(
        "/sign-in", data={"token": TOKEN, "csrf_token": token}, base_url="https://localhost"
    )
    assert "Secure" in response.headers["Set-Cookie"]


def test_sign_out_ends_the_session(web: FlaskClient) -> None:
    response = post(web, "/sign-out")
    assert "You are signed out" in text(response)
    assert web.get("/").status_code == 302


def test_sessions_expire(web: FlaskClient) -> None:
    with web.session_transaction() as session:
        session["dash_signed_in_at"] = int(time.time() - auth.SESSION_LIFETIME.total_seconds() - 1)
    assert web.get("/").status_code == 302


def test_signed_in_checks_age() -> None:
    now = 1_000_000.0
    assert auth.signed_in(now, {"dash_signed_in_at": int(now) - 60})
    assert not auth.signed_in(now, {"dash_signed_in_at": int(now) - 9 * 3600})
    assert not auth.signed_in(now, {"dash_signed_in_at": "1"})
    assert not auth.signed_in(now, {})


# --------------------------------------------------------------------------- CSRF and headers

POSTS = (
    "/sign-in",
    "/sign-out",
    "/setups/1/sync-now",
    "/setups/1/full-sync",
    "/setups/1/pause",
    "/setups/1/resume",
    "/setups/1/errors/retry",
    "/setups/1/errors/resolve",
    "/connections/start",
    "/connections/1/delete",
    "/health/requeue",
    # The setup wizard (test_dashboard_wizard.py tests its pages).
    "/setups/new",
    "/setups/new/constant-contact",
    "/setups/1/edit/<step>",
    "/setups/1/edit/fields/custom-field",
    "/setups/1/edit/changes/secret",
    "/setups/1/edit/finish",
    "/setups/1/delete",
)


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize("token", [None, "forged"])
def test_every_post_needs_the_csrf_token(web: FlaskClient, path: str, token: str | None) -> None:
    data = {"token": TOKEN} if token is None else {"token": TOKEN, "csrf_token": token}
    response = web.post(path, data=data)
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "security token is missing or no longer valid" in text(response)


def test_every_post_route_is_covered(app: Flask) -> None:
    posts = {
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("dashboard.") and "POST" in (rule.methods or ())
    }
    rules = {p.replace("/setups/1/", "/setups/<int:setup_id>/") for p in POSTS}
    assert posts == {
        p.replace("/connections/1/", "/connections/<int:connection_id>/") for p in rules
    }


def test_dashboard_answers_carry_security_headers(web: FlaskClient) -> None:
    for path in ("/", "/sign-in", "/dashboard/static/dashboard.css"):
        response = web.get(path)
        assert response.status_code in (200, 302)
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"


def test_the_stylesheet_is_served(client: FlaskClient) -> None:
    response = client.get("/dashboard/static/dashboard.css")
    assert response.status_code == 200
    assert response.mimetype == "text/css"


# --------------------------------------------------------------------------- setups


def test_setups_list_shows_each_setup_and_its_last_run(
    web: FlaskClient, api: Api, connected: dict[str, int]
) -> None:
    setup = new_setup(api, **connected)
    with api.store.transaction() as session:
        run_id = run_repo.open_run(session, setup["id"], "incremental").id
        run_repo.finish_run(session, run_id, "succeeded", counts={"cc_created": 3})
    page = text(web.get("/"))
    assert "Contacts" in page and "Newsletter" in page and "succeeded" in page


def test_setups_list_says_when_there_are_none(web: FlaskClient) -> None:
    assert "No setups yet" in text(web.get("/"))


def test_setup_page_shows_runs_in_words(
    web: FlaskClient, api: Api, connected: dict[str, int]
) -> None:
    setup = new_setup(api, **connected)
    with api.store.transaction() as session:
        run_id = run_repo.open_run(session, setup["id"], "incremental").id
        run_repo.finish_run(session, run_id, "succeeded", counts={"cc_created": 2880})
    page = text(web.get(f"/setups/{setup['id']}"))
    assert "2,880" in page
    assert "Sync Now" in page and "Nothing is running" in page
    assert 'http-equiv="refresh"' not in page


def test_setup_page_refreshes_while_a_run_is_active(
    web: FlaskClient, api: Api, connected: dict[str, int]
) -> None:
    setup = new_setup(api, **connected)
    with api.store.transaction() as session:
        run_repo.open_run(session, setup["id"], "incremental", total=10)
    page = text(web.get(f"/setups/{setup['id']}"))
    assert 'http-equiv="refresh"' in page and "reloads every" in page


def test_an_unknown_setup_is_a_404_page(web: FlaskClient) -> None:
    response = web.get("/setups/999")
    assert response.status_code == 404
    assert "Setup 999 does not exist" in text(response)


def test_sync_now_queues_a_job(web: FlaskClient, api: Api, connected: dict[str, int]) -> None:
    setup = new_setup(api, **connected)
    response = post(web, f"/setups/{setup['id']}/sync-now")
    assert response.status_code == 200
    assert "Sync Now queued" in text(response)


def test_sync_now_refusal_is_shown(web: FlaskClient, api: Api) -> None:
    setup = new_setup(api)  # not connected
    response = post(web, f"/setups/{setup['id']}/sync-now")
    assert "is not connected yet" in text(response)


def test_full_sync_and_its_reset(
    web: FlaskClient, api: Api, connected: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = new_setup(api, **connected)
    calls: list[bool] = []

    def fake(session: Any, setup_id: int, reset: bool, redis: Any, **_: Any) -> dict[str, Any]:
        calls.append(reset)
        return {"setup_id": setup_id, "job_id": "j1", "queue": "full_sync"}

    monkeypatch.setattr(run_services, "start_full_sync", fake)
    monkeypatch.setattr(run_services, "full_sync_available", lambda: True)
    confirm = text(web.get(f"/setups/{setup['id']}/full-sync"))
    assert "re-matched by email" in confirm
    assert "Full Sync queued" in text(post(web, f"/setups/{setup['id']}/full-sync"))
    assert "Full Sync with reset queued" in text(
        post(web, f"/setups/{setup['id']}/full-sync", reset="1")
    )
    assert calls == [False, True]


def test_pause_and_resume(web: FlaskClient, api: Api, connected: dict[str, int]) -> None:
    setup = new_setup(api, **connected)
    page = text(post(web, f"/setups/{setup['id']}/pause", reason="holiday"))
    assert "Paused:" in page and "holiday" in page and "Resume" in page
    with api.store.transaction() as session:
        row = setup_repo.get(session, setup["id"])
        assert row is not None and row.pause_reason == "holiday"
    page = text(post(web, f"/setups/{setup['id']}/resume"))
    assert "Resumed" in page
    assert "Sync Now queued" not in page


# --------------------------------------------------------------------------- sync errors


def _error(api: Api, setup_id: int, code: str, message: str) -> int:
    sf_id = f"003{abs(hash(message)) % 10**12:012d}AAA"
    error = {"direction": "sf_to_cc", "vendor": "constantcontact", "code": code}
    error.update(message=message, sf_id=sf_id, email="a@example.com")
    with api.store.transaction() as session:
        return error_repo.record_errors(session, setup_id, [error])[0].id


def test_errors_page_lists_and_filters(
    web: FlaskClient, api: Api, connected: dict[str, int]
) -> None:
    setup = new_setup(api, **connected)
    _error(api, setup["id"], "invalid_email", "The email address is not valid.")
    _error(api, setup["id"], "conflict", "Contact already exists.")
    page = text(web.get(f"/setups/{setup['id']}/errors"))
    assert "The email address is not valid." in page and "Contact already exists." in page
    page = text(web.get(f"/setups/{setup['id']}/errors?code=conflict"))
    assert "Contact already exists." in page and "not valid" not in page.split("<table>")[1]


def test_retry_and_resolve_errors(web: FlaskClient, api: Api, connected: dict[str, int]) -> None:
    setup = new_setup(api, **connected)
    one = _error(api, setup["id"], "invalid_email", "bad")
    _error(api, setup["id"], "invalid_email", "bad too")
    page = text(post(web, f"/setups/{setup['id']}/errors/retry", error_id=str(one)))
    assert "Retrying 1 error(s)" in page
    page = text(post(web, f"/setups/{setup['id']}/errors/resolve", code="invalid_email"))
    assert "Marked 2 error(s) resolved" in page
    assert "No unresolved sync errors" in page


def test_error_actions_on_an_unknown_setup_say_so(web: FlaskClient) -> None:
    page = text(post(web, "/setups/999/errors/retry"))
    assert "Setup 999 does not exist" in page


# --------------------------------------------------------------------------- connections


def test_connections_page_lists_status_and_account(web: FlaskClient, api: Api) -> None:
    sf = make_connection(api, "salesforce", "Prod org")
    make_connection(api, "constantcontact", "CC account")
    with api.store.transaction() as session:
        connection_repo.mark_status(session, sf, "needs_reauth", "refresh token revoked")
    page = text(web.get("/connections"))
    assert "Prod org" in page and "CC account" in page and "00D000000000001AAA" in page
    assert 'class="badge needs_reauth"' in page and "refresh token revoked" in page
    assert page.count(">Reconnect</button>") == 2
    assert "Connect Salesforce" in page and "Connect Constant Contact" in page


def test_delete_connection_and_its_refusal(
    web: FlaskClient, api: Api, connected: dict[str, int]
) -> None:
    spare = make_connection(api, "constantcontact", "Spare")
    assert f"Connection {spare} deleted" in text(post(web, f"/connections/{spare}/delete"))
    new_setup(api, **connected)
    used = connected["salesforce_connection"]
    page = text(post(web, f"/connections/{used}/delete"))
    assert f"Connection {used} is used by setup(s) 1" in page


def test_start_refuses_an_unknown_vendor(web: FlaskClient) -> None:
    page = text(post(web, "/connections/start", vendor="hubspot"))
    assert "Unknown vendor" in page


@pytest.fixture
def oauth_app(config: dict[str, Any], http: requests.Session) -> Iterator[Flask]:
    """The app with both sandboxes as the vendors (as in the OAuth tests)."""
    yield from app_on_sandboxes(config, http)


@pytest.mark.parametrize("vendor", ["salesforce", "constantcontact"])
def test_connect_and_reconnect_come_back_to_the_dashboard(
    oauth_app: Flask, http: requests.Session, vendor: str
) -> None:
    browser = oauth_app.test_client()
    sign_in(browser)

    def run_flow(**form: str) -> str:
        started = browser.post(
            "/connections/start",
            data={"vendor": vendor, "csrf_token": csrf_of(browser, "/"), **form},
        )
        assert started.status_code == 303
        opened = browser.get(local(started.headers["Location"]))
        assert opened.status_code == 302
        back = browser.get(local(consent(http, opened.headers["Location"])))
        assert back.status_code == 303
        assert back.headers["Location"].startswith("/connections?connected=")
        return text(browser.get(back.headers["Location"]))

    page = run_flow()
    assert "Connected: stored as connection 1" in page
    page = run_flow(connection_id="1")
    assert "Connected: stored as connection 1" in page
    assert 'aria-label="Delete connection 2"' not in page  # re-authorised, not a second one


# --------------------------------------------------------------------------- health


def test_health_page_says_what_readyz_checks(web: FlaskClient) -> None:
    page = text(web.get("/health"))
    for words in ("Database", "Redis", "Job queues", "Workers", "Connections", "Setups"):
        assert f"<td>{words}</td>" in page
    assert "No failed jobs" in page


def test_failed_jobs_are_shown_and_requeued(web: FlaskClient, api: Api) -> None:
    first = _fail_one_job(api.redis)
    second = _fail_one_job(api.redis)
    page = text(web.get("/health"))
    assert first in page and "JSONDecodeError" in page
    assert "Requeued 1 job(s)." in text(post(web, "/health/requeue", job_id=first))
    assert "Requeued 0 job(s); 1 no longer failed." in text(
        post(web, "/health/requeue", job_id=first)
    )
    page = text(post(web, "/health/requeue"))
    assert "Requeued 1 job(s)." in page and second not in page.split("Failed jobs")[1]
