"""Tests for the admin API through the Flask test client: auth, each route, validation, secrets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import SimpleWorker
from rq.job import Job

from middleware import intake, queue
from middleware.services import runs as run_services
from middleware.store import connections as connection_repo
from middleware.store import errors as error_repo
from middleware.store import links as link_repo
from middleware.store import runs as run_repo
from middleware.store import setups as setup_repo
from middleware.store.models import utcnow
from middleware.web import admin
from middleware.web.admin import views as admin_views

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
API = "/admin/api"
ACCESS_TOKEN = "sf-access-token-never-shown"


class Api:
    """The test client with the admin token."""

    def __init__(self, client: FlaskClient, app: Flask) -> None:
        self.client = client
        self.app = app

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        if body is not None:
            kw["data"] = json.dumps(body)
            kw["content_type"] = "application/json"
        return self.client.open(API + path, method=method, headers=AUTH, **kw)

    def get(self, path: str, **kw: Any) -> Any:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.call("POST", path, body, **kw)

    def patch(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.call("PATCH", path, body, **kw)

    def delete(self, path: str) -> Any:
        return self.call("DELETE", path)

    @property
    def store(self) -> Any:
        return self.app.extensions["middleware"]["store"]

    @property
    def redis(self) -> Redis:
        return self.app.extensions["middleware"]["redis"]  # type: ignore[no-any-return]


@pytest.fixture
def api(app: Flask, client: FlaskClient) -> Api:
    return Api(client, app)


def make_connection(api: Api, vendor: str, label: str = "") -> int:
    with api.store.transaction() as session:
        return connection_repo.create(
            session,
            vendor=vendor,
            label=label or vendor,
            base_url="https://example.my.salesforce.com" if vendor == "salesforce" else None,
            account_id="00D000000000001AAA" if vendor == "salesforce" else None,
            access_token=ACCESS_TOKEN,
            refresh_token="refresh-token-never-shown",
            expires_at=utcnow() + timedelta(hours=2),
        ).id


@pytest.fixture
def connected(api: Api) -> dict[str, int]:
    return {
        "salesforce_connection": make_connection(api, "salesforce"),
        "constant_contact_connection": make_connection(api, "constantcontact"),
    }


def new_setup(api: Api, **options: Any) -> dict[str, Any]:
    body = {"name": "Contacts", "main_list": "Newsletter", **options}
    response = api.post("/setups", body)
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer "},
        {"Authorization": TOKEN},
    ],
)
def test_routes_refuse_requests_without_the_admin_token(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    for path in ("/setups", "/connections", "/queue", "/openapi.json"):
        response = client.get(API + path, headers=headers)
        assert response.status_code == 401
        assert response.mimetype == "application/problem+json"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.json["status"] == 401


def test_the_admin_token_opens_the_api(client: FlaskClient) -> None:
    assert client.get(API + "/setups", headers=AUTH).status_code == 200


def test_token_comparison_is_exact() -> None:
    assert admin.token_matches("abc", "abc")
    assert not admin.token_matches("abc", "abcd")
    assert not admin.token_matches("", "")


# --------------------------------------------------------------------------- connections


def test_connections_are_listed_and_shown_without_tokens(
    api: Api, connected: dict[str, int]
) -> None:
    setup = new_setup(api, **connected)
    listed = api.get("/connections")
    assert listed.status_code == 200
    assert ACCESS_TOKEN not in listed.get_data(as_text=True)
    assert "refresh-token" not in listed.get_data(as_text=True)
    items = {c["id"]: c for c in listed.json["items"]}
    sf = items[connected["salesforce_connection"]]
    assert sf["vendor"] == "salesforce"
    assert sf["account_id"] == "00D000000000001AAA"
    assert sf["status"] == "active"
    assert sf["used_by"] == [setup["id"]]
    assert not any("token" in key for key in sf)

    one = api.get(f"/connections/{connected['constant_contact_connection']}")
    assert one.status_code == 200
    assert one.json["vendor"] == "constantcontact"
    assert set(one.json) >= {"label", "base_url", "expires_at", "last_error", "refreshed_at"}
    assert ACCESS_TOKEN not in one.get_data(as_text=True)


def test_unknown_connection_is_404(api: Api) -> None:
    response = api.get("/connections/99")
    assert response.status_code == 404
    assert "99" in response.json["detail"]


def test_a_connection_in_use_cannot_be_deleted(api: Api, connected: dict[str, int]) -> None:
    setup = new_setup(api, **connected)
    conn_id = connected["salesforce_connection"]
    refused = api.delete(f"/connections/{conn_id}")
    assert refused.status_code == 409
    assert str(setup["id"]) in refused.json["detail"]
    assert api.delete(f"/setups/{setup['id']}").status_code == 204
    assert api.delete(f"/connections/{conn_id}").status_code == 204
    assert api.get(f"/connections/{conn_id}").status_code == 404


# --------------------------------------------------------------------------- setups


def test_creating_a_setup_shows_its_secret_once(api: Api, connected: dict[str, int]) -> None:
    created = new_setup(api, **connected)
    secret = created["webhook_secret"]
    assert len(secret) >= 32
    assert created["webhook"] == {
        "url": f"http://localhost:5000/webhooks/salesforce/{created['id']}",
        "outbound_url": f"http://localhost:5000/webhooks/salesforce/{created['id']}/outbound",
        "auth": "shared_secret",
    }
    assert created["options"]["schedule"]["full_sync"] == "daily"  # defaults filled
    with api.store.transaction() as session:
        row = setup_repo.get(session, created["id"])
        assert setup_repo.webhook_secret(session, row) == secret

    shown = api.get(f"/setups/{created['id']}")
    listed = api.get("/setups")
    for response in (shown, listed):
        assert response.status_code == 200
        assert secret not in response.get_data(as_text=True)
        assert "webhook_secret" not in response.get_data(as_text=True)
    assert shown.json["options"]["main_list"] == "Newsletter"


def test_rotating_the_secret_shows_the_new_one(api: Api) -> None:
    created = new_setup(api)
    rotated = api.post(f"/setups/{created['id']}/webhook-secret")
    assert rotated.status_code == 200
    new_secret = rotated.json["webhook_secret"]
    assert new_secret != created["webhook_secret"]
    with api.store.transaction() as session:
        row = setup_repo.get(session, created["id"])
        assert setup_repo.webhook_secret(session, row) == new_secret
    assert new_secret not in api.get(f"/setups/{created['id']}").get_data(as_text=True)
    assert api.post("/setups/404/webhook-secret").status_code == 404


def test_creation_warnings_are_returned(api: Api) -> None:
    created = new_setup(api, sync_to_cc=False, unsubscribe_on_sf_opt_out=True)
    assert any("unsubscribe_on_sf_opt_out" in w for w in created["warnings"])
    assert any("Not connected yet" in w for w in created["warnings"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {
                "field_map": [
                    {"sf_field": "Title", "cc_field": "job_title"},
                    {"sf_field": "Region__c", "cc_field": "favourite_colour"},
                ]
            },
            "field_map[1].cc_field",
        ),
        ({"object_type": "Opportunity"}, "object_type"),
        ({"sync_too_cc": False}, "sync_too_cc"),
        ({"main_list": ""}, "main_list"),
        ({"schedule": {"full_sync": "hourly"}}, "schedule.full_sync"),
    ],
)
def test_invalid_setups_are_refused_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    response = api.post("/setups", {"name": "Bad", "main_list": "List", **body})
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert field in response.json["errors"], response.json
    assert api.get("/setups").json["items"] == []


def test_campaign_results_options_are_taken(api: Api) -> None:
    body = {
        "campaign_response_mode": "campaign_and_activity",
        "campaign_selection": ["Spring"],
        "sync_all_campaign_recipients": True,
        "campaign_results": {"window_days": 30},
    }
    response = api.post("/setups", {"name": "Campaigns", "main_list": "List", **body})
    assert response.status_code == 201, response.json
    options = response.json["options"]
    assert options["campaign_results"] == {
        "window_days": 30,
        "max_cc_calls": 1000,
        "every_hours": 24,
    }
    bad = api.patch(f"/setups/{response.json['id']}", {"campaign_results": {"max_cc_calls": 1}})
    assert bad.status_code == 422
    assert "campaign_results" in str(bad.json["errors"]), bad.json


def test_connections_of_a_setup_must_exist_and_be_of_the_right_vendor(
    api: Api, connected: dict[str, int]
) -> None:
    response = api.post(
        "/setups",
        {
            "name": "X",
            "main_list": "L",
            "salesforce_connection": connected["constant_contact_connection"],
            "constant_contact_connection": 999,
        },
    )
    assert response.status_code == 422
    assert "constantcontact" in response.json["errors"]["salesforce_connection"][0]
    assert "999" in response.json["errors"]["constant_contact_connection"][0]


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", ""])
def test_bodies_that_are_not_json_objects_are_400(api: Api, raw: str) -> None:
    response = api.client.post(
        API + "/setups", data=raw, content_type="application/json", headers=AUTH
    )
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"


def test_setup_names_are_unique(api: Api) -> None:
    new_setup(api)
    response = api.post("/setups", {"name": "Contacts", "main_list": "Other"})
    assert response.status_code == 409
    assert "name" in response.json["errors"]


def test_patch_is_a_merge_patch_validated_as_a_whole(api: Api, connected: dict[str, int]) -> None:
    created = new_setup(api, sync_address=False)
    setup_id = created["id"]
    response = api.patch(
        f"/setups/{setup_id}",
        {"main_list": "Members", "schedule": {"poll_minutes": 30}, **connected},
    )
    assert response.status_code == 200, response.json
    options = response.json["options"]
    assert options["main_list"] == "Members"
    assert options["schedule"]["poll_minutes"] == 30
    assert options["schedule"]["full_sync"] == "daily"  # untouched keys survive
    assert options["sync_address"] is False
    assert response.json["salesforce_connection"] == connected["salesforce_connection"]
    assert "webhook_secret" not in response.json

    reset = api.patch(f"/setups/{setup_id}", {"sync_address": None})
    assert reset.json["options"]["sync_address"] is True

    refused = api.patch(f"/setups/{setup_id}", {"object_type": "Lead"})
    assert refused.status_code == 422
    assert "object_type" in refused.json["errors"]
    nested = api.patch(
        f"/setups/{setup_id}", {"field_map": [{"sf_field": "1bad", "cc_field": "x"}]}
    )
    assert nested.status_code == 422
    assert set(nested.json["errors"]) >= {"field_map[0].sf_field", "field_map[0].cc_field"}
    assert api.get(f"/setups/{setup_id}").json["options"]["main_list"] == "Members"


def test_patch_calls_forget_setup_of_the_webhook_intake(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    forgotten: list[int] = []
    monkeypatch.setattr(admin_views, "forget_setup", forgotten.append)
    created = new_setup(api)
    api.patch(f"/setups/{created['id']}", {"main_list": "Other"})
    api.post(f"/setups/{created['id']}/webhook-secret")
    assert forgotten == [created["id"], created["id"]]


def test_pause_and_resume(api: Api) -> None:
    setup_id = new_setup(api)["id"]
    paused = api.post(f"/setups/{setup_id}/pause", {"reason": "maintenance"})
    assert paused.status_code == 200
    assert paused.json["paused"] is True
    assert paused.json["pause_reason"] == "maintenance"
    assert api.get(f"/setups/{setup_id}/status").json["paused"] is True
    bad = api.post(f"/setups/{setup_id}/pause", {"until": "tomorrow"})
    assert bad.status_code == 422
    assert "until" in bad.json["errors"]

    intake.mark_dirty(api.redis, setup_id, "Contact", ["003000000000001AAA"])
    resumed = api.post(f"/setups/{setup_id}/resume")
    assert resumed.json["paused"] is False
    assert resumed.json["pause_reason"] is None
    # Changes that waited during the pause are flushed at once.
    assert queue.pending_job_id(f"flush-{setup_id}", connection=api.redis) is not None


def test_a_paused_setup_with_a_default_reason(api: Api) -> None:
    setup_id = new_setup(api)["id"]
    assert api.post(f"/setups/{setup_id}/pause").json["pause_reason"] == "paused by an admin"


def test_delete_setup_drops_its_pending_changes(api: Api) -> None:
    setup_id = new_setup(api)["id"]
    intake.mark_dirty(api.redis, setup_id, "Contact", ["003000000000001AAA"])
    assert api.delete(f"/setups/{setup_id}").status_code == 204
    assert api.get(f"/setups/{setup_id}").status_code == 404
    assert intake.pending(api.redis, setup_id) == 0
    assert api.delete(f"/setups/{setup_id}").status_code == 404


def test_status_reports_pending_runs_errors_and_links(api: Api, connected: dict[str, int]) -> None:
    setup_id = new_setup(api, **connected)["id"]
    intake.mark_dirty(api.redis, setup_id, "Contact", ["003A", "003B", "003C"])
    with api.store.transaction() as session:
        run_id = run_repo.open_run(session, setup_id, "incremental", total=10).id
        run_repo.progress(session, run_id, done=5)
        error_repo.record_errors(
            session,
            setup_id,
            [
                {"direction": "sf_to_cc", "code": "invalid_email", "sf_id": "003A"},
                {"direction": "sf_to_cc", "code": "invalid_email", "sf_id": "003B"},
                {"direction": "cc_to_sf", "code": "LastName required", "email": "a@b.org"},
            ],
        )
        link_repo.upsert_links(
            session, setup_id, [{"sf_id": "003D", "sf_object": "Contact", "cc_contact_id": "c1"}]
        )
    status = api.get(f"/setups/{setup_id}/status").json
    assert status["pending"] == 3
    assert status["paused"] is False
    assert status["open_errors"] == {"invalid_email": 2, "LastName required": 1}
    assert status["open_errors_total"] == 3
    assert status["links"] == {"active": 1}
    assert status["active_run"]["id"] == run_id
    assert status["active_run"]["progress"] == {"done": 5, "total": 10, "percent": 50.0}
    assert status["connections"] == {"salesforce": "active", "constantcontact": "active"}
    assert api.get("/setups/77/status").status_code == 404


# --------------------------------------------------------------------------- sync now, full sync


def test_sync_now_enqueues_the_job(api: Api, connected: dict[str, int]) -> None:
    setup_id = new_setup(api, **connected)["id"]
    response = api.post(f"/setups/{setup_id}/sync")
    assert response.status_code == 202
    job = Job.fetch(response.json["job_id"], connection=api.redis, serializer=queue.SERIALIZER)
    assert job.func_name == "jobs.sync.sync_now"
    assert job.args == [setup_id]
    assert job.origin == queue.DEFAULT
    assert response.headers["Location"].endswith(f"/setups/{setup_id}/runs")


def test_sync_now_needs_connections_and_an_unpaused_setup(
    api: Api, connected: dict[str, int]
) -> None:
    unconnected = new_setup(api)["id"]
    response = api.post(f"/setups/{unconnected}/sync")
    assert response.status_code == 409
    assert "salesforce_connection" in response.json["detail"]

    setup_id = new_setup(api, name="Other", **connected)["id"]
    api.post(f"/setups/{setup_id}/pause", {"reason": "quota"})
    paused = api.post(f"/setups/{setup_id}/sync")
    assert paused.status_code == 409
    assert "paused" in paused.json["detail"]
    assert api.post("/setups/999/sync").status_code == 404
    assert queue.get_queue(api.redis, queue.DEFAULT).count == 0


def test_poll_enqueues_one_constant_contact_poll(api: Api, connected: dict[str, int]) -> None:
    setup_id = new_setup(api, **connected)["id"]
    response = api.post(f"/setups/{setup_id}/poll")
    assert response.status_code == 202
    assert response.json["setup_id"] == setup_id
    job = Job.fetch(response.json["job_id"], connection=api.redis, serializer=queue.SERIALIZER)
    assert job.func_name == "jobs.poll.poll_setup"
    assert job.args == [setup_id]
    assert job.origin == queue.DEFAULT
    assert response.headers["Location"].endswith(f"/setups/{setup_id}/runs")
    # Each request is its own poll (they run one after another under the setup's lock).
    again = api.post(f"/setups/{setup_id}/poll")
    assert again.status_code == 202
    assert again.json["job_id"] != response.json["job_id"]


def test_poll_is_refused_when_it_cannot_run(api: Api, connected: dict[str, int]) -> None:
    assert api.post("/setups/999/poll").status_code == 404
    unconnected = new_setup(api)["id"]
    refused = api.post(f"/setups/{unconnected}/poll")
    assert refused.status_code == 409
    assert "not connected" in refused.json["detail"]

    one_way = new_setup(
        api, name="One way", sync_to_sf=False, sync_unsubscribes_to_sf=False, **connected
    )["id"]
    nothing = api.post(f"/setups/{one_way}/poll")
    assert nothing.status_code == 409
    assert "sync_to_sf and sync_unsubscribes_to_sf both off" in nothing.json["detail"]

    setup_id = new_setup(api, name="Paused", **connected)["id"]
    api.post(f"/setups/{setup_id}/pause", {"reason": "quota"})
    paused = api.post(f"/setups/{setup_id}/poll")
    assert paused.status_code == 409
    assert "paused" in paused.json["detail"]
    assert queue.get_queue(api.redis, queue.DEFAULT).count == 0


def test_campaign_results_enqueue_a_results_run(api: Api, connected: dict[str, int]) -> None:
    setup_id = new_setup(api, campaign_response_mode="campaign", **connected)["id"]
    response = api.post(f"/setups/{setup_id}/campaign-results")
    assert response.status_code == 202, response.json
    job = Job.fetch(response.json["job_id"], connection=api.redis, serializer=queue.SERIALIZER)
    assert job.func_name == "jobs.results.campaign_results"
    assert job.args == [setup_id] and not job.kwargs
    reset = api.post(f"/setups/{setup_id}/campaign-results", {"reset": True})
    assert reset.status_code == 202
    job = Job.fetch(reset.json["job_id"], connection=api.redis, serializer=queue.SERIALIZER)
    assert job.kwargs == {"reset": True}
    assert api.post(f"/setups/{setup_id}/campaign-results", {"reset": "yes"}).status_code == 422


def test_campaign_results_are_refused_when_they_cannot_run(
    api: Api, connected: dict[str, int]
) -> None:
    assert api.post("/setups/999/campaign-results").status_code == 404
    none = new_setup(api, **connected)["id"]
    refused = api.post(f"/setups/{none}/campaign-results")
    assert refused.status_code == 409
    assert "brings no campaign results back" in refused.json["detail"]
    unconnected = new_setup(api, name="Unconnected", campaign_response_mode="activity")["id"]
    assert api.post(f"/setups/{unconnected}/campaign-results").status_code == 409
    assert queue.get_queue(api.redis, queue.DEFAULT).count == 0


def test_a_poll_job_run_by_a_worker_opens_a_poll_run(
    api: Api, connected: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from middleware.cc_to_sf import poll

    seen: list[int] = []

    def fake_run_poll(runtime: Any, setup_id: int, *, job_id: str | None = None) -> Any:
        seen.append(setup_id)
        with runtime.store.transaction() as session:
            run = run_repo.open_run(session, setup_id, "poll", job_id=job_id)
            run_repo.finish_run(session, run.id, "succeeded", counts={"created": 1})
        return {"setup_id": setup_id}

    monkeypatch.setattr(poll, "run_poll", fake_run_poll)
    setup_id = new_setup(api, **connected)["id"]
    job_id = api.post(f"/setups/{setup_id}/poll").json["job_id"]
    runtime = api.app.extensions["middleware"]["runtime"]
    with queue.use_runtime(runtime):
        SimpleWorker(
            [queue.get_queue(api.redis, queue.DEFAULT)],
            connection=api.redis,
            serializer=queue.SERIALIZER,
        ).work(burst=True)
    assert seen == [setup_id]
    runs = api.get(f"/setups/{setup_id}/runs").json["items"]
    assert [(r["kind"], r["status"], r["job_id"]) for r in runs] == [("poll", "succeeded", job_id)]


def test_full_sync_is_501_until_its_job_exists(
    api: Api, connected: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    setup_id = new_setup(api, **connected)["id"]
    monkeypatch.setattr(run_services, "full_sync_available", lambda: False)
    response = api.post(f"/setups/{setup_id}/full-sync")
    assert response.status_code == 501
    assert "Full Sync" in response.json["detail"]

    monkeypatch.setattr(run_services, "full_sync_available", lambda: True)
    started = api.post(f"/setups/{setup_id}/full-sync", {"reset": True})
    assert started.status_code == 202
    job = Job.fetch(started.json["job_id"], connection=api.redis, serializer=queue.SERIALIZER)
    assert job.func_name == "jobs.full_sync.full_sync"
    assert job.kwargs == {"reset": True}
    assert job.origin == queue.FULL_SYNC
    assert api.post(f"/setups/{setup_id}/full-sync", {"rest": True}).status_code == 422
    assert api.post(f"/setups/{setup_id}/full-sync", {"partitions": 99}).status_code == 422


def test_full_sync_splits_and_refuses_a_second_one(
    api: Api, connected: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    setup_id = new_setup(api, **connected)["id"]
    monkeypatch.setattr(run_services, "full_sync_available", lambda: True)
    started = api.post(f"/setups/{setup_id}/full-sync", {"partitions": 4})
    job = Job.fetch(started.json["job_id"], connection=api.redis, serializer=queue.SERIALIZER)
    assert job.kwargs == {"partitions": 4}
    with api.store.transaction() as session:
        run_id = run_repo.open_run(session, setup_id, "full", job_id=job.id).id
    again = api.post(f"/setups/{setup_id}/full-sync")
    assert again.status_code == 409
    assert f"run {run_id}" in again.json["detail"]


# --------------------------------------------------------------------------- runs


def test_runs_are_listed_newest_first_with_progress(api: Api) -> None:
    setup_id = new_setup(api)["id"]
    t0 = utcnow() - timedelta(minutes=10)
    with api.store.transaction() as session:
        first = run_repo.open_run(session, setup_id, "incremental", now=t0)
        run_repo.finish_run(
            session,
            first.id,
            "succeeded",
            counts={"created": 2, "skipped": {"no email": 1}},
            api_calls={"salesforce": 1, "constantcontact": 3},
            message="ok",
            now=t0 + timedelta(seconds=90),
        )
        second = run_repo.open_run(session, setup_id, "sync_now", now=t0 + timedelta(minutes=5))
    runs = api.get(f"/setups/{setup_id}/runs").json["items"]
    assert [r["id"] for r in runs] == [second.id, first.id]
    assert runs[1]["duration_seconds"] == 90.0
    assert runs[1]["counts"] == {"created": 2, "skipped": {"no email": 1}}
    assert runs[1]["api_calls"] == {"salesforce": 1, "constantcontact": 3}
    assert runs[0]["progress"]["percent"] is None
    assert len(api.get(f"/setups/{setup_id}/runs?limit=1").json["items"]) == 1

    one = api.get(f"/runs/{first.id}")
    assert one.status_code == 200
    assert one.json["message"] == "ok"
    assert api.get("/runs/9999").status_code == 404


@pytest.mark.parametrize("query", ["limit=0", "limit=abc", "limit=1000", "colour=red"])
def test_bad_run_queries_name_the_parameter(api: Api, query: str) -> None:
    setup_id = new_setup(api)["id"]
    response = api.get(f"/setups/{setup_id}/runs?{query}")
    assert response.status_code == 400
    assert query.split("=")[0] in response.json["errors"]


# --------------------------------------------------------------------------- sync errors


@pytest.fixture
def errors_setup(api: Api, connected: dict[str, int]) -> Iterator[tuple[int, list[int]]]:
    setup_id = new_setup(api, object_type="Lead", **connected)["id"]
    with api.store.transaction() as session:
        rows = error_repo.record_errors(
            session,
            setup_id,
            [
                {
                    "direction": "sf_to_cc",
                    "code": "invalid_email",
                    "sf_id": "00Q000000000001AAA",
                    "payload": {"sf_object": "Lead", "sf_id": "00Q000000000001AAA"},
                },
                {"direction": "sf_to_cc", "code": "invalid_email", "sf_id": "00Q000000000002AAA"},
                {"direction": "sf_to_cc", "code": "conflict", "sf_id": "00Q000000000003AAA"},
                {"direction": "cc_to_sf", "code": "LastName required", "email": "x@y.org"},
            ],
        )
        ids = [r.id for r in rows]
    yield setup_id, ids


def test_errors_are_listed_with_filters_and_totals(
    api: Api, errors_setup: tuple[int, list[int]]
) -> None:
    setup_id, ids = errors_setup
    listed = api.get(f"/setups/{setup_id}/errors")
    assert listed.json["total"] == 4
    assert {e["id"] for e in listed.json["items"]} == set(ids)
    masked = next(e for e in listed.json["items"] if e["direction"] == "cc_to_sf")
    assert masked["email"] != "x@y.org"
    by_code = api.get(f"/setups/{setup_id}/errors?code=invalid_email&limit=1").json
    assert by_code["total"] == 2
    assert len(by_code["items"]) == 1
    page2 = api.get(f"/setups/{setup_id}/errors?code=invalid_email&limit=1&offset=1").json
    assert page2["items"][0]["id"] != by_code["items"][0]["id"]
    assert api.get(f"/setups/{setup_id}/errors?status=resolved").json["total"] == 0
    bad = api.get(f"/setups/{setup_id}/errors?status=closed")
    assert bad.status_code == 400
    assert "status" in bad.json["errors"]


def test_retrying_errors_marks_records_dirty_and_schedules_a_flush(
    api: Api, errors_setup: tuple[int, list[int]]
) -> None:
    setup_id, ids = errors_setup
    response = api.post(f"/setups/{setup_id}/errors/retry", {"ids": ids[:2]})
    assert response.status_code == 200, response.json
    assert response.json["retrying"] == 2
    assert response.json["marked_dirty"] == 2
    assert response.json["awaiting_poll"] == 0
    dirty = {k.decode() for k in api.redis.hkeys(intake.dirty_key(setup_id))}  # type: ignore[union-attr]
    assert dirty == {"Lead:00Q000000000001AAA", "Lead:00Q000000000002AAA"}
    job_id = response.json["flush_job_id"]
    assert job_id == queue.pending_job_id(f"flush-{setup_id}", connection=api.redis)
    job = Job.fetch(job_id, connection=api.redis, serializer=queue.SERIALIZER)
    assert job.origin == queue.WEBHOOKS
    assert job.args[2] == "jobs.flush.flush_setup"
    statuses = {
        e["id"]: e["status"] for e in api.get(f"/setups/{setup_id}/errors?status=all").json["items"]
    }
    assert statuses[ids[0]] == statuses[ids[1]] == "retrying"
    assert statuses[ids[2]] == "open"

    # A second retry while the flush is pending reuses it.
    again = api.post(f"/setups/{setup_id}/errors/retry", {"all": True, "code": "conflict"})
    assert again.json["retrying"] == 1
    assert again.json["flush_job_id"] == job_id


def test_retry_all_counts_errors_without_a_salesforce_record(
    api: Api, errors_setup: tuple[int, list[int]]
) -> None:
    setup_id, _ = errors_setup
    response = api.post(f"/setups/{setup_id}/errors/retry", {"all": True})
    assert response.json == {
        "retrying": 4,
        "marked_dirty": 3,
        "awaiting_poll": 1,
        "flush_job_id": response.json["flush_job_id"],
    }
    assert intake.pending(api.redis, setup_id) == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "_schema"),
        ({"ids": [1], "all": True}, "_schema"),
        ({"ids": ["one"]}, "ids[0]"),
        ({"ids": [1], "code": "x"}, "code"),
        ({"every": True}, "every"),
    ],
)
def test_error_selections_are_validated(
    api: Api, errors_setup: tuple[int, list[int]], body: dict[str, Any], field: str
) -> None:
    setup_id, _ = errors_setup
    for action in ("retry", "resolve"):
        response = api.post(f"/setups/{setup_id}/errors/{action}", body)
        assert response.status_code == 422
        assert any(key.startswith(field) for key in response.json["errors"]), response.json


def test_resolving_errors(api: Api, errors_setup: tuple[int, list[int]]) -> None:
    setup_id, ids = errors_setup
    assert api.post(f"/setups/{setup_id}/errors/resolve", {"ids": [ids[0]]}).json == {"resolved": 1}
    assert api.post(f"/setups/{setup_id}/errors/resolve", {"all": True}).json == {"resolved": 3}
    assert api.get(f"/setups/{setup_id}/errors").json["total"] == 0
    assert api.get(f"/setups/{setup_id}/errors?status=resolved").json["total"] == 4
    assert api.post("/setups/555/errors/resolve", {"all": True}).status_code == 404


# --------------------------------------------------------------------------- queue


def _fail_one_job(redis: Redis) -> str:
    # json.loads of a non-JSON string fails: an importable job that always raises.
    job = queue.enqueue("json.loads", "not json", retry=None, connection=redis)
    worker = SimpleWorker(
        [queue.get_queue(redis, queue.DEFAULT)], connection=redis, serializer=queue.SERIALIZER
    )
    worker.work(burst=True)
    return job.id


def test_queue_state_and_failed_jobs_requeue(api: Api) -> None:
    state = api.get("/queue").json
    assert set(state["queues"]) == set(queue.QUEUE_NAMES)
    assert state["backlog"] == 0

    job_id = _fail_one_job(api.redis)
    assert api.get("/queue").json["failed"] == 1
    failed = api.get("/queue/failed").json
    assert failed["total"] == 1
    item = failed["items"][0]
    assert item["id"] == job_id
    assert item["func"] == "json.loads"
    assert item["queue"] == queue.DEFAULT
    assert item["exc_type"] == "JSONDecodeError"
    assert "Expecting value" in item["exc_message"]
    assert api.get("/queue/failed?queue=webhooks").json["total"] == 0
    bad = api.get("/queue/failed?queue=nope")
    assert bad.status_code == 400
    assert "queue" in bad.json["errors"]

    result = api.post("/queue/failed/requeue", {"ids": [job_id, "no-such-job"]}).json
    assert result == {"requeued": [job_id], "missing": ["no-such-job"]}
    state = api.get("/queue").json
    assert state["failed"] == 0
    assert state["queues"][queue.DEFAULT]["queued"] == 1


def test_requeue_all(api: Api) -> None:
    ids = {_fail_one_job(api.redis), _fail_one_job(api.redis)}
    result = api.post("/queue/failed/requeue", {"all": True}).json
    assert set(result["requeued"]) == ids
    assert api.post("/queue/failed/requeue", {}).status_code == 422


class _FailingSalesforce:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def limits(self) -> dict[str, Any]:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status"),
    [
        ("Retryable", "active"),  # an outage says nothing about the connection
        ("AccessDenied", "error"),
        ("AuthRevoked", "needs_reauth"),
    ],
)
def test_a_failed_check_records_what_it_means(
    api: Api, connected: dict[str, int], monkeypatch: pytest.MonkeyPatch, error: str, status: str
) -> None:
    from middleware import connections as factories
    from middleware.salesforce import errors as sf_errors

    exc = getattr(sf_errors, error)("Salesforce said no")
    monkeypatch.setattr(factories, "salesforce_client", lambda *_a, **_k: _FailingSalesforce(exc))
    conn_id = connected["salesforce_connection"]
    checked = api.post(f"/connections/{conn_id}/check")
    assert checked.status_code == 200
    assert checked.json["ok"] is False
    assert "Salesforce said no" in checked.json["detail"]
    assert checked.json["connection"]["status"] == status
    assert api.post("/connections/999/check").status_code == 404
