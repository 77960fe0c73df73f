"""CC → SF orchestration, the poll: new subscribers and unsubscribes, read on a schedule.

Constant Contact sends no contact or unsubscribe webhooks (api-notes §8), so each setup is polled
every ``schedule.poll_minutes``. One poll:

1. reads (:mod:`.read`) the setup's source (``cc_source``: the main list, all active contacts,
   or the main list plus named lists) changed since its cursor (``updated_after``), or all of
   it the first time (DESIGN §5a Runs: subscribers who were there before the setup existed are
   linked or created);
2. reads opt-outs, which ``updated_after`` does not see (api-notes §3.1): ``optout_after`` since
   its cursor, and a full ``status=unsubscribed`` scan on the first poll and then once a day as
   the safety net (it also sets an opt-out again that someone cleared in Salesforce, §5a).
   Opt-outs are read account-wide: an unsubscribe takes the contact off every list;
3. re-reads the contacts of ``cc_to_sf`` sync errors someone asked to retry;
4. for each batch: finds the addresses in Salesforce (:mod:`.match`: chunked ``Email IN
   (...)``, one query per object type and 16 KB, never one per contact), plans with the pure
   rules (:mod:`middleware.sync.cc_to_sf`), writes opt-outs, Accounts, records and NPSP
   affiliations in batches (:mod:`.write`: sObject Collections of 200, Bulk API 2.0 above
   ``BULK_THRESHOLD``), and records links, run counts and sync errors (:mod:`.record`; a record
   Salesforce rejects is that record's error; the rest of the batch goes on).

Cursors are Constant Contact's own timestamps (the newest ``updated_at`` / ``opt_out_date`` seen),
so our clock's skew does not matter, and each read starts ``OVERLAP`` earlier so contacts committed
while the last read ran are not missed; they are moved only once every batch of the read is
recorded, so an interrupted poll reads the same window again (the work is idempotent: linked
addresses are skipped from the store, opted-out records are not written twice).

Writes carry our ``Sforce-Call-Options`` client id (the client adds it), so their change events
are recognised as echoes; records created here are linked with the fingerprint the SF→CC direction
will compute for them, so it finds nothing to write back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from middleware import runner
from middleware.cc_to_sf import match, read, record, write
from middleware.constantcontact.client import ConstantContactClient
from middleware.context import Context
from middleware.outcome import Outcome, merge_outcomes
from middleware.queue import Runtime
from middleware.salesforce.client import SalesforceClient
from middleware.store import links as links_repo
from middleware.store import runs, setups
from middleware.store.bulk import chunked
from middleware.store.db import Store
from middleware.sync import cc_to_sf as rules
from middleware.sync.cc_to_sf import CcSubscriber, OrgInfo
from middleware.sync.options import SetupOptions
from schemas.setup import setup_options

log = logging.getLogger(__name__)

SCAN_EVERY = timedelta(hours=24)
BATCH_SIZE = 5_000
POLL_JOB = "jobs.poll.poll_setup"


def poll_job_key(setup_id: int) -> str:
    return f"poll-{setup_id}"


def polls(stored: Mapping[str, Any]) -> bool:
    """Whether a setup with these stored options has anything to poll for (the admin API asks
    with the dict it holds; jobs read ``SetupOptions.polls``)."""
    return setup_options(stored).polls


def poll_interval(options: SetupOptions) -> timedelta:
    return timedelta(minutes=options.schedule.poll_minutes)


def due_setups(store: Store, now: datetime) -> list[int]:
    """Setups whose poll is due at ``now``: never polled, or ``poll_minutes`` since the last.

    Paused setups and setups with nothing to poll are left out; the clock tick enqueues
    ``jobs.poll.poll_setup`` for each id.
    """
    return runner.due_setups(
        store,
        now,
        read.CURSOR_LAST_POLL,
        lambda _setup, options: poll_interval(options) if options.polls else None,
        read.parse_time,
    )


def run_poll(
    runtime: Runtime,
    setup_id: int,
    *,
    sf: SalesforceClient | None = None,
    cc: ConstantContactClient | None = None,
    job_id: str | None = None,
    now: Callable[[], datetime] | None = None,
) -> dict[str, Any]:
    """Poll one setup through the runner's run lifecycle (see ``middleware.runner``).

    A setup with ``sync_to_cc: false`` is polled too: it is exactly the CC → SF one-way case. A
    quota pause re-schedules the poll for when the quota resets.
    """
    with runtime.store.transaction() as session:
        setup = setups.get(session, setup_id)
        options = setup_options(setup.options) if setup is not None else None
    if options is not None and not options.polls:
        return {"setup_id": setup_id, "records": 0, "polls": False}
    return runner.run(
        runtime,
        setup_id,
        "poll",
        poll,
        sf=sf,
        cc=cc,
        job_id=job_id,
        needs_sync_to_cc=False,
        resume=runner.Resume(poll_job_key(setup_id), POLL_JOB),
        now=now or (lambda: datetime.now(UTC)),
        phase="poll",
    )


@dataclass
class PollResult:
    records: int = 0
    batches: int = 0
    outcome: Outcome = field(default_factory=Outcome)


def poll(ctx: Context, *, batch_size: int = BATCH_SIZE) -> PollResult:
    """One poll of one setup (see the module docstring); cursors move when it is all recorded."""
    started = ctx.now()
    org = read.org_info(ctx)
    list_ids = read.source_list_ids(ctx)
    names = read.custom_field_names(ctx)
    result = PollResult()
    updated = read.Mark.load(read.get_cursor(ctx, read.CURSOR_UPDATED))
    optouts = read.Mark.load(read.get_cursor(ctx, read.CURSOR_OPTOUT))
    last_scan = read.parse_time(read.get_cursor(ctx, read.CURSOR_SCAN))

    def sync_batch(batch: list[CcSubscriber]) -> None:
        done = sync_contacts(ctx, org, batch)
        result.records += len(batch)
        result.batches += 1
        merge_outcomes(result.outcome, done)
        if ctx.run_id is not None:
            with ctx.store.transaction() as session:
                runs.progress(session, ctx.run_id, done=result.records)

    # New and changed subscribers of the source (all of it the first time).
    fresh = (
        c
        for c in read.read_source(ctx, list_ids, updated.since, names)
        if updated.fresh(c, c.updated_at)
    )
    for batch in chunked(fresh, batch_size):
        sync_batch(batch)
        for contact in batch:
            updated.observe(contact, contact.updated_at)

    # Opt-outs since the cursor; the whole unsubscribed population on the first poll and then
    # once a day, as the safety net (it also repairs opt-outs cleared in Salesforce).
    scan = optouts.at is None or last_scan is None or started - last_scan >= SCAN_EVERY
    reads = read.read_optouts(ctx, None if scan else optouts.since)
    recent = (c for c in reads if scan or optouts.fresh(c, c.opt_out_date))
    for batch in chunked(recent, batch_size):
        sync_batch(batch)
        for contact in batch:
            optouts.observe(contact, contact.opt_out_date)

    # Opt-outs cleared in Salesforce since the last poll on records whose contact CC holds as
    # unsubscribed (the scan would find them only within a day).
    if not scan:
        cleared = read.cleared_opt_outs(
            ctx, read.parse_time(read.get_cursor(ctx, read.CURSOR_LAST_POLL)), names
        )
        if cleared:
            sync_batch(cleared)

    # Contacts whose sync errors someone asked to retry.
    retry = read.read_retries(ctx, names)
    if retry:
        sync_batch(retry)

    # Cursors hold only Constant Contact's timestamps: while a read has seen nothing, it keeps
    # reading from the start (cheap when there is nothing to read), so our clock never counts.
    values: dict[str, str | None] = {read.CURSOR_LAST_POLL: started.isoformat()}
    for name, mark in ((read.CURSOR_UPDATED, updated), (read.CURSOR_OPTOUT, optouts)):
        if mark.at is not None:
            values[name] = mark.dump()
    if scan:
        values[read.CURSOR_SCAN] = started.isoformat()
        result.outcome.counts["scanned_unsubscribed"] += 1
    read.set_cursors(ctx, values)
    return result


def sync_contacts(ctx: Context, org: OrgInfo, contacts: Sequence[CcSubscriber]) -> Outcome:
    """One batch of CC contacts through match → plan → write → record."""
    outcome = Outcome()
    unique = {c.contact_id or c.email: c for c in contacts}
    batch = list(unique.values())
    emails = {c.email for c in batch if c.email}
    with ctx.store.transaction() as session:
        known = links_repo.for_emails(session, ctx.setup_id, emails, include_retired=True)
    linked = set(known)
    matches = match.find_matches(ctx, org, match.wanted(ctx, org, batch, linked))
    main = ctx.main_list_id
    plan = rules.plan_cc_to_sf(
        ctx.options, batch, matches=matches, linked_emails=linked, org=org, main_list_id=main
    )
    # Every new Contact's company is looked up, whether or not a missing Account may be
    # created (create_missing_accounts: false stops only the creation).
    if plan.account_names:
        accounts = match.find_accounts(ctx, org, plan.account_names)
        plan = rules.plan_cc_to_sf(
            ctx.options,
            batch,
            matches=matches,
            accounts=accounts,
            linked_emails=linked,
            org=org,
            main_list_id=main,
        )
    outcome.warnings.extend(plan.warnings)
    for skip in plan.skips:
        outcome.skipped[skip.reason] += 1
    for note in plan.reports:
        outcome.counts[f"reported: {note.reason}"] += 1
    for error in plan.errors:
        outcome.failures.append(
            write.failure(error.contact_id, error.email, error.code, error.message)
        )

    succeeded: set[str] = set()
    write.write_opt_outs(ctx, plan, outcome, succeeded)
    link_rows, retired = write.write_creates(ctx, plan, outcome, succeeded)
    link_rows += write.existing_links(ctx, plan, outcome, succeeded)
    link_rows += record.subscription_rows(batch, known)
    ids_seen = record.ids_to_fill(batch, known)
    record.record_batch(ctx, batch, link_rows, retired, outcome, succeeded, ids_seen)
    return outcome
