"""The Salesforce webhook: authentication, validation, dedupe, nothing lost when Redis is down."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from middleware import intake, queue
from middleware.salesforce.ids import to_18
from middleware.store import setups as setup_repo
from middleware.web.webhooks import forget_setup, sign
from schemas.setup import validate_setup


def _event(record_id: str, *, key: str = "t1", origin: str = "") -> dict:
    return {
        "data": {
            "schema": "s1",
            "payload": {
                "ChangeEventHeader": {
                    "entityName": "Contact",
                    "recordIds": [record_id],
                    "changeType": "UPDATE",
                    "changeOrigin": origin,
                    "transactionKey": key,
                    "sequenceNumber": 1,
                    "commitTimestamp": 1764151200000,
                    "commitNumber": 1,
                    "commitUser": "005SB0000000001AAA",
                    "changedFields": ["Email", "LastModifiedDate"],
                },
                "Email": "a@example.org",
            },
            "event": {"replayId": sum(map(ord, key + record_id))},
        },
        "channel": "/data/ContactChangeEvent",
    }


def _valid_id(n: int) -> str:
    return to_18(f"003SB{n:010d}")


@pytest.fixture
def contact_ids() -> list[str]:
    return [_valid_id(n) for n in range(1, 4)]


@pytest.fixture
def setup(app) -> dict[str, Any]:
    store = app.extensions["middleware"]["store"]
    options, _ = validate_setup({"name": "w", "main_list": "Main"})
    with store.transaction() as session:
        row = setup_repo.create(session, name="w", options=options)
        secret = setup_repo.webhook_secret(session, row)
        setup_id = row.id
    return {"id": setup_id, "secret": secret, "store": store}


def _post(client, setup, body, **headers):
    return client.post(
        f"/webhooks/salesforce/{setup['id']}",
        data=json.dumps(body),
        content_type="application/json",
        headers={"X-Webhook-Secret": setup["secret"], **headers},
    )


def test_accepts_records_ids_and_schedules_one_flush(app, client, setup, contact_ids) -> None:
    redis = app.extensions["middleware"]["redis"]
    r1 = _post(client, setup, [_event(contact_ids[0], key="a"), _event(contact_ids[1], key="b")])
    r2 = _post(client, setup, _event(contact_ids[2], key="c"))
    assert r1.status_code == 202, r1.json
    assert r1.json["accepted"] == 2 and r1.json["flush_scheduled"] is True
    assert r2.status_code == 202 and r2.json["flush_scheduled"] is False
    assert intake.pending(redis, setup["id"]) == 3
    assert queue.pending_job_id(f"flush-{setup['id']}", connection=redis) is not None


def test_a_retried_delivery_is_a_duplicate(client, setup, contact_ids) -> None:
    _post(client, setup, _event(contact_ids[0], key="same"))
    again = _post(client, setup, _event(contact_ids[0], key="same"))
    assert again.status_code == 202
    assert (again.json["accepted"], again.json["duplicates"]) == (0, 1)


def test_our_own_echo_is_dropped(app, client, setup, contact_ids) -> None:
    redis = app.extensions["middleware"]["redis"]
    origin = "com/salesforce/api/rest/66.0;client=ctct-sync"
    r = _post(client, setup, _event(contact_ids[0], origin=origin))
    assert r.status_code == 202 and r.json["echoes_ignored"] == 1
    assert intake.pending(redis, setup["id"]) == 0


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"X-Webhook-Secret": "wrong"}, 401),
        ({"X-Webhook-Secret": ""}, 401),
    ],
)
def test_bad_secret_is_401(client, setup, contact_ids, headers, status) -> None:
    assert _post(client, setup, _event(contact_ids[0]), **headers).status_code == status


def test_bearer_form_of_the_secret_is_accepted(client, setup, contact_ids) -> None:
    r = client.post(
        f"/webhooks/salesforce/{setup['id']}",
        json=_event(contact_ids[0]),
        headers={"Authorization": f"Bearer {setup['secret']}"},
    )
    assert r.status_code == 202


def test_malformed_body_is_400_naming_the_field(client, setup) -> None:
    bad = _event("not-an-id")
    r = _post(client, setup, bad)
    assert r.status_code == 400
    assert "recordIds" in r.json["field"]
    r = client.post(
        f"/webhooks/salesforce/{setup['id']}",
        data=b"{not json",
        content_type="application/json",
        headers={"X-Webhook-Secret": setup["secret"]},
    )
    assert r.status_code == 400


def test_unknown_setup_is_404(client, setup, contact_ids) -> None:
    r = client.post("/webhooks/salesforce/999", json=_event(contact_ids[0]))
    assert r.status_code == 404


def test_too_large_is_413(app, client, setup) -> None:
    limit = app.extensions["middleware"]["settings"].webhook_max_bytes
    body = b"[" + b" " * (limit + 10) + b"]"
    r = client.post(
        f"/webhooks/salesforce/{setup['id']}",
        data=body,
        content_type="application/json",
        headers={"X-Webhook-Secret": setup["secret"]},
    )
    assert r.status_code == 413


def test_redis_down_is_503_and_nothing_claims_success(
    app, client, setup, contact_ids, monkeypatch
) -> None:
    def down(*_a, **_k):
        raise RedisConnectionError("connection refused")

    monkeypatch.setattr(intake, "add_hints", down)
    r = _post(client, setup, _event(contact_ids[0]))
    assert r.status_code == 503
    assert r.headers["Retry-After"]


def test_hmac_signature_within_five_minutes(app, client, setup, contact_ids) -> None:
    store = setup["store"]
    with store.transaction() as session:
        row = setup_repo.get(session, setup["id"])
        row.options = {**row.options, "webhook": {"auth": "hmac", "platform_event": None}}
    forget_setup(setup["id"])
    body = json.dumps(_event(contact_ids[0])).encode()
    now = int(time.time())

    def post(ts: int, secret: str = setup["secret"]):
        return client.post(
            f"/webhooks/salesforce/{setup['id']}",
            data=body,
            content_type="application/json",
            headers={
                "webhook-id": "msg_1",
                "webhook-timestamp": str(ts),
                "webhook-signature": sign(secret, "msg_1", ts, body),
            },
        )

    assert post(now).status_code == 202
    assert post(now - 400).status_code == 401  # replayed too late
    assert post(now, secret="other").status_code == 401
    assert _post(client, setup, _event(contact_ids[0])).status_code == 401  # secret header alone
