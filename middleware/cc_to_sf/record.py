"""CC → SF, stage 4 (record): what a written batch leaves in the store.

Links (matched and created records; what Constant Contact's subscription state was, so a cleared
opt-out is recognised later; contact ids an import's links were missing), sync errors for the
records Salesforce rejected, and resolved errors for the contacts now done.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select

from middleware.context import Context
from middleware.outcome import Outcome
from middleware.store import errors as errors_repo
from middleware.store import links as links_repo
from middleware.store.models import Link, SyncError
from middleware.sync.cc_to_sf import CcSubscriber


def ids_to_fill(
    batch: Sequence[CcSubscriber], known: Mapping[str, Sequence[Link]]
) -> list[tuple[str, str]]:
    """``(email, contact id)`` of the batch's contacts whose active link knows no contact id
    (links an import made know none until someone looks: the poll sees it here)."""
    return [
        (c.email, c.contact_id)
        for c in batch
        if c.contact_id
        and not c.deleted
        and any(row.status == "active" and not row.cc_contact_id for row in known.get(c.email, ()))
    ]


def subscription_rows(
    batch: Sequence[CcSubscriber], known: Mapping[str, Sequence[Link]]
) -> list[dict[str, Any]]:
    """Links remember that CC holds the contact unsubscribed (or subscribed again), so a later
    Salesforce change that clears the opt-out is recognised and the opt-out set again (§5a)."""
    unsubscribed = [
        {"sf_id": row.sf_id, "sf_object": row.sf_object, "subscribed_when_synced": False}
        for c in batch
        if c.unsubscribed and not c.deleted
        for row in known.get(c.email, ())
        if row.status == "active" and row.subscribed_when_synced
    ]
    subscribed = [
        {"sf_id": row.sf_id, "sf_object": row.sf_object, "subscribed_when_synced": True}
        for c in batch
        if not c.unsubscribed and not c.deleted
        for row in known.get(c.email, ())
        if row.status == "active" and not row.subscribed_when_synced
    ]
    return [*unsubscribed, *subscribed]


def record_batch(
    ctx: Context,
    batch: Sequence[CcSubscriber],
    link_rows: list[dict[str, Any]],
    retired: list[str],
    outcome: Outcome,
    succeeded: set[str],
    ids_seen: Sequence[tuple[str, str]] = (),
) -> None:
    failed = {f.cc_contact_id for f in outcome.failures}
    failures = [
        {
            "direction": "cc_to_sf",
            "vendor": "salesforce",
            "code": f.code,
            "message": f.message,
            "sf_id": f.sf_id or None,
            "cc_contact_id": f.cc_contact_id,
            "email": f.email,
            "payload": {"cc_contact_id": f.cc_contact_id, "email": f.email},
        }
        for f in outcome.failures
    ]
    # A contact is done when it succeeded or was deliberately left alone this time.
    done = [c.contact_id for c in batch if c.contact_id and c.contact_id not in failed]
    with ctx.store.transaction() as session:
        if link_rows:
            links_repo.upsert_links(session, ctx.setup_id, link_rows)
        if retired:
            links_repo.retire_links(session, ctx.setup_id, retired)
        if ids_seen:
            links_repo.fill_contact_ids(session, ctx.setup_id, ids_seen)
        if failures:
            errors_repo.record_errors(session, ctx.setup_id, failures, run_id=ctx.run_id)
        open_ids = _open_error_ids(session, ctx.setup_id, done)
        if open_ids:
            errors_repo.resolve_errors(session, ctx.setup_id, ids=open_ids)


def _open_error_ids(session: Any, setup_id: int, contact_ids: Sequence[str]) -> list[int]:
    found: list[int] = []
    for start in range(0, len(contact_ids), 500):
        chunk = list(contact_ids[start : start + 500])
        found += session.scalars(
            select(SyncError.id).where(
                SyncError.setup_id == setup_id,
                SyncError.direction == "cc_to_sf",
                SyncError.status.in_(("open", "retrying")),
                SyncError.cc_contact_id.in_(chunk),
            )
        ).all()
    return found
