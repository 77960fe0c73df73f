"""The runner marks a connection `needs_reauth` for each kind of dead credential; /readyz says so.

Each case is a different way a job meets a connection no refresh can repair: Salesforce with no
tokens stored (found while building the client, before any run opens), Salesforce's token endpoint
refusing the refresh (`OAuthFailed`), a 401 that survives the client's refresh, and Constant
Contact's 403 on the account.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from middleware import queue, runner
from middleware.constantcontact import errors as cc_errors
from middleware.salesforce import errors as sf_errors
from middleware.store import connections, runs, setups
from middleware.web import get_redis, get_settings, get_store
from schemas.setup import validate_setup

NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
CLIENTS: Any = SimpleNamespace(usage=SimpleNamespace(total=0), calls=SimpleNamespace(total=0))


def _setup(app: Flask, *, sf_tokens: bool = True) -> tuple[queue.Runtime, int, int, int]:
    """A setup on a Salesforce and a Constant Contact connection; (runtime, setup, sf, cc)."""
    with app.app_context():
        with get_store().transaction() as session:
            tokens = {"access_token": "a", "refresh_token": "r"} if sf_tokens else {}
            sf = connections.create(
                session, vendor="salesforce", label="org", base_url="https://sf.test", **tokens
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
    return runtime, setup_id, sf.id, cc.id


def _status(runtime: queue.Runtime, connection_id: int) -> tuple[str, str | None]:
    with runtime.store.transaction() as session:
        row = connections.get(session, connection_id)
        assert row is not None
        return row.status, row.last_error


def _run_message(runtime: queue.Runtime, run_id: int) -> tuple[str, str]:
    with runtime.store.transaction() as session:
        run = runs.get_run(session, run_id)
        assert run is not None
        return run.status, run.message or ""


def _readyz_connections(client: FlaskClient) -> tuple[int, str]:
    response = client.get("/readyz")
    assert response.json is not None
    return response.status_code, response.json["checks"]["connections"]["detail"]


def test_salesforce_without_tokens_marks_the_connection_before_any_call(
    app: Flask, client: FlaskClient
) -> None:
    runtime, setup_id, sf_id, cc_id = _setup(app, sf_tokens=False)
    called: list[int] = []

    result = runner.run(runtime, setup_id, "incremental", lambda ctx: called.append(1), cc=CLIENTS)

    assert called == []  # the body never ran: there is no client to give it
    assert result["failed"] == "salesforce needs_reauth"
    assert _status(runtime, sf_id)[0] == "needs_reauth"
    assert "has no tokens" in (_status(runtime, sf_id)[1] or "")
    assert _status(runtime, cc_id) == ("active", None)
    status, message = _run_message(runtime, result["run_id"])
    assert status == "failed"
    assert message.startswith("salesforce connection needs to be connected again")
    code, detail = _readyz_connections(client)
    assert code == 503
    assert f"salesforce connection {sf_id} (org) is needs_reauth" in detail
    assert f'"vendor": "salesforce", "connection_id": {sf_id}' in detail


def _sf_refresh_refused() -> Exception:
    # What SalesforceOAuth.refresh raises when the token endpoint refuses the client.
    return sf_errors.error_from_response(
        400, {"error": "invalid_client", "error_description": "invalid client credentials"}
    )


def _sf_401_after_refresh() -> Exception:
    body = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    return sf_errors.error_from_response(401, body)


def _cc_403_on_the_account() -> Exception:
    body = [{"error_key": "forbidden", "error_message": "Application is not active"}]
    return cc_errors.error_for(403, body, now=NOW, method="GET", path="/contacts")


@pytest.mark.parametrize(
    ("make_error", "vendor", "expected_class"),
    [
        (_sf_refresh_refused, "salesforce", sf_errors.OAuthFailed),
        (_sf_401_after_refresh, "salesforce", sf_errors.SessionExpired),
        (_cc_403_on_the_account, "constantcontact", cc_errors.Forbidden),
    ],
    ids=["sf-refresh-refused", "sf-401-after-refresh", "cc-403"],
)
def test_a_job_meeting_dead_credentials_marks_that_connection(
    app: Flask,
    client: FlaskClient,
    make_error: Callable[[], Exception],
    vendor: str,
    expected_class: type[Exception],
) -> None:
    runtime, setup_id, sf_id, cc_id = _setup(app)
    error = make_error()
    assert type(error) is expected_class
    assert _readyz_connections(client)[0] == 200

    def body(_ctx: Any) -> Any:
        raise error

    result = runner.run(runtime, setup_id, "incremental", body, sf=CLIENTS, cc=CLIENTS)

    assert result["failed"] == f"{vendor} needs_reauth"
    marked, untouched = (sf_id, cc_id) if vendor == "salesforce" else (cc_id, sf_id)
    assert _status(runtime, marked) == ("needs_reauth", str(error))
    assert _status(runtime, untouched) == ("active", None)
    assert _run_message(runtime, result["run_id"])[0] == "failed"
    code, detail = _readyz_connections(client)
    assert code == 503
    assert f"{vendor} connection {marked}" in detail and "is needs_reauth" in detail
    assert f'"vendor": "{vendor}", "connection_id": {marked}' in detail


def test_an_outage_does_not_mark_the_connection(app: Flask) -> None:
    """Retry-later errors fail the run for RQ to retry; the connection stays active."""
    runtime, setup_id, sf_id, cc_id = _setup(app)
    outage = sf_errors.error_from_response(503, [{"errorCode": "SERVER_UNAVAILABLE"}])

    def body(_ctx: Any) -> Any:
        raise outage

    with pytest.raises(sf_errors.Retryable):
        runner.run(runtime, setup_id, "incremental", body, sf=CLIENTS, cc=CLIENTS)
    assert _status(runtime, sf_id) == ("active", None)
    assert _status(runtime, cc_id) == ("active", None)
