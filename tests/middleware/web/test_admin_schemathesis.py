"""Fuzz the admin API from its own OpenAPI document with Schemathesis: 0 failures, every check.

The same run as ``schemathesis run <url>/admin/api/openapi.json --checks all --max-examples 50
-H "Authorization: Bearer <ADMIN_TOKEN>"`` (with the repository's ``schemathesis.toml``), against
the test app served on a loopback port by a thread of this process: every phase (examples,
coverage, fuzzing, stateful), every check (no 5xx, documented statuses, content types and
schemas, negative data refused, positive data accepted, auth enforced...). The app has no worker:
Sync Now, Full Sync and poll only enqueue on the in-process fake Redis, so nothing calls a vendor.
``SCHEMATHESIS_SEED`` picks another seed (the default keeps CI reproducible).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from flask import Flask
from redis import Redis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema
from werkzeug.serving import make_server

from app import create_app
from middleware.store import connections as connection_repo
from middleware.store.db import Store
from middleware.store.models import utcnow

pytestmark = pytest.mark.slow

TOKEN = "test-admin-token"
CONFIG_FILE = Path(__file__).resolve().parents[3] / "schemathesis.toml"
MAX_EXAMPLES = 50


@contextmanager
def served(app: Flask) -> Iterator[str]:
    """The app on a loopback port (one request at a time), while the block runs."""
    server = make_server("127.0.0.1", 0, app, threaded=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    # Thousands of requests; their INFO and WARNING lines would drown a failure's report.
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def run_schemathesis(base_url: str, seed: int) -> tuple[int, list[str]]:
    """Every phase and check; the number of checks made and one line per distinct failure."""
    settings: dict[str, Any] = tomllib.loads(CONFIG_FILE.read_text(encoding="utf-8"))
    settings.update(
        seed=seed,
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks={"enabled": True},
        generation={"max-examples": MAX_EXAMPLES},
    )
    config = SchemathesisConfig.from_dict(settings)
    schema = schemathesis.openapi.from_url(
        f"{base_url}/admin/api/openapi.json",
        headers={"Authorization": f"Bearer {TOKEN}"},
        config=config,
    )
    made = 0
    failures: dict[tuple[str, str, str], str] = {}
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    made += 1
                    if check.status != Status.FAILURE or check.failure_info is None:
                        continue
                    failure = check.failure_info.failure
                    key = (event.recorder.label, check.name, failure.title)
                    if key in failures:
                        continue
                    interaction = event.recorder.interactions.get(case_id)
                    answer = ""
                    if interaction is not None and interaction.response is not None:
                        body = (interaction.response.content or b"")[:300]
                        answer = f"[{interaction.response.status_code}] {body!r}"
                    sample = check.failure_info.code_sample[-500:]
                    failures[key] = f"{' / '.join(key)}: {failure.message}\n  {answer}\n  {sample}"
        elif isinstance(event, events.NonFatalError):
            failures[(event.label, "error", str(event.value))] = f"{event.label}: {event.value!r}"
        elif isinstance(event, events.FatalError):
            raise event.exception
    return made, list(failures.values())


class Refusing(requests.adapters.BaseAdapter):
    """Vendors that refuse every token at once (no retries to wait for): a connection check
    answers 200 with `ok: false` and marks the connection `needs_reauth`."""

    def send(self, request: requests.PreparedRequest, **_: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = 401
        response.url = request.url or ""
        response.request = request
        response.headers["Content-Type"] = "application/json"
        response._content = json.dumps(
            {"error": "invalid_grant", "error_description": "fuzz test: refused"}
        ).encode()
        return response

    def close(self) -> None:
        pass


def offline_session(_vendor: str) -> requests.Session:
    session = requests.Session()
    session.mount("http://", Refusing())
    session.mount("https://", Refusing())
    return session


def seed_connections(app: Flask) -> None:
    """Connections 1 (Salesforce) and 2 (Constant Contact), so generated setups can use them and
    Sync Now, poll, Full Sync and connection deletes get past 404 into their real answers."""
    app.config["VENDOR_SESSION"] = offline_session
    with app.extensions["middleware"]["store"].transaction() as session:
        for vendor in ("salesforce", "constantcontact"):
            connection_repo.create(
                session,
                vendor=vendor,
                label=f"fuzz {vendor}",
                access_token="fuzz-access-token",
                refresh_token="fuzz-refresh-token",
                expires_at=utcnow() + timedelta(hours=2),
            )


def check_app(app: Flask) -> None:
    seed_connections(app)
    seed = int(os.environ.get("SCHEMATHESIS_SEED", "20261207"))
    with served(app) as base_url:
        made, failures = run_schemathesis(base_url, seed)
    assert made > 10_000, f"only {made} checks ran"
    assert failures == [], f"seed {seed}:\n" + "\n".join(failures)


def test_the_admin_api_passes_every_schemathesis_check(app: Flask, quiet_logs: None) -> None:
    check_app(app)


@pytest.mark.integration
def test_the_admin_api_passes_every_schemathesis_check_on_postgres(
    config: dict[str, Any], pg_empty_store: Store, real_redis: Redis, quiet_logs: None
) -> None:
    # PostgreSQL refuses what SQLite takes (INTEGER overflow, NUL in text): fuzz it too.
    config.update(STORE=pg_empty_store, REDIS=real_redis, AUTO_MIGRATE=True)
    check_app(create_app(config))
