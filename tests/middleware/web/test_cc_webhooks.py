"""Constant Contact partner webhooks: required HMAC, replays refused, a cancelled account pauses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from middleware.store.models import Connection, Setup
from middleware.web.cc_webhooks import SIGNATURE_HEADER, sign
from sandbox.adapter import mount
from tests.e2e.harness import CC_BASE, World

ACCOUNT = "a07e1ldsbx01"  # the CC sandbox's account id
URL = f"https://api.cc.email/v3/partner/accounts/{ACCOUNT}/plan"
SECRET = "sandbox-client-secret"  # what the CC sandbox signs its partner webhooks with


@pytest.fixture
def w(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.delenv("CC_WEBHOOK_SECRET", raising=False)
    world = World()
    with world.store.transaction() as session:
        setup = session.get(Setup, world.setup_id)
        assert setup is not None
        conn = session.get(Connection, setup.constant_contact_connection_id)
        assert conn is not None
        conn.account_id = ACCOUNT
    handles = world.app.extensions["middleware"]
    handles["settings"] = handles["settings"].replace(cc_webhook_secret=SECRET)
    try:
        yield world
    finally:
        world.close()


def post(w: World, body: Any, headers: dict[str, str] | None = None, *, signed: bool = True) -> Any:
    """Post a body, signed with the configured secret unless `signed` is False."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    signature = {SIGNATURE_HEADER: sign(SECRET, raw)} if signed else {}
    return w.web.post(
        "/webhooks/constantcontact",
        data=raw,
        headers={"Content-Type": "application/json", **signature, **(headers or {})},
    )


def event(event_type: str, url: str = URL, **extra: Any) -> dict[str, Any]:
    return {"url": url, "api_key": "k", "event_type": event_type, **extra}


def paused_reason(w: World) -> str | None:
    with w.store.transaction() as session:
        setup = session.get(Setup, w.setup_id)
        assert setup is not None
        return setup.pause_reason


@pytest.mark.parametrize(
    ("event_type", "reason"),
    [
        ("account.cancel", "Constant Contact account cancelled"),
        ("account.disable", "Constant Contact account disabled"),
        ("tier.increase", None),
        ("tier.decrease", None),
    ],
)
def test_events(w: World, event_type: str, reason: str | None) -> None:
    r = post(w, event(event_type, vendor_added_field=1))
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["paused_setups"] == ([w.setup_id] if reason else [])
    assert paused_reason(w) == reason


def test_a_cancelled_account_shows_on_readyz_and_in_the_admin_api(w: World) -> None:
    assert post(w, event("account.cancel")).status_code == 200
    ready = w.web.get("/readyz")
    assert ready.status_code == 503
    assert "Constant Contact account cancelled" in ready.get_data(as_text=True)
    admin = w.web.get(
        f"/admin/api/setups/{w.setup_id}", headers={"Authorization": "Bearer e2e-admin"}
    )
    assert admin.status_code == 200
    assert admin.get_json()["pause_reason"] == "Constant Contact account cancelled"


def test_another_account_pauses_nothing(w: World) -> None:
    other = "https://api.cc.email/v3/partner/accounts/someone-else/plan"
    r = post(w, event("account.cancel", url=other))
    assert (r.status_code, r.get_json()["paused_setups"]) == (200, [])
    assert paused_reason(w) is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": URL, "event_type": "account.deleted"}, "event_type"),
        ({"url": URL}, "event_type"),
        ({"url": "https://api.cc.email/v3/contacts", "event_type": "account.cancel"}, "url"),
        ({"event_type": "account.cancel"}, "url"),
    ],
)
def test_malformed_bodies_name_the_field(w: World, body: Any, field: str) -> None:
    r = post(w, body)
    assert r.status_code == 400
    assert r.get_json()["field"] == field
    assert paused_reason(w) is None


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]"])
def test_not_an_object(w: World, body: bytes) -> None:
    assert post(w, body).status_code == 400


def test_the_signature_is_required(w: World) -> None:
    raw = json.dumps(event("account.cancel")).encode()
    assert post(w, raw, signed=False).status_code == 401
    assert post(w, raw, {SIGNATURE_HEADER: sign("wrong", raw)}).status_code == 401
    assert paused_reason(w) is None
    assert post(w, raw).status_code == 200
    assert paused_reason(w) == "Constant Contact account cancelled"


def _set_secret(w: World, secret: str) -> None:
    handles = w.app.extensions["middleware"]
    handles["settings"] = handles["settings"].replace(cc_webhook_secret=secret)


def test_everything_is_refused_while_no_secret_is_configured(w: World) -> None:
    """An unverifiable body could pause any setup: without CC_WEBHOOK_SECRET nothing is taken."""
    _set_secret(w, "")
    raw = json.dumps(event("account.cancel")).encode()
    for headers in ({}, {SIGNATURE_HEADER: sign("", raw)}, {SIGNATURE_HEADER: sign(SECRET, raw)}):
        r = post(w, raw, headers, signed=False)
        assert r.status_code == 403, r.get_json()
        assert "CC_WEBHOOK_SECRET" in r.get_json()["detail"]
    assert post(w, b"not json", signed=False).status_code == 403
    assert paused_reason(w) is None
    verbose = w.web.get("/readyz?verbose").get_data(as_text=True)
    assert "[+]cc_webhook warn: CC_WEBHOOK_SECRET is not set" in verbose
    assert w.web.get("/readyz").get_json()["checks"]["cc_webhook"]["status"] == "warn"
    _set_secret(w, SECRET)
    assert "[+]cc_webhook ok" in w.web.get("/readyz?verbose").get_data(as_text=True)


def _resume(w: World) -> None:
    with w.store.transaction() as session:
        setup = session.get(Setup, w.setup_id)
        assert setup is not None
        setup.pause_reason = None
        setup.paused_until = None


def test_a_replayed_delivery_is_refused_and_does_nothing(w: World) -> None:
    """A captured cancel replayed after the operator resumed must not pause the setup again."""
    raw = json.dumps(event("account.cancel")).encode()
    first = post(w, raw)
    assert first.get_json()["paused_setups"] == [w.setup_id]
    assert first.get_json()["replay"] is False
    _resume(w)
    again = post(w, raw)
    assert again.status_code == 409
    assert again.get_json()["replay"] is True and again.get_json()["paused_setups"] == []
    assert paused_reason(w) is None
    # A different delivery is not a replay.
    other = post(w, event("account.disable"))
    assert other.get_json()["paused_setups"] == [w.setup_id]


def test_replays_are_remembered_for_a_day(w: World) -> None:
    from middleware.web.cc_webhooks import REPLAY_WINDOW_SECONDS, replay_key

    raw = json.dumps(event("tier.increase")).encode()
    assert post(w, raw).get_json()["replay"] is False
    ttl = w.redis.ttl(replay_key(sign(SECRET, raw)))
    assert REPLAY_WINDOW_SECONDS - 5 <= ttl <= REPLAY_WINDOW_SECONDS == 24 * 3600
    assert post(w, raw).get_json()["replay"] is True


def test_a_delivery_that_failed_is_acted_on_when_retried(w: World, monkeypatch) -> None:
    """A 503 (store down) gives the replay mark back, so Constant Contact's retry pauses."""
    from middleware.web import cc_webhooks

    raw = json.dumps(event("account.cancel")).encode()
    real = cc_webhooks.pause_account
    monkeypatch.setattr(cc_webhooks, "pause_account", _raise_once(real))
    failed = post(w, raw)
    assert failed.status_code == 503 and failed.headers["Retry-After"]
    assert paused_reason(w) is None
    retried = post(w, raw)
    assert retried.status_code == 200 and retried.get_json()["replay"] is False
    assert paused_reason(w) == "Constant Contact account cancelled"


def _raise_once(real: Any) -> Any:
    from sqlalchemy.exc import OperationalError

    calls = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("select", {}, Exception("database is down"))
        return real(*args, **kwargs)

    return wrapper


def test_redis_down_is_503_so_constant_contact_retries(w: World, monkeypatch) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    def down(*_a: Any, **_k: Any) -> Any:
        raise RedisConnectionError("connection refused")

    monkeypatch.setattr(w.redis, "set", down)
    r = post(w, event("account.cancel"))
    assert r.status_code == 503 and r.headers["Retry-After"]
    assert paused_reason(w) is None


@pytest.mark.parametrize("depth", [50, 100_000])
def test_nested_json_is_400(w: World, depth: int) -> None:
    r = post(w, b"[" * depth + b"]" * depth)
    assert r.status_code == 400


@pytest.mark.parametrize("body", [b"NaN", b'{"url": Infinity}', b"\xff\xfe{}", b"\x00"])
def test_not_json_is_400(w: World, body: bytes) -> None:
    assert post(w, body).status_code == 400


def test_the_sandbox_delivers_its_partner_webhook_here(w: World) -> None:
    """The CC sandbox posts the payload it would send, with its own account id in the URL."""
    to_service = requests.Session()
    to_service.trust_env = False
    mount(to_service, "https://middleware.test", w.app)
    w.cc_app.extensions["cc_sandbox"].http = to_service
    r = w.cc_session.post(
        f"{CC_BASE}/_sandbox/partner_webhook",
        json={
            "url": "https://middleware.test/webhooks/constantcontact",
            "event_type": "account.disable",
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["delivered"] is True
    assert paused_reason(w) == "Constant Contact account disabled"
