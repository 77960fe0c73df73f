"""Runner: one setup's run from start to finish — clients, the run record, pauses, failures.

It runs first: each direction's job entry (``sf_to_cc.flush.run_flush``,
``sf_to_cc.catch_up.run_catch_up``, ``cc_to_sf.poll.run_poll``, ``sync_now.run_sync_now``) hands
its body to :func:`run`, which checks the pause, builds the :class:`~middleware.context.Context`,
opens the run, calls the body (the direction's stages) and closes the run. It imports neither
direction, so both may import it. Everything a person may need to see ends up on the
run (counts, API calls spent, the reason it stopped) or on the connection (needs re-consent):

- Constant Contact's daily quota pauses the setup's pushes until 00:00 UTC, says so (and when
  it resumes) on the run and on /readyz, and schedules the flush for when the quota resets;
  nothing is lost (the dirty ids stay in the intake). An operator's resume (`retry_now`) lifts
  the limiter's block and flushes at once; only a new `quota_exceeded` pauses it again.
- A connection that needs re-consent (any `vendor_errors.NeedsReauth`: a revoked or refused
  refresh, no tokens stored, a 401 after refreshing, Constant Contact's 403) is marked
  `needs_reauth`, which /readyz reports, and the run fails with that message; retrying cannot
  help, so the job itself does not fail.
- Anything else (outages after the clients' own retries) fails the run and re-raises, so RQ
  retries the job and, in the end, keeps it in the failed registry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from marshmallow import ValidationError
from sqlalchemy import select

from middleware import connections, intake, queue, vendor_errors
from middleware.constantcontact import errors as cc_errors
from middleware.constantcontact import wiring as cc_wiring
from middleware.constantcontact.client import ConstantContactClient
from middleware.context import Context
from middleware.queue import Runtime
from middleware.salesforce.client import SalesforceClient
from middleware.store import connections as connection_repo
from middleware.store import runs, setups
from middleware.store.db import Store
from middleware.store.models import Cursor, Setup
from middleware.sync.options import SetupOptions
from schemas.setup import setup_options

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def api_calls(sf: SalesforceClient | None, cc: ConstantContactClient | None) -> dict[str, int]:
    calls: dict[str, int] = {}
    if sf is not None:
        calls["salesforce"] = sf.usage.total
    if cc is not None:
        calls["constantcontact"] = cc.calls.total
    return calls


def build_context(
    runtime: Runtime,
    setup_id: int,
    *,
    sf: SalesforceClient | None = None,
    cc: ConstantContactClient | None = None,
) -> Context | None:
    """The setup's sync context with clients for its connections; None if the setup is gone."""
    with runtime.store.transaction() as session:
        setup = setups.get(session, setup_id)
        if setup is None:
            return None
        options = setup_options(setup.options)
        sf_conn, cc_conn = setup.salesforce_connection_id, setup.constant_contact_connection_id
    if sf is None:
        if sf_conn is None:
            raise LookupError(f"setup {setup_id} has no Salesforce connection")
        try:
            sf = connections.salesforce_client(
                runtime.settings, runtime.store, runtime.redis, sf_conn
            )
        except vendor_errors.NeedsReauth as exc:
            # Found before any run opened (no tokens stored): mark it for every caller.
            with runtime.store.transaction() as session:
                connection_repo.mark_status(session, sf_conn, "needs_reauth", str(exc))
            raise
    if cc is None:
        if cc_conn is None:
            raise LookupError(f"setup {setup_id} has no Constant Contact connection")
        cc = connections.constant_contact_client(
            runtime.settings, runtime.store, runtime.redis, cc_conn
        )
    return Context(setup_id=setup_id, options=options, store=runtime.store, sf=sf, cc=cc)


def due_setups(
    store: Store,
    now: datetime,
    cursor_name: str,
    every: Callable[[Setup, SetupOptions], timedelta | None],
    parse: Callable[[str | None], datetime | None],
) -> list[int]:
    """Setups a clock-driven job (poll, catch-up, campaign results) is due for at ``now``.

    A setup is due when it is not paused, its options load, ``every(setup, options)`` gives an
    interval (``None``: the setup does not want the job) and that long has passed since the time
    its cursor ``cursor_name`` holds (read with ``parse``). Two queries, whatever the number of
    setups.
    """
    with store.transaction() as session:
        rows = list(session.scalars(select(Setup).order_by(Setup.id)))
        last = dict(
            session.execute(
                select(Cursor.setup_id, Cursor.value).where(Cursor.name == cursor_name)
            ).all()
        )
        due: list[int] = []
        for setup in rows:
            if setup.is_paused(now):
                continue
            try:
                options = setup_options(setup.options)
            except ValidationError as exc:
                log.warning("setup %s has unusable options: %s", setup.id, exc.messages)
                continue
            interval = every(setup, options)
            if interval is not None and queue.interval_passed(
                parse(last.get(setup.id)), interval, now
            ):
                due.append(setup.id)
    return due


def paused_reason(runtime: Runtime, setup_id: int, now: datetime) -> str | None:
    state = _pause_state(runtime, setup_id, now)
    return state[0] if state is not None else None


def _pause_state(
    runtime: Runtime, setup_id: int, now: datetime
) -> tuple[str, datetime | None] | None:
    """(reason with its end, end) of a setup's pause in force at ``now``, or ``None``."""
    with runtime.store.transaction() as session:
        setup = setups.get(session, setup_id)
        if setup is None or not setup.is_paused(now):
            return None
        until = setup.paused_until
        if until is not None and until.tzinfo is None:
            until = until.replace(tzinfo=UTC)  # SQLite keeps no time zone; we store UTC
        text = f" until {until.isoformat()}" if until else ""
        return f"{setup.pause_reason}{text}", until


QUOTA_REASON = "Constant Contact daily API quota exceeded"


def paused_by_quota(pause_reason: str | None) -> bool:
    """Whether a setup's pause is the one a Constant Contact quota answer put it in."""
    return bool(pause_reason) and str(pause_reason).startswith(QUOTA_REASON)


def retry_now(settings: Any, redis: Any, setup_id: int, *, unblock: bool) -> str | None:
    """An operator resumed the setup: try again right away; return the flush job scheduled.

    ``unblock`` (the setup was paused by the quota) lifts the application's limiter block, so
    the next call asks Constant Contact again; if it answers ``quota_exceeded`` again, the setup
    pauses again until 00:00 UTC. The flush held for the quota reset is replaced by one now
    (``ensure_scheduled`` lets an earlier job replace a later one); with nothing pending it
    returns at once.
    """
    if unblock:
        cc_wiring.api_limiter(settings, redis).unblock()
    resume = flush_resume(setup_id)
    job_id = queue.ensure_scheduled(
        resume.key, resume.func, [setup_id], queue=resume.queue, connection=redis
    )
    return job_id or queue.pending_job_id(resume.key, connection=redis)


@dataclass(frozen=True)
class Resume:
    """The job to schedule when a quota pause ends: its dedupe key, function path and queue."""

    key: str
    func: str
    queue: str = queue.DEFAULT


class Result(Protocol):
    """What a run's body returns: records seen, batches, and an outcome that reports itself."""

    records: int
    batches: int

    @property
    def outcome(self) -> Any: ...


def flush_resume(setup_id: int) -> Resume:
    """The flush job of a setup: what a quota pause or an operator's resume schedules."""
    return Resume(intake.flush_job_key(setup_id), "jobs.flush.flush_setup", queue.WEBHOOKS)


def _drop_intake(runtime: Runtime, setup_id: int) -> None:
    runtime.redis.delete(intake.dirty_key(setup_id), intake.catchup_key(setup_id))


def run(
    runtime: Runtime,
    setup_id: int,
    kind: str,
    body: Callable[[Context], Result],
    *,
    sf: SalesforceClient | None = None,
    cc: ConstantContactClient | None = None,
    job_id: str | None = None,
    needs_sync_to_cc: bool = True,
    resume: Resume | None = None,
    now: Callable[[], datetime] = _now,
    phase: str = "push",
) -> dict[str, Any]:
    """Open a run, do `body`, and close the run with what happened (see the module docstring).

    `needs_sync_to_cc`: the body pushes Salesforce changes, so a CC → SF only setup has nothing
    to do (its pending changes are dropped). `resume`: the job to schedule when a quota pause
    ends. `now` is the clock the run and its context use.
    """
    state = _pause_state(runtime, setup_id, now())
    if state is not None:
        reason, until = state
        if resume is not None and until is not None:
            # An earlier request (a webhook, the clock) may have replaced the job held for the
            # pause's end; hold one for then again, so the work waits no longer than the pause.
            _schedule_resume(runtime, setup_id, resume, until, now())
        log.info("setup %s is paused (%s); %s waits", setup_id, reason, kind)
        return {"setup_id": setup_id, "paused": reason}
    try:
        ctx = build_context(runtime, setup_id, sf=sf, cc=cc)
    except vendor_errors.NeedsReauth as exc:
        with runtime.store.transaction() as session:
            run_id = runs.open_run(session, setup_id, kind, job_id=job_id, phase=phase).id
        vendor = mark_needs_reauth(runtime, setup_id, run_id, exc, {})
        return {"setup_id": setup_id, "run_id": run_id, "failed": f"{vendor} needs_reauth"}
    if ctx is None:
        log.warning("setup %s no longer exists; dropping its pending changes", setup_id)
        _drop_intake(runtime, setup_id)
        return {"setup_id": setup_id, "records": 0}
    ctx.now = now
    if needs_sync_to_cc and not ctx.options.sync_to_cc:
        # One-way CC → SF: Salesforce changes have nowhere to go.
        _drop_intake(runtime, setup_id)
        return {"setup_id": setup_id, "records": 0, "sync_to_cc": False}

    with runtime.store.transaction() as session:
        run_id = runs.open_run(session, setup_id, kind, job_id=job_id, phase=phase).id
    ctx.run_id = run_id
    try:
        result = body(ctx)
    except cc_errors.QuotaExceeded as exc:
        return _paused_by_quota(runtime, ctx, run_id, exc, resume)
    except vendor_errors.NeedsReauth as exc:
        return _needs_reauth(runtime, ctx, run_id, exc)
    except Exception as exc:
        with runtime.store.transaction() as session:
            runs.finish_run(
                session,
                run_id,
                "failed",
                message=f"{type(exc).__name__}: {exc}",
                api_calls=api_calls(ctx.sf, ctx.cc),
            )
        raise
    summary = result.outcome.report()
    message = "; ".join(dict.fromkeys(result.outcome.warnings))[:2000] or None
    with runtime.store.transaction() as session:
        runs.finish_run(
            session,
            run_id,
            "succeeded",
            counts={"records": result.records, **summary},
            api_calls=api_calls(ctx.sf, ctx.cc),
            message=message,
        )
    log.info(
        "setup %s: %s saw %d records in %d batches (%s)",
        setup_id,
        kind,
        result.records,
        result.batches,
        summary,
    )
    return {"setup_id": setup_id, "run_id": run_id, "records": result.records, **summary}


def _schedule_resume(
    runtime: Runtime, setup_id: int, resume: Resume, until: datetime, now: datetime
) -> None:
    queue.ensure_scheduled(
        resume.key,
        resume.func,
        [setup_id],
        delay=max(1.0, (until - now).total_seconds() + 5),
        queue=resume.queue,
        connection=runtime.redis,
    )


def time_left(delta_seconds: float) -> str:
    """``3 h 05 min`` / ``42 min``: how long a pause still lasts, in words a person reads."""
    minutes = max(0, round(delta_seconds / 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def _paused_by_quota(
    runtime: Runtime,
    ctx: Context,
    run_id: int,
    exc: cc_errors.QuotaExceeded,
    resume: Resume | None,
) -> dict[str, Any]:
    reason = QUOTA_REASON
    resume_at = exc.resume_at.astimezone(UTC)
    left = time_left((resume_at - ctx.now()).total_seconds())
    message = (
        f"{reason} ({exc}); the setup resumes at {resume_at:%Y-%m-%d %H:%M} UTC (in {left}), "
        f"or now with POST /admin/api/setups/{ctx.setup_id}/resume; changes wait in the intake"
    )
    with runtime.store.transaction() as session:
        setups.pause(session, ctx.setup_id, reason, until=resume_at)
        runs.finish_run(
            session,
            run_id,
            "paused",
            message=message,
            api_calls=api_calls(ctx.sf, ctx.cc),
        )
    if resume is not None:
        _schedule_resume(runtime, ctx.setup_id, resume, resume_at, ctx.now())
    log.warning("setup %s paused until %s: %s", ctx.setup_id, resume_at, reason)
    return {
        "setup_id": ctx.setup_id,
        "run_id": run_id,
        "paused": reason,
        "resumes_at": resume_at.isoformat(),
    }


def mark_needs_reauth(
    runtime: Runtime,
    setup_id: int,
    run_id: int,
    exc: Exception,
    calls: dict[str, int],
    *,
    note: str = "",
) -> str:
    """A connection needing re-consent: mark it `needs_reauth`, fail the run; return the vendor."""
    vendor = "constantcontact" if isinstance(exc, cc_errors.CCError) else "salesforce"
    with runtime.store.transaction() as session:
        setup = setups.get(session, setup_id)
        conn_id = None
        if setup is not None:
            conn_id = (
                setup.constant_contact_connection_id
                if vendor == "constantcontact"
                else setup.salesforce_connection_id
            )
        if conn_id is not None:
            connection_repo.mark_status(session, conn_id, "needs_reauth", str(exc))
        runs.finish_run(
            session,
            run_id,
            "failed",
            message=f"{vendor} connection needs to be connected again: {exc}{note}",
            api_calls=calls,
        )
    log.error("setup %s: %s connection needs re-consent", setup_id, vendor)
    return vendor


def _needs_reauth(runtime: Runtime, ctx: Context, run_id: int, exc: Exception) -> dict[str, Any]:
    vendor = mark_needs_reauth(runtime, ctx.setup_id, run_id, exc, api_calls(ctx.sf, ctx.cc))
    return {"setup_id": ctx.setup_id, "run_id": run_id, "failed": f"{vendor} needs_reauth"}
