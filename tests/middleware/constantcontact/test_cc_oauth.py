"""OAuth: consent URL, code exchange, rotating refresh tokens persisted before use, serialised."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from middleware.constantcontact import errors as e
from middleware.constantcontact.oauth import (
    MemoryTokenStore,
    OAuthClient,
    RefreshingTokenSource,
    Tokens,
    make_pkce_pair,
    thread_lock,
)

from .fakes import ScriptedSession, make_client, response

AUTH = "https://authz.test/oauth2/default/v1"
NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


class TokenEndpoint:
    """A rotating-token authorization server: each refresh token works once."""

    def __init__(self, *, pause: threading.Event | None = None):
        self.valid = {"r0"}
        self.issued = 0
        self.calls: list[dict[str, list[str]]] = []
        self.auth_headers: list[str] = []
        self.pause = pause
        self.lock = threading.Lock()

    def post(self, url, data, headers, auth, timeout):
        assert url == AUTH + "/token"
        assert timeout
        if self.pause:
            self.pause.wait(5)
        with self.lock:
            self.calls.append(data)
            self.auth_headers.append(auth)
            if data["grant_type"] == "refresh_token":
                if data["refresh_token"] not in self.valid:
                    return response(
                        400,
                        {
                            "error": "invalid_grant",
                            "error_description": "The refresh token is invalid or expired.",
                        },
                    )
                self.valid.clear()  # rotation: every earlier refresh token dies
            self.issued += 1
            n = self.issued
            self.valid.add(f"r{n}")
            return response(
                200,
                {
                    "access_token": f"a{n}",
                    "refresh_token": f"r{n}",
                    "expires_in": 86400,
                    "token_type": "Bearer",
                    "scope": "contact_data offline_access",
                },
            )


def oauth_client(endpoint, **kw) -> OAuthClient:
    return OAuthClient("cid", "secret", endpoint, auth_url=AUTH, now=lambda: NOW, **kw)  # type: ignore[arg-type]


def test_authorization_url_asks_for_offline_access_with_state_and_pkce():
    verifier, challenge = make_pkce_pair()
    url = oauth_client(TokenEndpoint()).authorization_url(
        "https://app.test/oauth/cc/callback", "st8", code_challenge=challenge
    )
    parts = urlsplit(url)
    q = parse_qs(parts.query)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == AUTH + "/authorize"
    assert q["scope"] == ["contact_data campaign_data offline_access"]
    assert q["state"] == ["st8"]
    assert q["response_type"] == ["code"]
    assert q["code_challenge_method"] == ["S256"]
    expected = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    assert q["code_challenge"] == [expected]
    assert 43 <= len(verifier) <= 128


def test_exchange_code_uses_basic_auth_and_computes_expiry():
    endpoint = TokenEndpoint()
    tokens = oauth_client(endpoint).exchange_code("code1", "https://app.test/cb", code_verifier="v")
    assert endpoint.calls[0] == {
        "grant_type": "authorization_code",
        "code": "code1",
        "redirect_uri": "https://app.test/cb",
        "code_verifier": "v",
    }
    assert endpoint.auth_headers[0] == ("cid", "secret")
    assert tokens.expires_at == NOW + timedelta(days=1)
    assert "a1" not in repr(tokens) and "r1" not in repr(tokens)  # secrets stay out of logs


def test_refresh_of_a_used_token_means_the_connection_must_be_reconnected():
    endpoint = TokenEndpoint()
    client = oauth_client(endpoint)
    client.refresh("r0")
    with pytest.raises(e.AuthRevoked) as info:
        client.refresh("r0")
    assert info.value.needs_attention
    assert info.value.error_key == "invalid_grant"
    # The advice is the admin API's OAuth flow, said after the failed call, not "POST /token".
    text = str(info.value)
    assert text.endswith(
        "connect the account again: POST /admin/api/connections/start "
        '{"vendor": "constantcontact", "connection_id": <id>}'
    ), text
    assert "reconnect (POST /token)" not in text


def test_a_revoked_connection_names_its_own_id_in_the_advice():
    store = MemoryTokenStore(Tokens("a0", "r0", NOW + timedelta(hours=1)))
    endpoint = TokenEndpoint()
    oauth_client(endpoint).refresh("r0")  # r0 is now used up
    with pytest.raises(e.AuthRevoked) as info:
        source(endpoint, store, connection_id="7").refresh("a0")
    assert str(info.value).endswith(
        'POST /admin/api/connections/start {"vendor": "constantcontact", "connection_id": 7}'
    ), str(info.value)
    assert "(POST /token)" in str(info.value)  # the failed call is still named
    empty = source(endpoint, MemoryTokenStore(None), connection_id=7)
    with pytest.raises(e.AuthRevoked, match=r'"connection_id": 7\}$'):
        empty.access_token()


def test_token_endpoint_is_metered_by_its_own_limiter():
    class Counting:
        n = 0

        def acquire(self):
            self.n += 1

    limiter = Counting()
    oauth_client(TokenEndpoint(), limiter=limiter).refresh("r0")
    assert limiter.n == 1


def test_jwt_expiry_is_used_when_expires_in_is_missing():
    exp = int((NOW + timedelta(hours=2)).timestamp())
    claims = base64.urlsafe_b64encode(json.dumps({"exp": exp}).encode()).rstrip(b"=").decode()
    jwt = f"h.{claims}.s"

    class Endpoint:
        def post(self, *a, **k):
            return response(200, {"access_token": jwt, "refresh_token": "r9"})

    tokens = oauth_client(Endpoint()).refresh("r0")
    assert tokens.expires_at == NOW + timedelta(hours=2)


def source(endpoint, store, **kw) -> RefreshingTokenSource:
    return RefreshingTokenSource(
        oauth_client(endpoint), store, thread_lock(), now=lambda: NOW, sleep=lambda s: None, **kw
    )


def test_two_threads_refreshing_at_once_spend_one_refresh_call():
    store = MemoryTokenStore(Tokens("a0", "r0", NOW + timedelta(hours=1)))
    endpoint = TokenEndpoint()
    src = source(endpoint, store)
    barrier = threading.Barrier(4)
    got: list[str] = []

    def worker():
        barrier.wait()
        got.append(src.refresh("a0"))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert got == ["a1"] * 4
    assert len([c for c in endpoint.calls if c["grant_type"] == "refresh_token"]) == 1
    assert store.load().tokens.refresh_token == "r1"


def test_two_workers_with_separate_sources_share_the_store_and_lock():
    store = MemoryTokenStore(Tokens("a0", "r0", NOW + timedelta(hours=1)))
    endpoint = TokenEndpoint()
    lock = thread_lock()
    one = RefreshingTokenSource(oauth_client(endpoint), store, lock, now=lambda: NOW)
    two = RefreshingTokenSource(oauth_client(endpoint), store, lock, now=lambda: NOW)
    assert one.refresh("a0") == "a1"
    assert two.refresh("a0") == "a1"  # saw the stored pair; did not burn r1
    assert endpoint.issued == 1
    assert two.refresh("a1") == "a2"


def test_new_pair_is_persisted_before_the_access_token_is_used():
    events: list[str] = []

    class RecordingStore(MemoryTokenStore):
        def save(self, tokens, expected_version):
            events.append(f"save {tokens.access_token}")
            return super().save(tokens, expected_version)

    store = RecordingStore(Tokens("a0", "r0", NOW + timedelta(hours=1)))
    src = source(TokenEndpoint(), store)

    def api(sent):
        events.append(f"use {sent.headers['Authorization'].split()[1]}")
        if sent.headers["Authorization"] == "Bearer a0":
            return response(401, {"error_key": "unauthorized", "error_message": "Unauthorized"})
        return response(200, {"contact_id": "c1"})

    session = ScriptedSession([api, api])
    make_client(session, token_source=src).get_contact("c1")
    assert events == ["use a0", "save a1", "use a1"]


def test_a_failed_save_means_the_new_token_is_never_used():
    class BrokenStore(MemoryTokenStore):
        def save(self, tokens, expected_version):
            raise RuntimeError("database is down")

    store = BrokenStore(Tokens("a0", "r0", NOW + timedelta(hours=1)))
    session = ScriptedSession(
        [response(401, {"error_key": "unauthorized", "error_message": "Unauthorized"})]
    )
    with pytest.raises(RuntimeError):
        make_client(session, token_source=source(TokenEndpoint(), store)).get_contact("c1")
    assert [s.headers["Authorization"] for s in session.sent] == ["Bearer a0"]


def test_an_expiring_token_is_refreshed_before_the_call():
    store = MemoryTokenStore(Tokens("a0", "r0", NOW + timedelta(minutes=2)))
    endpoint = TokenEndpoint()
    assert source(endpoint, store).access_token() == "a1"
    store2 = MemoryTokenStore(Tokens("a0", "r0", NOW + timedelta(hours=2)))
    assert source(endpoint, store2).access_token() == "a0"


def test_a_throttled_refresh_is_retried_without_losing_the_refresh_token():
    calls = []

    class Endpoint(TokenEndpoint):
        def post(self, url, data, headers, auth, timeout):
            calls.append(data)
            if len(calls) == 1:
                return response(
                    429, {"error_key": "throttled", "error_message": "Too Many Requests"}
                )
            return super().post(url, data, headers, auth, timeout)

    store = MemoryTokenStore(Tokens("a0", "r0", NOW + timedelta(hours=1)))
    assert source(Endpoint(), store).refresh("a0") == "a1"
    assert [c["refresh_token"] for c in calls] == ["r0", "r0"]


def test_no_stored_tokens_or_no_refresh_token_is_a_visible_auth_problem():
    with pytest.raises(e.AuthRevoked):
        source(TokenEndpoint(), MemoryTokenStore()).access_token()
    store = MemoryTokenStore(Tokens("a0", None, None))
    with pytest.raises(e.AuthRevoked):
        source(TokenEndpoint(), store).refresh("a0")


def test_memory_store_is_compare_and_swap():
    store = MemoryTokenStore()
    assert store.save(Tokens("a", "r"), None)
    assert not store.save(Tokens("b", "r"), None)
    assert store.save(Tokens("b", "r"), 1)
    assert store.load().version == 2


def test_tokens_round_trip_through_a_dict():
    tokens = Tokens("a", "r", NOW, "contact_data")
    assert Tokens.from_dict(json.loads(json.dumps(tokens.as_dict()))) == tokens


def test_unreachable_token_endpoint_is_a_retryable_server_error():
    class Down:
        def post(self, *a, **k):
            raise requests.ConnectionError("refused")

    with pytest.raises(e.ServerError):
        oauth_client(Down()).refresh("r0")
