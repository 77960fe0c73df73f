"""Scheduled catch-up: Salesforce changes whose event never reached us, every few minutes.

Change events are hints that can be lost: Redis restarted empty drops the ids accepted before,
and a Flow callout answered 503 during a Redis outage is not retried. So every
``schedule.catch_up_minutes`` (10 by default, 0 = off) the clock schedules, for each active
setup that pushes to Constant Contact, one catch-up under the setup's lock:

- the records of the setup's object whose ``SystemModstamp`` moved since the last catch-up (one
  SOQL query, queryAll so soft deletes come back with ``IsDeleted``), read with a small overlap
  for commits in flight, and a memory of the (Id, SystemModstamp) pairs already handled inside
  it, so an idle org re-plans nothing;
- for Contact setups that sync the company name, the contacts of Accounts that changed (an
  Account rename's event is a hint too);
- records deleted since (getDeleted, 15 days back at most): hard deletes emit no event and never
  show in a query; only ids this setup has an active link for are read again.

All of it goes through the flush's own path (``incremental.sync_records``): fingerprints make a
record already in step — ours included, written back by the Constant Contact poll — cost no
Constant Contact call. The cursor moves only after everything was recorded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import select

from middleware import incremental, runner
from middleware.constantcontact.client import ConstantContactClient
from middleware.queue import Runtime, interval_passed
from middleware.salesforce.client import SalesforceClient
from middleware.salesforce.errors import SalesforceError
from middleware.store import cursors
from middleware.store import links as links_repo
from middleware.store.db import Store
from middleware.store.models import Cursor, Setup
from middleware.sync.options import SetupOptions
from schemas.setup import setup_options

log = logging.getLogger(__name__)

CURSOR_STATE = "sf_catch_up"  # JSON: per object {"at": SystemModstamp, "seen": {Id: stamp}}
CURSOR_LAST = "sf_catch_up_last"  # when the last catch-up started (the clock's due check)
# How far back a catch-up started by hand looks while the setup's own interval is off (0).
OFF_FIRST_WINDOW = timedelta(minutes=10)
OVERLAP = timedelta(minutes=2)
DELETED_DAYS = 15  # getDeleted answers no further back
SEEN_MAX = 10_000
JOB = "jobs.catch_up.catch_up_setup"
DELETED = "deleted"


def job_key(setup_id: int) -> str:
    return f"catch-up-{setup_id}"


def interval(options: SetupOptions) -> timedelta | None:
    """The setup's catch-up interval, or ``None`` when it is off (0)."""
    minutes = options.schedule.catch_up_minutes
    return timedelta(minutes=minutes) if minutes > 0 else None


def due_setups(store: Store, now: datetime) -> list[int]:
    """Setups whose catch-up is due at ``now``: on, pushing to CC, not paused, interval passed."""
    with store.transaction() as session:
        rows = list(session.scalars(select(Setup).order_by(Setup.id)))
        last = dict(
            session.execute(
                select(Cursor.setup_id, Cursor.value).where(Cursor.name == CURSOR_LAST)
            ).all()
        )
        due: list[int] = []
        for setup in rows:
            try:
                options = setup_options(setup.options)
            except ValidationError as exc:
                log.warning("setup %s has unusable options: %s", setup.id, exc.messages)
                continue
            every = interval(options)
            if every is None or not options.sync_to_cc or setup.is_paused(now):
                continue
            connected = setup.salesforce_connection_id and setup.constant_contact_connection_id
            if not connected:
                continue
            if interval_passed(incremental.parse_modstamp(last.get(setup.id)), every, now):
                due.append(setup.id)
    return due


# ------------------------------------------------------------------------------- one catch-up


def _load(ctx: incremental.Context) -> dict[str, Any]:
    with ctx.store.transaction() as session:
        raw = cursors.get_cursor(session, ctx.setup_id, CURSOR_STATE)
    try:
        state = json.loads(raw) if raw else {}
    except ValueError:
        state = {}
    return state if isinstance(state, dict) else {}


def _changed(
    ctx: incremental.Context,
    sobject: str,
    fields: list[str],
    state: dict[str, Any],
    start: datetime,
) -> list[dict[str, Any]]:
    """Rows of ``sobject`` whose SystemModstamp moved since its watermark, not handled yet; the
    new watermark and memory go into ``state`` (saved by the caller once all is recorded)."""
    mark = state.get(sobject) or {}
    at = incremental.parse_modstamp(mark.get("at")) or start
    seen: dict[str, str] = dict(mark.get("seen") or {})
    fresh: list[dict[str, Any]] = []
    newest = at
    for row in ctx.sf.modified_since(sobject, fields, at, overlap=OVERLAP):
        stamp = str(row.get("SystemModstamp") or "")
        if seen.get(str(row["Id"])) == stamp:
            continue
        seen[str(row["Id"])] = stamp
        fresh.append(row)
        parsed = incremental.parse_modstamp(stamp)
        if parsed is not None and parsed > newest:
            newest = parsed
    horizon = newest - OVERLAP
    keep = {
        i: s
        for i, s in seen.items()
        if (incremental.parse_modstamp(s) or incremental.EPOCH) >= horizon
    }
    if len(keep) > SEEN_MAX:  # a huge burst: remember the newest; the rest is re-planned once
        keep = dict(sorted(keep.items(), key=lambda kv: kv[1])[-SEEN_MAX:])
    state[sobject] = {"at": newest.isoformat(), "seen": keep}
    return fresh


def _deleted(
    ctx: incremental.Context, state: dict[str, Any], start: datetime, warnings: list[str]
) -> list[str]:
    """Ids deleted since the last catch-up (getDeleted) that this setup still has linked."""
    now = ctx.now()
    since = incremental.parse_modstamp(state.get(DELETED)) or start
    earliest = now - timedelta(days=DELETED_DAYS) + timedelta(minutes=5)
    begin = max(since - OVERLAP, earliest)
    if now - begin < timedelta(minutes=1):
        return []  # getDeleted works in whole minutes; nothing new can be covered yet
    try:
        result = ctx.sf.deleted(ctx.sf_object, begin, now)
    except SalesforceError as exc:
        if exc.code != "INVALID_REPLICATION_DATE":
            raise
        # A window Salesforce cannot answer (clocks apart, the delete log purged early): start
        # afresh from now rather than fail every catch-up; the Full Sync finds older deletes.
        log.warning("setup %s: getDeleted refused %s..%s: %s", ctx.setup_id, begin, now, exc)
        warnings.append(f"deletes before {now:%Y-%m-%d %H:%M} UTC are left to the Full Sync: {exc}")
        state[DELETED] = now.isoformat()
        return []
    state[DELETED] = result.latest_date_covered or now.isoformat()
    ids = list(dict.fromkeys(record_id for record_id, _when in result.records))
    if not ids:
        return []
    with ctx.store.transaction() as session:
        linked = links_repo.for_sf_ids(session, ctx.setup_id, ids)
        # A link already removed from the lists, or retired, has nothing left to do.
        return [i for i, link in linked.items() if not link.removed_on_delete]


def catch_up(
    ctx: incremental.Context, *, first_window: timedelta, batch_size: int = incremental.BATCH_SIZE
) -> incremental.FlushResult:
    """One scheduled catch-up of the setup (see the module docstring); the cursor moves last.

    ``first_window``: how far back a setup's first catch-up looks (one interval; what came
    before is the Full Sync's and Sync Now's).
    """
    state = _load(ctx)
    start = ctx.now() - first_window
    fields = incremental.select_fields(ctx.options)
    records = _changed(ctx, ctx.sf_object, fields, state, start)
    seen = {str(r["Id"]) for r in records}
    if ctx.sf_object == "Contact" and ctx.options.sync_company:
        accounts = [str(r["Id"]) for r in _changed(ctx, "Account", [], state, start)]
        if accounts:
            ids = [i for i in incremental.expand_ids(ctx, {"Account": accounts}) if i not in seen]
            more, _gone = incremental.read_records(ctx, ids)
            records += more
            seen.update(str(r["Id"]) for r in more)
    missing: list[str] = []
    warnings: list[str] = []
    deleted = [i for i in _deleted(ctx, state, start, warnings) if i not in seen]
    if deleted:
        # queryAll: a record still in the Recycle Bin comes back with IsDeleted, a hard-deleted
        # one does not come back at all (and its link is retired).
        again, missing = incremental.read_records(ctx, deleted)
        records += again
    result = incremental.FlushResult()
    result.outcome.warnings.extend(warnings)
    if records or missing:
        incremental.prepare_targets(ctx)
        for index in range(0, max(len(records), 1), batch_size):
            chunk = records[index : index + batch_size]
            result.add(incremental.sync_records(ctx, chunk, missing if index == 0 else ()))
    with ctx.store.transaction() as session:
        cursors.set_cursor(session, ctx.setup_id, CURSOR_STATE, json.dumps(state))
    return result


def run_catch_up(
    runtime: Runtime,
    setup_id: int,
    *,
    sf: SalesforceClient | None = None,
    cc: ConstantContactClient | None = None,
    job_id: str | None = None,
    now: Callable[[], datetime] | None = None,
) -> dict[str, Any]:
    """One setup's scheduled catch-up through the runner's run lifecycle (a paused setup waits;
    a quota answer pauses it; an outage fails the run and RQ retries)."""
    clock = now or (lambda: datetime.now(UTC))
    with runtime.store.transaction() as session:
        setup = session.get(Setup, setup_id)
        if setup is None:
            return {"setup_id": setup_id, "records": 0}
        options = setup_options(setup.options)
        # Claimed before the work, so a failing catch-up is retried by RQ, not re-queued by
        # every clock tick on top of that.
        cursors.set_cursor(session, setup_id, CURSOR_LAST, clock().isoformat())
    every = interval(options) or OFF_FIRST_WINDOW

    def body(ctx: incremental.Context) -> incremental.FlushResult:
        return catch_up(ctx, first_window=every)

    return runner.run(
        runtime,
        setup_id,
        "incremental",
        body,
        sf=sf,
        cc=cc,
        job_id=job_id,
        now=clock,
        phase="catch_up",
    )
