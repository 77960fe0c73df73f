"""OAuth web-server flow, refresh, revoke, and token expiry of the Salesforce sandbox."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from simple_salesforce import Salesforce
from werkzeug.serving import make_server

from sandbox.common import Clock
from sandbox.salesforce.org import SalesforceSandbox
from sandbox.tls import ensure_certificates
from tests.sandbox.salesforce.conftest import API, SF_BASE

CLIENT = {"client_id": "sandbox-client-id", "client_secret": "sandbox-client-secret"}
REDIRECT = "http://localhost:8765/oauth/callback"


def authorize(session: requests.Session, **params: str) -> requests.Response:
    query = {
        "response_type": "code",
        "client_id": CLIENT["client_id"],
        "redirect_uri": REDIRECT,
        "state": "xyz-123",
        **params,
    }
    return session.get(f"{SF_BASE}/services/oauth2/authorize", params=query, allow_redirects=False)


def code_from(resp: requests.Response) -> str:
    assert resp.status_code == 302, resp.text
    return parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]


def exchange(session: requests.Session, code: str, **extra: str) -> requests.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, **CLIENT}
    form.update(extra)
    return session.post(f"{SF_BASE}/services/oauth2/token", data=form)


def test_authorize_redirects_back_with_code_and_state(sf_session: requests.Session) -> None:
    resp = authorize(sf_session)
    location = urlsplit(resp.headers["Location"])
    assert (location.scheme, location.netloc, location.path) == (
        "http",
        "localhost:8765",
        "/oauth/callback",
    )
    params = parse_qs(location.query)
    assert params["state"] == ["xyz-123"]
    assert params["code"][0]


@pytest.mark.parametrize(
    "redirect",
    ["http://127.0.0.1:5000/cb", "http://localhost:1/x?keep=1", "http://[::1]:9000/cb"],
)
def test_any_loopback_redirect_is_accepted(sf_session: requests.Session, redirect: str) -> None:
    resp = authorize(sf_session, redirect_uri=redirect)
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith(redirect.split("?")[0])
    if "keep=1" in redirect:
        assert "keep=1" in resp.headers["Location"]


@pytest.mark.parametrize(
    "redirect",
    ["https://evil.example/cb", "http://localhost/cb", "http://example.com:8000/cb", ""],
)
def test_foreign_redirect_gets_the_mismatch_page(
    sf_session: requests.Session, redirect: str
) -> None:
    resp = authorize(sf_session, redirect_uri=redirect)
    assert resp.status_code == 400
    assert "Location" not in resp.headers
    assert "redirect_uri_mismatch" in resp.text


def test_configured_redirect_uri_is_accepted(
    sf_session: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    deployed = "https://sync.example.org/oauth/salesforce"
    assert authorize(sf_session, redirect_uri=deployed).status_code == 400
    sf_sandbox.config["REDIRECT_URIS"] = [deployed]
    assert authorize(sf_session, redirect_uri=deployed).headers["Location"].startswith(deployed)


def test_unknown_client_id_is_refused(sf_session: requests.Session) -> None:
    resp = authorize(sf_session, client_id="someone-else")
    assert resp.status_code == 400
    assert "invalid_client_id" in resp.text


def test_unsupported_response_type_goes_back_as_error(sf_session: requests.Session) -> None:
    resp = authorize(sf_session, response_type="token")
    params = parse_qs(urlsplit(resp.headers["Location"]).query)
    assert params["error"] == ["unsupported_response_type"]
    assert params["state"] == ["xyz-123"]


def test_code_exchange_returns_salesforce_token_shape(sf_session: requests.Session) -> None:
    resp = exchange(sf_session, code_from(authorize(sf_session, scope="api refresh_token")))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {
        "access_token",
        "refresh_token",
        "signature",
        "scope",
        "instance_url",
        "id",
        "token_type",
        "issued_at",
    }
    assert body["instance_url"] == SF_BASE
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "api refresh_token"
    assert body["id"] == f"{SF_BASE}/id/00DSB0000000001AAA/005SB0000000001AAA"
    assert body["issued_at"].isdigit()
    expected = hmac.new(
        CLIENT["client_secret"].encode(),
        (body["id"] + body["issued_at"]).encode(),
        hashlib.sha256,
    ).digest()
    assert base64.b64decode(body["signature"]) == expected
    api = sf_session.get(
        f"{API}/limits", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert api.status_code == 200


def test_code_is_single_use(sf_session: requests.Session) -> None:
    code = code_from(authorize(sf_session))
    assert exchange(sf_session, code).status_code == 200
    again = exchange(sf_session, code)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_code_expires_after_minutes(sf_session: requests.Session, sf_clock: Clock) -> None:
    code = code_from(authorize(sf_session))
    sf_clock.advance(16 * 60)
    resp = exchange(sf_session, code)
    assert resp.status_code == 400
    assert resp.json() == {
        "error": "invalid_grant",
        "error_description": "expired authorization code",
    }


def test_secret_by_basic_auth(sf_session: requests.Session) -> None:
    code = code_from(authorize(sf_session))
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    resp = sf_session.post(
        f"{SF_BASE}/services/oauth2/token",
        data=form,
        auth=(CLIENT["client_id"], CLIENT["client_secret"]),
    )
    assert resp.status_code == 200, resp.text


def test_wrong_secret_is_invalid_client_401(sf_session: requests.Session) -> None:
    code = code_from(authorize(sf_session))
    resp = exchange(sf_session, code, client_secret="nope")
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_client"


def test_redirect_uri_must_match_the_authorize_call(sf_session: requests.Session) -> None:
    code = code_from(authorize(sf_session))
    resp = exchange(sf_session, code, redirect_uri="http://localhost:9999/other")
    assert resp.status_code == 400
    assert resp.json()["error"] == "redirect_uri_mismatch"


def test_pkce_s256_without_secret(sf_session: requests.Session) -> None:
    verifier = "v" * 64
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    )
    code = code_from(authorize(sf_session, code_challenge=challenge, code_challenge_method="S256"))
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": CLIENT["client_id"],
    }
    bad = sf_session.post(
        f"{SF_BASE}/services/oauth2/token", data={**form, "code_verifier": "wrong"}
    )
    assert bad.status_code == 400
    code = code_from(authorize(sf_session, code_challenge=challenge, code_challenge_method="S256"))
    good = sf_session.post(
        f"{SF_BASE}/services/oauth2/token", data={**form, "code": code, "code_verifier": verifier}
    )
    assert good.status_code == 200, good.text


def test_refresh_grant_issues_a_new_access_token(
    sf_session: requests.Session, sf_clock: Clock
) -> None:
    first = exchange(sf_session, code_from(authorize(sf_session))).json()
    sf_clock.advance(7200 + 1)
    expired = sf_session.get(
        f"{API}/limits", headers={"Authorization": f"Bearer {first['access_token']}"}
    )
    assert expired.status_code == 401
    resp = sf_session.post(
        f"{SF_BASE}/services/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"], **CLIENT},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert "refresh_token" not in body  # Salesforce keeps the refresh token; it is not rotated
    assert body["access_token"] != first["access_token"]
    ok = sf_session.get(
        f"{API}/limits", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert ok.status_code == 200


def test_revoking_a_refresh_token_ends_its_sessions(sf_session: requests.Session) -> None:
    first = exchange(sf_session, code_from(authorize(sf_session))).json()
    assert (
        sf_session.post(
            f"{SF_BASE}/services/oauth2/revoke", data={"token": first["refresh_token"]}
        ).status_code
        == 200
    )
    api = sf_session.get(
        f"{API}/limits", headers={"Authorization": f"Bearer {first['access_token']}"}
    )
    assert api.status_code == 401
    again = sf_session.post(
        f"{SF_BASE}/services/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"], **CLIENT},
    )
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_unknown_grant_type(sf_session: requests.Session) -> None:
    resp = sf_session.post(
        f"{SF_BASE}/services/oauth2/token", data={"grant_type": "password", **CLIENT}
    )
    assert resp.status_code == 400
    assert resp.json()["error"] == "unsupported_grant_type"


def test_access_token_expires_on_the_sandbox_clock(
    sf_api: requests.Session, sf_clock: Clock
) -> None:
    assert sf_api.get(f"{API}/limits").status_code == 200
    sf_clock.advance(7199)
    assert sf_api.get(f"{API}/limits").status_code == 200
    sf_clock.advance(2)
    resp = sf_api.get(f"{API}/limits")
    assert resp.status_code == 401
    assert resp.json() == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]


@pytest.mark.parametrize(
    "path", ["query?q=SELECT+Id+FROM+Contact", "sobjects", "sobjects/Contact/describe", ""]
)
def test_every_api_call_needs_a_token(sf_session: requests.Session, path: str) -> None:
    resp = sf_session.get(f"{API}/{path}")
    assert resp.status_code == 401
    assert resp.json()[0]["errorCode"] == "INVALID_SESSION_ID"


def test_control_routes_issue_and_expire_tokens(
    sf_session: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    issued = sf_session.post(f"{SF_BASE}/_sandbox/tokens", json={})
    assert issued.status_code == 201
    body = issued.json()
    assert body["instance_url"] == SF_BASE
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert sf_session.get(f"{API}/limits", headers=headers).status_code == 200
    expired = sf_session.post(f"{SF_BASE}/_sandbox/tokens/expire")
    assert expired.json() == {"expired": 1}
    assert sf_session.get(f"{API}/limits", headers=headers).status_code == 401
    assert sf_sandbox.auth.counts()["active"] == 0


def test_identity_url_answers_for_the_token(sf_api: requests.Session) -> None:
    resp = sf_api.get(f"{SF_BASE}/id/00DSB0000000001AAA/005SB0000000001AAA")
    assert resp.status_code == 200
    assert resp.json()["organization_id"] == "00DSB0000000001AAA"


def test_oauth_then_simple_salesforce_over_real_tls(sf_app: Any, tmp_path: Path) -> None:
    tls = ensure_certificates(tmp_path / "tls")
    server = make_server("127.0.0.1", 0, sf_app, threaded=True, ssl_context=tls.ssl_context)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        base = f"https://127.0.0.1:{server.port}"
        http = requests.Session()
        http.trust_env = False
        http.verify = str(tls.ca_cert)
        start = http.get(
            f"{base}/services/oauth2/authorize",
            params={
                "response_type": "code",
                "client_id": CLIENT["client_id"],
                "redirect_uri": REDIRECT,
            },
            allow_redirects=False,
            timeout=10,
        )
        granted = http.post(
            f"{base}/services/oauth2/token",
            data={
                "grant_type": "authorization_code",
                "code": code_from(start),
                "redirect_uri": REDIRECT,
                **CLIENT,
            },
            timeout=10,
        ).json()
        assert granted["instance_url"] == base
        sf = Salesforce(
            instance_url=granted["instance_url"],
            session_id=granted["access_token"],
            version="66.0",
            session=http,
        )
        assert sf.query("SELECT Id FROM Contact")["totalSize"] == 0
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()
