"""Fuzz both webhook endpoints: whatever arrives, the answer is never a 5xx.

Bodies: random bytes, random JSON, valid change events with fields swapped for arbitrary values
(huge and negative numbers, NaN, strings, nesting), deeply nested arrays and objects, oversized
bodies; under right, wrong, missing and replayed credentials, for known and unknown setups (ids up
to far past the database's integer range), with any content type. Besides "no 5xx", every answer
is JSON, every refusal a problem document with a detail, and an unauthenticated request answers
exactly alike for a known and an unknown setup.

Examples are bounded (`max_examples`) so the file runs in seconds inside `make test`; the
database of found examples is off so nothing is written to the work tree.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from middleware.salesforce.ids import to_18
from middleware.store import setups as setup_repo
from middleware.web import cc_webhooks
from middleware.web import webhooks as sf_webhooks
from schemas.setup import validate_setup

LIMIT = 20_000  # WEBHOOK_MAX_BYTES for these apps: "huge" bodies stay cheap to build
CC_SECRET = "fuzz-cc-secret"
CONTACT = to_18("003SB0000000001")
ACCOUNT_URL = "https://api.cc.email/v3/partner/accounts/acct-1/plan"

FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=utf-16",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/octet-stream",
        "",
    ]
)

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**53, max_value=10**60)
    | st.integers(min_value=-(10**60), max_value=-1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(["", "003*", CONTACT, CONTACT[:15], "0" * 18, "GAP_OVERFLOW", "/data/x"])
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


def _event(**header: Any) -> dict[str, Any]:
    base = {
        "entityName": "Contact",
        "recordIds": [CONTACT],
        "changeType": "UPDATE",
        "changeOrigin": "",
        "transactionKey": "tx-1",
        "sequenceNumber": 1,
        "commitTimestamp": 1764151200000,
        "changedFields": ["Email"],
    }
    return {
        "data": {
            "schema": "s1",
            "payload": {"ChangeEventHeader": {**base, **header}, "Email": "a@example.org"},
            "event": {"replayId": 7},
        },
        "channel": "/data/ContactChangeEvent",
    }


HEADER_FIELDS = st.sampled_from(
    [
        "entityName",
        "recordIds",
        "changeType",
        "changeOrigin",
        "transactionKey",
        "sequenceNumber",
        "commitTimestamp",
        "changedFields",
    ]
)


@st.composite
def mutated_events(draw: st.DrawFn) -> bytes:
    """A valid CDC envelope with one header field, the replay id or the channel made arbitrary."""
    event = _event()
    where = draw(st.sampled_from(["header", "header", "replay", "channel", "payload", "data"]))
    value = draw(JSON_VALUES)
    if where == "header":
        event["data"]["payload"]["ChangeEventHeader"][draw(HEADER_FIELDS)] = value
    elif where == "replay":
        event["data"]["event"]["replayId"] = value
    elif where == "channel":
        event["channel"] = value
    elif where == "payload":
        event["data"]["payload"] = value
    else:
        event["data"] = value
    wrap = draw(st.sampled_from(["one", "list", "events"]))
    body: Any = event if wrap == "one" else [event] if wrap == "list" else {"events": [event]}
    return json.dumps(body).encode()  # NaN/Infinity come out as bare NaN/Infinity: not JSON


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    depth = draw(st.sampled_from([30, 900, 1_100, 5_000, 9_000]))
    if draw(st.booleans()):
        return b"[" * depth + b"]" * depth
    return b'{"events":' * depth + b"[]" + b"}" * depth


def huge(draw_size: int) -> bytes:
    return b"[" + b" " * draw_size + b"]"


BODIES = st.one_of(
    st.binary(max_size=600),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    mutated_events(),
    mutated_events(),
    nested(),
    st.sampled_from([LIMIT - 2, LIMIT + 1, 3 * LIMIT]).map(huge),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


@pytest.fixture
def fuzz_app(fake_redis: Any) -> Iterator[Flask]:
    from app import create_app

    app = create_app(
        {
            "SECRET_KEY": "fuzz",
            "ADMIN_TOKEN": "fuzz-admin",
            "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "DATABASE_URL": "sqlite://",
            "EMBEDDED_WORKER": False,
            "TESTING": True,
            "REDIS": fake_redis,
            "WEBHOOK_MAX_BYTES": LIMIT,
            "CC_WEBHOOK_SECRET": CC_SECRET,
        }
    )
    yield app
    app.extensions["middleware"]["store"].dispose()


@pytest.fixture
def setups(fuzz_app: Flask) -> dict[str, tuple[int, str]]:
    """A shared-secret setup and an HMAC setup: name → (id, secret)."""
    store = fuzz_app.extensions["middleware"]["store"]
    out = {}
    for name, auth in (("shared", "shared_secret"), ("hmac", "hmac")):
        options, _ = validate_setup({"name": name, "main_list": "Main", "webhook": {"auth": auth}})
        with store.transaction() as session:
            row = setup_repo.create(session, name=name, options=options)
            out[name] = (row.id, setup_repo.webhook_secret(session, row) or "")
    return out


def _assert_sane(response: Any, where: str) -> None:
    assert response.status_code < 500, (where, response.status_code, response.get_data()[:300])
    body = response.get_json(silent=True)
    assert isinstance(body, dict), (where, response.get_data()[:200])
    if response.status_code >= 400:
        assert response.mimetype == "application/problem+json"
        assert body.get("detail") or body.get("title"), body


@st.composite
def sf_credentials(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    """Which setup to address ("shared", "hmac" or an unknown id) and the auth headers to send."""
    target = draw(
        st.sampled_from(["shared", "hmac"])
        | st.integers(min_value=0, max_value=2**31 + 5).map(str)
        | st.integers(min_value=2**31, max_value=10**40).map(str)
    )
    kind = draw(
        st.sampled_from(["right", "bearer", "wrong", "none", "hmac", "hmac-stale", "hmac-junk"])
    )
    return target, {"kind": kind}


def _sf_headers(kind: str, secret: str, body: bytes) -> dict[str, str]:
    now = int(time.time())
    if kind == "right":
        return {"X-Webhook-Secret": secret}
    if kind == "bearer":
        return {"Authorization": f"Bearer {secret}"}
    if kind == "wrong":
        return {"X-Webhook-Secret": secret[:-1] + "x" if secret else "x"}
    if kind in ("hmac", "hmac-stale"):
        stamp = now if kind == "hmac" else now - 3600
        return {
            "webhook-id": "msg-1",
            "webhook-timestamp": str(stamp),
            "webhook-signature": sf_webhooks.sign(secret or "x", "msg-1", stamp, body),
        }
    if kind == "hmac-junk":
        return {"webhook-id": "", "webhook-timestamp": "9" * 40, "webhook-signature": "v1,==="}
    return {}


@FUZZ
@given(body=BODIES, creds=sf_credentials(), content_type=CONTENT_TYPES)
def test_salesforce_webhook_never_answers_5xx(
    fuzz_app: Flask, setups: dict[str, tuple[int, str]], body: bytes, creds: Any, content_type: str
) -> None:
    target, auth = creds
    setup_id, secret = setups[target] if target in setups else (int(target), "no-such-secret")
    headers = _sf_headers(auth["kind"], secret, body)
    client = fuzz_app.test_client()
    r = client.post(
        f"/webhooks/salesforce/{setup_id}", data=body, content_type=content_type, headers=headers
    )
    _assert_sane(r, f"salesforce {target} {auth['kind']}")
    # A replay (the same delivery again) is never a 5xx either, and never a different verdict.
    again = client.post(
        f"/webhooks/salesforce/{setup_id}", data=body, content_type=content_type, headers=headers
    )
    _assert_sane(again, "salesforce replay")
    assert again.status_code == r.status_code


@FUZZ
@given(
    body=BODIES,
    unknown=st.integers(min_value=1, max_value=10**40),
    kind=st.sampled_from(["wrong", "none", "hmac", "hmac-stale", "hmac-junk"]),
)
def test_an_unauthenticated_request_cannot_tell_known_from_unknown_setups(
    fuzz_app: Flask, setups: dict[str, tuple[int, str]], body: bytes, unknown: int, kind: str
) -> None:
    client = fuzz_app.test_client()
    known_id, secret = setups["shared"]
    if unknown in (known_id, setups["hmac"][0]):
        unknown += 1000
    headers = _sf_headers(kind, "not-the-secret-" + secret[:4], body)
    answers = []
    for setup_id in (known_id, unknown):
        r = client.post(
            f"/webhooks/salesforce/{setup_id}",
            data=body,
            content_type="application/json",
            headers=headers,
        )
        _assert_sane(r, "enumeration")
        shape = r.get_json()
        shape.pop("request_id", None)
        shape["detail"] = shape.get("detail", "").replace(str(setup_id), "<id>")
        answers.append((r.status_code, shape))
    assert answers[0] == answers[1]


@st.composite
def cc_bodies(draw: st.DrawFn) -> bytes:
    choice = draw(st.sampled_from(["valid", "mutated", "other"]))
    if choice == "other":
        return draw(BODIES)
    event: dict[str, Any] = {
        "url": ACCOUNT_URL,
        "api_key": "k",
        "event_type": draw(
            st.sampled_from(["account.cancel", "account.disable", "tier.increase", "x"])
        ),
    }
    if choice == "mutated":
        event[draw(st.sampled_from(["url", "api_key", "event_type", "extra"]))] = draw(JSON_VALUES)
    return json.dumps(event).encode()


@FUZZ
@given(
    body=cc_bodies(),
    signature=st.sampled_from(["right", "wrong", "none", "other-secret"]),
    content_type=CONTENT_TYPES,
    configured=st.booleans() | st.just(True),
)
def test_constant_contact_webhook_never_answers_5xx(
    fuzz_app: Flask, body: bytes, signature: str, content_type: str, configured: bool
) -> None:
    handles = fuzz_app.extensions["middleware"]
    handles["settings"] = handles["settings"].replace(
        cc_webhook_secret=CC_SECRET if configured else ""
    )
    headers = {
        "right": {cc_webhooks.SIGNATURE_HEADER: cc_webhooks.sign(CC_SECRET, body)},
        "wrong": {cc_webhooks.SIGNATURE_HEADER: "AAAA" + cc_webhooks.sign(CC_SECRET, body)[4:]},
        "other-secret": {cc_webhooks.SIGNATURE_HEADER: cc_webhooks.sign("x", body)},
        "none": {},
    }[signature]
    client = fuzz_app.test_client()
    first = client.post(
        "/webhooks/constantcontact", data=body, content_type=content_type, headers=headers
    )
    _assert_sane(first, f"cc {signature} configured={configured}")
    if not configured:
        assert first.status_code in (403, 413)
    replay = client.post(
        "/webhooks/constantcontact", data=body, content_type=content_type, headers=headers
    )
    _assert_sane(replay, "cc replay")
    if first.status_code == 200:
        assert replay.status_code == 409 and replay.get_json()["replay"] is True
        assert replay.get_json()["paused_setups"] == []
