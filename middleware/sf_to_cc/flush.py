"""Incremental sync, Salesforce → Constant Contact: dirty records re-read, planned, pushed.

`flush(...)` drains a setup's intake (the ids its change events named) in batches: each batch is
re-read from Salesforce in a few chunked SOQL queries (events are hints, not truth), joined with
the store's links, planned by the pure rules, executed against Constant Contact in bulk, and
recorded (links, fingerprints, sync errors, run counts). Only then are the ids acknowledged, so a
batch interrupted by a crash or an outage is read again by the next attempt.

Constant Contact is read only where a rule needs it: an email change, an opt-out to propagate, a
delete or conversion that removes from lists, an undelete. Everything else goes through the JSON
import, which Constant Contact keys by email, so a burst of edits costs no lookups at all.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from redis import Redis

from middleware import intake
from middleware.constantcontact.client import ConstantContactClient
from middleware.constantcontact.errors import NotFound
from middleware.executor import (
    Outcome,
    execute,
    imported_links,
    new_contacts,
    store_changes,
)
from middleware.salesforce.client import SalesforceClient, soql_string
from middleware.store import cursors, runs
from middleware.store import errors as errors_repo
from middleware.store import links as links_repo
from middleware.store.db import Store
from middleware.store.models import Link as LinkRow
from middleware.sync import CcContact, Link
from middleware.sync.mapping import (
    object_fields,
    record_email,
    soql_fields,
)
from middleware.sync.options import SetupOptions
from middleware.sync.segments import filter_fields, unmatched
from middleware.sync.sf_to_cc import (
    cc_contact,
    needs_cc_contact,
    opt_out_to_set_again,
    plan_sf_to_cc,
)

log = logging.getLogger(__name__)

BATCH_SIZE = 10_000
# A flush hands over to a fresh job after this long (the webhooks queue's job timeout is 300 s).
FLUSH_MAX_SECONDS = 60.0
CATCH_UP_OVERLAP = timedelta(minutes=5)
CURSOR_MAIN_LIST = "cc_main_list"
CURSOR_CUSTOM_FIELDS = "cc_custom_fields"


@dataclass
class Context:
    """Everything one setup's sync needs, built once per job."""

    setup_id: int
    options: SetupOptions
    store: Store
    sf: SalesforceClient
    cc: ConstantContactClient
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    run_id: int | None = None
    main_list_id: str = ""
    custom_field_ids: dict[str, str] = field(default_factory=dict)

    @property
    def sf_object(self) -> str:
        return self.options.object_type


# ------------------------------------------------------------------------------- CC targets


def prepare_targets(ctx: Context) -> None:
    """The main list's id and the mapped custom fields' ids, created when missing, cached."""
    main = ctx.options.main_list
    with ctx.store.transaction() as session:
        cached_list = cursors.get_cursor(session, ctx.setup_id, CURSOR_MAIN_LIST)
        cached_fields = cursors.get_cursor(session, ctx.setup_id, CURSOR_CUSTOM_FIELDS)
    name, _, list_id = (cached_list or "").rpartition("|")
    if name != main or not list_id:
        list_id = str(ctx.cc.get_or_create_list(main)["list_id"])
        with ctx.store.transaction() as session:
            cursors.set_cursor(session, ctx.setup_id, CURSOR_MAIN_LIST, f"{main}|{list_id}")
    ctx.main_list_id = list_id

    known: dict[str, str] = json.loads(cached_fields) if cached_fields else {}
    wanted = list(ctx.options.custom_fields_to_cc)
    if any(name not in known for name in wanted):
        known.update(ctx.cc.ensure_custom_fields(wanted))
        with ctx.store.transaction() as session:
            cursors.set_cursor(session, ctx.setup_id, CURSOR_CUSTOM_FIELDS, json.dumps(known))
    ctx.custom_field_ids = known


# ------------------------------------------------------------------------------- state


def _to_sync_link(row: LinkRow) -> Link:
    return Link(
        sf_id=row.sf_id,
        cc_contact_id=row.cc_contact_id or "",
        email=row.email or "",
        fingerprint=row.fingerprint,
        status="active" if row.status == "active" else "retired",
        opted_out=bool(row.opted_out_propagated),
        removed_on_delete=bool(getattr(row, "removed_on_delete", False)),
        list_ids=tuple(row.lists or ()),
        sf_created=getattr(row, "sf_created", None),
        cc_unsubscribed=not row.subscribed_when_synced,
    )


def _lookups(
    ctx: Context,
    records: Mapping[str, Mapping[str, Any]],
    missing: Iterable[str],
    links: dict[str, Link],
    outside: set[str],
) -> tuple[list[CcContact], dict[str, str]]:
    """Read from CC what the rules need for this batch; also return newly resolved contact ids."""
    found: dict[str, CcContact] = {}
    resolved: dict[str, str] = {}
    for sf_id in sorted({*records, *missing}):
        link = links.get(sf_id)
        record = records.get(sf_id)
        if (
            link is None
            or not link.active
            or not needs_cc_contact(ctx.options, record, link, sf_id in outside)
        ):
            continue
        contact_id = link.cc_contact_id
        try:
            if contact_id:
                data: Mapping[str, Any] | None = ctx.cc.get_contact(contact_id)
            else:
                data = ctx.cc.find_contact_by_email(link.email) if link.email else None
        except NotFound:
            data = None
        if data is not None:
            contact = cc_contact(data)
            found[contact.contact_id] = contact
            if not contact_id:
                resolved[sf_id] = contact.contact_id
        new_email = record_email(ctx.options, record) if record is not None else ""
        if new_email and new_email != link.email:
            other = ctx.cc.find_contact_by_email(new_email)
            if other is not None:
                contact = cc_contact(other)
                found[contact.contact_id] = contact
    return list(found.values()), resolved


# ------------------------------------------------------------------------------- one batch


@dataclass
class BatchResult:
    outcome: Outcome
    records: int


def sync_records(
    ctx: Context,
    records: list[dict[str, Any]],
    missing_ids: Iterable[str] = (),
    *,
    reset: bool = False,
) -> BatchResult:
    """Plan and push one batch of re-read Salesforce records; record links and errors."""
    by_id = {str(r["Id"]): r for r in records}
    missing = sorted(set(missing_ids) - set(by_id))
    emails = {e for e in (record_email(ctx.options, r) for r in records) if e}
    with ctx.store.transaction() as session:
        rows = links_repo.for_sf_ids(session, ctx.setup_id, [*by_id, *missing])
        by_email = links_repo.for_emails(session, ctx.setup_id, emails, include_retired=False)
        link_objs = {sf_id: _to_sync_link(row) for sf_id, row in rows.items()}
        others = [
            _to_sync_link(row)
            for found in by_email.values()
            for row in found
            if row.sf_id not in link_objs
        ]
    outside = set(unmatched(ctx.options, records))
    contacts, resolved = _lookups(ctx, by_id, missing, link_objs, outside)
    for sf_id, contact_id in resolved.items():
        link_objs[sf_id] = replace(link_objs[sf_id], cc_contact_id=contact_id)

    plan = plan_sf_to_cc(
        ctx.options,
        records,
        links=[*link_objs.values(), *others],
        cc_contacts=contacts,
        main_list_id=ctx.main_list_id,
        custom_field_ids=ctx.custom_field_ids,
        now=ctx.now(),
        missing_ids=missing,
        unmatched_ids=outside,
        reset=reset,
    )
    outcome = execute(ctx.cc, plan, ctx.custom_field_ids)
    # The links of this batch's imports get their contact ids now when they are few.
    looked = {
        sf_id: cc_contact(data)
        for sf_id, data in new_contacts(ctx.cc, imported_links(plan, outcome.failed_ids)).items()
    }
    _record(ctx, plan, outcome, link_objs, resolved, by_id, looked)
    # A new record at an address CC already held unsubscribed gets the opt-out at once too.
    set_opt_outs_again(ctx, by_id, [*contacts, *looked.values()], outcome)
    return BatchResult(outcome=outcome, records=len(by_id) + len(missing))


def set_opt_outs_again(
    ctx: Context,
    records: Mapping[str, Mapping[str, Any]],
    contacts: Iterable[CcContact],
    outcome: Outcome,
) -> int:
    """Opt-outs someone cleared in Salesforce while Constant Contact still holds the address
    as unsubscribed are set again (§5a; the rule is :func:`opt_out_to_set_again`).

    One sObject Collections call per 200 records, with our call-options client id (the
    client adds it), so the change event the write causes is dropped as our own echo. A
    record Salesforce rejects becomes its sync error. Counted as ``opt_outs_set_again``.
    """
    by_email = {c.email: c for c in contacts if not c.deleted}
    wanted = [
        sf_id
        for sf_id, record in sorted(records.items())
        if opt_out_to_set_again(
            ctx.options, record, by_email.get(record_email(ctx.options, record) or "")
        )
    ]
    if not wanted:
        return 0
    field_name = object_fields(ctx.options).opted_out
    results = ctx.sf.update_many(ctx.sf_object, [{"Id": i, field_name: True} for i in wanted])
    done = 0
    failures: list[dict[str, Any]] = []
    for sf_id, result in zip(wanted, results, strict=True):
        if result.success:
            done += 1
            continue
        err = result.error
        failures.append(
            {
                "direction": "cc_to_sf",
                "vendor": "salesforce",
                "code": getattr(err, "code", None) or "opt_out_rejected",
                "message": f"opt-out set again: {getattr(err, 'message', None) or 'rejected'}",
                "sf_id": sf_id,
                "email": record_email(ctx.options, records[sf_id]) or None,
                "payload": {"sf_object": ctx.sf_object, "field": field_name},
            }
        )
    if failures:
        with ctx.store.transaction() as session:
            errors_repo.record_errors(session, ctx.setup_id, failures, run_id=ctx.run_id)
        outcome.warnings.append(f"{len(failures)} opt-out(s) could not be set again")
    if done:
        outcome.counts["opt_outs_set_again"] += done
        log.info(
            "setup %s: %d opt-out(s) cleared in Salesforce set again (unsubscribed in CC)",
            ctx.setup_id,
            done,
        )
    return done


def _record(
    ctx: Context,
    plan: Any,
    outcome: Outcome,
    before: dict[str, Link],
    resolved: dict[str, str],
    records: Mapping[str, Mapping[str, Any]],
    created: Mapping[str, CcContact] | None = None,
) -> None:
    failed = outcome.failed_ids
    full_rows, retire = store_changes(plan, failed, ctx.sf_object, before)
    for row in full_rows:
        # A new link made for an import's row: the contact looked up after the import.
        found = (created or {}).get(row["sf_id"])
        if found is not None and "cc_contact_id" in row and not row["cc_contact_id"]:
            row["cc_contact_id"] = found.contact_id
            row["subscribed_when_synced"] = not found.unsubscribed
    for sf_id, contact_id in resolved.items():
        if sf_id not in failed and sf_id not in retire:
            full_rows.append(
                {"sf_id": sf_id, "sf_object": ctx.sf_object, "cc_contact_id": contact_id}
            )
    failures = [
        {
            "direction": "sf_to_cc",
            "vendor": "constantcontact",
            "code": f.code,
            "message": f.message,
            "sf_id": f.sf_id,
            "cc_contact_id": f.cc_contact_id,
            "email": f.email or record_email(ctx.options, records.get(f.sf_id) or {}) or None,
            "payload": {"sf_object": ctx.sf_object, "sf_id": f.sf_id},
        }
        for f in outcome.failures
    ]
    succeeded = [sf_id for sf_id in {*records, *before} if sf_id not in failed]
    with ctx.store.transaction() as session:
        links_repo.retire_links(session, ctx.setup_id, retire)
        _upsert(session, ctx.setup_id, full_rows)
        if failures:
            errors_repo.record_errors(session, ctx.setup_id, failures, run_id=ctx.run_id)
        if succeeded:
            errors_repo.resolve_errors(session, ctx.setup_id, sf_ids=succeeded)


def _upsert(session: Any, setup_id: int, rows: list[dict[str, Any]]) -> None:
    supported = {"sf_id", *links_repo.UPSERT_COLUMNS}
    links_repo.upsert_links(
        session, setup_id, [{k: v for k, v in row.items() if k in supported} for row in rows]
    )


# ------------------------------------------------------------------------------- the flush


def expand_ids(ctx: Context, ids: Mapping[str, list[str]]) -> list[str]:
    """Record ids of the setup's object for a batch; Account changes reach their contacts."""
    own = list(ids.get(ctx.sf_object, []))
    accounts = ids.get("Account", []) if ctx.sf_object == "Contact" else []
    prefix = "SELECT Id FROM Contact WHERE AccountId"
    for chunk in ctx.sf.id_chunks(prefix, accounts) if accounts else ():
        quoted = ", ".join(soql_string(i) for i in chunk)
        own += [r["Id"] for r in ctx.sf.query_iter(f"{prefix} IN ({quoted})")]
    return list(dict.fromkeys(own))


def select_fields(options: SetupOptions) -> list[str]:
    """What a batch re-reads: the mapped fields and the fields the setup's filter looks at."""
    return list(dict.fromkeys([*soql_fields(options), *filter_fields(options)]))


def read_records(ctx: Context, ids: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Re-read records by id (queryAll: deleted ones come back with IsDeleted)."""
    if not ids:
        return [], []
    result = ctx.sf.query_by_ids(
        ctx.sf_object, select_fields(ctx.options), ids, include_deleted=True
    )
    return list(result.records), list(result.missing)


def catch_up(ctx: Context, since: datetime) -> list[dict[str, Any]]:
    """Records of the setup's object modified since `since` (SystemModstamp, with overlap)."""
    return list(
        ctx.sf.modified_since(
            ctx.sf_object, select_fields(ctx.options), since, overlap=CATCH_UP_OVERLAP
        )
    )


@dataclass
class FlushResult:
    records: int = 0
    batches: int = 0
    outcome: Outcome = field(default_factory=Outcome)
    more: bool = False  # stopped by its time bound with changes still waiting

    def add(self, done: BatchResult) -> None:
        """Count one recorded batch in."""
        self.records += done.records
        self.batches += 1
        merge_outcomes(self.outcome, done.outcome)


def merge_outcomes(total: Outcome, part: Outcome) -> None:
    """Add one batch's outcome to a run's (each warning once)."""
    total.counts.update(part.counts)
    total.skipped.update(part.skipped)
    total.failures.extend(part.failures)
    total.warnings.extend(w for w in part.warnings if w not in total.warnings)


def flush(
    ctx: Context,
    redis: Redis,
    *,
    batch_size: int = BATCH_SIZE,
    max_seconds: float = FLUSH_MAX_SECONDS,
    monotonic: Callable[[], float] = time.monotonic,
) -> FlushResult:
    """Drain the setup's intake; each batch is acknowledged only after it was recorded.

    A flush stops taking new batches after `max_seconds`, so a steady stream of changes never
    keeps one job running past its timeout; `result.more` then says work is left, and the caller
    schedules the next flush.
    """
    result = FlushResult()
    prepared = False
    started = monotonic()
    while True:
        if result.batches and monotonic() - started > max_seconds:
            result.more = intake.pending(redis, ctx.setup_id) > 0
            return result
        batch = intake.take(redis, ctx.setup_id, batch_size)
        catchups = intake.take_catchups(redis, ctx.setup_id)
        if not len(batch) and not catchups:
            return result
        if not prepared:
            prepare_targets(ctx)
            prepared = True
        records, missing = read_records(ctx, expand_ids(ctx, batch.ids))
        for entity, stamp in catchups.items():
            if entity == ctx.sf_object:
                since = datetime.fromtimestamp(stamp / 1000, UTC)
                seen = {r["Id"] for r in records}
                records += [r for r in catch_up(ctx, since) if r["Id"] not in seen]
        done = sync_records(ctx, records, missing)
        intake.ack(redis, ctx.setup_id, batch)
        intake.ack_catchups(redis, ctx.setup_id, catchups)
        result.add(done)
        if ctx.run_id is not None:
            with ctx.store.transaction() as session:
                runs.progress(session, ctx.run_id, done=result.records)


CURSOR_MODSTAMP = "sf_systemmodstamp"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_modstamp(value: Any) -> datetime | None:
    if not value:
        return None
    text = str(value).replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]  # Salesforce prints +0000
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def catch_up_all(ctx: Context, *, batch_size: int = BATCH_SIZE) -> FlushResult:
    """Sync every record changed since the setup's SystemModstamp cursor (all, the first time).

    The safety net for lost events (hard deletes emit nothing, callouts are not retried): Sync Now
    runs it before draining the intake. The cursor moves after each recorded batch, so an
    interrupted catch-up resumes where it stopped; the overlap window covers commits in flight.
    """
    with ctx.store.transaction() as session:
        raw = cursors.get_cursor(session, ctx.setup_id, CURSOR_MODSTAMP)
    since = parse_modstamp(raw) or EPOCH
    overlap = CATCH_UP_OVERLAP if raw else timedelta(0)
    prepare_targets(ctx)
    result = FlushResult()
    pending: list[dict[str, Any]] = []
    newest = since

    def record(batch: list[dict[str, Any]]) -> None:
        done = sync_records(ctx, batch)
        result.add(done)
        with ctx.store.transaction() as session:
            cursors.set_cursor(session, ctx.setup_id, CURSOR_MODSTAMP, newest.isoformat())
            if ctx.run_id is not None:
                runs.progress(session, ctx.run_id, done=result.records)

    for row in ctx.sf.modified_since(
        ctx.sf_object, select_fields(ctx.options), since, overlap=overlap
    ):
        pending.append(row)
        stamp = parse_modstamp(row.get("SystemModstamp"))
        if stamp is not None and stamp > newest:
            newest = stamp
        if len(pending) >= batch_size:
            record(pending)
            pending = []
    if pending:
        record(pending)
    return result
