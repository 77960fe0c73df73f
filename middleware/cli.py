"""Operator CLI: ``flask --app app setups|connections|sync ...``.

Commands do what the admin API does, through the same services (``middleware.services``), so
validation, messages and side effects are identical. Output is a table for people and ``--json``
for scripts; every failure exits non-zero with one clear message (and the offending fields).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext
from marshmallow import Schema
from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import select
from sqlalchemy.orm import Session

from middleware import intake, queue, run_counts
from middleware.extension import handles
from middleware.listener import run as listener_run
from middleware.services import connect, connections, errors, runs, setups
from middleware.services import queue as jobs
from middleware.services.exceptions import ServiceError
from middleware.services.lookups import get_connection, get_setup
from middleware.services.shapes import run_view
from middleware.settings import Settings
from middleware.store import runs as run_repo
from middleware.store.db import Store
from middleware.store.models import DIRECTIONS, Run, utcnow
from schemas import admin as s

WAIT_POLL_SECONDS = 0.5

setups_cli = AppGroup("setups", help="Create, change, pause and inspect setups.")
connections_cli = AppGroup(
    "connections", help="Stored Salesforce and Constant Contact connections."
)
sync_cli = AppGroup("sync", help="Run syncs and look at runs and sync errors.")

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


# --------------------------------------------------------------------------- plumbing


def _settings() -> Settings:
    return handles()["settings"]  # type: ignore[no-any-return]


def _store() -> Store:
    return handles()["store"]  # type: ignore[no-any-return]


def _redis() -> Redis:
    return handles()["redis"]  # type: ignore[no-any-return]


@contextmanager
def _refusals() -> Iterator[None]:
    """Service refusals become one clear CLI error."""
    try:
        yield
    except ServiceError as exc:
        raise _cli_error(exc) from None


def _org_describer() -> setups.OrgReader:
    """Saves check the setup's filter and selected Campaigns / List Views against its org."""
    return setups.org_describer(_settings(), _store(), _redis(), current_app.config)


@contextmanager
def _transaction() -> Iterator[Session]:
    """A store transaction whose service refusals become one clear CLI error."""
    with _refusals(), _store().transaction() as session:
        yield session


def _cli_error(exc: ServiceError) -> click.ClickException:
    lines = [exc.detail]
    for field, messages in (exc.errors or {}).items():
        for message in messages:
            lines.append(f"  {field}: {message}")
    return click.ClickException("\n".join(lines))


def _out(
    schema: type[Schema], data: Any, as_json: bool, human: Callable[[dict[str, Any]], None]
) -> None:
    dumped = schema().dump(data)
    if as_json:
        click.echo(json.dumps(dumped, indent=2, sort_keys=True))
    else:
        human(dumped)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A plain-text table; ``columns`` are ``(key, header)`` pairs."""
    cells = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    headers = [header for _, header in columns]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value) or "-"
    text = str(value)
    if len(text) >= 19 and text[4] == "-" and "T" in text:  # ISO timestamps: to the second
        return text[:19].replace("T", " ")
    return text


def _read_json(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise click.ClickException(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise click.ClickException(f"{path} must hold a JSON object")
    return data


def _echo_warnings(warnings: Sequence[str]) -> None:
    for warning in warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)


# --------------------------------------------------------------------------- setups


def _setup_line(view: dict[str, Any]) -> dict[str, Any]:
    options = view.get("options") or {}
    return {
        "id": view["id"],
        "name": view["name"],
        "object": options.get("object_type"),
        "main_list": options.get("main_list"),
        "sf": view.get("salesforce_connection"),
        "cc": view.get("constant_contact_connection"),
        "state": f"paused ({view['pause_reason']})" if view.get("paused") else "active",
    }


_SETUP_COLUMNS = [
    ("id", "ID"),
    ("name", "NAME"),
    ("object", "OBJECT"),
    ("main_list", "MAIN LIST"),
    ("sf", "SF CONN"),
    ("cc", "CC CONN"),
    ("state", "STATE"),
]


def _print_setup(view: dict[str, Any]) -> None:
    line = _setup_line(view)
    click.echo(table([line], _SETUP_COLUMNS))
    click.echo(f"\nwebhook: {view['webhook']['url']} (auth: {view['webhook']['auth']})")
    if "outbound" in (view.get("options") or {}).get("salesforce_changes", ()):
        click.echo(f"outbound messages: {view['webhook']['outbound_url']}?secret=<webhook secret>")
    if view.get("webhook_secret"):
        click.echo(f"webhook secret: {view['webhook_secret']}")
        click.secho(
            "This secret is shown once; store it in Salesforce now (rotate with `setups secret`).",
            fg="yellow",
        )
    _echo_warnings(view.get("warnings") or [])


@setups_cli.command("list")
@json_option
def setups_list(as_json: bool) -> None:
    """List setups."""
    with _transaction() as session:
        items = setups.list_setups(_settings(), session)

    def human(data: dict[str, Any]) -> None:
        if not data["items"]:
            click.echo("no setups yet: create one with `flask --app app setups create --file ...`")
            return
        click.echo(table([_setup_line(v) for v in data["items"]], _SETUP_COLUMNS))

    _out(s.SetupListSchema, {"items": items}, as_json, human)


@setups_cli.command("show")
@click.argument("setup_id", type=int)
@json_option
def setups_show(setup_id: int, as_json: bool) -> None:
    """Show a setup, its options and its status."""
    with _transaction() as session:
        view = setups.show_setup(_settings(), session, setup_id)
        status = setups.setup_status(session, _redis(), setup_id)
    if as_json:
        _out(s.SetupViewSchema, view, True, lambda _d: None)
        return
    _print_setup(s.SetupViewSchema().dump(view))
    _print_status(s.SetupStatusSchema().dump(status))
    click.echo("\noptions:")
    click.echo(json.dumps(view["options"], indent=2, sort_keys=True))


def _print_status(status: dict[str, Any]) -> None:
    click.echo(f"pending changes: {status['pending']}")
    errors = status["open_errors"]
    click.echo(
        f"open errors: {status['open_errors_total']}" + (f" ({_cell(errors)})" if errors else "")
    )
    click.echo(f"links: {_cell(status['links'])}")
    connections = status["connections"]
    click.echo(f"connections: {_cell(connections)}")
    if status["last_runs"]:
        last = status["last_runs"][0]
        click.echo(
            f"last run: #{last['id']} {last['kind']} {last['status']} {_cell(last['created_at'])}"
        )


@setups_cli.command("status")
@click.argument("setup_id", type=int)
@json_option
def setups_status(setup_id: int, as_json: bool) -> None:
    """What a setup is doing and what needs attention (as GET /admin/api/setups/<id>/status)."""
    with _transaction() as session:
        status = setups.setup_status(session, _redis(), setup_id)
    _out(s.SetupStatusSchema, status, as_json, _print_full_status)


def _print_full_status(status: dict[str, Any]) -> None:
    if status["paused"]:
        until = f" until {_cell(status['paused_until'])}" if status["paused_until"] else ""
        click.echo(f"setup {status['setup_id']}: paused{until} ({status['pause_reason']})")
    else:
        click.echo(f"setup {status['setup_id']}: active")
    active = status["active_run"]
    if active:
        progress = active.get("progress") or {}
        done = f", {_cell(progress)}" if progress else ""
        click.echo(
            f"running: #{active['id']} {active['kind']} {active['status']}"
            f" (phase {active['phase'] or '-'}{done})"
        )
    else:
        click.echo("running: nothing")
    catch_ups = status["catch_ups"]
    click.echo(f"catch-ups waiting: {_cell(catch_ups) if catch_ups else 'none'}")
    _print_status(status)
    if len(status["last_runs"]) > 1:
        click.echo("\nrecent runs:")
        click.echo(table(status["last_runs"], _RUN_STATUS_COLUMNS))


_RUN_STATUS_COLUMNS = [
    ("id", "RUN"),
    ("kind", "KIND"),
    ("status", "STATUS"),
    ("created_at", "CREATED"),
    ("duration_seconds", "SECONDS"),
    ("message", "MESSAGE"),
]


@setups_cli.command("create")
@click.option("--file", "path", required=True, type=click.Path(dir_okay=False), help="Setup JSON.")
@click.option("--sf-connection", type=int, help="Salesforce connection id (overrides the file).")
@click.option("--cc-connection", type=int, help="Constant Contact connection id (overrides).")
@json_option
def setups_create(
    path: str, sf_connection: int | None, cc_connection: int | None, as_json: bool
) -> None:
    """Create a setup from a JSON file; prints its webhook URL and secret (shown once)."""
    data = _read_json(path)
    if sf_connection is not None:
        data["salesforce_connection"] = sf_connection
    if cc_connection is not None:
        data["constant_contact_connection"] = cc_connection
    with _transaction() as session:
        view = setups.create_setup(_settings(), session, data, org=_org_describer())
    _out(s.SetupSecretViewSchema, view, as_json, _print_setup)


@setups_cli.command("update")
@click.argument("setup_id", type=int)
@click.option("--file", "path", required=True, type=click.Path(dir_okay=False), help="Merge patch.")
@json_option
def setups_update(setup_id: int, path: str, as_json: bool) -> None:
    """Change a setup with a JSON merge patch (null resets an option to its default)."""
    patch = _read_json(path)
    with _transaction() as session:
        view = setups.update_setup(_settings(), session, setup_id, patch, org=_org_describer())
    _out(s.SetupViewSchema, view, as_json, _print_setup)


@setups_cli.command("delete")
@click.argument("setup_id", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def setups_delete(setup_id: int, yes: bool) -> None:
    """Delete a setup (its links, runs and errors); nothing changes in either vendor."""
    with _transaction() as session:
        name = get_setup(session, setup_id).name
    if not yes:
        click.confirm(f"Delete setup {setup_id} ({name}) and its sync history?", abort=True)
    with _transaction() as session:
        setups.delete_setup(session, _redis(), setup_id)
    click.echo(f"deleted setup {setup_id} ({name})")


@setups_cli.command("pause")
@click.argument("setup_id", type=int)
@click.option("--reason", default="paused by an admin", show_default=True)
@json_option
def setups_pause(setup_id: int, reason: str, as_json: bool) -> None:
    """Pause a setup; changes keep collecting and sync after `resume`."""
    with _transaction() as session:
        view = setups.pause_setup(_settings(), session, setup_id, reason)
    _out(
        s.SetupViewSchema, view, as_json, lambda v: click.echo(f"setup {setup_id} paused: {reason}")
    )


@setups_cli.command("resume")
@click.argument("setup_id", type=int)
@json_option
def setups_resume(setup_id: int, as_json: bool) -> None:
    """Resume a paused setup and flush what waited."""
    redis = _redis()
    pending = intake.pending(redis, setup_id)  # what the flush after resuming will sync
    with _refusals():
        view = setups.resume_setup(_settings(), _store(), redis, setup_id)
    _out(
        s.SetupViewSchema,
        view,
        as_json,
        lambda v: click.echo(f"setup {setup_id} resumed ({pending} pending changes to sync)"),
    )


@setups_cli.command("secret")
@click.argument("setup_id", type=int)
@json_option
def setups_secret(setup_id: int, as_json: bool) -> None:
    """Rotate a setup's webhook secret and print the new one (the old one stops working)."""
    with _transaction() as session:
        view = setups.rotate_secret(_settings(), session, setup_id)
    if as_json:
        _out(s.SetupSecretViewSchema, view, True, lambda _d: None)
        return
    click.echo(view["webhook_secret"])
    click.secho(
        "The old secret no longer works: update it in Salesforce now.", fg="yellow", err=True
    )


# --------------------------------------------------------------------------- connections

_CONNECTION_COLUMNS = [
    ("id", "ID"),
    ("vendor", "VENDOR"),
    ("label", "LABEL"),
    ("account_id", "ACCOUNT"),
    ("status", "STATUS"),
    ("expires_at", "TOKEN EXPIRES"),
    ("used_by", "SETUPS"),
    ("last_error", "LAST ERROR"),
]


@connections_cli.command("list")
@json_option
def connections_list(as_json: bool) -> None:
    """List connections (never their tokens)."""
    with _transaction() as session:
        items = connections.list_connections(session)

    def human(data: dict[str, Any]) -> None:
        if not data["items"]:
            click.echo("no connections yet: `flask --app app connections connect salesforce`")
            return
        click.echo(table(data["items"], _CONNECTION_COLUMNS))

    _out(s.ConnectionListSchema, {"items": items}, as_json, human)


@connections_cli.command("check")
@click.argument("connection_id", type=int)
@json_option
def connections_check(connection_id: int, as_json: bool) -> None:
    """Verify a connection with one cheap vendor call; exits 1 if the vendor refuses it."""
    with _refusals():
        result = connections.check_connection(
            _settings(), _store(), _redis(), connection_id, config=current_app.config
        )

    def human(data: dict[str, Any]) -> None:
        vendor = data["connection"]["vendor"]
        click.echo(f"connection {connection_id} ({vendor}): {'ok' if data['ok'] else 'FAILED'}")
        click.echo(data["detail"])

    _out(s.ConnectionCheckSchema, result, as_json, human)
    if not result["ok"]:
        raise click.exceptions.Exit(1)


@connections_cli.command("connect")
@click.argument("vendor", type=click.Choice(list(connect.VENDOR_NAMES)))
@click.option("--label", default="", help="Human label for the connection.")
@click.option("--reauthorise", "connection_id", type=int, help="Renew this connection's grant.")
@click.option(
    "--login-host",
    type=click.Choice(list(connect.LOGIN_HOSTS)),
    default=None,
    help="Salesforce: a production org (the default) or a sandbox.",
)
@json_option
def connections_connect(
    vendor: str, label: str, connection_id: int | None, login_host: str | None, as_json: bool
) -> None:
    """Print a link that connects an org or account (open it in a browser within 10 minutes)."""
    with _refusals():
        flow = connect.start_connection(
            _settings(),
            _store(),
            _redis(),
            vendor,
            label,
            connection_id=connection_id,
            login_host=login_host,
        )

    def human(data: dict[str, Any]) -> None:
        click.echo(f"Open this link in a browser to connect {connect.VENDOR_NAMES[vendor]}:")
        click.echo(data["start_url"])
        click.echo(
            f"(it works once, until {_cell(data['expires_at'])} UTC; the vendor app must "
            f"allow the callback {data['redirect_uri']})"
        )

    _out(s.ConnectionStartSchema, flow.public(), as_json, human)


@connections_cli.command("delete")
@click.argument("connection_id", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def connections_delete(connection_id: int, yes: bool) -> None:
    """Delete a connection no setup uses (its tokens are forgotten)."""
    with _transaction() as session:
        row = get_connection(session, connection_id)
        what = f"{row.vendor} connection {connection_id} ({row.label or 'no label'})"
        users = connections.setups_using(session, connection_id)
    if users:
        raise click.ClickException(
            f"{what} is used by setup(s) {', '.join(map(str, users))}; delete or repoint them first"
        )
    if not yes:
        click.confirm(f"Delete {what}?", abort=True)
    with _transaction() as session:
        connections.delete_connection(session, connection_id)
    click.echo(f"deleted {what}")


# --------------------------------------------------------------------------- sync

_RUN_COLUMNS = [
    ("id", "RUN"),
    ("kind", "KIND"),
    ("status", "STATUS"),
    ("created_at", "STARTED"),
    ("duration_seconds", "SECONDS"),
    ("api_calls", "API CALLS"),
    ("message", "MESSAGE"),
]


def _print_runs(items: list[dict[str, Any]], *, headings: bool = True) -> None:
    """The runs as a table, then each run's counts in words (run_counts: what each one means)."""
    click.echo(table(items, _RUN_COLUMNS))
    for run in items:
        lines = run_counts.describe(run.get("counts") or {})
        if lines and headings:
            click.echo(f"run {run['id']}:")
        click.echo("".join(f"  {line}\n" for line in lines), nl=False)


def _print_run(run: dict[str, Any]) -> None:
    _print_runs([run], headings=False)


@sync_cli.command("now")
@click.argument("setup_id", type=int)
@click.option("--wait", is_flag=True, help="Follow the run until it finishes.")
@click.option("--timeout", default=3600.0, show_default=True, help="Seconds to wait at most.")
@json_option
def sync_now(setup_id: int, wait: bool, timeout: float, as_json: bool) -> None:
    """Sync Now: pending Salesforce changes plus a SystemModstamp catch-up."""
    since = utcnow()
    redis = _redis()
    with _transaction() as session:
        started = runs.start_sync_now(session, setup_id, redis)
    _follow(started, setup_id, wait, timeout, as_json, "sync_now", since)


@sync_cli.command("full")
@click.argument("setup_id", type=int)
@click.option("--reset", is_flag=True, help="Ignore fingerprints and cursors; re-match by email.")
@click.option("--partitions", default=1, show_default=True, type=click.IntRange(1, 32))
@click.option("--wait", is_flag=True, help="Follow the run until it finishes.")
@click.option("--timeout", default=6 * 3600.0, show_default=True, help="Seconds to wait at most.")
@json_option
def sync_full(
    setup_id: int, reset: bool, partitions: int, wait: bool, timeout: float, as_json: bool
) -> None:
    """Full Sync: make both sides true again (the nightly repair, on demand)."""
    since = utcnow()
    with _transaction() as session:
        started = runs.start_full_sync(session, setup_id, reset, _redis(), partitions=partitions)
    _follow(started, setup_id, wait, timeout, as_json, "full", since)


@sync_cli.command("poll")
@click.argument("setup_id", type=int)
@click.option("--wait", is_flag=True, help="Follow the run until it finishes.")
@click.option("--timeout", default=3600.0, show_default=True, help="Seconds to wait at most.")
@json_option
def sync_poll(setup_id: int, wait: bool, timeout: float, as_json: bool) -> None:
    """Poll Constant Contact now: CC changes and opt-outs into Salesforce, on their own."""
    since = utcnow()
    with _transaction() as session:
        started = runs.start_poll(session, setup_id, _redis())
    _follow(started, setup_id, wait, timeout, as_json, "poll", since)


@sync_cli.command("results")
@click.argument("setup_id", type=int)
@click.option("--reset", is_flag=True, help="Make again the Campaigns deleted in Salesforce.")
@click.option("--wait", is_flag=True, help="Follow the run until it finishes.")
@click.option("--timeout", default=3600.0, show_default=True, help="Seconds to wait at most.")
@json_option
def sync_results(setup_id: int, reset: bool, wait: bool, timeout: float, as_json: bool) -> None:
    """Campaign results now: sends, opens, clicks, bounces and opt-outs into Salesforce."""
    since = utcnow()
    with _transaction() as session:
        started = runs.start_campaign_results(session, setup_id, reset, _redis())
    _follow(started, setup_id, wait, timeout, as_json, "results", since)


_WHAT = {"sync_now": "Sync Now", "full": "Full Sync", "poll": "Poll", "results": "Campaign results"}


def _follow(
    started: dict[str, Any],
    setup_id: int,
    wait: bool,
    timeout: float,
    as_json: bool,
    kind: str,
    since: datetime,
) -> None:
    what = _WHAT[kind]
    if not wait:
        if as_json:
            click.echo(json.dumps(s.JobStartedSchema().dump(started), indent=2, sort_keys=True))
        else:
            click.echo(f"{what} queued as job {started['job_id']}")
            click.echo(f"follow it with: flask --app app sync runs {setup_id}")
        return
    if not as_json:
        click.echo(f"{what} queued as job {started['job_id']}; waiting for it to finish")
    config = current_app.config
    run = wait_for_run(
        _store(),
        _redis(),
        setup_id,
        started["job_id"],
        since,
        timeout=timeout,
        sleep=config.get("CLI_SLEEP", time.sleep),
        monotonic=config.get("CLI_MONOTONIC", time.monotonic),
        show_progress=not as_json,
        kind=kind,
    )
    if as_json:
        click.echo(json.dumps(s.RunSchema().dump(run), indent=2, sort_keys=True))
    else:
        _print_run(s.RunSchema().dump(run))
    if run["status"] != "succeeded":
        raise click.ClickException(
            f"run {run['id']} ended {run['status']}: {run.get('message') or 'no message'}"
        )


def _run_for(
    session: Session, setup_id: int, job_id: str, since: datetime, kind: str
) -> Run | None:
    found = session.scalar(select(Run).where(Run.job_id == job_id).order_by(Run.id.desc()).limit(1))
    if found is not None:
        return found
    # A busy setup makes the job reschedule itself under a new id: take its run instead.
    return session.scalar(
        select(Run)
        .where(Run.setup_id == setup_id, Run.kind == kind, Run.created_at >= since)
        .order_by(Run.id.desc())
        .limit(1)
    )


def _job_state(redis: Redis, job_id: str) -> tuple[JobStatus | None, Any]:
    try:
        job = Job.fetch(job_id, connection=redis, serializer=queue.SERIALIZER)
    except NoSuchJobError:
        return None, None
    status = job.get_status(refresh=False)
    if status == JobStatus.FINISHED:
        return status, job.return_value()
    if status == JobStatus.FAILED:
        _type, message = jobs.exc_summary(job)
        return status, message
    return status, None


def wait_for_run(
    store: Store,
    redis: Redis,
    setup_id: int,
    job_id: str,
    since: datetime,
    *,
    timeout: float = 3600.0,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    show_progress: bool = True,
    kind: str = "sync_now",
) -> dict[str, Any]:
    """Poll until the run of ``job_id`` finishes; a progress bar when its size is known."""
    deadline = monotonic() + timeout
    bar: Any = None
    shown = 0
    try:
        while True:
            with store.transaction() as session:
                row = _run_for(session, setup_id, job_id, since, kind)
                run = run_view(row) if row is not None else None
            job_status, outcome = _job_state(redis, job_id)
            if run is not None:
                total = run["progress"]["total"]
                if show_progress and total and bar is None:
                    bar = click.progressbar(length=total, label=f"run {run['id']}", file=None)
                    bar.__enter__()
                if bar is not None:
                    done = min(run["progress"]["done"], total or 0)
                    bar.update(done - shown)
                    shown = done
                if run["status"] in run_repo.FINISHED:
                    return run
            elif job_status == JobStatus.FAILED:
                raise click.ClickException(f"job {job_id} failed: {outcome}")
            elif job_status == JobStatus.FINISHED and isinstance(outcome, dict):
                return _runless(setup_id, job_id, outcome, since, kind)
            elif job_status is None:
                raise click.ClickException(f"job {job_id} disappeared from the queue")
            if monotonic() >= deadline:
                raise click.ClickException(
                    f"still running after {timeout:.0f}s; follow it with "
                    f"`flask --app app sync runs {setup_id}`"
                )
            sleep(WAIT_POLL_SECONDS)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


def _runless(
    setup_id: int, job_id: str, outcome: dict[str, Any], since: datetime, kind: str
) -> dict[str, Any]:
    # The job ended without opening a run: nothing to do, paused, or one-way CC → SF.
    if outcome.get("paused"):
        status, message = "paused", f"setup is paused: {outcome['paused']}"
    else:
        status, message = "succeeded", "nothing to sync"
    now = utcnow()
    return {
        "id": None,
        "setup_id": setup_id,
        "kind": kind,
        "status": status,
        "job_id": job_id,
        "created_at": since,
        "started_at": since,
        "finished_at": now,
        "duration_seconds": (now - since).total_seconds(),
        "counts": {k: v for k, v in outcome.items() if isinstance(v, int) and k != "setup_id"},
        "api_calls": {},
        "message": message,
        "progress": {"done": 0, "total": None, "percent": None},
    }


@sync_cli.command("runs")
@click.argument("setup_id", type=int)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 200))
@json_option
def sync_runs(setup_id: int, limit: int, as_json: bool) -> None:
    """A setup's runs, newest first."""
    with _transaction() as session:
        items = runs.list_runs(session, setup_id, limit)

    def human(data: dict[str, Any]) -> None:
        if not data["items"]:
            click.echo(f"setup {setup_id} has no runs yet")
            return
        _print_runs(data["items"])

    _out(s.RunListSchema, {"items": items}, as_json, human)


_ERROR_COLUMNS = [
    ("id", "ID"),
    ("code", "CODE"),
    ("direction", "DIRECTION"),
    ("sf_id", "SF ID"),
    ("email", "EMAIL"),
    ("status", "STATUS"),
    ("attempts", "TRIES"),
    ("message", "MESSAGE"),
]


@sync_cli.command("errors")
@click.argument("setup_id", type=int)
@click.option(
    "--status",
    type=click.Choice(list(s.ERROR_STATUS_FILTERS)),
    default="open",
    show_default=True,
)
@click.option("--code", default=None, help="Only this error code.")
@click.option(
    "--direction", type=click.Choice(list(DIRECTIONS)), default=None, help="Only this direction."
)
@click.option(
    "--search",
    default=None,
    help="Only errors whose email (as shown), ids or message contain this text.",
)
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, s.MAX_PAGE))
@click.option(
    "--retry",
    is_flag=True,
    help="Retry every unresolved error shown (by --code, --direction, --search).",
)
@json_option
def sync_errors(
    setup_id: int,
    status: str,
    code: str | None,
    direction: str | None,
    search: str | None,
    limit: int,
    retry: bool,
    as_json: bool,
) -> None:
    """A setup's sync errors; --retry syncs their records again."""
    redis = _redis()
    narrowing = {"code": code, "direction": direction, "search": search}
    with _transaction() as session:
        if retry:
            selection: dict[str, Any] = {"all": True, **{k: v for k, v in narrowing.items() if v}}
            result = errors.retry_errors(session, redis, setup_id, selection)
        listed = errors.list_errors(
            session,
            setup_id,
            status=status,
            code=code,
            direction=direction,
            search=search,
            limit=limit,
        )
    if retry:
        if as_json:
            click.echo(json.dumps(s.RetryResultSchema().dump(result), indent=2, sort_keys=True))
            return
        click.echo(
            f"retrying {result['retrying']} errors: {result['marked_dirty']} records queued"
            + (f" (flush job {result['flush_job_id']})" if result["flush_job_id"] else "")
            + (
                f", {result['awaiting_poll']} wait for the next Constant Contact poll"
                if result["awaiting_poll"]
                else ""
            )
        )
        return

    def human(data: dict[str, Any]) -> None:
        if not data["items"]:
            click.echo(f"no {status if status != 'all' else ''} errors".replace("  ", " "))
            return
        click.echo(table(data["items"], _ERROR_COLUMNS))
        if data["total"] > len(data["items"]):
            click.echo(f"... {data['total'] - len(data['items'])} more (use --limit)")

    _out(s.ErrorListSchema, listed, as_json, human)


# --------------------------------------------------------------------------- listener


@click.command("listen")
@with_appcontext
def listen_command() -> None:
    """Run the Pub/Sub listener until SIGTERM: Salesforce Change Data Capture for the setups
    whose salesforce_changes include pubsub (one listener per connection across processes)."""
    settings = _settings()
    if settings.embedded:
        raise click.ClickException(
            "the listener is a process of its own and needs REDIS_URL: its leases and the "
            "intake it records into are shared with the web and the workers"
        )
    listener_run.serve(settings, _store(), _redis())
