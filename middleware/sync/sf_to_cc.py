"""The Salesforce → Constant Contact planner: current records, links and CC state in, a Plan out.

Every DESIGN §5a decision for this direction is one branch below; the tests pin each one.

Order of questions asked of a record (the first that applies decides, lifecycle first):

1. deleted (``IsDeleted`` or in ``missing_ids``): default nothing; ``remove_on_sf_delete`` removes
   a linked contact from the main list and this setup's lists (never unsubscribes). A record that
   no longer exists at all has its link retired (it can never be undeleted).
2. converted Lead: default stop syncing; ``remove_converted_leads`` removes it from this setup's
   lists and retires the link so a Contact / Person Account setup takes the address over.
3. blank email: default CC untouched; ``delete_cc_on_blank_email`` deletes a linked contact.
4. invalid email, role address (unless ``sync_role_addresses``): skipped, CC untouched.
5. opted out: never synced ⇒ not created; linked ⇒ default CC left as it is and edits no longer
   pushed; ``unsubscribe_on_sf_opt_out`` ⇒ Unsubscribe + removal from this setup's lists.
6. otherwise the record *claims* its email. One owner per address: a record that holds the
   contact while not claiming it (deleted, opted out, email moved away...) keeps it; otherwise the
   oldest claimer by (CreatedDate, Id) wins, where an existing owner outside the batch counts with
   its link's ``sf_created`` (unknown: it keeps the contact). Others: "duplicate of <owner id>".
7. the owner is pushed: linked to an existing CC contact of that address (a deleted one revived by
   PUT, an unsubscribed one linked and kept unsubscribed, never added to a list), or imported; an
   email change moves the same contact to the new address (PUT), or re-links to the contact that
   already holds it, or with ``new_cc_contact_on_email_change`` starts a new contact and leaves the
   old one alone. An unchanged fingerprint writes nothing (only missing list memberships of a
   subscribed contact, and the revival of a contact deleted in CC, are repaired).

Echo rule: every write records the new fingerprint, so a record that CC→SF created or changed
costs at most one write back, and the run after it writes nothing.

A link without a contact id (an import's, before anyone looked its contact up) names no contact:
the caller looks it up by the link's address first, and one still without an id is treated as
having no contact in Constant Contact (an email change imports the new address, a blank deletes
nothing, an opt-out unsubscribes nobody, no list is touched).

:func:`opt_out_to_set_again` is the other direction's rule the callers of this planner apply to
the records they re-read: an opt-out cleared in Salesforce while Constant Contact holds the
address unsubscribed is set again (§5a). Links remember (``cc_unsubscribed``) what Constant
Contact last showed, so the caller knows when to look.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from middleware.sync.emails import is_role_address, is_valid_email
from middleware.sync.fields import CC_SCALAR_FIELDS, CUSTOM_PREFIX
from middleware.sync.mapping import (
    fingerprint,
    map_record,
    mapping_plan,
    put_body,
    record_email,
    record_opted_out,
)
from middleware.sync.options import SetupOptions
from middleware.sync.types import (
    UNSUBSCRIBED,
    Action,
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

REASON_NO_EMAIL = "no email"
REASON_INVALID_EMAIL = "invalid email"
REASON_ROLE_ADDRESS = "role address"
REASON_OPTED_OUT_NEVER_SYNCED = "opted out, never synced"
REASON_OPTED_OUT_NOT_PUSHED = "opted out in Salesforce; Constant Contact left as it is"
# unsubscribe_on_sf_opt_out is on, but the record was never linked: nobody to unsubscribe in CC.
REASON_OPT_OUT_NOT_PROPAGATED = (
    "opted out, never created in Constant Contact (nothing to unsubscribe)"
)
REASON_RESUBSCRIBE = "re-subscribe not allowed (only the person can)"
REASON_UNSUBSCRIBED_IN_CC = "unsubscribed in Constant Contact; not added to lists"
REASON_DUPLICATE = "duplicate of {owner}"
REASON_UNCHANGED = "unchanged"
REASON_CONVERTED = "converted lead"
REASON_DELETED = "deleted in Salesforce"
REASON_GONE = "no longer exists in Salesforce"
REASON_DELETED_IN_CC = "deleted in Constant Contact; opt-out kept on the link"
REASON_BLANKED = "email blanked in Salesforce"
REASON_UNMATCHED = "does not match the setup's segmentation"
REASON_NOT_IN_CC = "no contact in Constant Contact"
# Only an answer of :func:`claim_blocker` (the planner then says more precisely what it did).
REASON_OPTED_OUT = "opted out in Salesforce"

_OLDEST = ("", "")


def duplicate_reason(owner_sf_id: str) -> str:
    return REASON_DUPLICATE.format(owner=owner_sf_id)


@dataclass(slots=True)
class _Builder:
    """Collects actions per kind so the plan comes out in execution order, lists grouped."""

    updates: list[UpdateContact] = field(default_factory=list)
    imports: list[Import] = field(default_factory=list)
    unsubscribes: list[Unsubscribe] = field(default_factory=list)
    deletes: list[DeleteContact] = field(default_factory=list)
    links: list[Action] = field(default_factory=list)
    outcomes: list[Action] = field(default_factory=list)
    adds: dict[str, set[str]] = field(default_factory=dict)
    removes: dict[str, set[str]] = field(default_factory=dict)
    frozen: frozenset[str] = frozenset()  # lists the setup no longer maintains: never touched

    def add(self, contact_id: str, list_ids: Iterable[str]) -> None:
        if not contact_id:
            return  # a link whose contact CC does not have (see _push): no list to touch
        for list_id in list_ids:
            self.adds.setdefault(list_id, set()).add(contact_id)

    def remove(self, contact_id: str, list_ids: Iterable[str]) -> None:
        if not contact_id:
            return
        for list_id in list_ids:
            if list_id in self.frozen:
                continue
            self.removes.setdefault(list_id, set()).add(contact_id)

    def skip(self, sf_id: str, reason: str) -> None:
        self.outcomes.append(Skip(sf_id, reason))

    def plan(self, warnings: list[str]) -> Plan:
        actions: list[Action] = [*self.updates, *self.imports]
        for list_id in sorted(self.adds):
            # Consent first: a removal in the same run wins over an add.
            ids = self.adds[list_id] - self.removes.get(list_id, set())
            if ids:
                actions.append(AddToLists(list_id, tuple(sorted(ids))))
        for list_id in sorted(self.removes):
            actions.append(RemoveFromLists(list_id, tuple(sorted(self.removes[list_id]))))
        actions += self.unsubscribes
        actions += self.deletes
        actions += self.links
        actions += self.outcomes
        return Plan(actions=actions, warnings=warnings)


def _key(record: Mapping[str, Any]) -> tuple[str, str]:
    return (str(record.get("CreatedDate") or ""), str(record["Id"]))


def _index_links(links: Iterable[Link]) -> tuple[dict[str, Link], dict[str, Link]]:
    by_sf: dict[str, Link] = {}
    by_email: dict[str, Link] = {}
    for link in links:
        if not link.active:
            continue
        by_sf[link.sf_id] = link
        held = by_email.get(link.email)
        # Two active links on one address should not exist; if they do, the oldest keeps it.
        if held is None or (link.sf_created or "", link.sf_id) < (
            held.sf_created or "",
            held.sf_id,
        ):
            by_email[link.email] = link
    return by_sf, by_email


def _index_contacts(
    contacts: Iterable[CcContact],
) -> tuple[dict[str, CcContact], dict[str, CcContact]]:
    by_id: dict[str, CcContact] = {}
    by_email: dict[str, CcContact] = {}
    for contact in contacts:
        by_id[contact.contact_id] = contact
        held = by_email.get(contact.email)
        # CC keeps one contact per address; prefer a live one if a stale lookup gave two.
        if held is None or (held.deleted and not contact.deleted):
            by_email[contact.email] = contact
    return by_id, by_email


def _unsubscribe_body(contact: CcContact | None, link: Link, now: datetime) -> dict[str, Any]:
    body: dict[str, Any] = {
        "email_address": {
            "address": contact.email if contact else link.email,
            "permission_to_send": UNSUBSCRIBED,
            "opt_out_reason": f"Email Opt Out checked in Salesforce ({now.date().isoformat()})",
        },
        "update_source": "Account",
    }
    if contact:
        body.update({k: v for k, v in contact.fields.items() if v is not None})
    return body


def plan_sf_to_cc(
    setup: SetupOptions,
    records: Iterable[Mapping[str, Any]],
    *,
    links: Iterable[Link],
    cc_contacts: Iterable[CcContact],
    main_list_id: str,
    custom_field_ids: Mapping[str, str],
    now: datetime,
    missing_ids: Iterable[str] = (),
    segment_lists: Mapping[str, Sequence[str]] | None = None,
    unmatched_ids: Iterable[str] = (),
    frozen_lists: Iterable[str] = (),
    full_sync: bool = False,
    reset: bool = False,
) -> Plan:
    """Plan what Constant Contact and the store need for a batch of Salesforce records.

    ``records``: the batch re-read with queryAll (dicts as SOQL returns them). ``missing_ids``:
    ids of the batch that Salesforce no longer returns at all. ``links``: the store's links of the
    batch's records and the active links of the batch's emails. ``cc_contacts``: CC's contacts for
    those emails and link contact ids (deleted ones included). ``custom_field_ids``: CC custom
    field name → id. ``segment_lists``: when given, the full set of segmentation list ids each
    record should be on besides the main list (lists it leaves are removed); when ``None`` the
    record's segmentation lists are left as they are. ``unmatched_ids``: records that exist but
    no longer match the setup's segmentation (``filter``), with or without their record in
    ``records``: deletes, conversions and opt-outs still apply to them, but they are not pushed
    and a linked one leaves this setup's lists (in a ``full_sync`` with
    ``remove_unmatched_from_all_lists``: every list CC has it on). ``frozen_lists``: lists the
    setup no longer maintains (a Campaign that stopped qualifying, :mod:`.campaigns`): nobody is
    removed from them (the links forget them; ``segment_lists`` never names one). ``reset``:
    ignore fingerprints (a reset Full Sync).
    """
    if not setup.sync_to_cc:
        return Plan()

    warnings: list[str] = []
    unknown_custom = [name for name in setup.custom_fields_to_cc if name not in custom_field_ids]
    for name in unknown_custom:
        warnings.append(
            f"custom field {CUSTOM_PREFIX}{name} does not exist in Constant Contact; "
            "its values are not written until it is created"
        )
    dropped = {CUSTOM_PREFIX + name for name in unknown_custom}

    link_by_sf, link_by_email = _index_links(links)
    cc_by_id, cc_by_email = _index_contacts(cc_contacts)
    by_id: dict[str, Mapping[str, Any]] = {}
    for record in records:
        by_id[str(record["Id"])] = record
    gone = sorted(set(missing_ids) - set(by_id))
    unmatched = set(unmatched_ids) - set(gone)
    all_lists = full_sync and setup.remove_unmatched_from_all_lists
    out = _Builder(frozen=frozenset(frozen_lists))
    compiled = mapping_plan(setup)

    # --- pass 1: lifecycle rules, and who claims which address -------------------------------
    claims: dict[str, list[tuple[tuple[str, str], str]]] = {}
    claimed_email: dict[str, str] = {}
    for sf_id in sorted(by_id):
        record = by_id[sf_id]
        link = link_by_sf.get(sf_id)
        email = record_email(setup, record)
        blocker = claim_blocker(setup, record, email)
        if blocker == REASON_DELETED:
            _deleted(setup, sf_id, link, main_list_id, out, gone=False)
            continue
        if blocker == REASON_CONVERTED:
            _converted(setup, sf_id, link, main_list_id, out)
            continue
        if blocker == REASON_NO_EMAIL:
            _blank(setup, sf_id, link, cc_by_id, out)
            continue
        if blocker == REASON_OPTED_OUT:
            _opted_out(setup, sf_id, link, cc_by_id, main_list_id, now, out)
            continue
        if blocker is not None:
            out.skip(sf_id, blocker)  # invalid email, role address
            continue
        if sf_id in unmatched:
            _unmatched(sf_id, link, cc_by_id, main_list_id, all_lists, out)
            continue
        claims.setdefault(email, []).append((_key(record), sf_id))
        claimed_email[sf_id] = email
    for sf_id in gone:
        _deleted(setup, sf_id, link_by_sf.get(sf_id), main_list_id, out, gone=True)
    for sf_id in sorted(unmatched - set(by_id)):
        _unmatched(sf_id, link_by_sf.get(sf_id), cc_by_id, main_list_id, all_lists, out)

    # --- pass 2: one owner per address ----------------------------------------------------------
    owner_of: dict[str, str] = {}
    for email, claimers in claims.items():
        holder = link_by_email.get(email)
        contenders = list(claimers)
        if holder is not None and claimed_email.get(holder.sf_id) != email:
            if holder.sf_id in by_id or holder.sf_id in gone or holder.sf_id in unmatched:
                # It holds the contact while deleted, opted out or moving away: it keeps it.
                owner_of[email] = holder.sf_id
                continue
            contenders.append(((holder.sf_created or "", holder.sf_id), holder.sf_id))
            if holder.sf_created is None:
                contenders[-1] = (_OLDEST, holder.sf_id)
        owner = min(contenders)[1]
        owner_of[email] = owner
        if holder is not None and holder.sf_id != owner and holder.sf_id not in by_id:
            out.links.append(RetireLink(holder.sf_id, duplicate_reason(owner)))
            out.skip(holder.sf_id, duplicate_reason(owner))

    # --- pass 3: push the owners ----------------------------------------------------------------
    for sf_id in sorted(claimed_email):
        email = claimed_email[sf_id]
        owner = owner_of[email]
        link = link_by_sf.get(sf_id)
        if owner != sf_id:
            if link is not None and link.email == email:
                # It held the address and an older record took it over.
                out.links.append(RetireLink(sf_id, duplicate_reason(owner)))
            out.skip(sf_id, duplicate_reason(owner))
            continue
        holder = link_by_email.get(email)
        taken_from = holder if holder is not None and holder.sf_id != sf_id else None
        if taken_from is not None and taken_from.sf_id in by_id:
            out.links.append(RetireLink(taken_from.sf_id, duplicate_reason(sf_id)))
        values = {
            k: v for k, v in map_record(setup, by_id[sf_id], compiled).items() if k not in dropped
        }
        wanted = _wanted_lists(sf_id, link, main_list_id, segment_lists)
        _push(
            setup,
            sf_id,
            by_id[sf_id],
            email,
            values,
            link,
            taken_from,
            wanted,
            cc_by_id,
            cc_by_email,
            custom_field_ids,
            reset,
            out,
        )
    return out.plan(warnings)


def _wanted_lists(
    sf_id: str,
    link: Link | None,
    main_list_id: str,
    segment_lists: Mapping[str, Sequence[str]] | None,
) -> tuple[str, ...]:
    if segment_lists is not None:
        extra: Iterable[str] = segment_lists.get(sf_id, ())
    else:
        extra = link.list_ids if link else ()
    return tuple(dict.fromkeys((main_list_id, *extra)))


def _setup_lists(link: Link, main_list_id: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys((main_list_id, *link.list_ids)))


def claim_blocker(setup: SetupOptions, record: Mapping[str, Any], email: str) -> str | None:
    """Why a record does not claim its address (rules 1-5, in order); ``None`` when it does.

    ``email`` is :func:`record_email` of the record. The planner acts on the answer; the Full
    Sync's screening asks the same question (:func:`claims_address`) before the planner runs.
    """
    if record.get("IsDeleted"):
        return REASON_DELETED
    if setup.object_type == "Lead" and record.get("IsConverted"):
        return REASON_CONVERTED
    if not email:
        return REASON_NO_EMAIL
    if not is_valid_email(email):
        return REASON_INVALID_EMAIL
    if not setup.sync_role_addresses and is_role_address(email):
        return REASON_ROLE_ADDRESS
    if record_opted_out(setup, record):
        return REASON_OPTED_OUT
    return None


def claims_address(setup: SetupOptions, record: Mapping[str, Any], email: str) -> bool:
    """Whether the record claims its address in the planner (the ordinary, pushed case)."""
    return claim_blocker(setup, record, email) is None


def joins_lists(contact: CcContact) -> bool:
    """Whether this setup may put the contact on lists: never while it is unsubscribed, since
    consent is the person's (its fields may still follow Salesforce)."""
    return not contact.unsubscribed


def needs_cc_contact(
    setup: SetupOptions,
    record: Mapping[str, Any] | None,
    link: Link,
    outside: bool,
    wanted_lists: Sequence[str] | None = None,
) -> bool:
    """Whether the planner needs Constant Contact's contact of this linked record to decide.

    ``record`` is ``None`` for a record Salesforce no longer has; ``outside``: it exists but
    does not match the setup's segmentation; ``wanted_lists``: every list it belongs on (main
    list first) when the setup has segmentation lists. Everything else the planner decides from
    the store's link alone, so an incremental batch reads CC only for these records — and for a
    link that does not know its contact's id (an import's) whose lists change: adding to or
    removing from a list needs the id.
    """
    if outside and record is not None and not record.get("IsDeleted"):
        return not link.cc_contact_id  # it leaves this setup's lists: its contact id is needed
    if record is None or record.get("IsDeleted"):
        return setup.remove_on_sf_delete and not link.removed_on_delete
    if record.get("IsConverted"):
        return setup.remove_converted_leads
    email = record_email(setup, record)
    if not email:
        return setup.delete_cc_on_blank_email
    if record_opted_out(setup, record):
        return setup.unsubscribe_on_sf_opt_out and not link.opted_out
    # Not opted out in Salesforce while CC was last seen holding the contact unsubscribed: the
    # opt-out may have been cleared, and is set again if CC still says so (§5a).
    again = link.cc_unsubscribed and setup.sync_unsubscribes_to_sf
    lists_change = (
        wanted_lists is not None
        and not link.cc_contact_id
        and set(wanted_lists) != set(link.list_ids)
    )
    return email != link.email or link.removed_on_delete or link.opted_out or again or lists_change


def cc_contact(data: Mapping[str, Any]) -> CcContact:
    """Constant Contact's contact resource as the planner sees it."""
    email = data.get("email_address") or {}
    return CcContact(
        contact_id=str(data["contact_id"]),
        email=str(email.get("address") or "").strip().lower(),
        permission_to_send=str(email.get("permission_to_send") or "implicit"),
        list_memberships=tuple(data.get("list_memberships") or ()),
        deleted=bool(data.get("deleted_at")),
        fields={k: data[k] for k in CC_SCALAR_FIELDS if data.get(k) is not None},
    )


def _deleted(
    setup: SetupOptions,
    sf_id: str,
    link: Link | None,
    main_list_id: str,
    out: _Builder,
    *,
    gone: bool,
) -> None:
    out.skip(sf_id, REASON_GONE if gone else REASON_DELETED)
    if link is None:
        return
    if setup.remove_on_sf_delete and not link.removed_on_delete:
        out.remove(link.cc_contact_id, _setup_lists(link, main_list_id))
        if not gone:
            out.links.append(UpdateLink(sf_id, removed_on_delete=True))
    if gone:
        out.links.append(RetireLink(sf_id, REASON_GONE))


def _unmatched(
    sf_id: str,
    link: Link | None,
    cc_by_id: Mapping[str, CcContact],
    main_list_id: str,
    all_lists: bool,
    out: _Builder,
) -> None:
    """No longer in the segmentation: off this setup's lists (or all), never deleted or
    unsubscribed; the link stays, so matching again puts it back."""
    out.skip(sf_id, REASON_UNMATCHED)
    if link is None:
        return
    contact = cc_by_id.get(link.cc_contact_id)
    lists: tuple[str, ...] = _setup_lists(link, main_list_id)
    if contact is not None:
        if all_lists:
            lists = tuple(dict.fromkeys((*lists, *contact.list_memberships)))
        lists = tuple(lid for lid in lists if lid in contact.list_memberships)
    out.remove(link.cc_contact_id, lists)
    if link.list_ids:
        out.links.append(UpdateLink(sf_id, list_ids=()))


def _converted(
    setup: SetupOptions, sf_id: str, link: Link | None, main_list_id: str, out: _Builder
) -> None:
    out.skip(sf_id, REASON_CONVERTED)
    if link is not None and setup.remove_converted_leads:
        out.remove(link.cc_contact_id, _setup_lists(link, main_list_id))
        out.links.append(RetireLink(sf_id, REASON_CONVERTED))


def _blank(
    setup: SetupOptions,
    sf_id: str,
    link: Link | None,
    cc_by_id: Mapping[str, CcContact],
    out: _Builder,
) -> None:
    out.skip(sf_id, REASON_NO_EMAIL)
    if link is None or not setup.delete_cc_on_blank_email:
        return
    contact = cc_by_id.get(link.cc_contact_id)
    # A link with no contact id is one whose contact Constant Contact does not hold (the caller
    # looks an import's contact up by the link's address first): nothing to delete.
    if link.cc_contact_id and (contact is None or not contact.deleted):
        out.deletes.append(DeleteContact(sf_id, link.cc_contact_id))
    out.links.append(RetireLink(sf_id, REASON_BLANKED))


def _opted_out(
    setup: SetupOptions,
    sf_id: str,
    link: Link | None,
    cc_by_id: Mapping[str, CcContact],
    main_list_id: str,
    now: datetime,
    out: _Builder,
) -> None:
    propagate = setup.unsubscribe_on_sf_opt_out
    if link is None:
        out.skip(
            sf_id, REASON_OPT_OUT_NOT_PROPAGATED if propagate else REASON_OPTED_OUT_NEVER_SYNCED
        )
        return
    if not propagate:
        out.skip(sf_id, REASON_OPTED_OUT_NOT_PUSHED)
        return
    if not link.cc_contact_id:
        # Constant Contact holds no contact for the link (not even at its address): there is
        # nobody to unsubscribe, and nothing to create for an opted-out record.
        out.skip(sf_id, REASON_NOT_IN_CC)
        return
    contact = cc_by_id.get(link.cc_contact_id)
    if contact is not None and contact.deleted:
        # PUT would revive it; a deleted contact is not mailed. Remember the opt-out instead.
        if not link.opted_out:
            out.links.append(UpdateLink(sf_id, opted_out=True))
        out.skip(sf_id, REASON_DELETED_IN_CC)
        return
    if contact is None and link.opted_out:
        # Propagated before (unsubscribed and taken off this setup's lists then); unread now, so
        # nothing says it changed since: another list removal would be a write for nothing.
        out.skip(sf_id, REASON_UNCHANGED)
        return
    lists = _setup_lists(link, main_list_id)
    if contact is not None:
        lists = tuple(lid for lid in lists if lid in contact.list_memberships)
    already = contact.unsubscribed if contact is not None else link.opted_out
    if already and link.opted_out and not lists:
        out.skip(sf_id, REASON_UNCHANGED)
        return
    if not already:
        out.unsubscribes.append(
            Unsubscribe(sf_id, link.cc_contact_id, _unsubscribe_body(contact, link, now))
        )
    out.remove(link.cc_contact_id, lists)
    if not link.opted_out:
        out.links.append(UpdateLink(sf_id, opted_out=True))


def _push(
    setup: SetupOptions,
    sf_id: str,
    record: Mapping[str, Any],
    email: str,
    values: dict[str, str],
    link: Link | None,
    taken_from: Link | None,
    wanted: tuple[str, ...],
    cc_by_id: Mapping[str, CcContact],
    cc_by_email: Mapping[str, CcContact],
    custom_field_ids: Mapping[str, str],
    reset: bool,
    out: _Builder,
) -> None:
    fp = fingerprint(values)
    linked = cc_by_id.get(link.cc_contact_id) if link is not None else None
    at_address = cc_by_email.get(email)
    if taken_from is not None and at_address is None:
        at_address = cc_by_id.get(taken_from.cc_contact_id)

    if link is not None and link.opted_out:
        if linked is None or linked.unsubscribed:
            out.skip(sf_id, REASON_RESUBSCRIBE)
        else:
            # The person re-subscribed in CC themselves: resume as a subscribed link.
            out.links.append(UpdateLink(sf_id, opted_out=False))

    # CC may hold another address for our contact (edited in CC): Salesforce wins, by PUT.
    drifted = linked is not None and not linked.deleted and linked.email != email
    if link is not None and link.email == email and taken_from is None and not drifted:
        _update_same(sf_id, email, values, fp, link, linked, wanted, custom_field_ids, reset, out)
        return

    # A link without a contact id names no contact Constant Contact holds (the caller looks an
    # import's contact up by the link's address first): the new address is imported instead.
    in_place = (
        link is not None
        and bool(link.cc_contact_id)
        and (link.email == email or not setup.new_cc_contact_on_email_change)
    )
    if (
        link is not None
        and in_place
        and (at_address is None or at_address.contact_id == link.cc_contact_id)
    ):
        _change_email(sf_id, email, values, fp, link, linked, wanted, custom_field_ids, out)
        return

    # A contact to link to (the new address's), or a new one.
    _link_new(
        sf_id,
        record,
        email,
        values,
        fp,
        at_address,
        wanted,
        custom_field_ids,
        out,
        replaces=link.cc_contact_id
        if link is not None
        and link.cc_contact_id
        and (at_address is None or at_address.contact_id != link.cc_contact_id)
        else None,
    )


def _change_email(
    sf_id: str,
    email: str,
    values: dict[str, str],
    fp: str,
    link: Link,
    contact: CcContact | None,
    wanted: tuple[str, ...],
    custom_field_ids: Mapping[str, str],
    out: _Builder,
) -> None:
    """Email change in place: the same contact gets the new address, history and lists kept."""
    subscribed = contact is None or not contact.unsubscribed
    revive = contact is not None and contact.deleted and subscribed
    body = put_body(
        values,
        custom_field_ids=custom_field_ids,
        current_fields=contact.fields if contact is not None else None,
        list_ids=wanted if revive else None,
    )
    out.updates.append(UpdateContact(sf_id, link.cc_contact_id, body))
    if subscribed and not revive:
        known = contact.list_memberships if contact is not None else link.list_ids
        out.add(link.cc_contact_id, [lid for lid in wanted if lid not in known])
    out.remove(link.cc_contact_id, [lid for lid in link.list_ids if lid not in wanted])
    lists_now = wanted if subscribed else tuple(lid for lid in link.list_ids if lid in wanted)
    out.links.append(
        UpdateLink(
            sf_id,
            fingerprint=fp,
            email=email,
            list_ids=lists_now if lists_now != link.list_ids else None,
            removed_on_delete=False if link.removed_on_delete else None,
            cc_unsubscribed=_seen_unsubscribed(link, contact),
        )
    )


def _update_same(
    sf_id: str,
    email: str,
    values: dict[str, str],
    fp: str,
    link: Link,
    contact: CcContact | None,
    wanted: tuple[str, ...],
    custom_field_ids: Mapping[str, str],
    reset: bool,
    out: _Builder,
) -> None:
    """The record keeps its address: write only what changed, repair only what is missing."""
    changed = reset or fp != link.fingerprint
    undelete = link.removed_on_delete
    stale = [lid for lid in link.list_ids if lid not in wanted]
    lists_now = wanted
    wrote = False
    added: list[str] = []
    unsubscribed = contact.unsubscribed if contact is not None else link.opted_out
    if unsubscribed:
        # Consent is the person's: fields may follow Salesforce, lists never grow.
        lists_now = tuple(lid for lid in link.list_ids if lid in wanted)
        if changed and link.cc_contact_id:
            out.updates.append(
                UpdateContact(
                    sf_id,
                    link.cc_contact_id,
                    put_body(
                        values,
                        custom_field_ids=custom_field_ids,
                        current_fields=contact.fields if contact is not None else None,
                    ),
                )
            )
            wrote = True
        if not link.opted_out:
            out.skip(sf_id, REASON_UNSUBSCRIBED_IN_CC)
    elif contact is not None and contact.deleted:
        # Deleted in CC while Salesforce still has the record subscribed: the record wins.
        out.updates.append(
            UpdateContact(
                sf_id,
                link.cc_contact_id,
                put_body(
                    values,
                    custom_field_ids=custom_field_ids,
                    current_fields=contact.fields,
                    list_ids=wanted,
                ),
            )
        )
        wrote = True
    elif changed:
        out.imports.append(Import(sf_id, email, values, wanted))
        wrote = True
    else:
        if contact is not None:
            added = [lid for lid in wanted if lid not in contact.list_memberships]
        elif undelete:
            added = list(wanted)
        else:
            added = [lid for lid in wanted if lid not in link.list_ids]
        out.add(link.cc_contact_id, added)
    out.remove(link.cc_contact_id, stale)
    if not (wrote or added or stale or undelete):
        out.skip(sf_id, REASON_UNCHANGED)
    seen = _seen_unsubscribed(link, contact)
    if wrote or undelete or lists_now != link.list_ids or seen is not None:
        out.links.append(
            UpdateLink(
                sf_id,
                fingerprint=fp if wrote else None,
                list_ids=lists_now if lists_now != link.list_ids else None,
                removed_on_delete=False if undelete else None,
                cc_unsubscribed=seen,
            )
        )


def _link_new(
    sf_id: str,
    record: Mapping[str, Any],
    email: str,
    values: dict[str, str],
    fp: str,
    contact: CcContact | None,
    wanted: tuple[str, ...],
    custom_field_ids: Mapping[str, str],
    out: _Builder,
    *,
    replaces: str | None,
) -> None:
    created = str(record.get("CreatedDate") or "") or None
    if contact is None:
        out.imports.append(Import(sf_id, email, values, wanted))
        out.links.append(LinkRecord(sf_id, email, None, fp, wanted, created, replaces))
        return
    lists: tuple[str, ...] = wanted
    if not joins_lists(contact):
        # Linked, but consent is the person's: it stays unsubscribed and joins no list.
        lists = ()
        out.updates.append(
            UpdateContact(
                sf_id,
                contact.contact_id,
                put_body(values, custom_field_ids=custom_field_ids, current_fields=contact.fields),
            )
        )
        out.skip(sf_id, REASON_UNSUBSCRIBED_IN_CC)
    elif contact.deleted:
        out.updates.append(
            UpdateContact(
                sf_id,
                contact.contact_id,
                put_body(
                    values,
                    custom_field_ids=custom_field_ids,
                    current_fields=contact.fields,
                    list_ids=wanted,
                ),
            )
        )
    else:
        out.imports.append(Import(sf_id, email, values, wanted))
    out.links.append(
        LinkRecord(
            sf_id,
            email,
            contact.contact_id,
            fp,
            lists,
            created,
            replaces,
            cc_unsubscribed=contact.unsubscribed,
        )
    )


def _seen_unsubscribed(link: Link, contact: CcContact | None) -> bool | None:
    """The link's ``cc_unsubscribed`` when what Constant Contact shows now differs from it."""
    if contact is None or contact.deleted or contact.unsubscribed == link.cc_unsubscribed:
        return None
    return contact.unsubscribed


def opt_out_to_set_again(
    setup: SetupOptions, record: Mapping[str, Any], contact: CcContact | None
) -> bool:
    """Whether Salesforce must get the record's opt-out set again (DESIGN §5a).

    True when the record is not opted out in Salesforce while Constant Contact holds its
    address as unsubscribed (someone cleared the checkbox; consent is the person's, and only
    they can re-subscribe), unless ``sync_unsubscribes_to_sf`` is false. ``contact`` is
    Constant Contact's contact for the record's address (``None``: unknown). Deleted records
    and converted Leads are left alone; the reverse (clearing an opt-out) never happens.
    """
    if not setup.sync_unsubscribes_to_sf:
        return False
    if contact is None or contact.deleted or not contact.unsubscribed:
        return False
    if record.get("IsDeleted") or record.get("IsConverted"):
        return False
    email = record_email(setup, record)
    return bool(email) and email == contact.email and not record_opted_out(setup, record)


__all__ = [
    "RecordError",
    "cc_contact",
    "claim_blocker",
    "claims_address",
    "duplicate_reason",
    "joins_lists",
    "needs_cc_contact",
    "opt_out_to_set_again",
    "plan_sf_to_cc",
]
