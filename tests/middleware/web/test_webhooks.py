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
    "headers",
    [
        {"X-Webhook-Secret": "wrong"},
        {"X-Webhook-Secret": ""},
        {"X-Webhook-Secret": "", "Authorization": "Bearer wrong"},
    ],
)
def test_bad_secret_is_refused_like_an_unknown_setup(client, setup, contact_ids, headers) -> None:
    r = _post(client, setup, _event(contact_ids[0]), **headers)
    assert r.status_code == 401
    assert r.json["title"] == "Unauthorized"


def test_a_setup_without_the_webhook_door_refuses_it(app, client, setup, contact_ids) -> None:
    from middleware.web.webhooks import forget_setup

    with setup["store"].transaction() as session:
        row = setup_repo.get(session, setup["id"])
        assert row is not None
        row.options = {**row.options, "salesforce_changes": ["outbound"]}
    with app.app_context():
        forget_setup(setup["id"])
    r = _post(client, setup, _event(contact_ids[0]))
    assert r.status_code == 409
    assert 'add "webhook" to its salesforce_changes' in r.json["detail"]
    assert intake.pending(app.extensions["middleware"]["redis"], setup["id"]) == 0
    # Wrong credentials still answer 401 first: the door is only named to the setup's owner.
    assert (
        _post(client, setup, _event(contact_ids[0]), **{"X-Webhook-Secret": "x"}).status_code == 401
    )


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


def _refused(client, setup_id, headers, body: bytes) -> tuple[int, set[str], str]:
    r = client.post(
        f"/webhooks/salesforce/{setup_id}",
        data=body,
        content_type="application/json",
        headers=headers,
    )
    detail = r.json["detail"].replace(str(setup_id), "<id>")
    return r.status_code, set(r.json), detail


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Webhook-Secret": "wrong"},
        {"Authorization": "Bearer wrong"},
        {"webhook-id": "m", "webhook-timestamp": "1", "webhook-signature": "v1,xx"},
        {"webhook-id": "m", "webhook-timestamp": "soon", "webhook-signature": "v1,xx"},
        {"webhook-id": "m", "webhook-timestamp": str(int(time.time())), "webhook-signature": "x"},
    ],
)
def test_known_and_unknown_setups_answer_alike_without_credentials(
    client, setup, contact_ids, headers
) -> None:
    """No enumeration: the same status, body shape and detail whether the setup exists or not."""
    body = json.dumps(_event(contact_ids[0])).encode()
    known = _refused(client, setup["id"], headers, body)
    assert known[0] == 401
    for unknown in (999, 2**31 - 1, 2**31, 10**30):
        assert _refused(client, unknown, headers, body) == known


def test_the_refusal_says_what_the_request_lacks(client, setup, contact_ids) -> None:
    body = json.dumps(_event(contact_ids[0])).encode()
    assert "no credentials were sent" in _refused(client, setup["id"], {}, body)[2]
    stale = {"webhook-id": "m", "webhook-timestamp": "1", "webhook-signature": "v1,x"}
    assert "more than five minutes" in _refused(client, setup["id"], stale, body)[2]
    wrong = {"X-Webhook-Secret": "nope"}
    assert "wrong credentials" in _refused(client, setup["id"], wrong, body)[2]


def test_setup_ids_past_the_database_range_are_refused_without_a_query(
    client, setup, contact_ids, monkeypatch
) -> None:
    calls: list[int] = []
    real_get = setup_repo.get

    def counting_get(session, setup_id):
        calls.append(setup_id)
        return real_get(session, setup_id)

    monkeypatch.setattr(setup_repo, "get", counting_get)
    for huge in (2**31, 2**63, 10**40):
        r = _post(client, {**setup, "id": huge}, _event(contact_ids[0]))
        assert r.status_code == 401, r.json  # was 503 "retry": a sender retried forever
        assert "Retry-After" not in r.headers
    assert calls == []


def test_unknown_ids_are_remembered_like_setups(client, setup, contact_ids, monkeypatch) -> None:
    """An unknown id costs one lookup per cache period, as a known setup does (similar work)."""
    calls: list[int] = []
    real_get = setup_repo.get

    def counting_get(session, setup_id):
        calls.append(setup_id)
        return real_get(session, setup_id)

    monkeypatch.setattr(setup_repo, "get", counting_get)
    forget_setup(setup["id"])
    for _ in range(3):
        _post(client, {**setup, "id": 4242}, _event(contact_ids[0]))
        _post(client, setup, _event(contact_ids[0]), **{"X-Webhook-Secret": "wrong"})
    assert sorted(calls) == [setup["id"], 4242]


def test_a_setup_created_after_its_id_was_probed_is_found_soon(
    app, client, setup, contact_ids
) -> None:
    from middleware.web import webhooks

    probe = _post(client, {**setup, "id": setup["id"] + 1}, _event(contact_ids[0]))
    assert probe.status_code == 401
    store = setup["store"]
    options, _ = validate_setup({"name": "later", "main_list": "Main"})
    with store.transaction() as session:  # created by another process: no cache to forget
        row = setup_repo.create(session, name="later", options=options)
        created = {"id": row.id, "secret": setup_repo.webhook_secret(session, row)}
    assert created["id"] == setup["id"] + 1
    with app.app_context():
        cache = webhooks._cache()
        loaded_at, view = cache[created["id"]]
        assert view is None  # the probe was remembered ...
        cache[created["id"]] = (loaded_at - webhooks.UNKNOWN_CACHE_SECONDS - 0.1, None)
    # ... for UNKNOWN_CACHE_SECONDS only, not for a known setup's SETUP_CACHE_SECONDS
    assert webhooks.UNKNOWN_CACHE_SECONDS + 0.1 < webhooks.SETUP_CACHE_SECONDS
    assert _post(client, created, _event(contact_ids[0])).status_code == 202


@pytest.mark.integration
def test_an_id_past_postgres_integer_is_refused_on_postgres(
    config, pg_empty_store, contact_ids
) -> None:
    from app import create_app

    config.update(STORE=pg_empty_store, AUTO_MIGRATE=True)
    app = create_app(config)
    pg_store = pg_empty_store
    options, _ = validate_setup({"name": "w", "main_list": "Main"})
    with pg_store.transaction() as session:
        row = setup_repo.create(session, name="w", options=options)
        secret = setup_repo.webhook_secret(session, row)
    client = app.test_client()
    for setup_id in (2**31 - 1, 2**31, 2**40):
        r = client.post(
            f"/webhooks/salesforce/{setup_id}",
            json=_event(contact_ids[0]),
            headers={"X-Webhook-Secret": secret},
        )
        assert r.status_code == 401, (setup_id, r.json)


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
    late = post(now - 400)  # replayed too late
    assert late.status_code == 401 and "five minutes" in late.json["detail"]
    assert post(now, secret="other").status_code == 401
    assert _post(client, setup, _event(contact_ids[0])).status_code == 401  # secret header alone


def _raw(client, setup, body: bytes, **headers):
    return client.post(
        f"/webhooks/salesforce/{setup['id']}",
        data=body,
        content_type="application/json",
        headers={"X-Webhook-Secret": setup["secret"], **headers},
    )


@pytest.mark.parametrize("depth", [200, 5_000, 100_000])
def test_deeply_nested_json_is_400(client, setup, depth) -> None:
    for body in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
        r = _raw(client, setup, body)
        assert r.status_code == 400, r.json
        assert r.json["field"] == "(body)" or r.json["field"].startswith("[")


def test_deep_nesting_names_the_problem(client, setup) -> None:
    r = _raw(client, setup, b"[" * 100_000 + b"]" * 100_000)
    assert "nested too deeply" in r.json["detail"]


@pytest.mark.parametrize(
    "stamp",
    [10**30, 2**63, 253_402_300_800_000, -1, "Infinity", "-Infinity", "NaN", "1e400"],
)
def test_an_impossible_commit_timestamp_is_400_naming_it(client, setup, contact_ids, stamp) -> None:
    body = json.dumps(_event(contact_ids[0]))
    body = body.replace("1764151200000", str(stamp))
    r = _raw(client, setup, body.encode())
    assert r.status_code == 400, r.json
    if stamp not in ("Infinity", "-Infinity", "NaN", "1e400"):  # not JSON, or past a float
        assert r.json["field"].endswith("commitTimestamp")


def test_the_latest_representable_commit_timestamp_is_accepted(client, setup, contact_ids) -> None:
    event = _event(contact_ids[0])
    event["data"]["payload"]["ChangeEventHeader"]["commitTimestamp"] = 253_402_300_799_999
    assert _post(client, setup, event).status_code == 202


def _serve(app):
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


def _post_chunked(port: int, path: str, body: bytes, headers: dict[str, str]):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    chunks = (body[i : i + 4096] for i in range(0, len(body), 4096))
    conn.request(
        "POST",
        path,
        body=chunks,
        headers={"Content-Type": "application/json", **headers},
        encode_chunked=True,
    )
    response = conn.getresponse()
    status, data = response.status, response.read()
    conn.close()
    return status, json.loads(data)


def test_a_chunked_body_over_the_limit_is_413_not_400(app, setup, contact_ids) -> None:
    """Without Content-Length, werkzeug truncated the body at the limit: a misleading 400."""
    limit = app.extensions["middleware"]["settings"].webhook_max_bytes
    server = _serve(app)
    try:
        path = f"/webhooks/salesforce/{setup['id']}"
        headers = {"X-Webhook-Secret": setup["secret"]}
        event = json.dumps([_event(contact_ids[0])]).encode()
        padded = event[:-1] + b" " * (limit + 10) + b"]"
        status, body = _post_chunked(server.server_port, path, padded, headers)
        assert status == 413, body
        assert str(limit) in body["detail"]
        exactly = event[:-1] + b" " * (limit - len(event)) + b"]"
        assert len(exactly) == limit
        status, body = _post_chunked(server.server_port, path, exactly, headers)
        assert status == 202, body
    finally:
        server.shutdown()


def test_a_chunked_body_to_the_cc_webhook_over_the_limit_is_413(app) -> None:
    limit = app.extensions["middleware"]["settings"].webhook_max_bytes
    server = _serve(app)
    try:
        status, body = _post_chunked(
            server.server_port, "/webhooks/constantcontact", b" " * (limit + 1), {}
        )
        assert status == 413, body
    finally:
        server.shutdown()


def _cdc_without_ids(record_id: str) -> dict:
    """A bare CDC payload with no replayId and no transaction key: no real event id."""
    return {
        "ChangeEventHeader": {
            "entityName": "Contact",
            "recordIds": [record_id],
            "changeType": "UPDATE",
            "changedFields": ["Email"],
        },
        "Email": "a@example.org",
    }


def test_events_without_a_real_id_are_never_dropped_as_duplicates(
    app, client, setup, contact_ids
) -> None:
    """The same body twice is two real changes (e.g. the email set back and forth)."""
    redis = app.extensions["middleware"]["redis"]
    first = _post(client, setup, _cdc_without_ids(contact_ids[0]))
    assert (first.status_code, first.json["accepted"], first.json["duplicates"]) == (202, 1, 0)
    batch = intake.take(redis, setup["id"], 10)
    intake.ack(redis, setup["id"], batch)  # the flush synced it
    assert intake.pending(redis, setup["id"]) == 0
    again = _post(client, setup, _cdc_without_ids(contact_ids[0]))
    assert (again.json["accepted"], again.json["duplicates"]) == (1, 0)
    assert intake.pending(redis, setup["id"]) == 1
    assert not [k for k in redis.scan_iter("ctct:seen:*")]  # no digest mark was kept


def test_a_failed_scheduling_step_is_repaired_by_the_senders_retry(
    app, client, setup, contact_ids, monkeypatch
) -> None:
    """Ids stored, then scheduling failed (503): the retry is a duplicate but still schedules."""
    redis = app.extensions["middleware"]["redis"]
    real = queue.ensure_scheduled
    failures = [RedisConnectionError("connection reset")]

    def fail_once(*args, **kwargs):
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr(queue, "ensure_scheduled", fail_once)
    event = _event(contact_ids[0], key="once")
    first = _post(client, setup, event)
    assert first.status_code == 503, first.json
    assert first.headers["Retry-After"]
    assert intake.pending(redis, setup["id"]) == 1  # the ids are stored ...
    assert queue.pending_job_id(f"flush-{setup['id']}", connection=redis) is None  # ... unflushed
    retry = _post(client, setup, event)
    assert retry.status_code == 202, retry.json
    assert (retry.json["accepted"], retry.json["duplicates"]) == (0, 1)
    assert retry.json["flush_scheduled"] is True
    assert queue.pending_job_id(f"flush-{setup['id']}", connection=redis) is not None


def test_a_duplicate_schedules_nothing_when_nothing_waits(app, client, setup, contact_ids) -> None:
    redis = app.extensions["middleware"]["redis"]
    event = _event(contact_ids[0], key="done")
    assert _post(client, setup, event).json["flush_scheduled"] is True
    redis.delete(queue.guard_key(f"flush-{setup['id']}"))  # the flush started ...
    intake.ack(redis, setup["id"], intake.take(redis, setup["id"], 10))  # ... and synced it
    again = _post(client, setup, event)
    assert again.json["duplicates"] == 1 and again.json["flush_scheduled"] is False


def test_an_unexpected_scheduling_error_is_503_not_500(
    client, setup, contact_ids, monkeypatch
) -> None:
    def broken(*_a, **_k):
        raise RuntimeError("enqueue failed")

    monkeypatch.setattr(queue, "ensure_scheduled", broken)
    r = _post(client, setup, _event(contact_ids[0]))
    assert r.status_code == 503 and "retry" in r.json["detail"]


def _age_guard(redis, setup) -> str:
    """Make the pending flush look due two minutes ago (its workers busy ever since)."""
    key = queue.guard_key(f"flush-{setup['id']}")
    job_id = redis.get(key).decode().partition("|")[0]
    now = int(time.time())
    redis.set(key, f"{job_id}|{now - 121}|{now - 120}")
    return job_id


def test_a_flush_queued_behind_busy_workers_costs_no_lookup(
    app, client, setup, contact_ids, monkeypatch
) -> None:
    """The guard's job status comes with the intake's one round trip: no ensure_scheduled."""
    redis = app.extensions["middleware"]["redis"]
    assert _post(client, setup, _event(contact_ids[0], key="q1")).json["flush_scheduled"] is True
    job_id = _age_guard(redis, setup)
    calls = []
    real = queue.ensure_scheduled
    monkeypatch.setattr(queue, "ensure_scheduled", lambda *a, **k: calls.append(a) or real(*a, **k))
    r = _post(client, setup, _event(contact_ids[1], key="q2"))
    assert r.status_code == 202 and r.json["flush_scheduled"] is False
    assert calls == []
    assert queue.pending_job_id(f"flush-{setup['id']}", connection=redis) == job_id
    # Its job gone (Redis lost it): the next event looks closer and schedules a fresh one.
    redis.delete(f"{queue.JOB_KEY_PREFIX}{job_id}")
    again = _post(client, setup, _event(contact_ids[2], key="q3"))
    assert again.status_code == 202 and again.json["flush_scheduled"] is True
    assert len(calls) == 1
    assert queue.pending_job_id(f"flush-{setup['id']}", connection=redis) not in (None, job_id)
