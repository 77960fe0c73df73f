"""OAuth2: authorize redirect, single-use codes, rotating refresh tokens, 24 h expiry, 401 shape."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlparse

from tests.sandbox.constantcontact.conftest import CC, FrozenClock

REDIRECT = "http://localhost:8765/oauth/constantcontact/callback"
BASIC = "Basic " + base64.b64encode(b"sandbox-client-id:sandbox-client-secret").decode()


def authorize(anon: CC, scope: str = "contact_data offline_access", state: str = "xyz") -> str:
    resp = anon.get(
        "/oauth2/default/v1/authorize",
        params={
            "response_type": "code",
            "client_id": "sandbox-client-id",
            "redirect_uri": REDIRECT,
            "scope": scope,
            "state": state,
        },
        allow_redirects=False,
    )
    assert resp.status_code == 302
    location = urlparse(resp.headers["Location"])
    assert location._replace(query="").geturl() == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == [state]
    return query["code"][0]


def token(anon: CC, **form: str) -> dict:  # type: ignore[type-arg]
    resp = anon.post("/oauth2/default/v1/token", data=form, headers={"Authorization": BASIC})
    return {"status": resp.status_code, **resp.json()}


def test_code_exchange_then_call_api(anon: CC) -> None:
    code = authorize(anon)
    body = token(anon, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert body["status"] == 200
    assert body["token_type"] == "Bearer" and body["expires_in"] == 86400
    assert body["refresh_token"] and body["scope"] == "contact_data offline_access"
    resp = anon.get("/v3/contacts", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert resp.status_code == 200


def test_codes_are_single_use_and_expire(anon: CC, clock: FrozenClock) -> None:
    code = authorize(anon)
    assert (
        token(anon, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)["status"]
        == 200
    )
    again = token(anon, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert again["status"] == 400 and again["error"] == "invalid_grant"
    late = authorize(anon)
    clock.advance(301)
    assert (
        token(anon, grant_type="authorization_code", code=late, redirect_uri=REDIRECT)["error"]
        == "invalid_grant"
    )


def test_no_refresh_token_without_offline_access(anon: CC) -> None:
    code = authorize(anon, scope="contact_data")
    body = token(anon, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert "refresh_token" not in body


def test_unregistered_redirect_uri_is_refused(anon: CC) -> None:
    resp = anon.get(
        "/oauth2/default/v1/authorize",
        params={
            "response_type": "code",
            "client_id": "sandbox-client-id",
            "redirect_uri": "https://evil.example.com/cb",
            "scope": "contact_data",
            "state": "s",
        },
        allow_redirects=False,
    )
    assert resp.status_code == 400


def test_wrong_client_secret(anon: CC) -> None:
    code = authorize(anon)
    bad = "Basic " + base64.b64encode(b"sandbox-client-id:nope").decode()
    resp = anon.post(
        "/oauth2/default/v1/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
        headers={"Authorization": bad},
    )
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_client"


def test_refresh_rotates_and_reuse_is_invalid_grant(anon: CC) -> None:
    code = authorize(anon)
    first = token(anon, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    second = token(anon, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert second["status"] == 200
    assert second["refresh_token"] != first["refresh_token"]
    reused = token(anon, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert reused == {
        "status": 400,
        "error": "invalid_grant",
        "error_description": "The refresh token is invalid or expired.",
    }
    third = token(anon, grant_type="refresh_token", refresh_token=second["refresh_token"])
    assert third["status"] == 200


def test_access_token_expires_after_24_hours_with_single_object_401(
    anon: CC, clock: FrozenClock
) -> None:
    code = authorize(anon)
    body = token(anon, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    auth = {"Authorization": f"Bearer {body['access_token']}"}
    clock.advance(86399)
    assert anon.get("/v3/contacts", headers=auth).status_code == 200
    clock.advance(1)
    resp = anon.get("/v3/contacts", headers=auth)
    assert resp.status_code == 401
    assert resp.json() == {"error_key": "unauthorized", "error_message": "Unauthorized"}
    fresh = token(anon, grant_type="refresh_token", refresh_token=body["refresh_token"])
    ok = anon.get("/v3/contacts", headers={"Authorization": f"Bearer {fresh['access_token']}"})
    assert ok.status_code == 200


def test_bad_token_and_control_expiry(cc: CC) -> None:
    assert cc.get("/v3/contacts").status_code == 200
    assert cc.post("/_sandbox/tokens/expire").json()["expired"] >= 1
    assert cc.get("/v3/contacts").status_code == 401
    resp = cc.get("/v3/contacts", headers={"Authorization": "Bearer garbage"})
    assert resp.json() == {"error_key": "unauthorized", "error_message": "Unauthorized"}


def test_pkce_public_client(anon: CC) -> None:
    import hashlib

    verifier = "v" * 50
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    resp = anon.get(
        "/oauth2/default/v1/authorize",
        params={
            "response_type": "code",
            "client_id": "sandbox-client-id",
            "redirect_uri": REDIRECT,
            "scope": "contact_data",
            "state": "s",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
        allow_redirects=False,
    )
    code = parse_qs(urlparse(resp.headers["Location"]).query)["code"][0]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": "sandbox-client-id",
        "code_verifier": verifier,
    }
    assert anon.post("/oauth2/default/v1/token", data=form).status_code == 200
