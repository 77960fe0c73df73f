"""Dashboard views: sign-in, the setups, a setup's runs and actions, and its sync errors.

Each view calls the same service as the matching admin API view (``middleware.web.admin.views``).
POST actions answer with a redirect back to the page (post/redirect/get) and say what happened in
a flashed message; a service's refusal (``Conflict``, ``NotFound``...) becomes that message too.
Every page but sign-in needs a session; every POST needs the session's CSRF token.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.blueprints import BlueprintSetupState
from werkzeug.wrappers import Response as WebResponse

from middleware import run_counts
from middleware.services import budget, connect, connections, errors, runs, setups
from middleware.services import queue as jobs
from middleware.services.exceptions import ServiceError
from middleware.services.lookups import get_connection
from middleware.web import get_redis, get_settings, get_store, health
from middleware.web.dashboard import auth
from middleware.web.problems import service_status

log = logging.getLogger(__name__)

bp = Blueprint(
    "dashboard",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/dashboard/static",
)

# Pages reachable without a session.
_PUBLIC = frozenset({"dashboard.sign_in", "dashboard.static"})
# Answers for the page's own script (JSON), not pages.
_JSON = frozenset({"dashboard.run_progress"})
# How often a setup page with a run going reloads itself when scripts are off (a meta refresh
# inside <noscript>); with scripts on, dashboard.js polls the progress every POLL_SECONDS instead.
REFRESH_SECONDS = 5
POLL_SECONDS = 2

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        # No form-action: browsers apply it to a form's redirects too, and "Connect" ends on
        # the vendor's consent page.
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@bp.record_once
def _configure_sessions(state: BlueprintSetupState) -> None:
    """The session cookie: HttpOnly, SameSite=Lax, gone after ``auth.SESSION_LIFETIME``
    (Secure is decided per request by the app's session interface)."""
    state.app.config["PERMANENT_SESSION_LIFETIME"] = auth.SESSION_LIFETIME
    state.app.config["SESSION_COOKIE_HTTPONLY"] = True
    state.app.config["SESSION_COOKIE_SAMESITE"] = "Lax"


@bp.before_request
def _guard() -> WebResponse | None:
    """CSRF on every POST (before anything else), then a session for every page but sign-in."""
    if request.method == "POST" and not auth.csrf_valid(request.form.get(auth.CSRF_FIELD)):
        log.info("dashboard refused a POST to %s without a valid CSRF token", request.path)
        return _page(
            "message.html",
            400,
            title="Form expired",
            message=(
                "This form was refused: its security token is missing or no longer valid "
                "(the session may have ended). Go back, reload the page and try again."
            ),
        )
    if request.endpoint in _JSON and not auth.signed_in():
        # A script polls these: it gets a refusal it can read, not the sign-in page.
        return _json({"error": "signed_out", "detail": "Sign in again."}, 401)
    if request.endpoint not in _PUBLIC and not auth.signed_in():
        return redirect(url_for("dashboard.sign_in", next=request.full_path.rstrip("?")))
    return None


@bp.after_request
def _security_headers(response: Response) -> WebResponse:
    for name, value in SECURITY_HEADERS.items():
        if name == "Cache-Control" and request.endpoint == "dashboard.static":
            continue
        response.headers[name] = value
    return response


@bp.app_template_filter("when")
def _when(value: datetime | str | None) -> str:
    """A moment to the second, in UTC (``2026-12-08 01:16:38 UTC``): what a person reads in a
    history, not ``datetime``'s microseconds and offset. Text that is not a time stays as it is."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
    else:
        moment = value
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@bp.context_processor
def _template_helpers() -> dict[str, Any]:
    return {
        "csrf_token": auth.csrf_token,
        "csrf_field": auth.CSRF_FIELD,
        "signed_in": auth.signed_in(),
    }


@bp.errorhandler(ServiceError)
def _service_error(exc: ServiceError) -> WebResponse:
    status, title = service_status(exc)
    return _page("message.html", status, title=title, message=exc.detail)


def _page(template: str, http_status: int = 200, /, **context: Any) -> WebResponse:
    response = Response(render_template(f"dashboard/{template}", **context), status=http_status)
    response.mimetype = "text/html"
    return response


def _json(data: dict[str, Any], http_status: int = 200) -> WebResponse:
    response = Response(json.dumps(data, default=_plain), status=http_status)
    response.mimetype = "application/json"
    return response


def _plain(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _local(target: str | None) -> str:
    """A ``next`` that stays on this site (a path, never another host or ``//host``)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return url_for("dashboard.setups_page")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target:
        return url_for("dashboard.setups_page")
    return target


def _act(back: str, action: Callable[[], str]) -> WebResponse:
    """Run a POST action, flash its outcome or the service's refusal, and go back."""
    try:
        flash(action(), "ok")
    except ServiceError as exc:
        flash(exc.detail, "error")
    return redirect(back, code=303)


# --------------------------------------------------------------------------- sign-in


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> WebResponse:
    """The admin token opens a session; a wrong one says so and opens nothing."""
    target = _local(request.values.get("next"))
    if request.method == "POST":
        if auth.token_matches(request.form.get("token", ""), get_settings().admin_token):
            auth.sign_in()
            return redirect(target, code=303)
        log.info("dashboard sign-in refused: wrong admin token")
        return _page("sign_in.html", 401, next=target, failed=True)
    if auth.signed_in():
        return redirect(target)
    return _page("sign_in.html", next=target, failed=False)


@bp.post("/sign-out")
def sign_out() -> WebResponse:
    auth.sign_out()
    flash("You are signed out.", "ok")
    return redirect(url_for("dashboard.sign_in"), code=303)


# --------------------------------------------------------------------------- setups


@bp.get("/")
def setups_page() -> WebResponse:
    """Every setup with its object, main list, pause and its last run's status."""
    with get_store().transaction() as session:
        items = setups.list_setups(get_settings(), session)
        last = {}
        for item in items:
            latest = runs.list_runs(session, item["id"], 1)
            last[item["id"]] = latest[0] if latest else None
    return _page("setups.html", setups=items, last=last)


@bp.get("/setups/<int:setup_id>")
def setup_page(setup_id: int) -> WebResponse:
    """A setup: its actions, the current run's progress and its history in words."""
    with get_store().transaction() as session:
        view = setups.show_setup(get_settings(), session, setup_id)
        status = setups.setup_status(session, get_redis(), setup_id)
        history = runs.list_runs(session, setup_id, 20)
        progress = runs.run_progress(session, setup_id)
        spent = budget.setup_budget(get_settings(), session, get_redis(), setup_id)
    described = {run["id"]: run_counts.describe(run["counts"]) for run in history}
    active = status["active_run"]
    return _page(
        "setup.html",
        setup=view,
        status=status,
        history=history,
        described=described,
        active=active,
        progress=progress,
        budget=spent,
        refresh=REFRESH_SECONDS if active else None,
        poll_seconds=POLL_SECONDS,
        full_sync_available=runs.full_sync_available(),
    )


@bp.get("/setups/<int:setup_id>/progress")
def run_progress(setup_id: int) -> WebResponse:
    """The current run's progress as JSON, for the setup page's script (``dashboard.js``)."""
    try:
        with get_store().transaction() as session:
            return _json(runs.run_progress(session, setup_id))
    except ServiceError as exc:
        status, _title = service_status(exc)
        return _json({"error": type(exc).__name__, "detail": exc.detail}, status)


def _setup_url(setup_id: int) -> str:
    return url_for("dashboard.setup_page", setup_id=setup_id)


def _queued(what: str, result: dict[str, Any]) -> str:
    return f"{what} queued (job {result['job_id']} on the {result['queue']} queue)."


@bp.post("/setups/<int:setup_id>/sync-now")
def sync_now(setup_id: int) -> WebResponse:
    def act() -> str:
        with get_store().transaction() as session:
            return _queued("Sync Now", runs.start_sync_now(session, setup_id, get_redis()))

    return _act(_setup_url(setup_id), act)


@bp.get("/setups/<int:setup_id>/full-sync")
def full_sync_confirm(setup_id: int) -> WebResponse:
    """What a reset does, before it is done."""
    with get_store().transaction() as session:
        view = setups.show_setup(get_settings(), session, setup_id)
    return _page("full_sync_confirm.html", setup=view)


@bp.post("/setups/<int:setup_id>/full-sync")
def full_sync(setup_id: int) -> WebResponse:
    reset = request.form.get("reset") == "1"

    def act() -> str:
        with get_store().transaction() as session:
            result = runs.start_full_sync(session, setup_id, reset, get_redis())
        return _queued("Full Sync with reset" if reset else "Full Sync", result)

    return _act(_setup_url(setup_id), act)


@bp.post("/setups/<int:setup_id>/pause")
def pause(setup_id: int) -> WebResponse:
    reason = request.form.get("reason", "").strip()[:200] or "paused from the dashboard"

    def act() -> str:
        with get_store().transaction() as session:
            setups.pause_setup(get_settings(), session, setup_id, reason)
        return "Paused: changes keep collecting and sync after you resume."

    return _act(_setup_url(setup_id), act)


@bp.post("/setups/<int:setup_id>/resume")
def resume(setup_id: int) -> WebResponse:
    def act() -> str:
        setups.resume_setup(get_settings(), get_store(), get_redis(), setup_id)
        return "Resumed: the changes that waited are being synced."

    return _act(_setup_url(setup_id), act)


# --------------------------------------------------------------------------- sync errors

ERRORS_PAGE_SIZE = 100


# The errors page's filters: query parameter -> what it may hold (``None``: free text).
ERROR_STATUS_WORDS = {
    "unresolved": "unresolved (open or retrying)",
    "open": "open",
    "retrying": "retrying",
    "resolved": "resolved",
    "all": "every status",
}
DIRECTION_WORDS = {
    "sf_to_cc": "Salesforce → Constant Contact",
    "cc_to_sf": "Constant Contact → Salesforce",
}


def _error_filters(values: Any) -> dict[str, str]:
    """The filters given (query or form), each checked; an unknown value is ignored."""
    status = values.get("status", "")
    direction = values.get("direction", "")
    chosen = {
        "status": status if status in ERROR_STATUS_WORDS else "unresolved",
        "direction": direction if direction in DIRECTION_WORDS else "",
        "code": values.get("code", "").strip()[:100],
        "q": values.get("q", "").strip()[:200],
    }
    return chosen


@bp.get("/setups/<int:setup_id>/errors")
def errors_page(setup_id: int) -> WebResponse:
    """A setup's sync errors with links to each record, filtered by status (unresolved unless
    asked), direction, code and a search."""
    chosen = _error_filters(request.args)
    with get_store().transaction() as session:
        view = setups.show_setup(get_settings(), session, setup_id)
        listed = errors.list_errors(
            session,
            setup_id,
            status=chosen["status"],
            code=chosen["code"] or None,
            direction=chosen["direction"] or None,
            search=chosen["q"] or None,
            limit=ERRORS_PAGE_SIZE,
        )
        errors.record_links(session, setup_id, listed["items"])
        status = setups.setup_status(session, get_redis(), setup_id)
    return _page(
        "errors.html",
        setup=view,
        errors=listed,
        filters=chosen,
        code=chosen["code"],
        narrowed={k: v for k, v in chosen.items() if k != "status" and v},
        codes=sorted(status["open_errors"].items()),
        status_words=ERROR_STATUS_WORDS,
        direction_words=DIRECTION_WORDS,
    )


def _selection() -> dict[str, Any]:
    """One error (``error_id``) or all unresolved ones (narrowed by the page's filters)."""
    error_id = request.form.get("error_id", "")
    if error_id.isdigit():
        return {"ids": [int(error_id)]}
    chosen = _error_filters(request.form)
    narrowing = {
        "code": chosen["code"],
        "direction": chosen["direction"],
        "search": chosen["q"],
    }
    return {"all": True, **{k: v for k, v in narrowing.items() if v}}


def _errors_url(setup_id: int) -> str:
    chosen = _error_filters(request.form)
    kept: dict[str, Any] = {
        k: v for k, v in chosen.items() if v and not (k == "status" and v == "unresolved")
    }
    return url_for("dashboard.errors_page", setup_id=setup_id, **kept)


@bp.post("/setups/<int:setup_id>/errors/retry")
def retry_errors(setup_id: int) -> WebResponse:
    selection = _selection()

    def act() -> str:
        with get_store().transaction() as session:
            result = errors.retry_errors(session, get_redis(), setup_id, selection)
        return f"Retrying {result['retrying']} error(s); they show as retrying until synced."

    return _act(_errors_url(setup_id), act)


@bp.post("/setups/<int:setup_id>/errors/resolve")
def resolve_errors(setup_id: int) -> WebResponse:
    selection = _selection()

    def act() -> str:
        with get_store().transaction() as session:
            result = errors.resolve_errors(session, setup_id, selection)
        return f"Marked {result['resolved']} error(s) resolved."

    return _act(_errors_url(setup_id), act)


# --------------------------------------------------------------------------- connections


@bp.get("/connections")
def connections_page() -> WebResponse:
    """Every connection with its status and the org / account it points at; after a connect
    flow the callback comes back here with ``?connected=<id>``."""
    with get_store().transaction() as session:
        items = connections.list_connections(session)
    connected = request.args.get("connected", "")
    just = next((c for c in items if connected.isdigit() and c["id"] == int(connected)), None)
    reused = request.args.get("reused") == "1"
    return _page(
        "connections.html",
        connections=items,
        just=just,
        reused=reused,
        login_hosts={
            "production": get_settings().salesforce_login_url,
            "sandbox": get_settings().salesforce_sandbox_login_url,
        },
    )


@bp.post("/connections/start")
def start_connection() -> WebResponse:
    """Start the OAuth flow (new, or re-authorising ``connection_id``) and send the browser to
    the vendor through the flow's signed start link; the callback comes back to this page."""
    raw_id = request.form.get("connection_id", "")
    try:
        flow = connect.start_connection(
            get_settings(),
            get_store(),
            get_redis(),
            request.form.get("vendor", ""),
            request.form.get("label", "").strip()[:200],
            connection_id=int(raw_id) if raw_id.isdigit() else None,
            return_to=url_for("dashboard.connections_page"),
            login_host=request.form.get("login_host") or None,
        )
    except ServiceError as exc:
        flash(exc.detail, "error")
        return redirect(url_for("dashboard.connections_page"), code=303)
    return redirect(flow.start_url, code=303)


@bp.get("/connections/<int:connection_id>/delete")
def delete_connection_confirm(connection_id: int) -> WebResponse:
    """What disconnecting does, before it is done; or why it cannot be done yet."""
    with get_store().transaction() as session:
        get_connection(session, connection_id)  # 404 when it does not exist
        view = next(c for c in connections.list_connections(session) if c["id"] == connection_id)
        try:
            connections.refuse_if_used(session, connection_id)
            refusal = None
        except ServiceError as exc:
            refusal = exc.detail
    return _page("connection_delete.html", connection=view, refusal=refusal)


@bp.post("/connections/<int:connection_id>/delete")
def delete_connection(connection_id: int) -> WebResponse:
    def act() -> str:
        with get_store().transaction() as session:
            connections.delete_connection(session, connection_id)
        return f"Connection {connection_id} deleted."

    return _act(url_for("dashboard.connections_page"), act)


# --------------------------------------------------------------------------- health

FAILED_JOBS_SHOWN = 50
CHECK_WORDS = {
    "database": "Database",
    "redis": "Redis",
    "queues": "Job queues",
    "workers": "Workers",
    "listener": "Pub/Sub listener",
    "connections": "Connections",
    "setups": "Setups",
    "cc_webhook": "Constant Contact webhooks",
}


@bp.get("/health")
def health_page() -> WebResponse:
    """What /readyz checks, in words; the queues and their failed jobs."""
    checks = health.run_checks()
    redis = get_redis()
    with get_store().transaction() as session:
        budgets = budget.all_budgets(get_settings(), session, redis)
    return _page(
        "health.html",
        budgets=budgets,
        checks=checks,
        words=CHECK_WORDS,
        ready=all(r["status"] != health.FAIL for r in checks.values()),
        queues=jobs.queue_state(redis),
        failed=jobs.failed_jobs(redis, limit=FAILED_JOBS_SHOWN),
    )


@bp.post("/health/requeue")
def requeue() -> WebResponse:
    """One failed job (``job_id``) or every one back on its queue."""
    job_id = request.form.get("job_id", "").strip()[:200]
    selection: dict[str, Any] = {"ids": [job_id]} if job_id else {"all": True}

    def act() -> str:
        result = jobs.requeue_failed(get_redis(), selection)
        gone = f"; {len(result['missing'])} no longer failed" if result["missing"] else ""
        return f"Requeued {len(result['requeued'])} job(s){gone}."

    return _act(url_for("dashboard.health_page"), act)
