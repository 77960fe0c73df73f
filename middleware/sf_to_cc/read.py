"""SF → CC, stage 2 (read): the batch re-read from Salesforce, and what else the rules need.

Events and catch-up reads are hints, not truth: each batch's records are read again by id
(queryAll, so deleted ones come back with ``IsDeleted``), with the mapped fields and the fields
the setup's filter looks at. Then the store's links of those records and of their addresses, and
Constant Contact's contacts only where a rule needs one (:func:`needs_cc_contact`: an email
change, an opt-out to propagate, a delete or conversion that removes from lists, an undelete).
Everything else goes through the JSON import, keyed by email, so a burst of edits costs no
lookups at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from middleware.constantcontact.errors import NotFound
from middleware.context import Context, main_list_id
from middleware.store import cursors
from middleware.store import links as links_repo
from middleware.store.models import Link as LinkRow
from middleware.sync import CcContact, Link
from middleware.sync.mapping import record_email, soql_fields
from middleware.sync.options import SetupOptions
from middleware.sync.segments import filter_fields
from middleware.sync.sf_to_cc import cc_contact, needs_cc_contact

CURSOR_CUSTOM_FIELDS = "cc_custom_fields"


def prepare_targets(ctx: Context) -> None:
    """The main list's id and the mapped custom fields' ids, created when missing, cached."""
    main_list_id(ctx)
    with ctx.store.transaction() as session:
        cached_fields = cursors.get_cursor(session, ctx.setup_id, CURSOR_CUSTOM_FIELDS)
    known: dict[str, str] = json.loads(cached_fields) if cached_fields else {}
    wanted = list(ctx.options.custom_fields_to_cc)
    if any(name not in known for name in wanted):
        known.update(ctx.cc.ensure_custom_fields(wanted))
        with ctx.store.transaction() as session:
            cursors.set_cursor(session, ctx.setup_id, CURSOR_CUSTOM_FIELDS, json.dumps(known))
    ctx.custom_field_ids = known


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


def to_sync_link(row: LinkRow) -> Link:
    """A stored link as the rules see it."""
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


@dataclass
class BatchLinks:
    """The store's links a batch needs: its records' own, and other records' at its addresses."""

    own: dict[str, Link]
    others: list[Link]


def batch_links(
    ctx: Context, records: Iterable[Mapping[str, Any]], ids: Iterable[str]
) -> BatchLinks:
    """Links of ``ids`` and the active links of the records' addresses (two store reads)."""
    emails = {e for e in (record_email(ctx.options, r) for r in records) if e}
    with ctx.store.transaction() as session:
        rows = links_repo.for_sf_ids(session, ctx.setup_id, list(ids))
        by_email = links_repo.for_emails(session, ctx.setup_id, emails, include_retired=False)
        own = {sf_id: to_sync_link(row) for sf_id, row in rows.items()}
        others = [
            to_sync_link(row)
            for found in by_email.values()
            for row in found
            if row.sf_id not in own
        ]
    return BatchLinks(own, others)


# Links without a contact id needing one in a batch, from which one export of the main list (3-4
# calls, every link of the setup filled at once) is cheaper than a lookup per address.
EXPORT_FILL_FROM = 25


def links_needing_cc(
    ctx: Context,
    records: Mapping[str, Mapping[str, Any]],
    missing: Iterable[str],
    links: Mapping[str, Link],
    outside: set[str],
    segment_lists: Mapping[str, Sequence[str]] | None,
) -> list[str]:
    """The batch's linked records whose Constant Contact contact a rule needs
    (:func:`needs_cc_contact`), in id order; ``segment_lists``: each record's segmentation
    lists, when the setup has them."""
    needing: list[str] = []
    for sf_id in sorted({*records, *missing}):
        link = links.get(sf_id)
        if link is None or not link.active:
            continue
        wanted = (
            None if segment_lists is None else (ctx.main_list_id, *segment_lists.get(sf_id, ()))
        )
        if needs_cc_contact(ctx.options, records.get(sf_id), link, sf_id in outside, wanted):
            needing.append(sf_id)
    return needing


def fill_link_ids(ctx: Context, links: dict[str, Link], needing: Sequence[str]) -> int:
    """Give the links a large import made without contact ids (the JSON import answers none)
    their ids, when many of ``needing`` lack one: one export of the main list's contact ids and
    addresses fills every such link of the setup in the store (and this batch's in ``links``),
    instead of one ``GET /contacts?email=`` each. Returns how many of this batch's were filled."""
    idless = [sf_id for sf_id in needing if not links[sf_id].cc_contact_id and links[sf_id].email]
    if len(idless) < EXPORT_FILL_FROM:
        return 0
    activity = ctx.cc.export_contacts(
        list_ids=[ctx.main_list_id], fields=["contact_id", "email_address"]
    )
    done = ctx.cc.wait_for_activity(str(activity["activity_id"]))
    ids = {
        str(row.get("email_address") or "").strip().lower(): str(row.get("contact_id") or "")
        for row in ctx.cc.iter_export_rows(done)
    }
    with ctx.store.transaction() as session:
        links_repo.fill_contact_ids(session, ctx.setup_id, ids.items())
    filled = 0
    for sf_id in idless:
        contact_id = ids.get(links[sf_id].email)
        if contact_id:
            links[sf_id] = replace(links[sf_id], cc_contact_id=contact_id)
            filled += 1
    return filled


def cc_lookups(
    ctx: Context,
    records: Mapping[str, Mapping[str, Any]],
    links: Mapping[str, Link],
    needing: Iterable[str],
) -> tuple[list[CcContact], dict[str, str]]:
    """Read from CC the contacts of ``needing`` (:func:`links_needing_cc`), and at a record's
    new address; also return newly resolved contact ids."""
    found: dict[str, CcContact] = {}
    resolved: dict[str, str] = {}
    for sf_id in needing:
        link = links[sf_id]
        record = records.get(sf_id)
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
