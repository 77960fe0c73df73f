"""Tests for /livez, /readyz and /metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis

from middleware import metrics, queue
from middleware.store import connections, setups
from middleware.web import get_store
from schemas.setup import validate_setup


def _build(config: dict[str, Any]) -> Flask:
    from app import create_app

    return create_app(config)


def test_livez_needs_nothing(config: dict[str, Any]) -> None:
    config["REDIS"] = Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2)
    client = _build(config).test_client()
    response = client.get("/livez")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_ok(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.json
    body = response.json
    assert body["status"] == "ok" and body["failed"] == []
    assert set(body["checks"]) == {
        "database",
        "redis",
        "queues",
        "workers",
        "connections",
        "setups",
        "cc_webhook",
    }
    assert body["checks"]["cc_webhook"]["status"] == "warn"  # informational, not a failure


def test_readyz_names_redis_when_it_is_down(config: dict[str, Any]) -> None:
    config["REDIS"] = Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2)
    response = _build(config).test_client().get("/readyz")
    assert response.status_code == 503
    body = response.json
    assert body["failed"] == ["redis", "queues"]
    assert "ConnectionError" in body["checks"]["redis"]["detail"]
    assert body["checks"]["database"]["status"] == "ok"


def test_readyz_fails_on_an_expired_token_that_cannot_be_refreshed(
    app: Flask, client: FlaskClient
) -> None:
    past = datetime.now(UTC) - timedelta(minutes=5)
    with app.app_context(), get_store().transaction() as session:
        connections.create(
            session, vendor="constantcontact", label="Acme CC", access_token="a", expires_at=past
        )
        connections.create(
            session,
            vendor="salesforce",
            label="Acme org",
            access_token="a",
            refresh_token="r",
            expires_at=past,
        )
    response = client.get("/readyz")
    assert response.status_code == 503
    detail = response.json["checks"]["connections"]["detail"]
    assert "constantcontact connection 1 (Acme CC)" in detail and "expired" in detail
    # A token that refreshes on its next use is normal life, not a failure.
    assert "salesforce connection 2" not in detail


def test_readyz_fails_on_a_connection_needing_reauthorisation(
    app: Flask, client: FlaskClient
) -> None:
    with app.app_context(), get_store().transaction() as session:
        conn = connections.create(session, vendor="salesforce", access_token="a")
        connections.mark_status(session, conn.id, "needs_reauth", "invalid_grant: expired")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "needs_reauth: invalid_grant" in response.json["checks"]["connections"]["detail"]


def test_readyz_fails_as_soon_as_jobs_meet_revoked_tokens_of_both_connections(
    app: Flask, client: FlaskClient
) -> None:
    """The job path (runner.run → mark_needs_reauth), not a connection check, makes it fail."""
    from middleware import runner
    from middleware.constantcontact import errors as cc_errors
    from middleware.salesforce import errors as sf_errors
    from middleware.web import get_redis, get_settings

    with app.app_context():
        with get_store().transaction() as session:
            sf = connections.create(
                session, vendor="salesforce", label="org", access_token="a", refresh_token="r"
            )
            cc = connections.create(
                session, vendor="constantcontact", access_token="a", refresh_token="r"
            )
            setup_id = setups.create(
                session,
                name="Both",
                options=validate_setup({"name": "Both", "main_list": "Main"})[0],
                salesforce_connection_id=sf.id,
                constant_contact_connection_id=cc.id,
            ).id
        runtime = queue.Runtime(settings=get_settings(), store=get_store(), redis=get_redis())
    before = client.get("/readyz").json["checks"]["connections"]
    assert before["status"] == "ok"
    assert "2 connections active as last recorded" in before["detail"]
    assert "usable" not in before["detail"]  # nothing here calls a vendor: it claims no more
    clients = SimpleNamespace(usage=SimpleNamespace(total=0), calls=SimpleNamespace(total=0))
    revoked: list[Exception] = [
        cc_errors.AuthRevoked("refused", status=400, error_key="invalid_grant"),
        sf_errors.AuthRevoked("expired access/refresh token"),
    ]
    for exc in revoked:

        def body(_ctx: Any, exc: Exception = exc) -> Any:
            raise exc

        result = runner.run(runtime, setup_id, "incremental", body, sf=clients, cc=clients)
        assert result["failed"].endswith("needs_reauth")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "connections" in response.json["failed"]
    detail = response.json["checks"]["connections"]["detail"]
    assert f"salesforce connection {sf.id} (org) is needs_reauth" in detail
    assert f"constantcontact connection {cc.id} is needs_reauth" in detail
    assert (
        f'POST /admin/api/connections/start {{"vendor": "salesforce", "connection_id": {sf.id}}}'
        in detail
    )
    assert (
        "POST /admin/api/connections/start "
        f'{{"vendor": "constantcontact", "connection_id": {cc.id}}}' in detail
    )


def test_readyz_fails_while_a_setup_is_paused(app: Flask, client: FlaskClient) -> None:
    until = setups.next_utc_midnight(datetime.now(UTC))
    with app.app_context(), get_store().transaction() as session:
        setup = setups.create(session, name="Newsletter", options={})
        setups.pause(session, setup.id, "quota_exceeded", until)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["failed"] == ["setups"]
    detail = response.json["checks"]["setups"]["detail"]
    assert "Newsletter" in detail and "quota_exceeded" in detail and until.isoformat() in detail

    verbose = client.get("/readyz?verbose")
    assert verbose.status_code == 503
    assert verbose.mimetype == "text/plain"
    assert "[-]setups fail" in verbose.text
    assert "[+]database ok" in verbose.text
    assert verbose.text.rstrip().endswith("readyz check failed: setups")


def test_readyz_fails_when_the_backlog_is_too_long(
    config: dict[str, Any], fake_redis: Redis
) -> None:
    config["READYZ_MAX_BACKLOG"] = 2
    for n in range(3):
        queue.enqueue("tests.middleware.test_queue.record", n, connection=fake_redis)
    response = _build(config).test_client().get("/readyz")
    assert response.status_code == 503
    assert "backlog 3 over 2" in response.json["checks"]["queues"]["detail"]


def test_readyz_fails_without_a_live_worker(config: dict[str, Any]) -> None:
    config["REDIS_URL"] = "redis://unused.example"  # not embedded: an rq worker is expected
    response = _build(config).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["failed"] == ["workers"]
    assert "no live RQ worker" in response.json["checks"]["workers"]["detail"]


def _register_worker(redis: Redis, name: str, heartbeat_age: float, ours: bool = True) -> None:
    from rq.utils import utcformat

    from middleware import workers

    key = f"rq:worker:{name}"
    at = datetime.now(UTC) - timedelta(seconds=heartbeat_age)
    redis.hset(key, mapping={"last_heartbeat": utcformat(at), "birth": utcformat(at)})
    if ours:
        redis.hset(key, workers.HEARTBEAT_FIELD, workers.HEARTBEAT_SECONDS)
    redis.sadd("rq:workers", key)


def _started_job(redis: Redis, worker: str) -> str:
    job = queue.enqueue("tests.middleware.test_queue.record", 1, connection=redis)
    job.set_status("started")
    job.worker_name = worker
    job.save()
    return job.id


def test_readyz_names_the_runs_that_died_with_their_worker(
    config: dict[str, Any], fake_redis: Redis
) -> None:
    from middleware.store import runs

    config["REDIS_URL"] = "redis://unused.example"
    app = _build(config)
    _register_worker(fake_redis, "gone", heartbeat_age=60)  # a SyncWorker silent for a minute
    job_id = _started_job(fake_redis, "gone")
    with app.extensions["middleware"]["store"].transaction() as session:
        setup = setups.create(session, name="s", options={})
        run_id = runs.open_run(session, setup.id, "incremental", job_id=job_id).id
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    detail = response.json["checks"]["workers"]["detail"]
    assert "no live RQ worker" in detail and "worker gone stopped heartbeating" in detail
    assert f"run {run_id} (setup {setup.id}, incremental, job {job_id}" in detail

    # A live worker: ready again once the dead run is marked failed.
    _register_worker(fake_redis, "alive", heartbeat_age=1)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert "runs whose worker died" in response.json["checks"]["workers"]["detail"]
    from middleware import workers

    assert [
        d.run_id for d in workers.fail_dead_runs(app.extensions["middleware"]["store"], fake_redis)
    ] == [run_id]
    response = app.test_client().get("/readyz")
    assert response.status_code == 200, response.json
    assert response.json["checks"]["workers"]["detail"] == "1 live: alive"


def test_readyz_in_embedded_mode_checks_the_worker_thread(config: dict[str, Any]) -> None:
    config["EMBEDDED_WORKER"] = True
    app = _build(config)
    client = app.test_client()
    assert client.get("/readyz").json["checks"]["workers"]["detail"] == (
        "embedded worker thread running"
    )
    app.extensions["middleware"]["worker"].stop()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "embedded worker thread has stopped" in response.json["checks"]["workers"]["detail"]


@pytest.fixture
def counted(fake_redis: Redis) -> Redis:
    metrics.job_run("flush", "succeeded", connection=fake_redis)
    metrics.job_run("flush", "failed", connection=fake_redis)
    metrics.records_synced("sf_to_cc", "created", 40, connection=fake_redis)
    metrics.vendor_api_call("constantcontact", 429, connection=fake_redis)
    queue.enqueue("tests.middleware.test_queue.record", 1, queue="webhooks", connection=fake_redis)
    return fake_redis


def test_metrics_exposes_core_counters_and_queue_depth(client: FlaskClient, counted: Redis) -> None:
    before = _sample(
        client, "ctct_webhook_events_total", 'outcome="rejected",reason="bad_signature"'
    )
    metrics.webhook_event("salesforce", "rejected", "bad_signature")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    text = response.text
    assert 'ctct_jobs_total{job="flush",status="failed"} 1.0' in text
    assert 'ctct_records_synced_total{action="created",direction="sf_to_cc"} 40.0' in text
    assert 'ctct_vendor_api_calls_total{status="429",vendor="constantcontact"} 1.0' in text
    assert 'ctct_queue_depth{queue="webhooks"} 1.0' in text
    after = _sample(
        client, "ctct_webhook_events_total", 'outcome="rejected",reason="bad_signature"'
    )
    assert after == before + 1


def _sample(client: FlaskClient, name: str, labels: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + "{") and labels in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_survive_redis_being_down(config: dict[str, Any]) -> None:
    config["REDIS"] = Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2)
    response = _build(config).test_client().get("/metrics")
    assert response.status_code == 200
    assert "Redis metrics unavailable" in response.text


def test_counting_never_raises_when_redis_is_down() -> None:
    down = Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2)
    metrics.records_synced("cc_to_sf", "updated", connection=down)
