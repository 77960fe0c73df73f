"""SF → CC, stage 5 (record): what a written batch leaves in the store.

Links (new, updated, retired; an email change keeps the old address as a retired link), sync
errors for the records Constant Contact rejected, resolved errors for the ones that went through,
and the run's progress. Only records that did not fail change their links, so the next run tries
the failed ones again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from middleware.context import Context
from middleware.outcome import Failure, Outcome
from middleware.store import errors as errors_repo
from middleware.store import links as links_repo
from middleware.store import runs
from middleware.sync import CcContact, Link, LinkRecord, Plan, RetireLink, UpdateLink
from middleware.sync.mapping import object_fields, record_email


def link_rows(
    plan: Plan, failed: Iterable[str], sf_object: str
) -> tuple[list[dict[str, Any]], list[str], list[tuple[str, str]]]:
    """The plan's link changes for records that did not fail, as store operations.

    Returns (rows to upsert as active links, sf ids to retire, (sf_id, replaced contact id) pairs
    whose previous contact must be kept as a retired link).
    """
    skip = set(failed)
    upserts: list[dict[str, Any]] = []
    retire: list[str] = []
    replaced: list[tuple[str, str]] = []
    for change in plan.link_changes:
        if change.sf_id in skip:
            continue
        if isinstance(change, LinkRecord):
            row: dict[str, Any] = {
                "sf_id": change.sf_id,
                "sf_object": sf_object,
                "cc_contact_id": change.cc_contact_id,
                "email": change.email,
                "fingerprint": change.fingerprint,
                "lists": list(change.list_ids),
                # The column says whether CC held the contact subscribed when last seen.
                "subscribed_when_synced": not change.cc_unsubscribed,
                "opted_out_propagated": False,
                "removed_on_delete": False,
            }
            if change.sf_created:
                row["sf_created"] = change.sf_created
            if change.replaces:
                replaced.append((change.sf_id, change.replaces))
            upserts.append(row)
        elif isinstance(change, UpdateLink):
            row = {"sf_id": change.sf_id, "sf_object": sf_object}
            if change.fingerprint is not None:
                row["fingerprint"] = change.fingerprint
            if change.email is not None:
                row["email"] = change.email
            if change.opted_out is not None:
                row["opted_out_propagated"] = change.opted_out
            if change.removed_on_delete is not None:
                row["removed_on_delete"] = change.removed_on_delete
            if change.list_ids is not None:
                row["lists"] = list(change.list_ids)
            if change.cc_unsubscribed is not None:
                row["subscribed_when_synced"] = not change.cc_unsubscribed
            upserts.append(row)
        elif isinstance(change, RetireLink):
            retire.append(change.sf_id)
    return upserts, retire, replaced


def store_changes(
    plan: Plan, failed: Iterable[str], sf_object: str, before: Mapping[str, Link]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The plan's link changes as store writes: rows to upsert, and sf ids whose link retires.

    An email change keeps the old address as a retired link (it must never look new to the
    CC → SF direction), and the record's new active link carries the new address with the rest of
    what the old one knew.
    """
    upserts, retire, replaced = link_rows(plan, failed, sf_object)
    moved = {
        row["sf_id"]
        for row in upserts
        if "email" in row
        and row["sf_id"] in before
        and before[row["sf_id"]].email
        and before[row["sf_id"]].email != row["email"]
    } | {sf_id for sf_id, _ in replaced}
    rows: list[dict[str, Any]] = []
    for row in upserts:
        old = before.get(row["sf_id"])
        if row["sf_id"] in moved and old is not None:
            base = {
                "sf_id": old.sf_id,
                "sf_object": sf_object,
                "cc_contact_id": old.cc_contact_id or None,
                "email": old.email,
                "fingerprint": old.fingerprint,
                "lists": list(old.list_ids),
                "subscribed_when_synced": not old.cc_unsubscribed,
                "opted_out_propagated": old.opted_out,
                "removed_on_delete": old.removed_on_delete,
                "sf_created": old.sf_created,
            }
            rows.append({**base, **row})
        else:
            rows.append(row)
    return rows, [*retire, *sorted(moved)]


def link_columns(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows with only the columns ``upsert_links`` writes."""
    supported = {"sf_id", *links_repo.UPSERT_COLUMNS}
    return [{k: v for k, v in row.items() if k in supported} for row in rows]


def error_rows(
    failures: Iterable[Failure],
    sf_object: str,
    emails: Mapping[str, str | None],
    *,
    full_sync: bool = False,
) -> list[dict[str, Any]]:
    """Constant Contact's rejections as ``sf_to_cc`` sync error rows (``emails``: by sf id, for
    a failure that names no address)."""
    payload: dict[str, Any] = {"full_sync": True} if full_sync else {}
    return [
        {
            "direction": "sf_to_cc",
            "vendor": "constantcontact",
            "code": f.code,
            "message": f.message,
            "sf_id": f.sf_id,
            "cc_contact_id": f.cc_contact_id,
            "email": f.email or emails.get(f.sf_id) or None,
            "payload": {"sf_object": sf_object, "sf_id": f.sf_id, **payload},
        }
        for f in failures
    ]


def record_batch(
    ctx: Context,
    plan: Plan,
    outcome: Outcome,
    before: dict[str, Link],
    resolved: dict[str, str],
    records: Mapping[str, Mapping[str, Any]],
    created: Mapping[str, CcContact] | None = None,
) -> None:
    """Links, sync errors and resolved errors of one written batch, in one transaction.

    ``resolved``: contact ids the read stage found for links that lacked one; ``created``: the
    contacts looked up after this batch's imports, by sf id.
    """
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
    emails = {
        f.sf_id: record_email(ctx.options, records.get(f.sf_id) or {}) for f in outcome.failures
    }
    failures = error_rows(outcome.failures, ctx.sf_object, emails)
    succeeded = [sf_id for sf_id in {*records, *before} if sf_id not in failed]
    with ctx.store.transaction() as session:
        links_repo.retire_links(session, ctx.setup_id, retire)
        links_repo.upsert_links(session, ctx.setup_id, link_columns(full_rows))
        if failures:
            errors_repo.record_errors(session, ctx.setup_id, failures, run_id=ctx.run_id)
        if succeeded:
            errors_repo.resolve_errors(session, ctx.setup_id, sf_ids=succeeded)


def record_opt_out_rejections(
    ctx: Context,
    rejected: Sequence[tuple[str, Any]],
    records: Mapping[str, Mapping[str, Any]],
) -> None:
    """Opt-outs Salesforce would not set again, as ``cc_to_sf`` sync errors of their records."""
    field_name = object_fields(ctx.options).opted_out
    failures = [
        {
            "direction": "cc_to_sf",
            "vendor": "salesforce",
            "code": getattr(err, "code", None) or "opt_out_rejected",
            "message": f"opt-out set again: {getattr(err, 'message', None) or 'rejected'}",
            "sf_id": sf_id,
            "email": record_email(ctx.options, records[sf_id]) or None,
            "payload": {"sf_object": ctx.sf_object, "field": field_name},
        }
        for sf_id, err in rejected
    ]
    with ctx.store.transaction() as session:
        errors_repo.record_errors(session, ctx.setup_id, failures, run_id=ctx.run_id)


def progress(ctx: Context, done: int) -> None:
    """The run's progress: records seen so far."""
    if ctx.run_id is not None:
        with ctx.store.transaction() as session:
            runs.progress(session, ctx.run_id, done=done)
