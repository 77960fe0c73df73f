"""SF → CC, stage 4 (write): a plan carried out against Constant Contact, in as few calls as it can.

The planner (`middleware.sync`, called by :mod:`.plan`) decides; this module only does. CC
actions run in the plan's order, batched: every JSON import of the plan is posted first and all
its activities are then awaited together, the same for list and delete activities, so a plan for
10,000 records costs a handful of calls. A record Constant Contact rejects (a 4xx for its PUT, a
row error of its import) becomes that record's failure; its link changes are then left out, so
the next run tries again, and the rest of the batch goes on. Outages, throttling beyond the
retries and the daily quota are not record problems: they propagate to the job (which retries,
or pauses the setup). Also here: opt-outs set again in Salesforce (:func:`set_opt_outs`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from middleware.constantcontact.client import ConstantContactClient
from middleware.constantcontact.errors import ActivityFailed, CCError
from middleware.context import Context
from middleware.outcome import Failure, Outcome
from middleware.sync import (
    AddToLists,
    Import,
    LinkRecord,
    Plan,
    RecordError,
    Skip,
    Unsubscribe,
    UpdateContact,
)
from middleware.sync.mapping import import_row, object_fields, put_body
from middleware.sync.sf_to_cc import cc_contact, joins_lists
from middleware.vendor_errors import RecordRejected

log = logging.getLogger(__name__)

_ROW_INDEX = re.compile(r"import_data\[(\d+)\]")
# The JSON import takes addresses of at most 50 characters; a contact's address may have 80.
IMPORT_EMAIL_MAX = 50
CONTACT_EMAIL_MAX = 80
_EMAIL = re.compile(r"[^\s'\"<>(),;:]+@[^\s'\"<>(),;:]+\.[A-Za-z]{2,}")


def _code(exc: CCError) -> str:
    return exc.error_key or type(exc).__name__


def _put_each(
    cc: ConstantContactClient,
    actions: Sequence[UpdateContact | Unsubscribe],
    counter: str,
    outcome: Outcome,
) -> None:
    for action in actions:
        if action.sf_id in outcome.failed_ids:
            continue
        if not action.contact_id:
            # The rules never plan one (a link without a contact id is looked up first); if one
            # slips through it is that record's error, not a PUT /contacts/ answered 404.
            outcome.failures.append(
                Failure(action.sf_id, "no_contact_id", "no Constant Contact contact id known")
            )
            continue
        try:
            cc.update_contact(action.contact_id, dict(action.body))
        except CCError as exc:
            if not isinstance(exc, RecordRejected):
                raise  # auth, quota, throttling and outages are not the record's: the job's
            outcome.failures.append(
                Failure(action.sf_id, _code(exc), exc.message, cc_contact_id=action.contact_id)
            )
            continue
        outcome.counts[counter] += 1


def _wait(cc: ConstantContactClient, activities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = [a["activity_id"] for a in activities if a.get("activity_id")]
    if not ids:
        return []
    try:
        return cc.wait_for_activities(ids)
    except ActivityFailed as exc:
        # Keep going with what completed; a failed activity is reported with its errors.
        return list(getattr(exc, "activities", None) or [])


def _attribute_row_errors(
    activity: Mapping[str, Any], rows: Sequence[Import], outcome: Outcome
) -> None:
    """Turn an import's `activity_errors` into failures of the records they name."""
    by_email = {row.email: row for row in rows}
    for message in activity.get("activity_errors") or []:
        text = str(message)
        row: Import | None = None
        index = _ROW_INDEX.search(text)
        if index is not None and int(index.group(1)) < len(rows):
            row = rows[int(index.group(1))]
        else:
            found = _EMAIL.search(text)
            row = by_email.get(found.group(0).lower()) if found else None
        if row is None:
            outcome.warnings.append(f"import {activity.get('activity_id')}: {text}")
            continue
        outcome.failures.append(Failure(row.sf_id, "import_row_rejected", text, email=row.email))
    if activity.get("state") not in (None, "completed"):
        # The whole import failed: every row of it is a failure unless already attributed.
        failed = outcome.failed_ids
        for row in rows:
            if row.sf_id not in failed:
                outcome.failures.append(
                    Failure(
                        row.sf_id,
                        f"import_{activity.get('state')}",
                        "; ".join(map(str, activity.get("activity_errors") or []))
                        or "the import activity did not complete",
                        email=row.email,
                    )
                )


def _one_by_one(
    cc: ConstantContactClient,
    rows: Sequence[Import],
    custom_field_ids: Mapping[str, str],
    outcome: Outcome,
) -> None:
    """Rows the import cannot carry (addresses over 50 characters): one contact call each."""
    for row in rows:
        if len(row.email) > CONTACT_EMAIL_MAX:
            outcome.failures.append(
                Failure(
                    row.sf_id,
                    "email_too_long",
                    f"Constant Contact takes email addresses of at most {CONTACT_EMAIL_MAX} "
                    "characters",
                    email=row.email,
                )
            )
            continue
        try:
            found = cc.find_contact_by_email(row.email)
            if found is None:
                body = put_body(row.values, custom_field_ids=custom_field_ids)
                body.pop("update_source", None)
                body["list_memberships"] = list(row.list_ids)
                cc.create_contact(body)
            else:
                contact = cc_contact(found)
                # An unsubscribed contact's fields follow Salesforce; its lists never grow.
                lists = (
                    sorted({*contact.list_memberships, *row.list_ids})
                    if joins_lists(contact)
                    else None
                )
                body = put_body(
                    row.values,
                    custom_field_ids=custom_field_ids,
                    current_fields=contact.fields,
                    list_ids=lists,
                )
                cc.update_contact(str(found["contact_id"]), body)
        except CCError as exc:
            if not isinstance(exc, RecordRejected):
                raise
            outcome.failures.append(Failure(row.sf_id, _code(exc), exc.message, email=row.email))
            continue
        outcome.counts["imported"] += 1


def _imports(
    cc: ConstantContactClient,
    plan: Plan,
    custom_field_ids: Mapping[str, str],
    outcome: Outcome,
) -> None:
    posted: list[tuple[list[Import], list[dict[str, Any]]]] = []
    counted: set[str] = set()  # a row may come in several batches (one per list)
    for list_ids, rows in plan.import_batches():
        failed = outcome.failed_ids
        rows = [row for row in rows if row.sf_id not in failed]
        _one_by_one(
            cc, [r for r in rows if len(r.email) > IMPORT_EMAIL_MAX], custom_field_ids, outcome
        )
        rows = [row for row in rows if len(row.email) <= IMPORT_EMAIL_MAX]
        if not rows:
            continue
        activities = cc.import_contacts([import_row(row.values) for row in rows], list(list_ids))
        posted.append((rows, activities))
    if not posted:
        return
    finished = {a.get("activity_id"): a for a in _wait(cc, [a for _, acts in posted for a in acts])}
    for rows, activities in posted:
        if len(activities) == 1:
            _attribute_row_errors(
                finished.get(activities[0].get("activity_id"), activities[0]), rows, outcome
            )
        else:
            # The client split the batch further (byte limits); row indexes are then per part,
            # so only errors naming an email can be attributed.
            for activity in activities:
                final = dict(finished.get(activity.get("activity_id"), activity))
                final["activity_errors"] = [
                    e for e in final.get("activity_errors") or [] if not _ROW_INDEX.search(str(e))
                ]
                _attribute_row_errors(final, rows, outcome)
        fresh = {row.sf_id for row in rows} - counted
        outcome.counts["imported"] += len(fresh)
        counted |= fresh


def _list_activities(cc: ConstantContactClient, plan: Plan, outcome: Outcome) -> None:
    started: list[dict[str, Any]] = []
    for action in plan.list_batches():
        ids = [cid for cid in action.contact_ids if cid]
        if not ids:
            continue
        if isinstance(action, AddToLists):
            started += cc.add_list_memberships(ids, [action.list_id])
            outcome.counts["list_adds"] += len(ids)
        else:
            started += cc.remove_list_memberships(ids, [action.list_id])
            outcome.counts["list_removals"] += len(ids)
    for activity in _wait(cc, started):
        for message in activity.get("activity_errors") or []:
            outcome.warnings.append(f"list activity {activity.get('activity_id')}: {message}")


def _deletes(cc: ConstantContactClient, plan: Plan, outcome: Outcome) -> None:
    started: list[dict[str, Any]] = []
    failed = outcome.failed_ids
    for batch in plan.delete_batches():
        ids = [d.contact_id for d in batch if d.contact_id and d.sf_id not in failed]
        if ids:
            started += cc.delete_contacts(ids)
            outcome.counts["deleted"] += len(ids)
    for activity in _wait(cc, started):
        for message in activity.get("activity_errors") or []:
            outcome.warnings.append(f"delete activity {activity.get('activity_id')}: {message}")


def execute(
    cc: ConstantContactClient, plan: Plan, custom_field_ids: Mapping[str, str] | None = None
) -> Outcome:
    """Run the plan's Constant Contact actions; return counts and per-record failures."""
    outcome = Outcome()
    outcome.warnings.extend(plan.warnings)
    _put_each(cc, plan.of_type(UpdateContact), "updated", outcome)
    _imports(cc, plan, custom_field_ids or {}, outcome)
    _list_activities(cc, plan, outcome)
    _put_each(cc, plan.of_type(Unsubscribe), "unsubscribed", outcome)
    _deletes(cc, plan, outcome)
    for skip in plan.of_type(Skip):
        outcome.skipped[skip.reason] += 1
    for error in plan.of_type(RecordError):
        outcome.failures.append(Failure(error.sf_id, "record_error", error.message))
    return outcome


# New links whose contact id a run looks up by email once its imports are done; beyond this,
# the next Full Sync's export gives them their ids (and every reader resolves one it needs).
NEW_CONTACT_LOOKUPS = 20


def new_contacts(
    cc: ConstantContactClient,
    rows: Iterable[tuple[str, str]],
    limit: int = NEW_CONTACT_LOOKUPS,
) -> dict[str, dict[str, Any]]:
    """Constant Contact's contacts of imported rows ``(sf_id, email)``, one lookup by email
    each (their ids, and whether the address was already unsubscribed).

    The JSON import answers no contact ids, so a link made for an import's row is written
    without one. Up to ``limit`` rows are looked up (none when there are more: one export at
    the next Full Sync is cheaper than thousands of lookups). A failed lookup only leaves the
    id unknown: the import is done, and readers resolve it when they need it.
    """
    wanted = list(dict.fromkeys(rows))
    if not wanted or len(wanted) > limit:
        return {}
    found: dict[str, dict[str, Any]] = {}
    for sf_id, email in wanted:
        try:
            data = cc.find_contact_by_email(email)
        except CCError as exc:
            log.info("contact id of an imported row not resolved now: %s", exc)
            break
        if data is not None and data.get("contact_id"):
            found[sf_id] = data
    return found


def imported_links(plan: Plan, failed: Iterable[str]) -> list[tuple[str, str]]:
    """``(sf_id, email)`` of the plan's new links that wait for an import's contact id."""
    skip = set(failed)
    return [
        (change.sf_id, change.email)
        for change in plan.of_type(LinkRecord)
        if change.cc_contact_id is None and change.sf_id not in skip
    ]


def set_opt_outs(ctx: Context, sf_ids: Sequence[str]) -> list[tuple[str, Any]]:
    """Set the opt-out field on these records of the setup's object again (§5a); return the
    ``(sf_id, error)`` pairs Salesforce rejected.

    One sObject Collections call per 200 records, with our call-options client id (the client
    adds it), so the change event the write causes is dropped as our own echo.
    """
    if not sf_ids:
        return []
    field_name = object_fields(ctx.options).opted_out
    results = ctx.sf.update_many(ctx.sf_object, [{"Id": i, field_name: True} for i in sf_ids])
    return [
        (sf_id, result.error)
        for sf_id, result in zip(sf_ids, results, strict=True)
        if not result.success
    ]
