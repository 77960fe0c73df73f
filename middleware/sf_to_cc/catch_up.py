"""SF → CC scheduled catch-up: Salesforce changes whose event never reached us, every few minutes.

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

The reads are :mod:`.collect`'s; all of it goes through the flush's own path
(:func:`.flush.sync_records`): fingerprints make a
record already in step — ours included, written back by the Constant Contact poll — cost no
Constant Contact call. The cursor moves only after everything was recorded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from middleware import runner
from middleware.constantcontact.client import ConstantContactClient
from middleware.context import Context
from middleware.queue import Runtime
from middleware.salesforce.client import SalesforceClient
from middleware.sf_to_cc import collect, read, segments
from middleware.sf_to_cc.flush import BATCH_SIZE, FlushResult, prepare_segments, sync_records
from middleware.store import cursors
from middleware.store.db import Store
from middleware.store.models import Setup
from middleware.sync.options import SetupOptions
from schemas.setup import setup_options

log = logging.getLogger(__name__)

CURSOR_STATE = "sf_catch_up"  # JSON: per object {"at": SystemModstamp, "seen": {Id: stamp}}
CURSOR_LAST = "sf_catch_up_last"  # when the last catch-up started (the clock's due check)
# How far back a catch-up started by hand looks while the setup's own interval is off (0).
OFF_FIRST_WINDOW = timedelta(minutes=10)
JOB = "jobs.catch_up.catch_up_setup"


def job_key(setup_id: int) -> str:
    return f"catch-up-{setup_id}"


def interval(options: SetupOptions) -> timedelta | None:
    """The setup's catch-up interval, or ``None`` when it is off (0)."""
    minutes = options.schedule.catch_up_minutes
    return timedelta(minutes=minutes) if minutes > 0 else None


def due_setups(store: Store, now: datetime) -> list[int]:
    """Setups whose catch-up is due at ``now``: on, pushing to CC, connected, not paused,
    interval passed."""

    def every(setup: Setup, options: SetupOptions) -> timedelta | None:
        connected = setup.salesforce_connection_id and setup.constant_contact_connection_id
        return interval(options) if options.sync_to_cc and connected else None

    return runner.due_setups(store, now, CURSOR_LAST, every, collect.parse_modstamp)


# ------------------------------------------------------------------------------- one catch-up


def _load(ctx: Context) -> dict[str, Any]:
    with ctx.store.transaction() as session:
        raw = cursors.get_cursor(session, ctx.setup_id, CURSOR_STATE)
    try:
        state = json.loads(raw) if raw else {}
    except ValueError:
        state = {}
    return state if isinstance(state, dict) else {}


def catch_up(ctx: Context, *, first_window: timedelta, batch_size: int = BATCH_SIZE) -> FlushResult:
    """One scheduled catch-up of the setup (see the module docstring); the cursor moves last.

    ``first_window``: how far back a setup's first catch-up looks (one interval; what came
    before is the Full Sync's and Sync Now's).
    """
    state = _load(ctx)
    start = ctx.now() - first_window
    fields = read.select_fields(ctx.options)
    records = collect.changed(ctx, ctx.sf_object, fields, state, start)
    seen = {str(r["Id"]) for r in records}
    if ctx.sf_object == "Contact" and ctx.options.sync_company:
        accounts = [str(r["Id"]) for r in collect.changed(ctx, "Account", [], state, start)]
        if accounts:
            ids = [i for i in collect.expand_ids(ctx, {"Account": accounts}) if i not in seen]
            more, _gone = read.read_records(ctx, ids)
            records += more
            seen.update(str(r["Id"]) for r in more)
    result = FlushResult()
    if segments.segmented(ctx):
        members = prepare_segments(ctx, result.outcome, None)
        if ctx.options.campaign_lists is not None and ctx.options.campaign_lists.from_campaigns:
            column = segments.member_column(ctx)
            for row in collect.changed(ctx, "CampaignMember", [column], state, start):
                person = segments.person_of(ctx, row)
                if person:
                    members.append(person)
        ids = [i for i in dict.fromkeys(members) if i not in seen]
        if ids:
            more, _gone = read.read_records(ctx, ids)
            records += more
            seen.update(str(r["Id"]) for r in more)
    missing: list[str] = []
    warnings: list[str] = []
    deleted = [i for i in collect.deleted(ctx, state, start, warnings) if i not in seen]
    if deleted:
        # queryAll: a record still in the Recycle Bin comes back with IsDeleted, a hard-deleted
        # one does not come back at all (and its link is retired).
        again, missing = read.read_records(ctx, deleted)
        records += again
    result.outcome.warnings.extend(warnings)
    if records or missing:
        read.prepare_targets(ctx)
        for index in range(0, max(len(records), 1), batch_size):
            chunk = records[index : index + batch_size]
            result.add(sync_records(ctx, chunk, missing if index == 0 else ()))
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

    def body(ctx: Context) -> FlushResult:
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
