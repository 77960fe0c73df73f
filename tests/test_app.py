"""Tests for the app factory: no I/O at import, config overrides, JSON errors, request ids."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from middleware.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_importing_app_connects_to_nothing_and_builds_no_app() -> None:
    # A fresh interpreter with no secrets: importing must neither fail nor build an app.
    code = (
        "import socket, sys\n"
        "def refuse(*a, **k): raise AssertionError('network I/O at import')\n"
        "socket.socket.connect = refuse\n"
        "import app\n"
        "assert callable(app.create_app)\n"
        "assert not hasattr(app, 'app')\n"
        "import middleware.queue, middleware.metrics, middleware.web.health\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_config_dict_overrides_the_environment(config: dict[str, Any], monkeypatch: Any) -> None:
    from app import create_app

    monkeypatch.setenv("DATABASE_URL", "postgres://should-not-be-used/db")
    config.update({"CC_RATE_PER_SECOND": "2", "PUBLIC_URL": "https://sync.example.org/"})
    app = create_app(config)
    settings: Settings = app.extensions["middleware"]["settings"]
    assert settings.database_url == "sqlite://"
    assert settings.cc_rate_per_second == 2.0
    assert settings.public_url == "https://sync.example.org"
    assert app.config["TESTING"] is True
    assert app.config["SECRET_KEY"] == "test-secret-key"
    assert app.config["MAX_CONTENT_LENGTH"] == settings.webhook_max_bytes


def test_missing_secrets_stop_the_factory(config: dict[str, Any]) -> None:
    import pytest

    from app import create_app
    from middleware.settings import ConfigError

    del config["ADMIN_TOKEN"]
    with pytest.raises(ConfigError, match="ADMIN_TOKEN"):
        create_app(config)


def test_ready_settings_object_is_accepted(config: dict[str, Any], settings: Settings) -> None:
    from app import create_app

    app = create_app({"SETTINGS": settings, "REDIS": config["REDIS"]})
    assert app.extensions["middleware"]["settings"] is settings


def test_unknown_route_is_a_json_problem(client: FlaskClient) -> None:
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.json["status"] == 404 and response.json["title"] == "Not Found"


def test_wrong_method_is_a_json_problem_with_allow(client: FlaskClient) -> None:
    response = client.post("/livez")
    assert response.status_code == 405
    assert response.json["status"] == 405
    assert "GET" in response.headers["Allow"]


def test_too_large_body_is_413(config: dict[str, Any]) -> None:
    from app import create_app

    config["WEBHOOK_MAX_BYTES"] = 10
    app = create_app(config)

    @app.post("/echo")
    def echo() -> str:
        from flask import request

        return request.get_data(as_text=True)

    response = app.test_client().post("/echo", data="x" * 11)
    assert response.status_code == 413
    assert response.json["title"] == "Request Entity Too Large"


def test_unexpected_error_is_a_json_500_without_details(config: dict[str, Any]) -> None:
    from app import create_app

    app = create_app(config)
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret internals")

    response = app.test_client().get("/boom", headers={"X-Request-ID": "req-123"})
    assert response.status_code == 500
    assert response.json["request_id"] == "req-123"
    assert "secret internals" not in response.text


def test_request_id_is_echoed_or_generated(client: FlaskClient) -> None:
    assert (
        client.get("/livez", headers={"X-Request-ID": "abc-1"}).headers["X-Request-ID"] == "abc-1"
    )
    generated = client.get("/livez", headers={"X-Request-ID": "bad id <script>"}).headers[
        "X-Request-ID"
    ]
    assert generated and generated != "bad id <script>" and len(generated) == 32


def test_db_cli_reports_and_upgrades(config: dict[str, Any], tmp_path: Path) -> None:
    from app import create_app

    config["DATABASE_URL"] = f"sqlite:///{tmp_path}/cli.sqlite3"
    config["AUTO_MIGRATE"] = False
    app = create_app(config)
    runner = app.test_cli_runner()
    assert "current: empty" in runner.invoke(args=["db", "current"]).output
    assert "database at revision" in runner.invoke(args=["db", "upgrade"]).output
    assert "up to date" in runner.invoke(args=["db", "current"]).output
    assert "re-encrypted 0 secrets" in runner.invoke(args=["db", "rotate-keys"]).output


def test_embedded_worker_starts_without_redis_url(config: dict[str, Any]) -> None:
    from app import create_app, stop_background

    config["EMBEDDED_WORKER"] = True
    app = create_app(config)
    worker = app.extensions["middleware"]["worker"]
    try:
        assert worker is not None and worker.alive
    finally:
        stop_background(app)


def test_embedded_listener_runs_beside_the_worker_and_stops_with_the_app(
    config: dict[str, Any],
) -> None:
    from app import create_app, stop_background

    config["EMBEDDED_WORKER"] = True
    app = create_app(config)
    listener = app.extensions["middleware"]["listener"]
    try:
        assert listener is not None and listener.alive
        # No setup on the Pub/Sub door: it consumes nothing (and opens no channel).
        assert listener.connections == []
        checks = app.test_client().get("/readyz").get_json()["checks"]
        assert checks["listener"]["detail"] == (
            "embedded Pub/Sub listener running; no setup on the pubsub door"
        )
    finally:
        stop_background(app)
    assert not listener.alive and not app.extensions["middleware"]["worker"].alive


@pytest.mark.parametrize(
    "env",
    [
        {"EMBEDDED_WORKER": True, "EMBEDDED_LISTENER": False},
        {"EMBEDDED_WORKER": True, "REDIS_URL": "redis://unused.example"},
        {"EMBEDDED_WORKER": False},
    ],
    ids=["setting off", "redis url", "no embedded worker"],
)
def test_no_embedded_listener(config: dict[str, Any], env: dict[str, Any]) -> None:
    from app import create_app, stop_background

    config.update(env)
    app = create_app(config)
    try:
        assert app.extensions["middleware"]["listener"] is None
        assert "listener" not in app.test_client().get("/readyz").get_json()["checks"]
    finally:
        stop_background(app)


def test_cookie_sessions_still_work_when_a_route_uses_one(config: dict[str, Any]) -> None:
    from flask import session

    from app import create_app

    app = create_app(config)

    @app.post("/remember")
    def remember() -> str:
        session["seen"] = session.get("seen", 0) + 1
        return str(session["seen"])

    client = app.test_client()
    assert client.post("/remember").text == "1"  # no cookie yet: a fresh session
    assert client.post("/remember").text == "2"  # the signed cookie is read back
    client.set_cookie("session", "forged.value")
    assert client.post("/remember").text == "1"  # a bad signature: a fresh session again
