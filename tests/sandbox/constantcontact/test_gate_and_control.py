"""Per-application rate limits, injected faults, call counting, and the `/_sandbox/` routes."""

from __future__ import annotations

import hashlib
import hmac
from base64 import b64encode
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from flask import Flask, request

from sandbox.adapter import mount
from sandbox.constantcontact.app import create_app
from tests.contract.cc_openapi import ValidatingSession
from tests.sandbox.constantcontact.conftest import BASE, CC, FrozenClock


def second_token(cc: CC) -> dict[str, str]:
    token = cc.post("/_sandbox/tokens", json={}).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def test_throttled_past_rate_per_second_shared_by_all_tokens(cc: CC, clock: FrozenClock) -> None:
    cc.sandbox.config["RATE_PER_SECOND"] = 4
    other = second_token(cc)
    codes = [cc.get("/v3/contact_lists").status_code for _ in range(2)]
    codes += [cc.get("/v3/contact_lists", headers=other).status_code for _ in range(3)]
    assert codes == [200, 200, 200, 200, 429]
    resp = cc.get("/v3/contact_lists")
    assert resp.json() == {"error_key": "throttled", "error_message": "Too Many Requests"}
    clock.advance(0.999)
    assert cc.get("/v3/contact_lists").status_code == 429
    clock.advance(0.002)
    assert cc.get("/v3/contact_lists").status_code == 200


def test_sliding_window_not_fixed_buckets(cc: CC, clock: FrozenClock) -> None:
    cc.sandbox.config["RATE_PER_SECOND"] = 4
    clock.advance(0.9)
    for _ in range(4):
        assert cc.get("/v3/contact_lists").status_code == 200
    clock.advance(0.2)  # a new calendar second, but the last second still holds 4 calls
    assert cc.get("/v3/contact_lists").status_code == 429


def test_daily_quota_resets_at_midnight_utc(cc: CC, clock: FrozenClock) -> None:
    cc.sandbox.config["DAILY_QUOTA"] = 3
    clock.set(datetime(2026, 11, 26, 23, 59, 0, tzinfo=UTC))
    for _ in range(3):
        assert cc.get("/v3/contact_lists").status_code == 200
    resp = cc.get("/v3/contact_lists")
    assert resp.status_code == 429
    assert resp.json() == {"error_key": "quota_exceeded", "error_message": "Limit Exceeded"}
    clock.set(datetime(2026, 11, 26, 23, 59, 59, tzinfo=UTC))
    assert cc.get("/v3/contact_lists").status_code == 429
    clock.set(datetime(2026, 11, 27, 0, 0, 0, tzinfo=UTC))
    assert cc.get("/v3/contact_lists").status_code == 200


def test_throttled_calls_are_not_charged_to_the_quota(cc: CC, clock: FrozenClock) -> None:
    cc.sandbox.config["RATE_PER_SECOND"] = 1
    cc.sandbox.config["DAILY_QUOTA"] = 2
    assert cc.get("/v3/contact_lists").status_code == 200
    assert cc.get("/v3/contact_lists").status_code == 429  # throttled
    clock.advance(1)
    assert cc.get("/v3/contact_lists").status_code == 200
    clock.advance(1)
    assert cc.get("/v3/contact_lists").json()["error_key"] == "quota_exceeded"
    calls = cc.get("/_sandbox/state").json()["calls"]
    assert calls["rejected"] == {"throttled": 1, "quota_exceeded": 1}
    assert calls["quota_used_today"] == {"sandbox-client-id": 2}


def test_calls_counted_per_endpoint_family(cc: CC) -> None:
    main = cc.make_list()
    cc.make_contact("a@example.com", list_memberships=[main])
    cc.get("/v3/contacts")
    cc.get("/v3/contacts", headers={"Authorization": "Bearer nope"})
    state = cc.get("/_sandbox/state").json()
    assert state["calls"]["by_family"] == {"contact_lists": 1, "contacts": 3}
    assert state["calls"]["total"] == 4
    assert state["calls"]["rejected"] == {"unauthorized": 1}
    assert state["records"]["contacts"] == 1
    assert state["records"]["lists"] == 1


@pytest.mark.parametrize(
    ("fault", "status", "body"),
    [
        (
            {"status": 503, "path": "/v3/contacts"},
            503,
            [
                {
                    "error_key": "service_unavailable",
                    "error_message": "Our internal service is temporarily unavailable.",
                }
            ],
        ),
        (
            {"kind": "throttle", "path": "/v3/contacts"},
            429,
            {"error_key": "throttled", "error_message": "Too Many Requests"},
        ),
        (
            {"kind": "throttle", "error_key": "quota_exceeded"},
            429,
            {"error_key": "quota_exceeded", "error_message": "Limit Exceeded"},
        ),
    ],
)
def test_faults_answer_with_cc_shaped_bodies(
    cc: CC, fault: dict[str, Any], status: int, body: Any
) -> None:
    assert cc.post("/_sandbox/faults", json=fault).status_code == 201
    resp = cc.get("/v3/contacts")
    assert (resp.status_code, resp.json()) == (status, body)
    assert cc.get("/v3/contacts").status_code == 200  # consumed
    assert cc.get("/_sandbox/state").json()["calls"]["by_family"]["contacts"] == 2


def test_slow_fault_uses_the_injected_sleep(clock: FrozenClock) -> None:
    slept: list[float] = []
    app = create_app({"clock": clock, "sleep": slept.append, "RATE_PER_SECOND": 0})
    session = mount(ValidatingSession(), BASE, app)
    session.post(BASE + "/_sandbox/faults", json={"kind": "slow", "delay": 2.5})
    token = session.post(BASE + "/_sandbox/tokens", json={}).json()["access_token"]
    resp = session.get(BASE + "/v3/contacts", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200 and slept == [2.5]


def test_seed_is_fast_path_and_deterministic(cc: CC) -> None:
    resp = cc.post(
        "/_sandbox/seed",
        json={"contacts": 1000, "lists": ["Main", "VIP"], "unsubscribed_ratio": 0.1, "seed": 7},
    )
    assert resp.status_code == 201
    seeded = resp.json()
    assert 60 < seeded["unsubscribed"] < 140
    records = cc.get("/_sandbox/state").json()["records"]
    assert records["contacts"] == 1000
    assert records["contacts_by_permission"]["unsubscribed"] == seeded["unsubscribed"]
    main = seeded["list_ids"]["Main"]
    count = cc.get(
        "/v3/contacts", params={"lists": main, "include_count": "true", "limit": 1}
    ).json()["contacts_count"]
    assert count == 1000 - seeded["unsubscribed"]
    other = create_app({"RATE_PER_SECOND": 0}).extensions["cc_sandbox"].store
    other.seed(1000, ["Main", "VIP"], 0.1, 7)
    first = cc.get("/v3/contacts", params={"limit": 1}).json()["contacts"][0]
    twin = other.contact_by_email(first["email_address"]["address"])
    assert twin is not None and twin["contact_id"] == first["contact_id"]


def test_snapshot_round_trip(cc: CC, tmp_path: Any) -> None:
    path = str(tmp_path / "cc.sqlite")
    main = cc.make_list()
    cc.make_contact("keep@example.com", list_memberships=[main])
    assert cc.post("/_sandbox/snapshot", json={"path": path}).status_code == 201
    restored = create_app({"SNAPSHOT": path}).extensions["cc_sandbox"].store
    row = restored.contact_by_email("keep@example.com")
    assert row is not None
    assert restored.list_ids_of([row["id"]])[row["id"]] == [main]


def test_reset_empties_the_account(cc: CC) -> None:
    cc.make_contact("a@example.com")
    assert cc.post("/_sandbox/reset").status_code == 204
    assert cc.get("/_sandbox/state").json()["records"]["contacts"] == 0


def test_partner_webhook_payload(clock: FrozenClock) -> None:
    received: list[dict[str, Any]] = []
    signatures: list[bool] = []
    receiver = Flask("receiver")

    @receiver.post("/webhooks/constantcontact")
    def hook() -> tuple[str, int]:
        received.append(request.get_json())
        digest = hmac.new(b"sandbox-client-secret", request.get_data(), hashlib.sha256).digest()
        signatures.append(request.headers["x-ctct-hmac-sha256"] == b64encode(digest).decode())
        return "", 204

    http = mount(requests.Session(), "https://middleware.test", receiver)
    app = create_app({"clock": clock, "http": http})
    session = mount(requests.Session(), BASE, app)
    resp = session.post(
        BASE + "/_sandbox/partner_webhook",
        json={
            "url": "https://middleware.test/webhooks/constantcontact",
            "event_type": "account.cancel",
        },
    )
    assert resp.json()["delivered"] is True and resp.json()["status"] == 204
    assert received == [
        {
            "url": "https://api.cc.email/v3/partner/accounts/a07e1ldsbx01/plan",
            "api_key": "sandbox-partner-api-key",
            "event_type": "account.cancel",
        }
    ]
    assert signatures == [True]  # signed with the client secret, as x-ctct-hmac-sha256
    bad = session.post(BASE + "/_sandbox/partner_webhook", json={"url": "x", "event_type": "nope"})
    assert bad.status_code == 400


def test_unknown_v3_route_is_cc_shaped_404(cc: CC) -> None:
    raw = requests.Session()  # not validating: the spec has no such path, which is the point
    mount(raw, BASE, cc.app)
    resp = raw.get(BASE + "/v3/nothing_here", headers=cc.session.headers)
    assert resp.status_code == 404
    assert resp.json()[0]["error_key"] == "contacts.api.not_found"
