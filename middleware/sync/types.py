"""Sync data types: what the pure rules take in (links, CC contacts) and hand out (plans).

Everything here is a frozen dataclass of strings, bools and tuples so a plan can be compared in
tests, logged, and turned into JSON for a run report without any custom encoder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from middleware.sync.mapping import import_row_size

LinkStatus = Literal["active", "retired"]

# Constant Contact's permission_to_send values (api-notes §3.3).
UNSUBSCRIBED = "unsubscribed"


@dataclass(frozen=True, slots=True)
class Link:
    """What the store remembers about one Salesforce record of one setup and its CC contact.

    ``email`` is the normalised address last written to Constant Contact. ``fingerprint`` is
    :func:`middleware.sync.mapping.fingerprint` of the values last written (``None``: never written
    by this direction, e.g. a link made by the CC→SF direction). ``list_ids`` are the lists this
    setup added the contact to (the main list included); they are the only lists this setup ever
    removes it from. ``opted_out`` is true once this setup has unsubscribed the contact because of a
    Salesforce opt-out. ``removed_on_delete`` is true while the contact is off this setup's lists
    because the record was deleted in Salesforce (``remove_on_sf_delete``), so an undelete adds it
    back. ``sf_created`` is the record's CreatedDate when known; it settles who owns an email when
    two records of the setup share it (older wins; unknown counts as oldest, the owner keeps it).
    ``cc_unsubscribed`` is true while Constant Contact was last seen holding the contact as
    unsubscribed (by the person, or by us): the rules then look at it again when Salesforce no
    longer has the record opted out, to set the opt-out again (§5a).
    """

    sf_id: str
    cc_contact_id: str
    email: str
    fingerprint: str | None = None
    status: LinkStatus = "active"
    opted_out: bool = False
    removed_on_delete: bool = False
    list_ids: tuple[str, ...] = ()
    sf_created: str | None = None
    cc_unsubscribed: bool = False

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True, slots=True)
class CcContact:
    """What Constant Contact holds for one contact, looked up by the job before planning.

    ``email`` is normalised. ``deleted`` is true when CC returns the contact with ``deleted_at``.
    ``fields`` carries the contact's top-level scalar properties as CC holds them (``first_name``,
    ``last_name``, ``job_title``, ``company_name``, ``birthday_month``, ``birthday_day``,
    ``anniversary``): a V3 PUT replaces every top-level property it omits with null, so the planner
    copies the ones this setup does not map into every PUT body it builds.
    """

    contact_id: str
    email: str
    permission_to_send: str = "implicit"
    list_memberships: tuple[str, ...] = ()
    deleted: bool = False
    fields: Mapping[str, Any] = field(default_factory=dict)

    @property
    def unsubscribed(self) -> bool:
        return self.permission_to_send == UNSUBSCRIBED


# ---------------------------------------------------------------------------------------------
# Actions towards Constant Contact. The planner emits them in the order they should run.


@dataclass(frozen=True, slots=True)
class UpdateContact:
    """PUT /contacts/{contact_id} with ``body`` (a complete ContactPutRequest).

    Used where the JSON import cannot do the job: an email change on the same contact, reviving a
    deleted contact, and field updates of an unsubscribed contact (so no list is ever touched).
    ``sf_id`` says which record it is for, so a 4xx becomes that record's sync error.
    """

    sf_id: str
    contact_id: str
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Import:
    """One row of POST /activities/contacts_json_import, keyed by ``email``.

    ``values`` are flat import keys (``email``, ``first_name``, ``work_phone``, ``street``,
    ``cf:<name>``...; see :mod:`middleware.sync.mapping`). Rows with the same ``list_ids`` go in
    one import call (≤ 40,000 rows, < 4 MB): use :meth:`Plan.import_batches`. Never used to
    unsubscribe, never ``sign_up_form``.
    """

    sf_id: str
    email: str
    values: Mapping[str, str]
    list_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AddToLists:
    """POST /activities/add_list_memberships: ``contact_ids`` (sorted) onto one list."""

    list_id: str
    contact_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RemoveFromLists:
    """POST /activities/remove_list_memberships: ``contact_ids`` (sorted) off one list."""

    list_id: str
    contact_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """PUT /contacts/{contact_id}: ``permission_to_send: unsubscribed``, opt-out source Account.

    The body keeps the contact's current top-level fields so the PUT nulls nothing.
    """

    sf_id: str
    contact_id: str
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class DeleteContact:
    """POST /activities/contact_delete (≤ 500 ids a call): CC's soft delete, not an unsubscribe."""

    sf_id: str
    contact_id: str


# ---------------------------------------------------------------------------------------------
# Link changes for the store; apply them after the CC actions they depend on succeeded.


@dataclass(frozen=True, slots=True)
class LinkRecord:
    """Create (or replace) the active link of ``sf_id``.

    ``cc_contact_id`` is ``None`` when the contact comes out of an :class:`Import` of ``email``:
    the executor resolves the id after the import (CC keys imports by email). ``replaces`` is the
    contact id of a previous active link of the same record, which the store keeps as retired
    (an address left behind by an email change must never look like a new subscriber).
    """

    sf_id: str
    email: str
    cc_contact_id: str | None
    fingerprint: str
    list_ids: tuple[str, ...]
    sf_created: str | None = None
    replaces: str | None = None
    cc_unsubscribed: bool = False


@dataclass(frozen=True, slots=True)
class UpdateLink:
    """Change fields of the active link of ``sf_id``; ``None`` means "leave as it is"."""

    sf_id: str
    fingerprint: str | None = None
    email: str | None = None
    opted_out: bool | None = None
    removed_on_delete: bool | None = None
    list_ids: tuple[str, ...] | None = None
    cc_unsubscribed: bool | None = None


@dataclass(frozen=True, slots=True)
class RetireLink:
    """Mark the active link of ``sf_id`` retired (kept, so CC→SF never treats it as new)."""

    sf_id: str
    reason: str


# ---------------------------------------------------------------------------------------------
# Outcomes for the run report.


@dataclass(frozen=True, slots=True)
class Skip:
    """Something the run deliberately did not do for a record, and why (never an error).

    A record may carry a Skip next to other actions: e.g. its fields were updated but the
    re-subscribe its Salesforce edit asked for was not done.
    """

    sf_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class RecordError:
    """A problem with one record that must be shown as a sync error; the batch goes on."""

    sf_id: str
    message: str


CcAction = UpdateContact | Import | AddToLists | RemoveFromLists | Unsubscribe | DeleteContact
LinkChange = LinkRecord | UpdateLink | RetireLink
Outcome = Skip | RecordError
Action = CcAction | LinkChange | Outcome

A = TypeVar("A")

IMPORT_MAX_ROWS = 40_000
# CC silently drops bytes past 4 MB; keep a margin for the envelope and list ids.
IMPORT_MAX_BYTES = 3_800_000
LIST_ACTIVITY_MAX_IDS = 500
DELETE_MAX_IDS = 500


@dataclass(slots=True)
class Plan:
    """The planner's answer: actions in execution order, plus setup-level warnings.

    Order: UpdateContact, Import, AddToLists, RemoveFromLists, Unsubscribe, DeleteContact, then
    link changes, then outcomes. Within a kind, actions follow the records' Salesforce ids.
    """

    actions: list[Action] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def of_type(self, kind: type[A]) -> list[A]:
        return [a for a in self.actions if isinstance(a, kind)]

    @property
    def cc_actions(self) -> list[CcAction]:
        kinds = (UpdateContact, Import, AddToLists, RemoveFromLists, Unsubscribe, DeleteContact)
        return [a for a in self.actions if isinstance(a, kinds)]

    @property
    def link_changes(self) -> list[LinkChange]:
        return [a for a in self.actions if isinstance(a, LinkRecord | UpdateLink | RetireLink)]

    @property
    def skips(self) -> list[Skip]:
        return self.of_type(Skip)

    @property
    def errors(self) -> list[RecordError]:
        return self.of_type(RecordError)

    def import_batches(
        self,
        max_rows: int = IMPORT_MAX_ROWS,
        max_bytes: int = IMPORT_MAX_BYTES,
        size_of: Callable[[Import], int] | None = None,
    ) -> Iterator[tuple[tuple[str, ...], list[Import]]]:
        """Group the imports into calls: same ``list_ids``, ≤ ``max_rows`` rows, ≤ ``max_bytes``.

        An import puts every row on the same lists, so rows wanting different sets of lists
        need different calls. When the sets outnumber the lists themselves (segmentation: people
        in several Campaigns each), a row goes instead into one import per list it wants, with
        the main list (its first): one call per list rather than one per combination. Importing
        a contact twice only writes the same values again. A row may then come in several
        batches.

        Sizes are estimated from the rows' JSON length, which is what the request body carries
        (``size_of`` gives them when the caller already knows them).
        """
        groups: dict[tuple[str, ...], list[Import]] = {}
        for action in self.of_type(Import):
            groups.setdefault(action.list_ids, []).append(action)
        extra = {lid for list_ids in groups for lid in list_ids[1:]}
        if len(groups) > len(extra) + 1:
            split: dict[tuple[str, ...], list[Import]] = {}
            for list_ids, rows in groups.items():
                keys: list[tuple[str, ...]] = [(list_ids[0], lid) for lid in list_ids[1:]]
                for key in keys or [list_ids]:
                    split.setdefault(key, []).extend(rows)
            groups = split
        for list_ids in sorted(groups):
            batch: list[Import] = []
            size = 0
            for row in groups[list_ids]:
                row_size = size_of(row) if size_of is not None else import_row_size(row.values)
                if batch and (len(batch) >= max_rows or size + row_size > max_bytes):
                    yield list_ids, batch
                    batch, size = [], 0
                batch.append(row)
                size += row_size
            if batch:
                yield list_ids, batch

    def list_batches(
        self, max_ids: int = LIST_ACTIVITY_MAX_IDS
    ) -> Iterator[AddToLists | RemoveFromLists]:
        """Split list activities into calls of ≤ ``max_ids`` contact ids each."""
        for action in self.actions:
            if isinstance(action, AddToLists | RemoveFromLists):
                ids = action.contact_ids
                for start in range(0, len(ids), max_ids):
                    yield type(action)(action.list_id, ids[start : start + max_ids])

    def delete_batches(self, max_ids: int = DELETE_MAX_IDS) -> Iterator[list[DeleteContact]]:
        """Split deletes into contact_delete calls of ≤ ``max_ids`` ids each."""
        deletes = self.of_type(DeleteContact)
        for start in range(0, len(deletes), max_ids):
            yield deletes[start : start + max_ids]
