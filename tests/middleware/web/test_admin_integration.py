"""Integration pass of the admin API on PostgreSQL (migrated) and a real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from redis import Redis
from rq import SimpleWorker
from rq.job import Job

from app import create_app
from middleware import intake, queue
from middleware.store import connections as connection_repo
from middleware.store import errors as error_repo
from middleware.store.db import Store
from middleware.store.models import utcnow

pytestmark = pytest.mark.integration

AUTH = {"Authorization": "Bearer test-admin-token"}


@pytest.fixture
def pg_app(config: dict[str, Any], pg_empty_store: Store, real_redis: Redis) -> Iterator[Flask]:
    config.update(STORE=pg_empty_store, REDIS=real_redis, AUTO_MIGRATE=True)
    yield create_app(config)


def test_admin_api_end_to_end_on_postgres_and_redis(pg_app: Flask, real_redis: Redis) -> None:
    client = pg_app.test_client()
    store = pg_app.extensions["middleware"]["store"]
    with store.transaction() as session:
        sf = connection_repo.create(
            session,
            vendor="salesforce",
            access_token="pg-access",
            expires_at=utcnow() + timedelta(hours=1),
        ).id
        cc = connection_repo.create(session, vendor="constantcontact", access_token="pg-cc").id

    created = client.post(
        "/admin/api/setups",
        json={
            "name": "PG",
            "main_list": "Main",
            "salesforce_connection": sf,
            "constant_contact_connection": cc,
            "field_map": [{"sf_field": "Title", "cc_field": "job_title"}],
        },
        headers=AUTH,
    )
    assert created.status_code == 201, created.json
    setup_id = created.json["id"]
    assert created.json["webhook_secret"]

    bad = client.patch(
        f"/admin/api/setups/{setup_id}",
        json={"field_map": [{"sf_field": "Title", "cc_field": "job_title"}, {"sf_field": "X"}]},
        headers=AUTH,
    )
    assert bad.status_code == 422
    assert "field_map[1].cc_field" in bad.json["errors"]
    patched = client.patch(
        f"/admin/api/setups/{setup_id}",
        json={"schedule": {"full_sync": "weekly", "weekday": "monday"}},
        headers=AUTH,
    )
    assert patched.status_code == 200, patched.json
    assert patched.json["options"]["schedule"]["weekday"] == "monday"
    assert client.delete(f"/admin/api/connections/{sf}", headers=AUTH).status_code == 409

    with store.transaction() as session:
        [err] = error_repo.record_errors(
            session, setup_id, [{"direction": "sf_to_cc", "code": "x", "sf_id": "003PG"}]
        )
        err_id = err.id
    retried = client.post(
        f"/admin/api/setups/{setup_id}/errors/retry", json={"ids": [err_id]}, headers=AUTH
    )
    assert retried.json["marked_dirty"] == 1
    assert intake.pending(real_redis, setup_id) == 1
    flush = Job.fetch(
        retried.json["flush_job_id"], connection=real_redis, serializer=queue.SERIALIZER
    )
    assert flush.origin == queue.WEBHOOKS

    synced = client.post(f"/admin/api/setups/{setup_id}/sync", headers=AUTH)
    assert synced.status_code == 202
    status = client.get(f"/admin/api/setups/{setup_id}/status", headers=AUTH).json
    assert status["pending"] == 1
    assert status["open_errors"] == {"x": 1}

    failing = queue.enqueue(
        "json.loads", "{", retry=None, connection=real_redis, queue=queue.FULL_SYNC
    )
    SimpleWorker(
        [queue.get_queue(real_redis, queue.FULL_SYNC)],
        connection=real_redis,
        serializer=queue.SERIALIZER,
    ).work(burst=True)
    failed = client.get("/admin/api/queue/failed?queue=full_sync", headers=AUTH).json
    assert [j["id"] for j in failed["items"]] == [failing.id]
    requeued = client.post("/admin/api/queue/failed/requeue", json={"all": True}, headers=AUTH)
    assert requeued.json["requeued"] == [failing.id]
    assert client.get("/admin/api/queue", headers=AUTH).json["queues"]["full_sync"]["queued"] == 1

    assert client.get("/admin/api/openapi.json", headers=AUTH).status_code == 200
    assert client.delete(f"/admin/api/setups/{setup_id}", headers=AUTH).status_code == 204
    assert intake.pending(real_redis, setup_id) == 0


def test_ids_beyond_integer_and_unstorable_text_are_4xx_on_postgres(pg_app: Flask) -> None:
    # PostgreSQL raises on INTEGER overflow and NUL in text where SQLite does not.
    client = pg_app.test_client()
    for ident in (2**31, 2**63, 10**30):
        for method, path in (
            ("GET", f"/admin/api/setups/{ident}"),
            ("GET", f"/admin/api/connections/{ident}"),
            ("GET", f"/admin/api/runs/{ident}"),
            ("POST", f"/admin/api/setups/{ident}/poll"),
            ("DELETE", f"/admin/api/setups/{ident}"),
        ):
            response = client.open(path, method=method, headers=AUTH)
            assert response.status_code == 404, (method, path, response.json)
    created = client.post(
        "/admin/api/setups",
        json={"name": "PG", "main_list": "Main", "salesforce_connection": 2**31},
        headers=AUTH,
    )
    assert created.status_code == 422
    assert "salesforce_connection" in created.json["errors"]
    nul = client.post(
        "/admin/api/setups", json={"name": "a\u0000b", "main_list": "Main"}, headers=AUTH
    )
    assert nul.status_code == 400
    assert "NUL" in nul.json["detail"]
    errors = client.get("/admin/api/setups/1/errors?code=%00", headers=AUTH)
    assert errors.status_code == 400
