"""Web admin API: connections, setups, runs, sync errors and the queue under /admin/api (JSON).

Every route needs ``Authorization: Bearer <ADMIN_TOKEN>``; every payload is validated by the
schemas in ``schemas/admin.py`` (and ``schemas/setup.py``), and every 4xx is problem+json naming
the offending fields. Routes are declared with ``@endpoint``, which records what the OpenAPI
document (``GET /admin/api/openapi.json``) says about them, so the document cannot drift from the
routes. The work behind the views lives in plain functions (``create_setup``, ``retry_errors``...)
that the operator CLI calls too.
"""

from __future__ import annotations

import hmac
import importlib
import importlib.util
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from flask import Blueprint, Response, current_app, jsonify, request
from marshmallow import Schema, ValidationError
from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from middleware import intake, queue
from middleware.settings import Settings
from middleware.store import connections as connection_repo
from middleware.store import errors as error_repo
from middleware.store import links as link_repo
from middleware.store import runs as run_repo
from middleware.store import setups as setup_repo
from middleware.store.db import Store
from middleware.store.models import Connection, Run, Setup, SyncError, utcnow
from middleware.web import (
    MAX_DB_ID,
    BadInput,
    check_text,
    get_redis,
    get_settings,
    get_store,
    parse_json,
    problem,
)
from schemas import admin as s
from schemas.setup import (
    CC_LIST_NAME_MAX,
    FILTER_OPS,
    SetupSchema,
    apply_patch,
    flatten_messages,
    validate_setup,
)

log = logging.getLogger(__name__)

bp = Blueprint("admin_api", __name__, url_prefix="/admin/api")

SYNC_NOW_JOB = "jobs.sync.sync_now"
FULL_SYNC_JOB = "jobs.full_sync.full_sync"
FLUSH_JOB = "jobs.flush.flush_setup"
POLL_JOB = "jobs.poll.poll_setup"


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """A problem the caller can fix; becomes problem+json."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        errors: Mapping[str, list[str]] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = dict(errors) if errors else None


def not_found(what: str, ident: Any) -> ApiError:
    return ApiError(404, "Not Found", f"{what} {ident} does not exist.")


def storable_id(ident: Any) -> bool:
    """Whether ``ident`` can be a row id at all (1 .. PostgreSQL's INTEGER maximum).

    Ids outside that range cannot exist, and handing them to the database fails (SQLite: Python
    int too large; PostgreSQL: integer out of range), so lookups answer "does not exist" first.
    """
    return isinstance(ident, int) and not isinstance(ident, bool) and 1 <= ident <= MAX_DB_ID


def invalid(
    errors: Mapping[str, list[str]], detail: str = "The request has invalid fields."
) -> ApiError:
    return ApiError(422, "Unprocessable Content", detail, errors)


problem_response = problem  # the shape of the app's own handlers


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    response = problem_response(exc.status, exc.title, exc.detail, errors=exc.errors)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="admin"'
    return response


# --------------------------------------------------------------------------- auth


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison of a presented token with the configured one."""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


@bp.before_request
def _authenticate() -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token_matches(token.strip(), get_settings().admin_token):
        raise ApiError(
            401,
            "Unauthorized",
            "Send the admin token as `Authorization: Bearer <ADMIN_TOKEN>`.",
        )


# --------------------------------------------------------------------------- route registry


@dataclass(frozen=True)
class Endpoint:
    """What the OpenAPI document says about one route."""

    rule: str
    method: str
    view: str
    summary: str
    tag: str
    body: Schema | type[Schema] | None = None
    query: type[Schema] | None = None
    responses: dict[int, Any] = field(default_factory=dict)
    auth: bool = True
    description: str | None = None
    body_required: bool = True
    html: bool = False  # answers browsers with text/html too (the OAuth pages)


ENDPOINTS: list[Endpoint] = []


def endpoint(
    rule: str,
    method: str,
    *,
    summary: str,
    tag: str,
    responses: dict[int, Any],
    body: Schema | type[Schema] | None = None,
    query: type[Schema] | None = None,
    auth: bool = True,
    body_required: bool = True,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a view on the blueprint and record its documentation."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        ENDPOINTS.append(
            Endpoint(
                rule=bp.url_prefix + rule if bp.url_prefix else rule,
                method=method,
                view=view.__name__,
                summary=summary,
                tag=tag,
                body=body,
                query=query,
                responses=responses,
                auth=auth,
                description=(view.__doc__ or "").strip() or None,
                body_required=body_required,
            )
        )
        bp.add_url_rule(rule, endpoint=view.__name__, view_func=view, methods=[method])
        return view

    return decorate


# --------------------------------------------------------------------------- request helpers


def json_body(required: bool = True) -> dict[str, Any]:
    """The request's JSON object; 400 when it is not one."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise ApiError(400, "Bad Request", "Send a JSON object as the request body.")
        return {}
    try:
        data = parse_json(raw)
    except BadInput as exc:
        raise ApiError(400, "Bad Request", exc.detail) from None
    if not isinstance(data, dict):
        raise ApiError(400, "Bad Request", "The body must be a JSON object.")
    return data


def load(schema: type[Schema], data: Mapping[str, Any], *, status: int = 422) -> dict[str, Any]:
    """Validate ``data`` with ``schema``; a 4xx naming each offending field otherwise."""
    try:
        return schema().load(dict(data))  # type: ignore[no-any-return]
    except ValidationError as exc:
        title = "Unprocessable Content" if status == 422 else "Bad Request"
        raise ApiError(
            status, title, "The request has invalid fields.", flatten_messages(exc.messages)
        ) from None


def query_args(schema: type[Schema]) -> dict[str, Any]:
    args = request.args.to_dict()
    for name, value in args.items():
        try:
            check_text(name, "A query parameter name")
            check_text(value, f"The query parameter {name[:40]}")
        except BadInput as exc:
            raise ApiError(400, "Bad Request", exc.detail, {name[:40]: [exc.detail]}) from None
    return load(schema, args, status=400)


def dump(schema: type[Schema], obj: Any, status: int = 200) -> Response:
    response = jsonify(schema().dump(obj))
    response.status_code = status
    return response


# --------------------------------------------------------------------------- views of rows


def connection_view(row: Connection, used_by: Iterable[int] = ()) -> dict[str, Any]:
    """A connection as the API shows it: never a token."""
    return {
        "id": row.id,
        "vendor": row.vendor,
        "label": row.label,
        "base_url": row.base_url,
        "account_id": row.account_id,
        "status": row.status,
        "expires_at": row.expires_at,
        "refreshed_at": row.refreshed_at,
        "last_error": row.last_error,
        "scopes": [str(x) for x in (row.scopes or [])],
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "used_by": sorted(used_by),
    }


def webhook_url(settings: Settings, setup_id: int) -> str:
    return f"{settings.public_url}/webhooks/salesforce/{setup_id}"


def setup_view(
    settings: Settings,
    row: Setup,
    *,
    warnings: list[str] | None = None,
    secret: str | None = None,
) -> dict[str, Any]:
    """A setup as the API shows it; the secret only when just created or rotated."""
    options = dict(row.options or {})
    view: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "options": options,
        "salesforce_connection": row.salesforce_connection_id,
        "constant_contact_connection": row.constant_contact_connection_id,
        "webhook": {
            "url": webhook_url(settings, row.id),
            "auth": (options.get("webhook") or {}).get("auth") or "shared_secret",
        },
        "paused": row.is_paused(utcnow()),
        "pause_reason": row.pause_reason,
        "paused_until": row.paused_until,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }
    if warnings is not None:
        view["warnings"] = warnings
    if secret is not None:
        view["webhook_secret"] = secret
    return view


def run_view(row: Run, now: datetime | None = None) -> dict[str, Any]:
    """A run with its progress and timings."""
    end = row.finished_at or (now or utcnow() if row.started_at else None)
    duration = (end - row.started_at).total_seconds() if row.started_at and end else None
    total = row.progress_total
    percent = None
    if total:
        percent = round(min(100.0, 100.0 * (row.progress_done or 0) / total), 1)
    return {
        "id": row.id,
        "setup_id": row.setup_id,
        "kind": row.kind,
        "status": row.status,
        "phase": row.phase,
        "job_id": row.job_id,
        "created_at": row.created_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "duration_seconds": duration,
        "counts": row.counts or {},
        "api_calls": row.api_calls or {},
        "message": row.message,
        "progress": {"done": row.progress_done or 0, "total": total, "percent": percent},
    }


def error_view(row: SyncError) -> dict[str, Any]:
    return {
        "id": row.id,
        "setup_id": row.setup_id,
        "run_id": row.run_id,
        "sf_id": row.sf_id,
        "cc_contact_id": row.cc_contact_id,
        "email": row.email,
        "direction": row.direction,
        "vendor": row.vendor,
        "code": row.code,
        "message": row.message,
        "status": row.status,
        "attempts": row.attempts,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


# --------------------------------------------------------------------------- services


def forget_setup(setup_id: int) -> None:
    """Tell the webhook intake to drop what it cached about a setup (secret, options)."""
    try:
        webhooks = importlib.import_module("middleware.web.webhooks")
    except ModuleNotFoundError:
        return
    forget = getattr(webhooks, "forget_setup", None)
    if forget is not None:
        forget(setup_id)


def setups_using(session: Session, connection_id: int) -> list[int]:
    stmt = select(Setup.id).where(
        or_(
            Setup.salesforce_connection_id == connection_id,
            Setup.constant_contact_connection_id == connection_id,
        )
    )
    return sorted(session.scalars(stmt))


def list_connections(session: Session) -> list[dict[str, Any]]:
    used: dict[int, list[int]] = {}
    for setup in setup_repo.all_setups(session):
        for conn_id in (setup.salesforce_connection_id, setup.constant_contact_connection_id):
            if conn_id is not None:
                used.setdefault(conn_id, []).append(setup.id)
    return [
        connection_view(c, used.get(c.id, ())) for c in connection_repo.all_connections(session)
    ]


def get_connection(session: Session, connection_id: int) -> Connection:
    row = connection_repo.get(session, connection_id) if storable_id(connection_id) else None
    if row is None:
        raise not_found("Connection", connection_id)
    return row


def delete_connection(session: Session, connection_id: int) -> None:
    row = get_connection(session, connection_id)
    users = setups_using(session, connection_id)
    if users:
        raise ApiError(
            409,
            "Conflict",
            f"Connection {connection_id} is used by setup(s) {', '.join(map(str, users))}; "
            "point them at another connection or delete them first.",
        )
    session.delete(row)
    session.flush()
    log.info("deleted %s connection %s", row.vendor, connection_id)


def vendor_session(vendor: str) -> requests.Session | None:
    """The HTTP session for vendor calls: ``app.config["VENDOR_SESSION"](vendor)`` if set.

    Tests and the sandbox demo mount sandboxes into it; production leaves it unset and the
    connection factories build their own sessions.
    """
    factory = current_app.config.get("VENDOR_SESSION") if current_app else None
    return factory(vendor) if factory else None


def check_connection(
    settings: Settings,
    store: Store,
    redis: Redis,
    connection_id: int,
    *,
    session: requests.Session | None = None,
) -> dict[str, Any]:
    """Make one cheap authenticated call with the stored tokens and record the outcome."""
    from middleware import connections as factories
    from middleware import vendor_errors

    with store.transaction() as db:
        vendor = get_connection(db, connection_id).vendor
    ok, detail = False, ""
    status: str | None = "active"
    try:
        if vendor == "salesforce":
            sf = factories.salesforce_client(settings, store, redis, connection_id, session=session)
            limits = sf.limits()
            daily = limits.get("DailyApiRequests") or {}
            detail = "GET /limits answered"
            if "Remaining" in daily:
                detail += f": {daily['Remaining']} of {daily.get('Max')} daily API requests left"
        else:
            cc = factories.constant_contact_client(
                settings, store, redis, connection_id, session=session
            )
            fields_seen = sum(1 for _ in cc.iter_custom_fields())
            detail = f"GET /contact_custom_fields answered ({fields_seen} custom fields)"
        ok = True
    except (vendor_errors.NeedsReauth, LookupError) as exc:
        status, detail = "needs_reauth", f"{type(exc).__name__}: {exc}"
    except vendor_errors.VendorError as exc:
        # An outage says nothing about the connection: keep its status, report the failure.
        status = None if exc.retryable else "error"
        detail = f"{type(exc).__name__}: {exc}"
    except requests.RequestException as exc:
        status, detail = None, f"{type(exc).__name__}: {exc}"
    with store.transaction() as db:
        if status is not None:
            connection_repo.mark_status(db, connection_id, status, None if ok else detail[:2000])
        row = get_connection(db, connection_id)
        view = connection_view(row, setups_using(db, connection_id))
    log.info("connection %s check: %s", connection_id, "ok" if ok else status or "failed")
    return {"ok": ok, "detail": detail, "connection": view}


def _check_connections(session: Session, setup: Mapping[str, Any]) -> None:
    errors: dict[str, list[str]] = {}
    for option, vendor in (
        ("salesforce_connection", "salesforce"),
        ("constant_contact_connection", "constantcontact"),
    ):
        conn_id = setup.get(option)
        if conn_id is None:
            continue
        row = connection_repo.get(session, conn_id) if storable_id(conn_id) else None
        if row is None:
            errors[option] = [f"Connection {conn_id} does not exist."]
        elif row.vendor != vendor:
            errors[option] = [f"Connection {conn_id} is a {row.vendor} connection, not {vendor}."]
    if errors:
        raise invalid(errors)


def _check_name_free(session: Session, name: str, setup_id: int | None = None) -> None:
    stmt = select(Setup.id).where(Setup.name == name)
    if setup_id is not None:
        stmt = stmt.where(Setup.id != setup_id)
    if session.scalar(stmt) is not None:
        raise ApiError(
            409,
            "Conflict",
            f"A setup named {name!r} already exists.",
            {"name": ["Already used by another setup."]},
        )


def _validated(
    fn: Callable[[], tuple[dict[str, Any], list[str]]],
) -> tuple[dict[str, Any], list[str]]:
    try:
        return fn()
    except ValidationError as exc:
        raise invalid(flatten_messages(exc.messages), "The setup has invalid options.") from None


def create_setup(settings: Settings, session: Session, data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and store a new setup; the view includes its webhook secret (shown once)."""
    options, warnings = _validated(lambda: validate_setup(data))
    _check_connections(session, options)
    _check_name_free(session, options["name"])
    row = setup_repo.create(
        session,
        name=options["name"],
        options=options,
        salesforce_connection_id=options.get("salesforce_connection"),
        constant_contact_connection_id=options.get("constant_contact_connection"),
    )
    secret = setup_repo.webhook_secret(session, row)
    log.info("created setup %s (%s)", row.id, row.name)
    return setup_view(settings, row, warnings=warnings, secret=secret)


def get_setup(session: Session, setup_id: int) -> Setup:
    row = setup_repo.get(session, setup_id) if storable_id(setup_id) else None
    if row is None:
        raise not_found("Setup", setup_id)
    return row


def update_setup(
    settings: Settings, session: Session, setup_id: int, patch: Mapping[str, Any]
) -> dict[str, Any]:
    """Apply a JSON merge patch to a setup and store the validated result."""
    row = get_setup(session, setup_id)
    if "webhook" in patch and patch["webhook"] is None:
        # Resetting it would silently change how Salesforce must authenticate its callouts.
        raise invalid(
            {
                "webhook": [
                    "Cannot be null: send the webhook settings to change, e.g. "
                    '{"auth": "shared_secret"}.'
                ]
            }
        )
    current = dict(row.options or {})
    # The row is the truth for what the options also carry.
    current.update(
        name=row.name,
        salesforce_connection=row.salesforce_connection_id,
        constant_contact_connection=row.constant_contact_connection_id,
    )
    options, warnings = _validated(lambda: apply_patch(current, patch))
    _check_connections(session, options)
    _check_name_free(session, options["name"], setup_id)
    row.name = options["name"]
    row.options = options
    row.salesforce_connection_id = options.get("salesforce_connection")
    row.constant_contact_connection_id = options.get("constant_contact_connection")
    row.updated_at = utcnow()
    session.flush()
    log.info("updated setup %s (%s)", row.id, ", ".join(sorted(patch)) or "no changes")
    return setup_view(settings, row, warnings=warnings)


def delete_setup(session: Session, redis: Redis, setup_id: int) -> None:
    row = get_setup(session, setup_id)
    session.delete(row)
    session.flush()
    # Its pending changes have nowhere to go any more.
    redis.delete(intake.dirty_key(setup_id), intake.catchup_key(setup_id))
    log.info("deleted setup %s", setup_id)


def rotate_secret(settings: Settings, session: Session, setup_id: int) -> dict[str, Any]:
    row = get_setup(session, setup_id)
    secret = setup_repo.set_webhook_secret(session, row)
    log.info("rotated the webhook secret of setup %s", setup_id)
    return setup_view(settings, row, secret=secret)


def setup_status(session: Session, redis: Redis, setup_id: int) -> dict[str, Any]:
    row = get_setup(session, setup_id)
    now = utcnow()
    open_errors = error_repo.counts_by_code(session, setup_id)
    active = run_repo.active_run(session, setup_id)
    connections: dict[str, str | None] = {}
    for key, conn_id in (
        ("salesforce", row.salesforce_connection_id),
        ("constantcontact", row.constant_contact_connection_id),
    ):
        conn = connection_repo.get(session, conn_id) if conn_id is not None else None
        connections[key] = conn.status if conn is not None else None
    return {
        "setup_id": setup_id,
        "paused": row.is_paused(now),
        "pause_reason": row.pause_reason,
        "paused_until": row.paused_until,
        "pending": intake.pending(redis, setup_id),
        "catch_ups": sorted(intake.take_catchups(redis, setup_id)),
        "active_run": run_view(active, now) if active else None,
        "last_runs": [run_view(r, now) for r in run_repo.recent_runs(session, setup_id, 5)],
        "open_errors": open_errors,
        "open_errors_total": sum(open_errors.values()),
        "links": link_repo.counts(session, setup_id),
        "connections": connections,
    }


def start_sync_now(session: Session, setup_id: int, redis: Redis | None = None) -> dict[str, Any]:
    """Enqueue Sync Now for a setup that can sync; return the job id."""
    row = get_setup(session, setup_id)
    _refuse_unready(row)
    job_id = f"sync-now-{setup_id}-{uuid.uuid4().hex[:12]}"
    job = queue.enqueue(
        SYNC_NOW_JOB,
        setup_id,
        queue=queue.DEFAULT,
        job_id=job_id,
        description=f"Sync Now of setup {setup_id}",
        connection=redis,
    )
    log.info("setup %s: Sync Now enqueued as %s", setup_id, job.id)
    return {"setup_id": setup_id, "job_id": job.id, "queue": queue.DEFAULT}


def start_poll(session: Session, setup_id: int, redis: Redis | None = None) -> dict[str, Any]:
    """Enqueue one Constant Contact poll of a setup (CC → SF changes and opt-outs) on its own."""
    from middleware.cc_to_sf import poll

    row = get_setup(session, setup_id)
    _refuse_unready(row)
    if not poll.polls(row.options or {}):
        raise ApiError(
            409,
            "Conflict",
            f"Setup {setup_id} has sync_to_sf and sync_unsubscribes_to_sf both off: a poll would "
            "have nothing to carry into Salesforce.",
        )
    job = queue.enqueue(
        POLL_JOB,
        setup_id,
        queue=queue.DEFAULT,
        job_id=f"poll-now-{setup_id}-{uuid.uuid4().hex[:12]}",
        description=f"Constant Contact poll of setup {setup_id}",
        connection=redis,
    )
    log.info("setup %s: poll enqueued as %s", setup_id, job.id)
    return {"setup_id": setup_id, "job_id": job.id, "queue": queue.DEFAULT}


def _refuse_unready(row: Setup) -> None:
    if row.is_paused(utcnow()):
        until = f" until {row.paused_until.isoformat()}" if row.paused_until else ""
        raise ApiError(
            409,
            "Conflict",
            f"Setup {row.id} is paused{until} ({row.pause_reason}); resume it first.",
        )
    missing = [
        name
        for name, value in (
            ("salesforce_connection", row.salesforce_connection_id),
            ("constant_contact_connection", row.constant_contact_connection_id),
        )
        if value is None
    ]
    if missing:
        raise ApiError(
            409, "Conflict", f"Setup {row.id} is not connected yet ({', '.join(missing)})."
        )


def full_sync_available() -> bool:
    try:
        return importlib.util.find_spec(FULL_SYNC_JOB.rpartition(".")[0]) is not None
    except ModuleNotFoundError:
        return False


def start_full_sync(
    session: Session,
    setup_id: int,
    reset: bool = False,
    redis: Redis | None = None,
    *,
    partitions: int = 1,
) -> dict[str, Any]:
    """Enqueue a Full Sync (optionally a reset, optionally split into Id ranges)."""
    row = get_setup(session, setup_id)
    if not full_sync_available():
        raise ApiError(
            501,
            "Not Implemented",
            "Full Sync is not available in this version yet; use Sync Now for pending and "
            "recent changes.",
        )
    _refuse_unready(row)
    running = run_repo.active_run(session, setup_id, "full")
    if running is not None:
        raise ApiError(
            409,
            "Conflict",
            f"A Full Sync of setup {setup_id} is already {running.status} (run {running.id}).",
        )
    kwargs: dict[str, Any] = {}
    if reset:
        kwargs["reset"] = True
    if partitions > 1:
        kwargs["partitions"] = partitions
    job = queue.enqueue(
        FULL_SYNC_JOB,
        setup_id,
        kwargs=kwargs or None,
        queue=queue.FULL_SYNC,
        job_id=f"full-sync-{setup_id}-{uuid.uuid4().hex[:12]}",
        description=f"Full Sync of setup {setup_id}{' (reset)' if reset else ''}",
        connection=redis,
    )
    log.info("setup %s: Full Sync enqueued as %s (reset=%s)", setup_id, job.id, reset)
    return {"setup_id": setup_id, "job_id": job.id, "queue": queue.FULL_SYNC}


def _error_filter(setup_id: int, status: str | None, code: str | None) -> Any:
    conditions = [SyncError.setup_id == setup_id]
    if status == "unresolved":
        conditions.append(SyncError.status != "resolved")
    elif status is not None and status != "all":
        conditions.append(SyncError.status == status)
    if code:
        conditions.append(SyncError.code == code)
    return conditions


def list_errors(
    session: Session,
    setup_id: int,
    *,
    status: str = "open",
    code: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> dict[str, Any]:
    get_setup(session, setup_id)
    conditions = _error_filter(setup_id, status, code)
    total = session.scalar(select(func.count()).select_from(SyncError).where(*conditions)) or 0
    rows = session.scalars(
        select(SyncError)
        .where(*conditions)
        .order_by(SyncError.updated_at.desc(), SyncError.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return {
        "items": [error_view(r) for r in rows],
        "total": int(total),
        "limit": limit,
        "offset": offset,
    }


def _selected_errors(
    session: Session, setup_id: int, selection: Mapping[str, Any]
) -> list[SyncError]:
    conditions = _error_filter(setup_id, "unresolved", selection.get("code"))
    if selection.get("ids"):
        conditions.append(SyncError.id.in_(list(selection["ids"])))
    return list(session.scalars(select(SyncError).where(*conditions).order_by(SyncError.id)))


def retry_errors(
    session: Session, redis: Redis, setup_id: int, selection: Mapping[str, Any]
) -> dict[str, Any]:
    """Sync the records of the selected errors again: mark them dirty and schedule a flush."""
    row = get_setup(session, setup_id)
    default_object = (row.options or {}).get("object_type") or "Contact"
    selected = _selected_errors(session, setup_id, selection)
    by_object: dict[str, set[str]] = {}
    awaiting_poll = 0
    for err in selected:
        payload = err.payload or {}
        sf_id = err.sf_id or payload.get("sf_id")
        if sf_id and err.direction == "sf_to_cc":
            by_object.setdefault(payload.get("sf_object") or default_object, set()).add(sf_id)
        else:
            awaiting_poll += 1
    error_repo.mark_retrying(session, setup_id, [e.id for e in selected])
    marked = 0
    for sf_object, ids in sorted(by_object.items()):
        marked += intake.mark_dirty(redis, setup_id, sf_object, sorted(ids))
    flush_job = None
    if marked:
        key = intake.flush_job_key(setup_id)
        flush_job = queue.ensure_scheduled(
            key, FLUSH_JOB, [setup_id], queue=queue.WEBHOOKS, connection=redis
        ) or queue.pending_job_id(key, connection=redis)
    if awaiting_poll:
        # CC → SF errors are retried by the poll, which re-reads the contacts they name.
        from middleware.cc_to_sf import poll

        queue.ensure_scheduled(
            poll.poll_job_key(setup_id), poll.POLL_JOB, [setup_id], connection=redis
        )
    log.info(
        "setup %s: retrying %d errors (%d records marked dirty)", setup_id, len(selected), marked
    )
    return {
        "retrying": len(selected),
        "marked_dirty": marked,
        "awaiting_poll": awaiting_poll,
        "flush_job_id": flush_job,
    }


def resolve_errors(session: Session, setup_id: int, selection: Mapping[str, Any]) -> dict[str, Any]:
    get_setup(session, setup_id)
    ids = [e.id for e in _selected_errors(session, setup_id, selection)]
    resolved = error_repo.resolve_errors(session, setup_id, ids=ids) if ids else 0
    return {"resolved": resolved}


def _exc_summary(job: Job) -> tuple[str | None, str | None]:
    text: str | None = None
    try:
        result = job.latest_result()
        text = getattr(result, "exc_string", None) if result is not None else None
    except Exception:  # an old or foreign job format: show what we can
        text = None
    if not text:
        return None, None
    last = [line for line in text.strip().splitlines() if line.strip()][-1].strip()
    exc_type, sep, message = last.partition(":")
    if not sep or " " in exc_type:
        return None, last[:1000]
    return exc_type.strip().rpartition(".")[2] or exc_type, message.strip()[:1000]


def failed_jobs(redis: Redis, queue_name: str | None = None, limit: int = 100) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    total = 0
    for name, q in queue.get_queues(redis).items():
        if queue_name and name != queue_name:
            continue
        registry = FailedJobRegistry(queue=q)
        ids = registry.get_job_ids(desc=True)
        total += len(ids)
        room = max(0, limit - len(items))
        for job in Job.fetch_many(ids[:room], connection=redis, serializer=queue.SERIALIZER):
            if job is None:
                continue
            exc_type, exc_message = _exc_summary(job)
            items.append(
                {
                    "id": job.id,
                    "queue": name,
                    "func": job.func_name,
                    "args": list(job.args or []),
                    "description": job.description,
                    "enqueued_at": _aware(job.enqueued_at),
                    "ended_at": _aware(job.ended_at),
                    "exc_type": exc_type,
                    "exc_message": exc_message,
                }
            )
    return {"items": items, "total": total}


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def requeue_failed(redis: Redis, selection: Mapping[str, Any]) -> dict[str, Any]:
    registries = {name: FailedJobRegistry(queue=q) for name, q in queue.get_queues(redis).items()}
    where: dict[str, str] = {}
    for name, registry in registries.items():
        for job_id in registry.get_job_ids():
            where[job_id] = name
    wanted = list(where) if selection.get("all") else list(dict.fromkeys(selection["ids"]))
    requeued, missing = [], []
    for job_id in wanted:
        origin = where.get(job_id)
        if origin is None:
            missing.append(job_id)
            continue
        try:
            registries[origin].requeue(job_id)
        except NoSuchJobError:
            missing.append(job_id)
            continue
        requeued.append(job_id)
    log.info("requeued %d failed jobs", len(requeued))
    return {"requeued": requeued, "missing": missing}


# --------------------------------------------------------------------------- views: connections

_PROBLEM = s.ProblemSchema
_E401 = {401: _PROBLEM}
_E404 = {401: _PROBLEM, 404: _PROBLEM}


@endpoint(
    "/connections",
    "GET",
    summary="List connections",
    tag="connections",
    responses={200: s.ConnectionListSchema, **_E401},
)
def list_connections_view() -> Response:
    with get_store().transaction() as session:
        return dump(s.ConnectionListSchema, {"items": list_connections(session)})


@endpoint(
    "/connections/start",
    "POST",
    summary="Start an OAuth connect flow",
    tag="connections",
    body=s.ConnectionStartRequestSchema,
    responses={201: s.ConnectionStartSchema, 400: _PROBLEM, 404: _PROBLEM, 422: _PROBLEM, **_E401},
)
def start_connection_view() -> Response:
    """Returns a signed start link (open it in a browser) and the vendor consent URL."""
    from middleware.web import oauth

    data = load(s.ConnectionStartRequestSchema, json_body())
    if data["connection_id"] is not None:
        with get_store().transaction() as session:
            row = get_connection(session, data["connection_id"])
            if row.vendor != data["vendor"]:
                raise invalid(
                    {"connection_id": [f"Connection {row.id} is a {row.vendor} connection."]}
                )
    flow = oauth.begin_flow(
        get_settings(),
        get_redis(),
        data["vendor"],
        data["label"],
        connection_id=data["connection_id"],
    )
    return dump(s.ConnectionStartSchema, flow.public(), 201)


@endpoint(
    "/connections/<int:connection_id>",
    "GET",
    summary="Show a connection",
    tag="connections",
    responses={200: s.ConnectionSchema, **_E404},
)
def get_connection_view(connection_id: int) -> Response:
    with get_store().transaction() as session:
        row = get_connection(session, connection_id)
        return dump(s.ConnectionSchema, connection_view(row, setups_using(session, row.id)))


@endpoint(
    "/connections/<int:connection_id>",
    "DELETE",
    summary="Delete an unused connection",
    tag="connections",
    responses={204: None, 409: _PROBLEM, **_E404},
)
def delete_connection_view(connection_id: int) -> Response:
    """Refused with 409 while a setup uses the connection."""
    with get_store().transaction() as session:
        delete_connection(session, connection_id)
    return Response(status=204)


@endpoint(
    "/connections/<int:connection_id>/check",
    "POST",
    summary="Verify a connection's tokens with a cheap vendor call",
    tag="connections",
    responses={200: s.ConnectionCheckSchema, **_E404},
)
def check_connection_view(connection_id: int) -> Response:
    """Calls the vendor through the real client (refreshing if needed) and records the status."""
    with get_store().transaction() as session:
        vendor = get_connection(session, connection_id).vendor
    result = check_connection(
        get_settings(),
        get_store(),
        get_redis(),
        connection_id,
        session=vendor_session(vendor),
    )
    return dump(s.ConnectionCheckSchema, result)


# --------------------------------------------------------------------------- views: setups


@endpoint(
    "/setups",
    "GET",
    summary="List setups",
    tag="setups",
    responses={200: s.SetupListSchema, **_E401},
)
def list_setups_view() -> Response:
    settings = get_settings()
    with get_store().transaction() as session:
        items = [setup_view(settings, r) for r in setup_repo.all_setups(session)]
    return dump(s.SetupListSchema, {"items": items})


@endpoint(
    "/setups",
    "POST",
    summary="Create a setup",
    tag="setups",
    body=SetupSchema,
    responses={201: s.SetupSecretViewSchema, 400: _PROBLEM, 409: _PROBLEM, 422: _PROBLEM, **_E401},
)
def create_setup_view() -> Response:
    """The answer carries the webhook secret: the only time it is shown besides a rotation."""
    data = json_body()
    with get_store().transaction() as session:
        view = create_setup(get_settings(), session, data)
    response = dump(s.SetupSecretViewSchema, view, 201)
    response.headers["Location"] = f"{bp.url_prefix}/setups/{view['id']}"
    return response


@endpoint(
    "/setups/<int:setup_id>",
    "GET",
    summary="Show a setup",
    tag="setups",
    responses={200: s.SetupViewSchema, **_E404},
)
def get_setup_view(setup_id: int) -> Response:
    with get_store().transaction() as session:
        view = setup_view(get_settings(), get_setup(session, setup_id))
    return dump(s.SetupViewSchema, view)


@endpoint(
    "/setups/<int:setup_id>",
    "PATCH",
    summary="Change a setup (JSON merge patch)",
    tag="setups",
    body=SetupSchema(partial=True),
    responses={200: s.SetupViewSchema, 400: _PROBLEM, 409: _PROBLEM, 422: _PROBLEM, **_E404},
)
def patch_setup_view(setup_id: int) -> Response:
    """RFC 7396: send only what changes; `null` resets an option to its default."""
    patch = json_body()
    with get_store().transaction() as session:
        view = update_setup(get_settings(), session, setup_id, patch)
    forget_setup(setup_id)
    return dump(s.SetupViewSchema, view)


@endpoint(
    "/setups/<int:setup_id>",
    "DELETE",
    summary="Delete a setup",
    tag="setups",
    responses={204: None, **_E404},
)
def delete_setup_view(setup_id: int) -> Response:
    """Deletes its links, runs, cursors and errors; both vendors are left untouched."""
    with get_store().transaction() as session:
        delete_setup(session, get_redis(), setup_id)
    forget_setup(setup_id)
    return Response(status=204)


@endpoint(
    "/setups/<int:setup_id>/webhook-secret",
    "POST",
    summary="Rotate the webhook secret",
    tag="setups",
    responses={200: s.SetupSecretViewSchema, **_E404},
)
def rotate_secret_view(setup_id: int) -> Response:
    """The old secret stops working at once; the answer shows the new one, once."""
    with get_store().transaction() as session:
        view = rotate_secret(get_settings(), session, setup_id)
    forget_setup(setup_id)
    return dump(s.SetupSecretViewSchema, view)


@endpoint(
    "/setups/<int:setup_id>/pause",
    "POST",
    summary="Pause a setup",
    tag="setups",
    body=s.PauseRequestSchema,
    body_required=False,
    responses={200: s.SetupViewSchema, 400: _PROBLEM, 422: _PROBLEM, **_E404},
)
def pause_setup_view(setup_id: int) -> Response:
    """Changes keep collecting while paused and sync after the setup resumes."""
    data = load(s.PauseRequestSchema, json_body(required=False))
    with get_store().transaction() as session:
        get_setup(session, setup_id)
        setup_repo.pause(session, setup_id, data["reason"], data["until"])
        view = setup_view(get_settings(), get_setup(session, setup_id))
    forget_setup(setup_id)
    return dump(s.SetupViewSchema, view)


@endpoint(
    "/setups/<int:setup_id>/resume",
    "POST",
    summary="Resume a paused setup",
    tag="setups",
    responses={200: s.SetupViewSchema, **_E404},
)
def resume_setup_view(setup_id: int) -> Response:
    """Pending changes are flushed right away; a setup paused by Constant Contact's daily quota
    asks Constant Contact again at once (and pauses again only if it answers `quota_exceeded`)."""
    from middleware import runner

    redis = get_redis()
    with get_store().transaction() as session:
        quota = runner.paused_by_quota(get_setup(session, setup_id).pause_reason)
        setup_repo.resume(session, setup_id)
        view = setup_view(get_settings(), get_setup(session, setup_id))
    forget_setup(setup_id)
    runner.retry_now(get_settings(), redis, setup_id, unblock=quota)
    return dump(s.SetupViewSchema, view)


@endpoint(
    "/setups/<int:setup_id>/status",
    "GET",
    summary="What a setup is doing and what needs attention",
    tag="setups",
    responses={200: s.SetupStatusSchema, **_E404},
)
def setup_status_view(setup_id: int) -> Response:
    with get_store().transaction() as session:
        status = setup_status(session, get_redis(), setup_id)
    return dump(s.SetupStatusSchema, status)


# --------------------------------------------------------------------------- views: runs


def _started(result: dict[str, Any]) -> Response:
    result["runs_url"] = f"{bp.url_prefix}/setups/{result['setup_id']}/runs"
    response = dump(s.JobStartedSchema, result, 202)
    response.headers["Location"] = result["runs_url"]
    return response


@endpoint(
    "/setups/<int:setup_id>/sync",
    "POST",
    summary="Sync Now",
    tag="runs",
    responses={202: s.JobStartedSchema, 409: _PROBLEM, **_E404},
)
def sync_now_view(setup_id: int) -> Response:
    """Pending Salesforce changes and a SystemModstamp catch-up since the last run."""
    with get_store().transaction() as session:
        result = start_sync_now(session, setup_id, get_redis())
    return _started(result)


@endpoint(
    "/setups/<int:setup_id>/poll",
    "POST",
    summary="Poll Constant Contact now",
    tag="runs",
    responses={202: s.JobStartedSchema, 409: _PROBLEM, **_E404},
)
def poll_now_view(setup_id: int) -> Response:
    """One Constant Contact poll on its own: CC changes and opt-outs into Salesforce.

    409 while the setup is paused or not connected, or when it syncs nothing to Salesforce
    (`sync_to_sf` and `sync_unsubscribes_to_sf` both off).
    """
    with get_store().transaction() as session:
        result = start_poll(session, setup_id, get_redis())
    return _started(result)


@endpoint(
    "/setups/<int:setup_id>/full-sync",
    "POST",
    summary="Full Sync",
    tag="runs",
    body=s.FullSyncRequestSchema,
    body_required=False,
    responses={202: s.JobStartedSchema, 409: _PROBLEM, 422: _PROBLEM, 501: _PROBLEM, **_E404},
)
def full_sync_view(setup_id: int) -> Response:
    """Repairs drift on both sides; 409 while one runs (501 where the job is not installed)."""
    data = load(s.FullSyncRequestSchema, json_body(required=False))
    with get_store().transaction() as session:
        result = start_full_sync(
            session, setup_id, data["reset"], get_redis(), partitions=data["partitions"]
        )
    return _started(result)


@endpoint(
    "/setups/<int:setup_id>/runs",
    "GET",
    summary="A setup's runs, newest first",
    tag="runs",
    query=s.RunsQuerySchema,
    responses={200: s.RunListSchema, 400: _PROBLEM, **_E404},
)
def list_runs_view(setup_id: int) -> Response:
    args = query_args(s.RunsQuerySchema)
    with get_store().transaction() as session:
        get_setup(session, setup_id)
        items = [run_view(r) for r in run_repo.recent_runs(session, setup_id, args["limit"])]
    return dump(s.RunListSchema, {"items": items})


@endpoint(
    "/runs/<int:run_id>",
    "GET",
    summary="Show a run",
    tag="runs",
    responses={200: s.RunSchema, **_E404},
)
def get_run_view(run_id: int) -> Response:
    with get_store().transaction() as session:
        row = run_repo.get_run(session, run_id) if storable_id(run_id) else None
        if row is None:
            raise not_found("Run", run_id)
        return dump(s.RunSchema, run_view(row))


# --------------------------------------------------------------------------- views: errors


@endpoint(
    "/setups/<int:setup_id>/errors",
    "GET",
    summary="A setup's sync errors",
    tag="errors",
    query=s.ErrorsQuerySchema,
    responses={200: s.ErrorListSchema, 400: _PROBLEM, **_E404},
)
def list_errors_view(setup_id: int) -> Response:
    args = query_args(s.ErrorsQuerySchema)
    with get_store().transaction() as session:
        result = list_errors(session, setup_id, **args)
    return dump(s.ErrorListSchema, result)


@endpoint(
    "/setups/<int:setup_id>/errors/retry",
    "POST",
    summary="Retry sync errors",
    tag="errors",
    body=s.ErrorSelectionRequestSchema,
    responses={200: s.RetryResultSchema, 400: _PROBLEM, 422: _PROBLEM, **_E404},
)
def retry_errors_view(setup_id: int) -> Response:
    """Marks the records dirty again and schedules a flush; errors show `retrying` meanwhile."""
    selection = load(s.ErrorSelectionRequestSchema, json_body())
    with get_store().transaction() as session:
        result = retry_errors(session, get_redis(), setup_id, selection)
    return dump(s.RetryResultSchema, result)


@endpoint(
    "/setups/<int:setup_id>/errors/resolve",
    "POST",
    summary="Mark sync errors resolved",
    tag="errors",
    body=s.ErrorSelectionRequestSchema,
    responses={200: s.ResolveResultSchema, 400: _PROBLEM, 422: _PROBLEM, **_E404},
)
def resolve_errors_view(setup_id: int) -> Response:
    selection = load(s.ErrorSelectionRequestSchema, json_body())
    with get_store().transaction() as session:
        result = resolve_errors(session, setup_id, selection)
    return dump(s.ResolveResultSchema, result)


# --------------------------------------------------------------------------- views: queue


@endpoint(
    "/queue",
    "GET",
    summary="Queue depths, registries and workers",
    tag="queue",
    responses={200: s.QueueStateSchema, **_E401},
)
def queue_view() -> Response:
    return dump(s.QueueStateSchema, queue.queue_state(get_redis()))


@endpoint(
    "/queue/failed",
    "GET",
    summary="Failed jobs",
    tag="queue",
    query=s.FailedQuerySchema,
    responses={200: s.FailedJobListSchema, 400: _PROBLEM, **_E401},
)
def failed_jobs_view() -> Response:
    args = query_args(s.FailedQuerySchema)
    return dump(s.FailedJobListSchema, failed_jobs(get_redis(), args["queue"], args["limit"]))


@endpoint(
    "/queue/failed/requeue",
    "POST",
    summary="Requeue failed jobs",
    tag="queue",
    body=s.RequeueRequestSchema,
    responses={200: s.RequeueResultSchema, 400: _PROBLEM, 422: _PROBLEM, **_E401},
)
def requeue_view() -> Response:
    selection = load(s.RequeueRequestSchema, json_body())
    return dump(s.RequeueResultSchema, requeue_failed(get_redis(), selection))


# --------------------------------------------------------------------------- OpenAPI


@endpoint(
    "/openapi.json",
    "GET",
    summary="This API's OpenAPI 3 document",
    tag="meta",
    responses={200: None, **_E401},
)
def openapi_document() -> Response:
    """Generated from the same schemas that validate the requests."""
    return jsonify(build_spec(get_settings().public_url))


_PATH_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")


def openapi_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: ``/setups/<int:setup_id>`` → ``/setups/{setup_id}``."""
    return _PATH_PARAM.sub(lambda m: "{" + m.group(2) + "}", rule)


def _schema_field_types() -> Callable[..., dict[str, Any]]:
    from schemas.setup import CampaignSelectionField, CcSourceField

    def attribute(self: Any, field: Any, **_: Any) -> dict[str, Any]:
        # Fields that accept several shapes; apispec cannot infer them.
        if isinstance(field, CcSourceField):
            return {
                "oneOf": [
                    {"type": "string", "enum": ["main_list", "all_active"]},
                    {
                        "type": "object",
                        "required": ["lists"],
                        "additionalProperties": False,
                        "properties": {
                            "lists": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "string",
                                    "minLength": 1,
                                    "maxLength": CC_LIST_NAME_MAX,
                                    "pattern": r"\S",
                                },
                            }
                        },
                    },
                ]
            }
        if isinstance(field, CampaignSelectionField):
            return {
                "oneOf": [
                    {"type": "string", "enum": ["all"]},
                    {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "string", "minLength": 1},
                    },
                ]
            }
        return {}

    return attribute


def _operation(ep: Endpoint, params: list[dict[str, Any]]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": ep.view,
        "summary": ep.summary,
        "tags": [ep.tag],
        "responses": {},
    }
    if ep.description:
        op["description"] = ep.description
    if params:
        op["parameters"] = list(params)
    if ep.query is not None:
        op.setdefault("parameters", []).append({"in": "query", "schema": ep.query})
    if ep.body is not None:
        op["requestBody"] = {
            "required": ep.body_required,
            "content": {"application/json": {"schema": ep.body}},
        }
    responses = {**_implied_responses(ep), **ep.responses}
    for status, schema in sorted(responses.items()):
        if schema is None:
            text = _STATUS_TEXT.get(status, "Redirect to the vendor's consent page.")
            op["responses"][str(status)] = {"description": text}
            if status == 200 and ep.view == "openapi_document":
                op["responses"]["200"]["content"] = {
                    "application/json": {"schema": {"type": "object"}}
                }
            continue
        media = "application/problem+json" if schema is s.ProblemSchema else "application/json"
        content: dict[str, Any] = {media: {"schema": schema}}
        if ep.html and status != 503:
            content["text/html"] = {"schema": {"type": "string"}}
        op["responses"][str(status)] = {
            "description": _STATUS_TEXT.get(status, "Answer."),
            "content": content,
        }
    op["security"] = [{"adminToken": []}] if ep.auth else []
    return op


def _implied_responses(ep: Endpoint) -> dict[int, Any]:
    """Statuses every route of a kind can answer, so no route's document forgets them."""
    implied: dict[int, Any] = {}
    if ep.body is not None:
        implied |= {400: s.ProblemSchema, 413: s.ProblemSchema}
    if ep.query is not None:
        implied[400] = s.ProblemSchema
    if ep.view != "openapi_document":  # every other route reads the database or Redis
        implied[503] = s.ProblemSchema
    return implied


_STATUS_TEXT = {
    200: "Success.",
    201: "Created.",
    202: "Accepted: the job is queued.",
    400: "The request is malformed (the problem names the fields).",
    401: "Missing or wrong admin token.",
    403: "The vendor did not grant access.",
    404: "No such resource.",
    409: "Conflicts with the current state (the problem says why).",
    422: "Invalid fields (the problem names each one).",
    410: "The link expired or was already used.",
    413: "The body is larger than the configured limit (WEBHOOK_MAX_BYTES).",
    501: "Not available in this version.",
    502: "The vendor refused or could not be reached.",
    503: "The database or Redis is unavailable; retry after the Retry-After seconds.",
}


def schema_name(schema: Any) -> str:
    """Component name of a schema: the class name without ``Schema``; partial ones are patches."""
    from apispec.ext.marshmallow.common import resolve_schema_cls

    cls = resolve_schema_cls(schema)
    name = (cls[0] if isinstance(cls, list) else cls).__name__.removesuffix("Schema")
    if isinstance(schema, Schema) and schema.partial:
        name += "Patch"
    return name


def build_spec(server_url: str = "") -> dict[str, Any]:
    """The OpenAPI 3 document of the admin API and the OAuth connect routes."""
    from apispec import APISpec
    from apispec.ext.marshmallow import MarshmallowPlugin

    plugin = MarshmallowPlugin(schema_name_resolver=schema_name)
    spec = APISpec(
        title="Salesforce ⇄ Constant Contact sync: admin API",
        version="1",
        openapi_version="3.0.3",
        plugins=[plugin],
        info={
            "description": "Manage connections, setups, runs, sync errors and the job queue. "
            "Every /admin/api route needs `Authorization: Bearer <ADMIN_TOKEN>`; errors are "
            "RFC 9457 problem+json naming the offending fields."
        },
        servers=[{"url": server_url}] if server_url else [],
    )
    plugin.converter.add_attribute_function(_schema_field_types())  # type: ignore[union-attr]
    spec.components.security_scheme("adminToken", {"type": "http", "scheme": "bearer"})
    from middleware.web import oauth

    paths: dict[str, dict[str, dict[str, Any]]] = {}
    for ep in [*ENDPOINTS, *oauth.ENDPOINTS]:
        params = [
            {
                "in": "path",
                "name": m.group(2),
                "required": True,
                "schema": (
                    {"type": "integer", "minimum": 1, "maximum": MAX_DB_ID}
                    if m.group(1) == "int"
                    else {"type": "string"}
                )
                | ({"enum": list(oauth.VENDORS)} if m.group(2) == "vendor" else {}),
            }
            for m in _PATH_PARAM.finditer(ep.rule)
        ]
        paths.setdefault(openapi_path(ep.rule), {})[ep.method.lower()] = _operation(ep, params)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    document = _nullable_refs(spec.to_dict())
    schemas = document["components"]["schemas"]
    _patch_nulls_reset(schemas["SetupPatch"])
    _one_selection(schemas["ErrorSelectionRequest"], narrowed_by="code")
    _one_selection(schemas["RequeueRequest"])
    _filter_condition(schemas["FilterCondition"])
    _storable_text(document)
    return document  # type: ignore[no-any-return]


# Text the database can store: no NUL (PostgreSQL refuses it); ``parse_json`` enforces it.
NO_NUL = "^[^\\x00]*$"


def _storable_text(document: dict[str, Any]) -> None:
    """Say on every free-text string a request can carry that NUL is refused (400)."""
    request_refs: list[str] = []
    for operations in document["paths"].values():
        for operation in operations.values():
            for param in operation.get("parameters", []):
                if param.get("in") == "query":
                    _no_nul(param["schema"], request_refs)
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                _no_nul(body["schema"], request_refs)
    schemas = document["components"]["schemas"]
    done: set[str] = set()
    while request_refs:
        name = request_refs.pop().rsplit("/", 1)[-1]
        if name not in done:
            done.add(name)
            _no_nul(schemas[name], request_refs)


def _no_nul(node: Any, refs: list[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _no_nul(item, refs)
        return
    if not isinstance(node, dict):
        return
    if isinstance(node.get("$ref"), str):
        refs.append(node["$ref"])
    if node.get("type") == "string" and not {"pattern", "enum", "format"} & set(node):
        node["pattern"] = NO_NUL
    for key, value in node.items():
        if key not in ("enum", "default", "example"):
            _no_nul(value, refs)


def _filter_condition(schema: dict[str, Any]) -> None:
    """A condition's value depends on its op: none, a non-empty list, or one scalar."""
    from schemas.setup import _LIST_OPS, _VALUELESS_OPS

    base = {k: v for k, v in schema["properties"].items() if k != "value"}
    scalar = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}
    items = {"anyOf": [{"type": "string"}, {"type": "number"}]}
    shapes = [
        (_VALUELESS_OPS, {"nullable": True, "enum": [None]}, False),
        (_LIST_OPS, {"type": "array", "minItems": 1, "items": items}, True),
        (tuple(op for op in FILTER_OPS if op not in (*_VALUELESS_OPS, *_LIST_OPS)), scalar, True),
    ]
    schema["oneOf"] = [
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["field", "op", *(["value"] if needs_value else [])],
            "properties": base | {"op": {**base["op"], "enum": list(ops)}, "value": value},
        }
        for ops, value, needs_value in shapes
    ]


def _nullable_refs(node: Any) -> Any:
    """apispec renders a nullable nested schema as ``anyOf: [$ref, {type: object, nullable}]``,
    which admits *any* object; say "this schema or null" instead."""
    if isinstance(node, list):
        return [_nullable_refs(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable_refs(value) for key, value in node.items()}
    variants = node.get("anyOf")
    if (
        isinstance(variants, list)
        and len(variants) == 2
        and "$ref" in variants[0]
        and variants[1] == {"nullable": True, "type": "object"}
    ):
        del node["anyOf"]
        node.update(allOf=[variants[0]], nullable=True)
    return node


def _patch_nulls_reset(patch: dict[str, Any]) -> None:
    """In a merge patch, ``null`` resets an option that has a default (``webhook`` excepted)."""
    fields = SetupSchema().fields
    for name, prop in patch["properties"].items():
        field_ = fields.get(name)
        if field_ is None or field_.required or name == "webhook":
            continue
        prop["nullable"] = True


def _one_selection(schema: dict[str, Any], narrowed_by: str | None = None) -> None:
    """Either ``ids`` (alone) or ``all: true`` (optionally narrowed): what the view enforces."""
    props = schema["properties"]
    by_ids = {
        "type": "object",
        "additionalProperties": False,
        "required": ["ids"],
        "properties": {"ids": props["ids"], "all": {**props["all"], "enum": [False]}},
    }
    everything = {
        "type": "object",
        "additionalProperties": False,
        "required": ["all"],
        "properties": {"all": {**props["all"], "enum": [True]}}
        | ({narrowed_by: props[narrowed_by]} if narrowed_by else {}),
    }
    schema["oneOf"] = [by_ids, everything]


__all__ = [
    "ENDPOINTS",
    "ApiError",
    "Endpoint",
    "bp",
    "check_connection",
    "create_setup",
    "delete_connection",
    "delete_setup",
    "list_connections",
    "list_errors",
    "requeue_failed",
    "resolve_errors",
    "retry_errors",
    "rotate_secret",
    "setup_status",
    "start_full_sync",
    "start_poll",
    "start_sync_now",
    "update_setup",
]
