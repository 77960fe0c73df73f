"""Constant Contact partner webhooks: validation, optional HMAC, a cancelled account pauses."""

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
    try:
        yield world
    finally:
        world.close()


def post(w: World, body: Any, headers: dict[str, str] | None = None) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return w.web.post(
        "/webhooks/constantcontact",
        data=raw,
        headers={"Content-Type": "application/json", **(headers or {})},
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


def test_hmac_is_checked_when_a_secret_is_configured(w: World) -> None:
    handles = w.app.extensions["middleware"]
    handles["settings"] = handles["settings"].replace(cc_webhook_secret="s3cret")
    raw = json.dumps(event("account.cancel")).encode()
    assert post(w, raw).status_code == 401
    assert post(w, raw, {SIGNATURE_HEADER: sign("wrong", raw)}).status_code == 401
    assert paused_reason(w) is None
    assert post(w, raw, {SIGNATURE_HEADER: sign("s3cret", raw)}).status_code == 200
    assert paused_reason(w) == "Constant Contact account cancelled"


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
