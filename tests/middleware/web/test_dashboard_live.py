"""Dashboard: the live progress of a run (JSON for the page's script) and the day's API budget."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from middleware import api_budget
from middleware.constantcontact import wiring as cc_wiring
from middleware.services import runs as run_services
from middleware.settings import Settings
from middleware.store import runs as run_repo
from middleware.store.models import Run, utcnow
from tests.middleware.web.test_admin import Api, api, connected, new_setup
from tests.middleware.web.test_dashboard import text, web

__all__ = ["api", "connected", "web"]


def _running(api: Api, setup_id: int, **fields: Any) -> int:
    with api.store.transaction() as session:
        run = run_repo.open_run(session, setup_id, "sync_now", total=200)
        run_repo.start_run(session, run.id)
        run_repo.progress(
            session, run.id, done=50, api_calls={"salesforce": 3, "constantcontact": 1200}
        )
        row = session.get(Run, run.id)
        assert row is not None
        row.phase = "sf_to_cc"
        row.started_at = utcnow() - timedelta(seconds=60)
        for name, value in fields.items():
            setattr(row, name, value)
        return run.id


# --------------------------------------------------------------------------- progress JSON


def test_progress_needs_a_session(client: FlaskClient) -> None:
    response = client.get("/setups/1/progress")
    assert response.status_code == 401
    assert response.json == {"error": "signed_out", "detail": "Sign in again."}


def test_progress_of_an_unknown_setup_is_a_json_404(web: FlaskClient) -> None:
    response = web.get("/setups/999/progress")
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert "Setup 999 does not exist" in response.json["detail"]


def test_progress_when_nothing_runs(web: FlaskClient, api: Api, connected: dict[str, int]) -> None:
    setup = new_setup(api, **connected)
    with api.store.transaction() as session:
        run_id = run_repo.open_run(session, setup["id"], "sync_now").id
        run_repo.finish_run(session, run_id, "succeeded")
    response = web.get(f"/setups/{setup['id']}/progress")
    assert response.status_code == 200 and response.mimetype == "application/json"
    data = response.json
    assert data["running"] is False and data["run"] is None
    assert data["last"]["id"] == run_id and data["last"]["status"] == "succeeded"
    assert data["text"] == f"Nothing is running. The last run ({run_id}) succeeded."
    assert response.headers["Cache-Control"] == "no-store"


def test_progress_of_a_running_run(web: FlaskClient, api: Api, connected: dict[str, int]) -> None:
    setup = new_setup(api, **connected)
    run_id = _running(api, setup["id"])
    data = web.get(f"/setups/{setup['id']}/progress").json
    run = data["run"]
    assert data["running"] is True
    assert run["id"] == run_id and run["phase"] == "sf_to_cc" and run["percent"] == 25.0
    assert run["api_calls"] == {"constantcontact": 1200, "salesforce": 3}
    # 60 s for a quarter: about three more minutes.
    assert 170 <= run["seconds_left"] <= 190 and run["time_left"] == "about 3 min"
    assert data["text"] == (
        f"Sync Now run {run_id} is running, phase sf_to_cc: 25% done, about 3 min left. "
        "API calls so far: Constant Contact 1,200, Salesforce 3."
    )


def test_a_full_syncs_own_estimate_is_preferred(
    web: FlaskClient, api: Api, connected: dict[str, int]
) -> None:
    setup = new_setup(api, **connected)
    _running(api, setup["id"], counts={"eta_seconds": 42, "percent": 25.0})
    run = web.get(f"/setups/{setup['id']}/progress").json["run"]
    assert run["seconds_left"] == 42 and run["time_left"] == "about 42 s"


def test_no_time_left_before_the_run_has_a_share_done() -> None:
    assert run_services.duration_words(30) == "about 30 s"
    assert run_services.duration_words(7200) == "about 2.0 h"
    view = {"counts": {}, "progress": {"percent": 1.0}, "duration_seconds": 10.0}
    assert run_services._seconds_left(view) is None


def test_setup_page_is_the_scripts_starting_point(
    web: FlaskClient, api: Api, connected: dict[str, int]
) -> None:
    setup = new_setup(api, **connected)
    page = text(web.get(f"/setups/{setup['id']}"))
    assert f'data-url="/setups/{setup["id"]}/progress"' in page
    assert 'data-state="idle"' in page and 'aria-live="polite"' in page
    assert '<script src="/dashboard/static/dashboard.js" defer></script>' in page
    assert 'http-equiv="refresh"' not in page
    run_id = _running(api, setup["id"])
    page = text(web.get(f"/setups/{setup['id']}"))
    assert 'data-state="running"' in page and f'data-run-id="{run_id}"' in page
    assert "25% done" in page and 'value="25.0"' in page
    # The reload is for browsers without scripts only.
    assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in page


def test_the_script_is_served(client: FlaskClient) -> None:
    response = client.get("/dashboard/static/dashboard.js")
    assert response.status_code == 200
    assert "javascript" in response.mimetype
    body = text(response)
    assert "run-progress" in body and "data-poll-seconds" in body


# --------------------------------------------------------------------------- API budget


def test_budget_before_salesforce_has_reported(
    web: FlaskClient, api: Api, connected: dict[str, int]
) -> None:
    setup = new_setup(api, **connected)
    page = text(web.get(f"/setups/{setup['id']}"))
    assert "Salesforce API requests: not known yet" in page
    assert "Constant Contact calls today (UTC " in page and "): 0 of 10,000 (0%)" in page
    assert "This setup's runs today: no API calls yet." in page


def test_budget_figures(web: FlaskClient, api: Api, connected: dict[str, int], app: Flask) -> None:
    setup = new_setup(api, **connected)
    api_budget.record_salesforce(api.redis, connected["salesforce_connection"], 1234, 15000)
    settings: Settings = app.extensions["middleware"]["settings"]
    limiter = cc_wiring.api_limiter(settings, api.redis)
    for _ in range(3):
        limiter.acquire()
    _running(api, setup["id"])
    page = text(web.get(f"/setups/{setup['id']}"))
    assert "Salesforce API requests in the last 24 hours: 1,234 of 15,000 (8.2%)" in page
    assert "): 3 of 10,000 (0%), every connected account together." in page
    assert "Background syncing stops at 9,800" in page
    assert "runs today: Constant Contact 1,200, Salesforce 3 API calls." in page
    assert 'aria-label="Salesforce API requests used"' in page


def test_a_salesforce_client_records_what_salesforce_reports(api: Api) -> None:
    recorder = api_budget.salesforce_recorder(api.redis, 7)
    recorder(10, 100)
    seen = api_budget.salesforce(api.redis, 7)
    assert seen is not None and (seen["used"], seen["limit"]) == (10, 100)
    assert api_budget.salesforce(api.redis, 8) is None
    assert 0 < api.redis.ttl("ctct:sf-usage:7") <= api_budget.KEEP_SECONDS


def test_health_page_shows_every_orgs_budget(
    web: FlaskClient, api: Api, connected: dict[str, int]
) -> None:
    api_budget.record_salesforce(api.redis, connected["salesforce_connection"], 99, 15000)
    page = text(web.get("/health"))
    assert "Constant Contact calls today (UTC " in page
    assert (
        f"Connection {connected['salesforce_connection']} (salesforce, org 00D000000000001AAA): "
        "Salesforce API requests in the last 24 hours: 99 of 15,000" in page
    )
