"""The pure sync rules: plain data in (setup, Salesforce records, links, CC contacts), a plan out.

Nothing in this package does I/O, reads a clock or imports Flask, Redis or SQLAlchemy; ``now`` is
an argument. Jobs read current state in bulk, call a planner, and hand the plan to a write stage
(``sf_to_cc.write``, ``cc_to_sf.write``).

Modules
-------
``types``     the data types below.
``options``   ``SetupOptions``: a setup's options, typed, built once from ``schemas.setup``'s
              load output (``schemas.setup.setup_options``); every rule takes it, not the dict.
``emails``    ``normalise_email``, ``is_valid_email``, ``is_role_address`` (DESIGN §5a).
``fields``    the vocabulary of Constant Contact field names (shared with ``schemas.setup``), the
              one list of a contact's top-level fields (``CC_SCALAR_FIELDS``).
``mapping``   Salesforce record → CC values (``map_record``), ``fingerprint``, ``soql_fields``,
              ``import_row`` / ``put_body`` (the two shapes the values are written in).
``sf_to_cc``  every DESIGN §5a rule for that direction, and the decisions the jobs ask before
              planning (``claims_address``, ``needs_cc_contact``, ``joins_lists``)::

                  plan_sf_to_cc(setup, records, *, links, cc_contacts, main_list_id,
                                custom_field_ids, now, missing_ids=(), segment_lists=None,
                                unmatched_ids=(), full_sync=False, reset=False) -> Plan

Inputs
------
``Link(sf_id, cc_contact_id, email, fingerprint=None, status="active"|"retired",
opted_out=False, removed_on_delete=False, list_ids=(), sf_created=None)``
    the store's memory of one record of one setup. Pass the links of the batch's records *and*
    the active links of every email the batch's records carry (other owners of those addresses).
``CcContact(contact_id, email, permission_to_send, list_memberships=(), deleted=False, fields={})``
    what CC holds; pass the contacts of the batch's emails (``status=all``, so deleted ones too)
    and of the links' contact ids. ``fields`` = top-level scalars (first_name, birthday_day, ...),
    needed so a PUT does not null unmapped data. A linked contact left out is taken as "not
    looked up" (the store is trusted), never as "gone".
Salesforce records are dicts as SOQL returns them (``Account: {"Name": ...}`` nested, ``attributes``
ignored), read with queryAll so deleted ones arrive with ``IsDeleted: true``; ids that no longer
exist at all are passed separately as ``missing_ids``; records that exist but no longer match
the setup's filter as ``unmatched_ids``. SELECT ``mapping.soql_fields(setup)``.

Plan vocabulary (``Plan.actions``, in execution order)
------------------------------------------------------
CC actions:
``UpdateContact(sf_id, contact_id, body)``    PUT /contacts/{id}; full ContactPutRequest body.
``Import(sf_id, email, values, list_ids)``     one contacts_json_import row; batch with
                                               ``Plan.import_batches()`` (same list_ids,
                                               ≤ 40,000 rows, < 4 MB).
``AddToLists(list_id, contact_ids)``           add_list_memberships, one per list id; split
``RemoveFromLists(list_id, contact_ids)``      with ``Plan.list_batches()`` (≤ 500 ids).
``Unsubscribe(sf_id, contact_id, body)``       PUT with permission_to_send unsubscribed.
``DeleteContact(sf_id, contact_id)``           contact_delete; ``Plan.delete_batches()``.
Store changes (apply when the CC actions of the same record succeeded):
``LinkRecord(sf_id, email, cc_contact_id|None, fingerprint, list_ids, sf_created, replaces)``
    ``cc_contact_id`` None = the contact the Import of ``email`` created or updated.
``UpdateLink(sf_id, fingerprint=, email=, opted_out=, removed_on_delete=, list_ids=)``
``RetireLink(sf_id, reason)``
Outcomes for the run report:
``Skip(sf_id, reason)``           deliberate non-action (reasons: ``sf_to_cc.REASON_*``).
``RecordError(sf_id, message)``   shown as a sync error of that record.
``Plan.warnings``                 setup-level problems (e.g. a mapped custom field CC lacks).

Contact ids inside AddToLists/RemoveFromLists are only ids already known; a contact created by an
Import gets its lists through the Import's ``list_ids``.
"""

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

__all__ = [
    "AddToLists",
    "CcContact",
    "DeleteContact",
    "Import",
    "Link",
    "LinkRecord",
    "Plan",
    "RecordError",
    "RemoveFromLists",
    "RetireLink",
    "Skip",
    "Unsubscribe",
    "UpdateContact",
    "UpdateLink",
]
