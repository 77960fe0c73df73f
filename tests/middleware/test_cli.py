"""Tests for the operator CLI through click's runner: setups, connections, sync."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from rq import SimpleWorker
from rq.job import Job, JobStatus

from middleware import intake, queue
from middleware.services import runs as run_services
from middleware.store import connections as connection_repo
from middleware.store import errors as error_repo
from middleware.store import runs as run_repo
from middleware.store import setups as setup_repo
from middleware.store.models import utcnow

SETUP = {"name": "Contacts", "main_list": "Newsletter"}


def cli(app: Flask, *args: str, input: str | None = None) -> Result:
    return app.test_cli_runner().invoke(args=list(args), input=input)


def store_of(app: Flask) -> Any:
    return app.extensions["middleware"]["store"]


def redis_of(app: Flask) -> Any:
    return app.extensions["middleware"]["redis"]


@pytest.fixture
def connections(app: Flask) -> dict[str, int]:
    ids = {}
    with store_of(app).transaction() as session:
        for vendor in ("salesforce", "constantcontact"):
            ids[vendor] = connection_repo.create(
                session,
                vendor=vendor,
                label=f"{vendor} main",
                access_token="cli-access-token",
                refresh_token="cli-refresh-token",
                expires_at=utcnow() + timedelta(hours=1),
            ).id
    return ids


def write(tmp_path: Path, name: str, data: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def create(app: Flask, tmp_path: Path, connections: dict[str, int], **extra: Any) -> dict[str, Any]:
    result = cli(
        app,
        "setups",
        "create",
        "--file",
        write(tmp_path, "setup.json", {**SETUP, **extra}),
        "--sf-connection",
        str(connections["salesforce"]),
        "--cc-connection",
        str(connections["constantcontact"]),
        "--json",
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- setups


def test_create_prints_the_webhook_url_and_the_secret_once(
    app: Flask, tmp_path: Path, connections: dict[str, int]
) -> None:
    result = cli(
        app,
        "setups",
        "create",
        "--file",
        write(tmp_path, "s.json", SETUP),
        "--sf-connection",
        str(connections["salesforce"]),
        "--cc-connection",
        str(connections["constantcontact"]),
    )
    assert result.exit_code == 0, result.output
    with store_of(app).transaction() as session:
        row = setup_repo.all_setups(session)[0]
        secret = setup_repo.webhook_secret(session, row)
        assert row.salesforce_connection_id == connections["salesforce"]
    assert secret in result.stdout
    assert f"/webhooks/salesforce/{row.id}" in result.stdout
    assert "shown once" in result.stdout

    shown = cli(app, "setups", "show", str(row.id))
    assert shown.exit_code == 0
    assert secret not in shown.output
    assert "Newsletter" in shown.output
    assert "pending changes: 0" in shown.output
    listed = cli(app, "setups", "list")
    assert "Contacts" in listed.output and secret not in listed.output
    as_json = json.loads(cli(app, "setups", "list", "--json").stdout)
    assert [s["id"] for s in as_json["items"]] == [row.id]


def test_create_names_invalid_fields_and_exits_non_zero(app: Flask, tmp_path: Path) -> None:
    bad = {**SETUP, "field_map": [{"sf_field": "Title", "cc_field": "nope"}]}
    result = cli(app, "setups", "create", "--file", write(tmp_path, "bad.json", bad))
    assert result.exit_code == 1
    assert "field_map[0].cc_field" in result.output
    missing = cli(app, "setups", "create", "--file", str(tmp_path / "absent.json"))
    assert missing.exit_code == 1
    assert "cannot read" in missing.output
    broken = cli(app, "setups", "create", "--file", write(tmp_path, "x.json", "{nope"))
    assert broken.exit_code == 1
    assert "not valid JSON" in broken.output
    wrong_vendor = cli(
        app, "setups", "create", "--file", write(tmp_path, "s.json", SETUP), "--sf-connection", "9"
    )
    assert wrong_vendor.exit_code == 1
    assert "salesforce_connection" in wrong_vendor.output


def test_update_pause_resume_secret_and_delete(
    app: Flask, tmp_path: Path, connections: dict[str, int]
) -> None:
    created = create(app, tmp_path, connections)
    setup_id = str(created["id"])
    updated = cli(
        app,
        "setups",
        "update",
        setup_id,
        "--file",
        write(tmp_path, "patch.json", {"main_list": "Members"}),
        "--json",
    )
    assert updated.exit_code == 0, updated.output
    assert json.loads(updated.stdout)["options"]["main_list"] == "Members"
    refused = cli(
        app,
        "setups",
        "update",
        setup_id,
        "--file",
        write(tmp_path, "p.json", {"object_type": "Lead"}),
    )
    assert refused.exit_code == 1
    assert "object_type" in refused.output

    assert cli(app, "setups", "pause", setup_id, "--reason", "audit").exit_code == 0
    with store_of(app).transaction() as session:
        assert setup_repo.get(session, created["id"]).pause_reason == "audit"
    intake.mark_dirty(redis_of(app), created["id"], "Contact", ["003A"])
    resumed = cli(app, "setups", "resume", setup_id)
    assert "1 pending" in resumed.output
    assert queue.pending_job_id(f"flush-{setup_id}", connection=redis_of(app)) is not None

    rotated = cli(app, "setups", "secret", setup_id)
    assert rotated.exit_code == 0
    new_secret = rotated.stdout.strip()
    assert new_secret != created["webhook_secret"]
    with store_of(app).transaction() as session:
        row = setup_repo.get(session, created["id"])
        assert setup_repo.webhook_secret(session, row) == new_secret

    assert cli(app, "setups", "delete", setup_id, input="n\n").exit_code == 1
    assert cli(app, "setups", "delete", setup_id, "--yes").exit_code == 0
    gone = cli(app, "setups", "show", setup_id)
    assert gone.exit_code == 1
    assert "does not exist" in gone.output


def test_resume_of_a_quota_pause_tries_again_now(
    app: Flask, tmp_path: Path, connections: dict[str, int]
) -> None:
    from datetime import UTC, datetime

    from middleware import runner
    from middleware.constantcontact import wiring

    created = create(app, tmp_path, connections)
    setup_id = created["id"]
    redis = redis_of(app)
    midnight = setup_repo.next_utc_midnight(datetime.now(UTC))
    limiter = wiring.api_limiter(app.extensions["middleware"]["settings"], redis)
    limiter.block_until(midnight)  # Constant Contact said quota_exceeded
    with store_of(app).transaction() as session:
        setup_repo.pause(session, setup_id, runner.QUOTA_REASON, midnight)
    intake.mark_dirty(redis, setup_id, "Contact", ["003A"])
    held = queue.ensure_scheduled(
        f"flush-{setup_id}", "jobs.flush.flush_setup", [setup_id], delay=3600, connection=redis
    )
    resumed = cli(app, "setups", "resume", str(setup_id))
    assert resumed.exit_code == 0, resumed.output
    assert limiter.blocked_until() is None
    pending = queue.pending_job_id(f"flush-{setup_id}", connection=redis)
    assert pending is not None and pending != held
    due = queue.pending_job_due(f"flush-{setup_id}", connection=redis)
    assert due is not None and (due - datetime.now(UTC)).total_seconds() < 2


def test_setups_status_says_what_the_api_status_says(
    app: Flask, tmp_path: Path, connections: dict[str, int]
) -> None:
    setup_id = create(app, tmp_path, connections)["id"]
    redis = redis_of(app)
    intake.mark_dirty(redis, setup_id, "Contact", ["003A", "003B"])
    with store_of(app).transaction() as session:
        done = run_repo.open_run(session, setup_id, "incremental")
        run_repo.finish_run(session, done.id, "succeeded", counts={"created": 3})
        error_repo.record_errors(
            session,
            setup_id,
            [{"direction": "sf_to_cc", "code": "invalid_email", "sf_id": "003A"}],
            run_id=done.id,
        )
        running = run_repo.open_run(session, setup_id, "full")
        setup_repo.pause(session, setup_id, "audit")

    result = cli(app, "setups", "status", str(setup_id))
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"setup {setup_id}: paused (audit)" in out
    assert f"running: #{running.id} full" in out
    assert "pending changes: 2" in out
    assert "open errors: 1 (invalid_email=1)" in out
    assert "connections: salesforce=active, constantcontact=active" in out
    assert "recent runs:" in out and "succeeded" in out

    as_json = json.loads(cli(app, "setups", "status", str(setup_id), "--json").stdout)
    api = app.test_client().get(
        f"/admin/api/setups/{setup_id}/status",
        headers={"Authorization": "Bearer test-admin-token"},
    )
    assert api.status_code == 200
    from_api = api.get_json()
    for view in (as_json, from_api):  # a running run's duration grows between the two calls
        for run in [view["active_run"], *view["last_runs"]]:
            run.pop("duration_seconds")
    assert as_json == from_api
    assert as_json["pending"] == 2 and as_json["open_errors_total"] == 1

    missing = cli(app, "setups", "status", "999")
    assert missing.exit_code == 1
    assert "does not exist" in missing.output


# --------------------------------------------------------------------------- connections


def test_connections_list_never_shows_tokens(app: Flask, connections: dict[str, int]) -> None:
    table = cli(app, "connections", "list")
    assert table.exit_code == 0
    assert "salesforce main" in table.output
    assert "cli-access-token" not in table.output
    data = json.loads(cli(app, "connections", "list", "--json").stdout)
    assert {c["vendor"] for c in data["items"]} == {"salesforce", "constantcontact"}
    assert "cli-access-token" not in json.dumps(data)
    assert cli(app, "connections", "check", "99").exit_code == 1


# --------------------------------------------------------------------------- sync


class FakeRun:
    """Stands in for the worker while the CLI waits: opens the run, advances it, finishes it."""

    def __init__(
        self, app: Flask, setup_id: int, steps: list[dict[str, Any]], kind: str = "sync_now"
    ) -> None:
        self.app = app
        self.kind = kind
        self.setup_id = setup_id
        self.steps = steps
        self.run_id: int | None = None
        self.sleeps = 0

    def job_id(self) -> str:
        queued = queue.get_queue(redis_of(self.app), queue.DEFAULT).job_ids
        return queued[0]  # type: ignore[no-any-return]

    def __call__(self, _seconds: float) -> None:
        self.sleeps += 1
        if not self.steps:
            return
        step = self.steps.pop(0)
        with store_of(self.app).transaction() as session:
            if self.run_id is None:
                run = run_repo.open_run(
                    session, self.setup_id, self.kind, job_id=self.job_id(), total=step["total"]
                )
                self.run_id = run.id
            elif "finish" in step:
                run_repo.finish_run(
                    session, self.run_id, step["finish"], counts={"updated": 4}, message="done"
                )
            else:
                run_repo.progress(session, self.run_id, done=step["done"])


def test_sync_now_enqueues_and_returns(
    app: Flask, tmp_path: Path, connections: dict[str, int]
) -> None:
    setup_id = create(app, tmp_path, connections)["id"]
    result = cli(app, "sync", "now", str(setup_id), "--json")
    assert result.exit_code == 0, result.output
    job_id = json.loads(result.stdout)["job_id"]
    job = Job.fetch(job_id, connection=redis_of(app), serializer=queue.SERIALIZER)
    assert job.func_name == "jobs.sync.sync_now"
    assert job.args == [setup_id]


@pytest.mark.parametrize(("outcome", "exit_code"), [("succeeded", 0), ("failed", 1)])
def test_sync_now_wait_follows_the_run_with_a_progress_bar(
    app: Flask, tmp_path: Path, connections: dict[str, int], outcome: str, exit_code: int
) -> None:
    setup_id = create(app, tmp_path, connections)["id"]
    fake = FakeRun(app, setup_id, [{"total": 4}, {"done": 2}, {"done": 4}, {"finish": outcome}])
    app.config["CLI_SLEEP"] = fake
    result = cli(app, "sync", "now", str(setup_id), "--wait")
    assert result.exit_code == exit_code, result.output
    # Not a terminal: click shows the bar's label once instead of redrawing it.
    assert f"run {fake.run_id}\n" in result.output
    assert "  contacts updated in Constant Contact: 4\n" in result.output
    assert fake.sleeps == 4
    if outcome == "failed":
        assert "ended failed" in result.output


def test_sync_now_wait_reports_a_failed_job(
    app: Flask, tmp_path: Path, connections: dict[str, int]
) -> None:
    setup_id = create(app, tmp_path, connections)["id"]

    def fail_the_job(_seconds: float) -> None:
        job_id = queue.get_queue(redis_of(app), queue.DEFAULT).job_ids[0]
        Job.fetch(job_id, connection=redis_of(app), serializer=queue.SERIALIZER).set_status(
            JobStatus.FAILED
        )

    app.config["CLI_SLEEP"] = fail_the_job
    result = cli(app, "sync", "now", str(setup_id), "--wait")
    assert result.exit_code == 1
    assert "failed" in result.output


def test_sync_now_wait_gives_up_after_the_timeout(
    app: Flask, tmp_path: Path, connections: dict[str, int]
) -> None:
    setup_id = create(app, tmp_path, connections)["id"]
    clock = iter(float(n) for n in range(0, 10_000, 10))
    app.config["CLI_SLEEP"] = lambda _s: None
    app.config["CLI_MONOTONIC"] = lambda: next(clock)
    result = cli(app, "sync", "now", str(setup_id), "--wait", "--timeout", "30")
    assert result.exit_code == 1
    assert "still running after 30s" in result.output


def test_sync_poll_enqueues_the_poll_job(
    app: Flask, tmp_path: Path, connections: dict[str, int]
) -> None:
    setup_id = create(app, tmp_path, connections)["id"]
    result = cli(app, "sync", "poll", str(setup_id), "--json")
    assert result.exit_code == 0, result.output
    job_id = json.loads(result.stdout)["job_id"]
    job = Job.fetch(job_id, connection=redis_of(app), serializer=queue.SERIALIZER)
    assert job.func_name == "jobs.poll.poll_setup"
    assert job.args == [setup_id]
    human = cli(app, "sync", "poll", str(setup_id))
    assert "Poll queued as job poll-now-" in human.output


@pytest.mark.parametrize(("outcome", "exit_code"), [("succeeded", 0), ("failed", 1)])
def test_sync_poll_wait_prints_the_run_and_fails_with_it(
    app: Flask, tmp_path: Path, connections: dict[str, int], outcome: str, exit_code: int
) -> None:
    setup_id = create(app, tmp_path, connections)["id"]
    fake = FakeRun(app, setup_id, [{"total": None}, {"finish": outcome}], kind="poll")
    app.config["CLI_SLEEP"] = fake
    result = cli(app, "sync", "poll", str(setup_id), "--wait")
    assert result.exit_code == exit_code, result.output
    assert "waiting for it to finish" in result.output
    assert f"poll  {outcome}" in result.output
    assert "  contacts updated in Constant Contact: 4\n" in result.output
    if outcome == "failed":
        assert f"run {fake.run_id} ended failed: done" in result.output


def test_sync_poll_refuses_a_setup_with_nothing_to_poll(
    app: Flask, tmp_path: Path, connections: dict[str, int]
) -> None:
    setup_id = create(app, tmp_path, connections, sync_to_sf=False, sync_unsubscribes_to_sf=False)[
        "id"
    ]
    result = cli(app, "sync", "poll", str(setup_id))
    assert result.exit_code == 1
    assert "nothing to carry into Salesforce" in result.output
    assert cli(app, "sync", "poll", "999").exit_code == 1
    assert queue.get_queue(redis_of(app), queue.DEFAULT).count == 0


def test_sync_results_enqueues_the_results_job(
    app: Flask, tmp_path: Path, connections: dict[str, int]
) -> None:
    setup_id = create(app, tmp_path, connections, campaign_response_mode="activity")["id"]
    result = cli(app, "sync", "results", str(setup_id), "--reset", "--json")
    assert result.exit_code == 0, result.output
    job = Job.fetch(
        json.loads(result.stdout)["job_id"], connection=redis_of(app), serializer=queue.SERIALIZER
    )
    assert job.func_name == "jobs.results.campaign_results"
    assert (job.args, job.kwargs) == ([setup_id], {"reset": True})
    human = cli(app, "sync", "results", str(setup_id))
    assert "Campaign results queued as job results-now-" in human.output


def test_sync_results_refuses_a_setup_without_results(
    app: Flask, tmp_path: Path, connections: dict[str, int]
) -> None:
    setup_id = create(app, tmp_path, connections)["id"]
    result = cli(app, "sync", "results", str(setup_id))
    assert result.exit_code == 1
    assert "brings no campaign results back" in result.output


def test_sync_now_refuses_an_unconnected_setup(app: Flask, tmp_path: Path) -> None:
    created = cli(app, "setups", "create", "--file", write(tmp_path, "s.json", SETUP), "--json")
    setup_id = json.loads(created.stdout)["id"]
    result = cli(app, "sync", "now", str(setup_id))
    assert result.exit_code == 1
    assert "not connected" in result.output


def test_sync_runs_and_errors(app: Flask, tmp_path: Path, connections: dict[str, int]) -> None:
    setup_id = create(app, tmp_path, connections)["id"]
    assert "no runs yet" in cli(app, "sync", "runs", str(setup_id)).output
    with store_of(app).transaction() as session:
        run = run_repo.open_run(session, setup_id, "incremental")
        run_repo.finish_run(session, run.id, "succeeded", counts={"created": 3})
        error_repo.record_errors(
            session,
            setup_id,
            [
                {"direction": "sf_to_cc", "code": "invalid_email", "sf_id": "003A"},
                {"direction": "sf_to_cc", "code": "conflict", "sf_id": "003B"},
            ],
            run_id=run.id,
        )
    runs = cli(app, "sync", "runs", str(setup_id))
    assert "succeeded" in runs.output and "COUNTS" not in runs.output
    # The counts in words, as the demo and the dashboard say them.
    assert f"run {run.id}:\n  created: 3" in runs.output
    assert json.loads(cli(app, "sync", "runs", str(setup_id), "--json").stdout)["items"][0][
        "counts"
    ] == {"created": 3}

    errors = cli(app, "sync", "errors", str(setup_id))
    assert "invalid_email" in errors.output and "conflict" in errors.output
    only = json.loads(
        cli(app, "sync", "errors", str(setup_id), "--code", "conflict", "--json").stdout
    )
    assert only["total"] == 1
    searched = cli(app, "sync", "errors", str(setup_id), "--direction", "cc_to_sf", "--json")
    assert json.loads(searched.stdout)["total"] == 0

    retried = cli(app, "sync", "errors", str(setup_id), "--retry", "--code", "invalid_email")
    assert retried.exit_code == 0, retried.output
    assert "retrying 1 errors: 1 records queued" in retried.output
    assert intake.pending(redis_of(app), setup_id) == 1
    assert cli(app, "sync", "errors", "999").exit_code == 1


def test_sync_full_enqueues_a_reset_full_sync_and_waits(
    app: Flask, tmp_path: Path, connections: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_services, "full_sync_available", lambda: True)
    setup_id = create(app, tmp_path, connections)["id"]
    queued = cli(app, "sync", "full", str(setup_id), "--reset", "--partitions", "2", "--json")
    assert queued.exit_code == 0, queued.output
    job = Job.fetch(
        json.loads(queued.stdout)["job_id"], connection=redis_of(app), serializer=queue.SERIALIZER
    )
    assert job.func_name == "jobs.full_sync.full_sync"
    assert job.kwargs == {"reset": True, "partitions": 2}
    # A second one while the first is queued... is refused once its run exists.
    with store_of(app).transaction() as session:
        run_repo.open_run(session, setup_id, "full", job_id=job.id)
    refused = cli(app, "sync", "full", str(setup_id))
    assert refused.exit_code == 1
    assert "already running" in refused.output
    monkeypatch.setattr(run_services, "full_sync_available", lambda: False)
    unavailable = cli(app, "sync", "full", str(setup_id))
    assert unavailable.exit_code == 1
    assert "not available" in unavailable.output


def test_waiting_on_a_job_that_ends_without_a_run(app: Flask) -> None:
    from middleware.cli import wait_for_run

    redis = redis_of(app)
    # A job whose result says the setup was paused, as runner answers without opening a run.
    job = queue.enqueue(
        "builtins.dict", kwargs={"setup_id": 1, "paused": "quota exceeded"}, connection=redis
    )
    SimpleWorker(
        [queue.get_queue(redis, queue.DEFAULT)], connection=redis, serializer=queue.SERIALIZER
    ).work(burst=True)
    run = wait_for_run(
        store_of(app), redis, 1, job.id, utcnow(), sleep=lambda _s: None, show_progress=False
    )
    assert run["status"] == "paused"
    assert "quota exceeded" in run["message"]


def test_connections_connect_prints_a_start_link_and_delete_refuses_used_ones(
    app: Flask, tmp_path: Path, connections: dict[str, int]
) -> None:
    link = cli(app, "connections", "connect", "salesforce", "--label", "Prod")
    assert link.exit_code == 0, link.output
    assert "http://localhost:5000/oauth/salesforce/start?flow=" in link.stdout
    client = app.test_client()
    start_path = link.stdout.split("http://localhost:5000", 1)[1].split()[0]
    assert client.get(start_path).status_code == 302  # the printed link is a working start link
    sandbox = cli(app, "connections", "connect", "salesforce", "--login-host", "sandbox", "--json")
    assert sandbox.exit_code == 0, sandbox.output
    assert json.loads(sandbox.stdout)["authorize_url"].startswith(
        "https://test.salesforce.com/services/oauth2/authorize?"
    )
    wrong = cli(
        app,
        "connections",
        "connect",
        "salesforce",
        "--reauthorise",
        str(connections["constantcontact"]),
    )
    assert wrong.exit_code == 1

    create(app, tmp_path, connections)
    used = cli(app, "connections", "delete", str(connections["salesforce"]), "--yes")
    assert used.exit_code == 1
    assert "used by setup" in used.output
    with store_of(app).transaction() as session:
        spare = connection_repo.create(session, vendor="salesforce", label="spare").id
    assert cli(app, "connections", "delete", str(spare), "--yes").exit_code == 0
    assert cli(app, "connections", "delete", str(spare), "--yes").exit_code == 1


def test_the_product_never_imports_the_sandbox() -> None:
    """`sandbox connect` is the sandbox's own command; nothing under middleware/ imports sandbox."""
    import ast

    root = Path(__file__).resolve().parents[2] / "middleware"
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == "sandbox" or n.startswith("sandbox.") for n in names):
                offenders.append(f"{path.relative_to(root.parent)}:{node.lineno}")
    assert offenders == []
    from sandbox.cli import sandbox_cli

    assert "connect" in sandbox_cli.commands  # also under `python -m sandbox`
