"""Web health: /livez (process up), /readyz (dependencies and sync health), /metrics.

/livez checks nothing outside the process, so a slow database never triggers a restart storm.
/readyz answers 503 when something needs a human or blocks syncing: database or Redis down, a
queue backlog past its limit, no live RQ worker (or runs whose worker died, named), an embedded
Pub/Sub listener thread that stopped (``listener``, embedded mode only), a connection
that needs re-authorisation or holds an expired token it cannot refresh, a paused setup (quota
exceeded until 00:00 UTC, cancelled account). Its JSON names each check; ``?verbose`` gives the
same as plain text for humans (Kubernetes style).
``cc_webhook`` is informational: a ``warn`` (never a failure) while ``CC_WEBHOOK_SECRET`` is unset
and Constant Contact's partner webhooks are therefore refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from middleware import intake, metrics, runner, workers
from middleware.queue import pending_job_due, queue_state
from middleware.store import connections as connection_repo
from middleware.store import setups as setup_repo
from middleware.store.models import utcnow
from middleware.web import get_redis, get_settings, get_store

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)

DEFAULT_MAX_BACKLOG = 10_000

OK, WARN, FAIL = "ok", "warn", "fail"
CheckResult = tuple[str, str]  # (status, detail)


def check_database() -> CheckResult:
    get_store().ping()
    return OK, "reachable"


def check_redis() -> CheckResult:
    get_redis().ping()
    return OK, "embedded" if get_settings().embedded else "reachable"


def check_queues() -> CheckResult:
    state = queue_state(get_redis())
    limit = int(current_app.config.get("READYZ_MAX_BACKLOG", DEFAULT_MAX_BACKLOG))
    depths = ", ".join(f"{name} {q['queued']}" for name, q in state["queues"].items())
    detail = f"waiting: {depths}; failed: {state['failed']}; workers: {len(state['workers'])}"
    if state["backlog"] > limit:
        return FAIL, f"backlog {state['backlog']} over {limit}; {detail}"
    return OK, detail


def check_workers() -> CheckResult:
    """A live worker runs the jobs; runs whose worker died are named (see middleware.workers).

    Embedded mode has no RQ worker process: the web process's own worker thread is checked.
    """
    if get_settings().embedded:
        thread = current_app.extensions["middleware"].get("worker")
        if thread is None:
            return WARN, "embedded mode without a worker thread (EMBEDDED_WORKER is off)"
        if not thread.alive:
            return FAIL, "the embedded worker thread has stopped; restart the web process"
        return OK, "embedded worker thread running"
    redis = get_redis()
    live, gone = workers.live_workers(redis)
    try:
        died = "; ".join(d.describe() for d in workers.dead_runs(get_store(), redis))
    except Exception as exc:  # the database check names the outage
        log.warning("could not look for runs whose worker died: %s", exc)
        died = ""
    if not live:
        detail = "no live RQ worker: jobs wait until one starts (Procfile `worker`)"
        if gone:
            more = f"; and {len(gone) - 5} more" if len(gone) > 5 else ""
            detail += f"; {'; '.join(gone[:5])}{more}"
        if died:
            detail += f"; runs that died with their worker: {died}"
        return FAIL, detail
    if died:
        return FAIL, (
            f"runs whose worker died (a live worker marks them failed and retries their jobs "
            f"within a minute): {died}"
        )
    return OK, f"{len(live)} live: {', '.join(live)}"


def check_listener() -> CheckResult:
    """Embedded mode only: the web process's own Pub/Sub listener thread (EMBEDDED_LISTENER).

    Outside it the listener is a process of its own (`flask --app app listen`), not checked here.
    """
    thread = current_app.extensions["middleware"]["listener"]
    if not thread.alive:
        return FAIL, "the embedded Pub/Sub listener thread has stopped; restart the web process"
    consumed = thread.connections
    if not consumed:
        return OK, "embedded Pub/Sub listener running; no setup on the pubsub door"
    names = ", ".join(str(c) for c in consumed)
    return OK, f"embedded Pub/Sub listener running; consuming Salesforce connection(s) {names}"


def reconnect_advice(vendor: str, connection_id: int) -> str:
    """The call that gives a connection new tokens (the OAuth flow, re-authorising this row)."""
    return (
        f'reconnect: POST /admin/api/connections/start {{"vendor": "{vendor}", '
        f'"connection_id": {connection_id}}}'
    )


def check_connections(now: datetime) -> CheckResult:
    """Each connection's *stored* state: what the last job or check that used it recorded.

    No vendor is called here (a probe every few seconds must not spend API quota): a job that
    meets a revoked token marks the connection ``needs_reauth`` (``runner.mark_needs_reauth``),
    ``POST /admin/api/connections/N/check`` verifies one now.
    """
    problems, notes = [], []
    active = 0
    with get_store().session() as session:
        for conn in connection_repo.all_connections(session):
            label = f" ({conn.label})" if conn.label else ""
            name = f"{conn.vendor} connection {conn.id}{label}"
            advice = reconnect_advice(conn.vendor, conn.id)
            if conn.status != "active":
                why = f": {conn.last_error}" if conn.last_error else ""
                fix = f"; {advice}" if conn.status == "needs_reauth" else ""
                problems.append(f"{name} is {conn.status}{why}{fix}")
            elif conn.expires_at is not None and conn.expires_at <= now:
                if conn.refresh_token_encrypted is None:
                    problems.append(f"{name}: access token expired and no refresh token; {advice}")
                else:
                    notes.append(f"{name}: access token expired, refreshed on next use")
                    active += 1
            elif conn.access_token_encrypted is None:
                problems.append(f"{name} has no access token; {advice}")
            else:
                active += 1
    if problems:
        return FAIL, "; ".join(problems)
    if not active:
        return OK, "no connection stored yet"
    known = (
        f"{active} connection{'s' if active != 1 else ''} active as last recorded by a job or a "
        "check (POST /admin/api/connections/N/check verifies one now)"
    )
    return OK, "; ".join([*notes, known])


def _pause_detail(setup: Any, now: datetime) -> str:
    """Why a setup waits and when it goes on: the pause's end, the job held for it, the fix."""
    text = f"setup {setup.id} ({setup.name}) paused: {setup.pause_reason}"
    if setup.paused_until is None:
        return f"{text} until resumed"
    until = setup.paused_until
    left = runner.time_left((until.replace(tzinfo=until.tzinfo or UTC) - now).total_seconds())
    text += f" until {until.isoformat()} (resumes in {left}"
    try:
        due = pending_job_due(intake.flush_job_key(setup.id), connection=get_redis())
    except Exception:  # Redis down: the redis check says so; the pause is still worth telling
        due = None
    text += f"; flush held for {due:%H:%M:%S} UTC)" if due else ")"
    if runner.paused_by_quota(setup.pause_reason):
        text += f"; POST /admin/api/setups/{setup.id}/resume tries again now"
    return text


def check_setups(now: datetime) -> CheckResult:
    with get_store().session() as session:
        paused = setup_repo.paused(session, now)
        reasons = [_pause_detail(s, now) for s in paused]
    if reasons:
        return FAIL, "; ".join(reasons)
    return OK, "no setup paused"


def check_cc_webhook() -> CheckResult:
    """Informational: whether Constant Contact partner webhooks can be verified (never fails)."""
    if get_settings().cc_webhook_secret:
        return OK, "partner webhooks verified with CC_WEBHOOK_SECRET"
    return WARN, (
        "CC_WEBHOOK_SECRET is not set: Constant Contact partner webhooks (account cancelled or "
        "disabled) are refused"
    )


def _checks(now: datetime) -> dict[str, Callable[[], CheckResult]]:
    checks: dict[str, Callable[[], CheckResult]] = {
        "database": check_database,
        "redis": check_redis,
        "queues": check_queues,
        "workers": check_workers,
    }
    if current_app.extensions["middleware"].get("listener") is not None:
        checks["listener"] = check_listener
    checks.update(
        {
            "connections": lambda: check_connections(now),
            "setups": lambda: check_setups(now),
            "cc_webhook": check_cc_webhook,
        }
    )
    return checks


def run_checks(now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """Run every readiness check; a check that raises is a failure naming the error."""
    at = now or utcnow()
    results: dict[str, dict[str, Any]] = {}
    failed_deps: set[str] = set()
    for name, check in _checks(at).items():
        if name == "queues" and "redis" in failed_deps:
            results[name] = {"status": FAIL, "detail": "skipped: Redis is unreachable"}
            continue
        if name == "workers" and "redis" in failed_deps:  # the redis check already fails
            results[name] = {"status": WARN, "detail": "skipped: Redis is unreachable"}
            continue
        if name in ("connections", "setups") and "database" in failed_deps:
            results[name] = {"status": FAIL, "detail": "skipped: database is unreachable"}
            continue
        started = time.perf_counter()
        try:
            status, detail = check()
        except Exception as exc:  # a readiness probe reports failures, it must not raise
            log.warning("readiness check %s failed: %s", name, exc)
            status, detail = FAIL, f"{type(exc).__name__}: {exc}"
            failed_deps.add(name)
        results[name] = {
            "status": status,
            "detail": detail,
            "ms": round((time.perf_counter() - started) * 1000, 1),
        }
    return results


@bp.get("/livez")
def livez() -> Response:
    """Liveness: the process answers. No dependency is checked."""
    return jsonify(status=OK)


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Readiness: 200 when every check passes (warnings allowed), else 503 naming the failures."""
    results = run_checks()
    failed = [name for name, r in results.items() if r["status"] == FAIL]
    code = 503 if failed else 200
    if "verbose" in request.args:
        lines = [
            f"[{'-' if r['status'] == FAIL else '+'}]{name} {r['status']}: {r['detail']}"
            for name, r in results.items()
        ]
        verdict = f"readyz check failed: {', '.join(failed)}" if failed else "readyz check passed"
        text = "\n".join([*lines, verdict]) + "\n"
        return Response(text, mimetype="text/plain"), code
    body = {"status": FAIL if failed else OK, "failed": failed, "checks": results}
    return jsonify(body), code


@bp.get("/metrics")
def metrics_view() -> Response:
    """Prometheus exposition: web counters plus Redis-backed job counters and queue depths."""
    try:
        connection = get_redis()
    except KeyError:
        connection = None
    body, content_type = metrics.render(connection)
    return Response(body, content_type=content_type)
