"""Builders for planner tests: records, links and CC contacts as the job would pass them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from middleware.sync.mapping import fingerprint, map_record
from middleware.sync.options import SetupOptions
from middleware.sync.sf_to_cc import plan_sf_to_cc
from middleware.sync.types import (
    AddToLists,
    CcContact,
    DeleteContact,
    Import,
    Link,
    LinkRecord,
    Plan,
    RecordError,
    RemoveFromLists,
    RetireLink,
    Skip,
    Unsubscribe,
    UpdateContact,
    UpdateLink,
)
from schemas.setup import setup_options

MAIN = "L-main"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def opts(setup: Mapping[str, Any] | SetupOptions | None = None, **overrides: Any) -> SetupOptions:
    """The typed options of a setup given by the options a test cares about (the schema fills in
    the rest, as it does for a stored setup); ``SetupOptions`` pass through."""
    if isinstance(setup, SetupOptions):
        assert not overrides
        return setup
    return setup_options({"name": "test", "main_list": "Main", **(setup or {}), **overrides})


def contact_record(
    sf_id: str = "003A",
    email: str | None = "ann@example.com",
    created: str = "2020-01-01T00:00:00.000+0000",
    **fields: Any,
) -> dict[str, Any]:
    record = {
        "attributes": {"type": "Contact"},
        "Id": sf_id,
        "Email": email,
        "FirstName": "Ann",
        "LastName": "Lee",
        "Title": "CFO",
        "Account": {"Name": "Acme"},
        "HasOptedOutOfEmail": False,
        "IsDeleted": False,
        "CreatedDate": created,
    }
    record.update(fields)
    return record


def lead_record(sf_id: str = "00QA", **fields: Any) -> dict[str, Any]:
    record = contact_record(sf_id, **fields)
    record.pop("Account")
    record.setdefault("Company", "Acme")
    record.setdefault("IsConverted", False)
    return record


def values_of(setup: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, str]:
    return map_record(opts(setup), record)


def link_for(
    setup: Mapping[str, Any] | SetupOptions,
    record: Mapping[str, Any],
    contact_id: str = "C1",
    **overrides: Any,
) -> Link:
    """The link the store would hold after this setup last wrote ``record`` as it is now."""
    values = map_record(opts(setup), record)
    fields: dict[str, Any] = {
        "sf_id": record["Id"],
        "cc_contact_id": contact_id,
        "email": values["email"],
        "fingerprint": fingerprint(values),
        "list_ids": (MAIN,),
        "sf_created": record.get("CreatedDate"),
    }
    fields.update(overrides)
    return Link(**fields)


def cc(contact_id: str = "C1", email: str = "ann@example.com", **overrides: Any) -> CcContact:
    fields: dict[str, Any] = {
        "contact_id": contact_id,
        "email": email,
        "permission_to_send": "implicit",
        "list_memberships": (MAIN,),
        "fields": {"first_name": "Ann", "birthday_month": 4},
    }
    fields.update(overrides)
    return CcContact(**fields)


def run(
    setup: Mapping[str, Any] | SetupOptions,
    records: Iterable[Mapping[str, Any]],
    *,
    links: Iterable[Link] = (),
    contacts: Iterable[CcContact] = (),
    missing: Iterable[str] = (),
    segment_lists: Mapping[str, list[str]] | None = None,
    custom_field_ids: Mapping[str, str] | None = None,
    unmatched: Iterable[str] = (),
    frozen_lists: Iterable[str] = (),
    full_sync: bool = False,
    reset: bool = False,
) -> Plan:
    return plan_sf_to_cc(
        opts(setup),
        list(records),
        links=list(links),
        cc_contacts=list(contacts),
        main_list_id=MAIN,
        custom_field_ids=custom_field_ids or {},
        now=NOW,
        missing_ids=list(missing),
        segment_lists=segment_lists,
        unmatched_ids=list(unmatched),
        frozen_lists=list(frozen_lists),
        full_sync=full_sync,
        reset=reset,
    )


def summary(plan: Plan) -> list[tuple[Any, ...]]:
    """A compact, readable form of a plan for table assertions."""
    rows: list[tuple[Any, ...]] = []
    for a in plan.actions:
        if isinstance(a, UpdateContact):
            perm = a.body["email_address"].get("permission_to_send")
            lists = a.body.get("list_memberships")
            rows.append(
                (
                    "put",
                    a.contact_id,
                    a.body["email_address"]["address"],
                    perm,
                    tuple(lists) if lists is not None else None,
                )
            )
        elif isinstance(a, Import):
            rows.append(("import", a.email, a.list_ids))
        elif isinstance(a, AddToLists):
            rows.append(("add", a.list_id, a.contact_ids))
        elif isinstance(a, RemoveFromLists):
            rows.append(("remove", a.list_id, a.contact_ids))
        elif isinstance(a, Unsubscribe):
            rows.append(("unsubscribe", a.contact_id))
        elif isinstance(a, DeleteContact):
            rows.append(("delete", a.contact_id))
        elif isinstance(a, LinkRecord):
            rows.append(("link", a.sf_id, a.cc_contact_id, a.email, a.list_ids, a.replaces))
        elif isinstance(a, UpdateLink):
            changed = {
                k: ("fp" if k == "fingerprint" else getattr(a, k))
                for k in (
                    "fingerprint",
                    "email",
                    "opted_out",
                    "removed_on_delete",
                    "list_ids",
                    "cc_unsubscribed",
                )
                if getattr(a, k) is not None
            }
            rows.append(("update_link", a.sf_id, changed))
        elif isinstance(a, RetireLink):
            rows.append(("retire", a.sf_id, a.reason))
        elif isinstance(a, Skip):
            rows.append(("skip", a.sf_id, a.reason))
        elif isinstance(a, RecordError):
            rows.append(("error", a.sf_id, a.message))
    return rows


def apply_links(links: Iterable[Link], plan: Plan, imported_ids: Mapping[str, str]) -> list[Link]:
    """What the store would hold after the executor applied ``plan`` (imports resolved by email)."""
    by_sf = {link.sf_id: link for link in links if link.active}
    retired = [link for link in links if not link.active]
    for change in plan.link_changes:
        if isinstance(change, LinkRecord):
            old = by_sf.get(change.sf_id)
            if old is not None:
                retired.append(replace(old, status="retired"))
            by_sf[change.sf_id] = Link(
                sf_id=change.sf_id,
                cc_contact_id=change.cc_contact_id or imported_ids[change.email],
                email=change.email,
                fingerprint=change.fingerprint,
                list_ids=change.list_ids,
                sf_created=change.sf_created,
            )
        elif isinstance(change, UpdateLink):
            old = by_sf[change.sf_id]
            updates = {
                k: getattr(change, k)
                for k in ("fingerprint", "email", "opted_out", "removed_on_delete", "list_ids")
                if getattr(change, k) is not None
            }
            by_sf[change.sf_id] = replace(old, **updates)
        elif isinstance(change, RetireLink):
            old = by_sf.pop(change.sf_id)
            retired.append(replace(old, status="retired"))
    return [*by_sf.values(), *retired]
