"""The SF→CC planner: one table row per rule of the seed guide and DESIGN §5a."""

from __future__ import annotations

import pytest

from middleware.sync import sf_to_cc as r
from middleware.sync.sf_to_cc import duplicate_reason
from tests.middleware.sync.conftest import (
    MAIN,
    apply_links,
    cc,
    contact_record,
    lead_record,
    link_for,
    opts,
    run,
    summary,
)

SEG = "L-seg"
BASE = opts(object_type="Contact")
REC = contact_record()
OLD = contact_record(Title="Old title")  # what was last written, before the edit


def S(**options):
    return opts({"object_type": "Contact", **options})


def case(id, *, setup=BASE, records=(REC,), links=(), contacts=(), missing=(), expected, **kw):
    return pytest.param(
        setup, list(records), list(links), list(contacts), list(missing), kw, expected, id=id
    )


CASES = [
    # --- identity and duplicates ---------------------------------------------------------------
    case(
        "new-record-imported-to-main-list-and-linked",
        expected=[
            ("import", "ann@example.com", (MAIN,)),
            ("link", "003A", None, "ann@example.com", (MAIN,), None),
        ],
    ),
    case(
        "identity-is-normalised-email",
        records=[contact_record(email="  ANN@Example.com ")],
        contacts=[cc("C9")],
        expected=[
            ("import", "ann@example.com", (MAIN,)),
            ("link", "003A", "C9", "ann@example.com", (MAIN,), None),
        ],
    ),
    case(
        "existing-cc-contact-is-linked-not-duplicated",
        contacts=[cc("C9", list_memberships=())],
        expected=[
            ("import", "ann@example.com", (MAIN,)),
            ("link", "003A", "C9", "ann@example.com", (MAIN,), None),
        ],
    ),
    case(
        "deleted-cc-contact-is-revived-by-put-and-linked",
        contacts=[cc("C9", deleted=True, list_memberships=())],
        expected=[
            ("put", "C9", "ann@example.com", None, (MAIN,)),
            ("link", "003A", "C9", "ann@example.com", (MAIN,), None),
        ],
    ),
    case(
        "unsubscribed-cc-contact-is-linked-but-stays-unsubscribed-and-off-lists",
        contacts=[cc("C9", permission_to_send="unsubscribed", list_memberships=())],
        expected=[
            ("put", "C9", "ann@example.com", None, None),
            ("link", "003A", "C9", "ann@example.com", (), None),
            ("skip", "003A", r.REASON_UNSUBSCRIBED_IN_CC),
        ],
    ),
    case(
        "same-email-oldest-created-date-owns",
        records=[
            contact_record("003B", created="2021-01-01T00:00:00.000+0000"),
            contact_record("003C", created="2019-06-01T00:00:00.000+0000"),
        ],
        expected=[
            ("import", "ann@example.com", (MAIN,)),
            ("link", "003C", None, "ann@example.com", (MAIN,), None),
            ("skip", "003B", duplicate_reason("003C")),
        ],
    ),
    case(
        "same-email-same-created-date-lowest-id-owns",
        records=[contact_record("003Z"), contact_record("003B", email="Ann@example.com")],
        expected=[
            ("import", "ann@example.com", (MAIN,)),
            ("link", "003B", None, "ann@example.com", (MAIN,), None),
            ("skip", "003Z", duplicate_reason("003B")),
        ],
    ),
    case(
        "existing-owner-outside-batch-keeps-contact-when-age-unknown",
        records=[contact_record("003B", created="1999-01-01T00:00:00.000+0000")],
        links=[link_for(BASE, contact_record("003Z"), sf_created=None)],
        expected=[("skip", "003B", duplicate_reason("003Z"))],
    ),
    case(
        "newer-record-is-duplicate-of-older-owner",
        records=[contact_record("003B", created="2024-01-01T00:00:00.000+0000")],
        links=[link_for(BASE, contact_record("003Z"))],
        expected=[("skip", "003B", duplicate_reason("003Z"))],
    ),
    case(
        "older-record-takes-contact-over-from-newer-owner",
        records=[contact_record("003B", created="2010-01-01T00:00:00.000+0000")],
        links=[link_for(BASE, contact_record("003Z"), contact_id="C7")],
        contacts=[cc("C7")],
        expected=[
            ("import", "ann@example.com", (MAIN,)),
            ("retire", "003Z", duplicate_reason("003B")),
            ("link", "003B", "C7", "ann@example.com", (MAIN,), None),
            ("skip", "003Z", duplicate_reason("003B")),
        ],
    ),
    case(
        "duplicate-of-an-owner-that-is-opted-out-stays-duplicate",
        records=[
            contact_record("003Z", created="2024-01-01T00:00:00.000+0000", HasOptedOutOfEmail=True),
            contact_record("003B", created="2010-01-01T00:00:00.000+0000"),
        ],
        links=[link_for(BASE, contact_record("003Z", created="2024-01-01T00:00:00.000+0000"))],
        contacts=[cc("C1")],
        expected=[
            ("skip", "003Z", r.REASON_OPTED_OUT_NOT_PUSHED),
            ("skip", "003B", duplicate_reason("003Z")),
        ],
    ),
    # --- skipped records ----------------------------------------------------------------------
    case(
        "no-email-skipped-and-reported",
        records=[contact_record(email=None)],
        expected=[("skip", "003A", r.REASON_NO_EMAIL)],
    ),
    case(
        "invalid-email-skipped",
        records=[contact_record(email="ann@example")],
        expected=[("skip", "003A", r.REASON_INVALID_EMAIL)],
    ),
    case(
        "role-address-filtered-by-default",
        records=[contact_record(email="Sales+eu@acme.com")],
        expected=[("skip", "003A", r.REASON_ROLE_ADDRESS)],
    ),
    case(
        "role-address-synced-with-sync-role-addresses",
        setup=S(sync_role_addresses=True),
        records=[contact_record(email="sales@acme.com")],
        expected=[
            ("import", "sales@acme.com", (MAIN,)),
            ("link", "003A", None, "sales@acme.com", (MAIN,), None),
        ],
    ),
    case(
        "info-address-is-not-a-role-address",
        records=[contact_record(email="info@acme.com")],
        expected=[
            ("import", "info@acme.com", (MAIN,)),
            ("link", "003A", None, "info@acme.com", (MAIN,), None),
        ],
    ),
    case(
        "sync-to-cc-off-plans-nothing",
        setup=S(sync_to_cc=False),
        records=[REC, contact_record("003B", email="bo@example.com")],
        contacts=[cc("C9")],
        expected=[],
    ),
    # --- unchanged / changed -----------------------------------------------------------------
    case(
        "unchanged-fingerprint-writes-nothing",
        links=[link_for(BASE, REC)],
        contacts=[cc()],
        expected=[("skip", "003A", r.REASON_UNCHANGED)],
    ),
    case(
        "changed-fields-are-imported-and-fingerprint-updated",
        links=[link_for(BASE, OLD)],
        contacts=[cc()],
        expected=[
            ("import", "ann@example.com", (MAIN,)),
            ("update_link", "003A", {"fingerprint": "fp"}),
        ],
    ),
    case(
        "reset-full-sync-ignores-fingerprints",
        links=[link_for(BASE, REC)],
        contacts=[cc()],
        reset=True,
        expected=[
            ("import", "ann@example.com", (MAIN,)),
            ("update_link", "003A", {"fingerprint": "fp"}),
        ],
    ),
    case(
        "unchanged-but-removed-from-main-list-in-cc-is-added-back",
        links=[link_for(BASE, REC)],
        contacts=[cc(list_memberships=())],
        expected=[("add", MAIN, ("C1",))],
    ),
    case(
        "unchanged-but-deleted-in-cc-is-revived",
        links=[link_for(BASE, REC)],
        contacts=[cc(deleted=True, list_memberships=())],
        expected=[
            ("put", "C1", "ann@example.com", None, (MAIN,)),
            ("update_link", "003A", {"fingerprint": "fp"}),
        ],
    ),
    case(
        "unsubscribed-in-cc-by-the-person-fields-by-put-never-lists",
        links=[link_for(BASE, OLD)],
        contacts=[cc(permission_to_send="unsubscribed", list_memberships=())],
        expected=[
            ("put", "C1", "ann@example.com", None, None),
            ("update_link", "003A", {"fingerprint": "fp", "cc_unsubscribed": True}),
            ("skip", "003A", r.REASON_UNSUBSCRIBED_IN_CC),
        ],
    ),
    case(
        "segmentation-list-left-is-removed-joined-is-added",
        links=[link_for(BASE, REC, list_ids=(MAIN, SEG))],
        contacts=[cc(list_memberships=(MAIN, SEG))],
        segment_lists={"003A": ["L-new"]},
        expected=[
            ("add", "L-new", ("C1",)),
            ("remove", SEG, ("C1",)),
            ("update_link", "003A", {"list_ids": (MAIN, "L-new")}),
        ],
    ),
    case(
        # A Campaign the setup no longer maintains keeps its list as it is: nobody leaves it.
        "a-frozen-campaign-list-is-never-removed-from",
        links=[link_for(BASE, REC, list_ids=(MAIN, SEG))],
        contacts=[cc(list_memberships=(MAIN, SEG))],
        segment_lists={"003A": []},
        frozen_lists=[SEG],
        expected=[("update_link", "003A", {"list_ids": (MAIN,)})],
    ),
    case(
        "out-of-every-campaign-leaves-the-setup-lists-but-not-a-frozen-one",
        unmatched=["003A"],
        links=[link_for(BASE, REC, list_ids=(MAIN, SEG, "L-new"))],
        contacts=[cc(list_memberships=(MAIN, SEG, "L-new"))],
        frozen_lists=[SEG],
        expected=[
            ("remove", MAIN, ("C1",)),
            ("remove", "L-new", ("C1",)),
            ("update_link", "003A", {"list_ids": ()}),
            ("skip", "003A", r.REASON_UNMATCHED),
        ],
    ),
    # --- opt-outs -----------------------------------------------------------------------------
    case(
        "opted-out-never-synced-is-not-created-nor-linked",
        records=[contact_record(HasOptedOutOfEmail=True)],
        contacts=[cc("C9")],
        expected=[("skip", "003A", r.REASON_OPTED_OUT_NEVER_SYNCED)],
    ),
    case(
        "opt-out-option-only-propagates-linked-records",
        setup=S(unsubscribe_on_sf_opt_out=True),
        records=[contact_record(HasOptedOutOfEmail=True)],
        contacts=[cc("C9")],
        expected=[("skip", "003A", r.REASON_OPT_OUT_NOT_PROPAGATED)],
    ),
    case(
        "opted-out-after-sync-default-leaves-cc-and-stops-pushing",
        records=[contact_record(HasOptedOutOfEmail=True, Title="New")],
        links=[link_for(BASE, REC)],
        contacts=[cc()],
        expected=[("skip", "003A", r.REASON_OPTED_OUT_NOT_PUSHED)],
    ),
    case(
        "opted-out-after-sync-with-option-unsubscribes-and-removes-from-setup-lists",
        setup=S(unsubscribe_on_sf_opt_out=True),
        records=[contact_record(HasOptedOutOfEmail=True)],
        links=[link_for(BASE, REC, list_ids=(MAIN, SEG))],
        contacts=[cc(list_memberships=(MAIN, SEG, "L-other"))],
        expected=[
            ("remove", MAIN, ("C1",)),
            ("remove", SEG, ("C1",)),
            ("unsubscribe", "C1"),
            ("update_link", "003A", {"opted_out": True}),
        ],
    ),
    case(
        "opt-out-already-propagated-is-unchanged",
        setup=S(unsubscribe_on_sf_opt_out=True),
        records=[contact_record(HasOptedOutOfEmail=True)],
        links=[link_for(BASE, REC, opted_out=True)],
        contacts=[cc(permission_to_send="unsubscribed", list_memberships=())],
        expected=[("skip", "003A", r.REASON_UNCHANGED)],
    ),
    case(
        # The flush does not read CC for an opt-out it already propagated: re-planning it (any
        # later edit, a catch-up) must not send another list removal.
        "opt-out-already-propagated-and-unread-writes-nothing",
        setup=S(unsubscribe_on_sf_opt_out=True),
        records=[contact_record(HasOptedOutOfEmail=True, Title="Later edit")],
        links=[link_for(BASE, REC, opted_out=True, list_ids=(MAIN, SEG))],
        expected=[("skip", "003A", r.REASON_UNCHANGED)],
    ),
    case(
        "opt-out-of-contact-deleted-in-cc-is-remembered-not-revived",
        setup=S(unsubscribe_on_sf_opt_out=True),
        records=[contact_record(HasOptedOutOfEmail=True)],
        links=[link_for(BASE, REC)],
        contacts=[cc(deleted=True, list_memberships=())],
        expected=[
            ("update_link", "003A", {"opted_out": True}),
            ("skip", "003A", r.REASON_DELETED_IN_CC),
        ],
    ),
    case(
        "unchecking-opt-out-never-resubscribes-and-is-reported",
        setup=S(unsubscribe_on_sf_opt_out=True),
        records=[contact_record(Title="New")],
        links=[link_for(BASE, REC, opted_out=True)],
        contacts=[cc(permission_to_send="unsubscribed", list_memberships=())],
        expected=[
            ("put", "C1", "ann@example.com", None, None),
            ("update_link", "003A", {"fingerprint": "fp", "cc_unsubscribed": True}),
            ("skip", "003A", r.REASON_RESUBSCRIBE),
        ],
    ),
    case(
        "person-resubscribed-in-cc-after-our-unsubscribe-resumes-normal-sync",
        records=[REC],
        links=[link_for(BASE, REC, opted_out=True)],
        contacts=[cc(permission_to_send="explicit")],
        expected=[
            ("update_link", "003A", {"opted_out": False}),
            ("skip", "003A", r.REASON_UNCHANGED),
        ],
    ),
    # --- email changes ------------------------------------------------------------------------
    case(
        "email-change-default-same-contact-gets-new-address",
        records=[contact_record(email="ann.new@example.com")],
        links=[link_for(BASE, REC)],
        contacts=[cc()],
        expected=[
            ("put", "C1", "ann.new@example.com", None, None),
            ("update_link", "003A", {"fingerprint": "fp", "email": "ann.new@example.com"}),
        ],
    ),
    case(
        "email-change-to-address-of-another-cc-contact-relinks-no-409",
        records=[contact_record(email="ann.new@example.com")],
        links=[link_for(BASE, REC)],
        contacts=[cc(), cc("C2", email="ann.new@example.com", list_memberships=())],
        expected=[
            ("import", "ann.new@example.com", (MAIN,)),
            ("link", "003A", "C2", "ann.new@example.com", (MAIN,), "C1"),
        ],
    ),
    case(
        "email-change-with-new-contact-option-creates-new-and-leaves-old",
        setup=S(new_cc_contact_on_email_change=True),
        records=[contact_record(email="ann.new@example.com")],
        links=[link_for(S(new_cc_contact_on_email_change=True), REC)],
        contacts=[cc()],
        expected=[
            ("import", "ann.new@example.com", (MAIN,)),
            ("link", "003A", None, "ann.new@example.com", (MAIN,), "C1"),
        ],
    ),
    case(
        "email-change-with-new-contact-option-unsubscribed-new-address-stays-unsubscribed",
        setup=S(new_cc_contact_on_email_change=True),
        records=[contact_record(email="ann.new@example.com")],
        links=[link_for(S(new_cc_contact_on_email_change=True), REC)],
        contacts=[
            cc(),
            cc(
                "C2",
                email="ann.new@example.com",
                permission_to_send="unsubscribed",
                list_memberships=(),
            ),
        ],
        expected=[
            ("put", "C2", "ann.new@example.com", None, None),
            ("link", "003A", "C2", "ann.new@example.com", (), "C1"),
            ("skip", "003A", r.REASON_UNSUBSCRIBED_IN_CC),
        ],
    ),
    case(
        "email-change-to-address-owned-by-another-record-is-duplicate-link-kept",
        records=[contact_record(email="bo@example.com", created="2023-01-01T00:00:00.000+0000")],
        links=[
            link_for(BASE, REC),
            link_for(BASE, contact_record("003B", email="bo@example.com"), contact_id="C2"),
        ],
        contacts=[cc(), cc("C2", email="bo@example.com")],
        expected=[("skip", "003A", duplicate_reason("003B"))],
    ),
    case(
        "address-edited-in-cc-is-put-back-from-salesforce",
        setup=S(new_cc_contact_on_email_change=True),
        links=[link_for(BASE, REC)],
        contacts=[cc(email="ann.typo@example.com")],
        expected=[
            ("put", "C1", "ann@example.com", None, None),
            ("update_link", "003A", {"fingerprint": "fp", "email": "ann@example.com"}),
        ],
    ),
    # --- blank email --------------------------------------------------------------------------
    case(
        "blank-email-default-leaves-cc-untouched",
        records=[contact_record(email="")],
        links=[link_for(BASE, REC)],
        contacts=[cc()],
        expected=[("skip", "003A", r.REASON_NO_EMAIL)],
    ),
    case(
        "blank-email-with-option-deletes-previously-synced-contact",
        setup=S(delete_cc_on_blank_email=True),
        records=[contact_record(email=" ")],
        links=[link_for(BASE, REC)],
        contacts=[cc()],
        expected=[
            ("delete", "C1"),
            ("retire", "003A", r.REASON_BLANKED),
            ("skip", "003A", r.REASON_NO_EMAIL),
        ],
    ),
    case(
        "blank-email-with-option-never-synced-deletes-nothing",
        setup=S(delete_cc_on_blank_email=True),
        records=[contact_record(email=None)],
        expected=[("skip", "003A", r.REASON_NO_EMAIL)],
    ),
    # --- deletes ------------------------------------------------------------------------------
    case(
        "sf-delete-default-changes-nothing-in-cc",
        records=[contact_record(IsDeleted=True)],
        links=[link_for(BASE, REC)],
        contacts=[cc()],
        expected=[("skip", "003A", r.REASON_DELETED)],
    ),
    case(
        "sf-delete-with-option-removes-from-main-and-setup-lists-never-unsubscribes",
        setup=S(remove_on_sf_delete=True),
        records=[contact_record(IsDeleted=True)],
        links=[link_for(BASE, REC, list_ids=(MAIN, SEG))],
        contacts=[cc(list_memberships=(MAIN, SEG))],
        expected=[
            ("remove", MAIN, ("C1",)),
            ("remove", SEG, ("C1",)),
            ("update_link", "003A", {"removed_on_delete": True}),
            ("skip", "003A", r.REASON_DELETED),
        ],
    ),
    case(
        "sf-undelete-adds-back-to-lists",
        setup=S(remove_on_sf_delete=True),
        records=[REC],
        links=[link_for(BASE, REC, removed_on_delete=True)],
        contacts=[cc(list_memberships=())],
        expected=[("add", MAIN, ("C1",)), ("update_link", "003A", {"removed_on_delete": False})],
    ),
    case(
        "record-gone-from-salesforce-retires-link",
        records=[],
        missing=["003A"],
        links=[link_for(BASE, REC)],
        expected=[("retire", "003A", r.REASON_GONE), ("skip", "003A", r.REASON_GONE)],
    ),
    case(
        "record-gone-with-remove-option-is-removed-and-retired",
        setup=S(remove_on_sf_delete=True),
        records=[],
        missing=["003A"],
        links=[link_for(BASE, REC)],
        expected=[
            ("remove", MAIN, ("C1",)),
            ("retire", "003A", r.REASON_GONE),
            ("skip", "003A", r.REASON_GONE),
        ],
    ),
    # --- segmentation (filter) ---------------------------------------------------------------
    case(
        "no-longer-matching-leaves-setup-lists-never-unsubscribed-or-deleted",
        unmatched=["003A"],
        links=[link_for(BASE, REC, list_ids=(MAIN, SEG))],
        contacts=[cc(list_memberships=(MAIN, SEG, "L-other"))],
        expected=[
            ("remove", MAIN, ("C1",)),
            ("remove", SEG, ("C1",)),
            ("update_link", "003A", {"list_ids": ()}),
            ("skip", "003A", r.REASON_UNMATCHED),
        ],
    ),
    case(
        "no-longer-matching-in-full-sync-with-option-leaves-all-lists",
        setup=S(remove_unmatched_from_all_lists=True),
        records=[],
        unmatched=["003A"],
        full_sync=True,
        links=[link_for(BASE, REC)],
        contacts=[cc(list_memberships=(MAIN, "L-other"))],
        expected=[
            ("remove", MAIN, ("C1",)),
            ("remove", "L-other", ("C1",)),
            ("update_link", "003A", {"list_ids": ()}),
            ("skip", "003A", r.REASON_UNMATCHED),
        ],
    ),
    case(
        "remove-from-all-lists-only-in-a-full-sync",
        setup=S(remove_unmatched_from_all_lists=True),
        unmatched=["003A"],
        links=[link_for(BASE, REC)],
        contacts=[cc(list_memberships=(MAIN, "L-other"))],
        expected=[
            ("remove", MAIN, ("C1",)),
            ("update_link", "003A", {"list_ids": ()}),
            ("skip", "003A", r.REASON_UNMATCHED),
        ],
    ),
    case(
        "not-matching-never-linked-is-not-created",
        unmatched=["003A"],
        contacts=[cc("C9")],
        expected=[("skip", "003A", r.REASON_UNMATCHED)],
    ),
    case(
        "opt-out-of-a-no-longer-matching-record-still-propagates",
        setup=S(unsubscribe_on_sf_opt_out=True),
        records=[contact_record(HasOptedOutOfEmail=True)],
        unmatched=["003A"],
        links=[link_for(BASE, REC)],
        contacts=[cc()],
        expected=[
            ("remove", MAIN, ("C1",)),
            ("unsubscribe", "C1"),
            ("update_link", "003A", {"opted_out": True}),
        ],
    ),
    case(
        "matching-again-is-added-back",
        links=[link_for(BASE, REC, list_ids=())],
        contacts=[cc(list_memberships=())],
        expected=[("add", MAIN, ("C1",)), ("update_link", "003A", {"list_ids": (MAIN,)})],
    ),
    # --- object types -------------------------------------------------------------------------
    case(
        "person-account-identity-is-person-email",
        setup=S(object_type="Account"),
        records=[
            {
                "Id": "001A",
                "PersonEmail": "Cy@Example.com",
                "LastName": "Park",
                "PersonHasOptedOutOfEmail": False,
                "IsDeleted": False,
                "CreatedDate": "2020-01-01T00:00:00.000+0000",
            }
        ],
        expected=[
            ("import", "cy@example.com", (MAIN,)),
            ("link", "001A", None, "cy@example.com", (MAIN,), None),
        ],
    ),
    case(
        "person-account-opt-out-is-person-has-opted-out-of-email",
        setup=S(object_type="Account"),
        records=[
            {
                "Id": "001A",
                "PersonEmail": "cy@example.com",
                "Email": "x@example.com",
                "PersonHasOptedOutOfEmail": True,
                "HasOptedOutOfEmail": False,
            }
        ],
        expected=[("skip", "001A", r.REASON_OPTED_OUT_NEVER_SYNCED)],
    ),
    case(
        "lead-setup-imports-unconverted-leads",
        setup=S(object_type="Lead"),
        records=[lead_record()],
        expected=[
            ("import", "ann@example.com", (MAIN,)),
            ("link", "00QA", None, "ann@example.com", (MAIN,), None),
        ],
    ),
    # --- lead conversion ----------------------------------------------------------------------
    case(
        "converted-lead-default-stops-syncing",
        setup=S(object_type="Lead"),
        records=[lead_record(IsConverted=True, Title="New")],
        links=[link_for(S(object_type="Lead"), lead_record())],
        contacts=[cc()],
        expected=[("skip", "00QA", r.REASON_CONVERTED)],
    ),
    case(
        "converted-lead-with-option-forgets-link-and-leaves-own-lists",
        setup=S(object_type="Lead", remove_converted_leads=True),
        records=[lead_record(IsConverted=True)],
        links=[link_for(S(object_type="Lead"), lead_record(), list_ids=(MAIN, SEG))],
        contacts=[cc(list_memberships=(MAIN, SEG))],
        expected=[
            ("remove", MAIN, ("C1",)),
            ("remove", SEG, ("C1",)),
            ("retire", "00QA", r.REASON_CONVERTED),
            ("skip", "00QA", r.REASON_CONVERTED),
        ],
    ),
]


@pytest.mark.parametrize(
    ("setup", "records", "links", "contacts", "missing", "kw", "expected"), CASES
)
def test_rule(setup, records, links, contacts, missing, kw, expected):
    plan = run(setup, records, links=links, contacts=contacts, missing=missing, **kw)
    assert summary(plan) == expected


def test_plan_is_deterministic_whatever_the_input_order():
    records = [contact_record(f"003{i:03d}", email=f"p{i % 7}@example.com") for i in range(30)]
    a = run(BASE, records)
    b = run(BASE, list(reversed(records)))
    assert a == b


def test_unsubscribe_body_keeps_cc_fields_and_says_why():
    plan = run(
        S(unsubscribe_on_sf_opt_out=True),
        [contact_record(HasOptedOutOfEmail=True, Title="New")],
        links=[link_for(BASE, REC)],
        contacts=[cc()],
    )
    (unsub,) = [a for a in plan.actions if type(a).__name__ == "Unsubscribe"]
    assert unsub.body["email_address"]["permission_to_send"] == "unsubscribed"
    assert unsub.body["email_address"]["address"] == "ann@example.com"
    assert "2026-11-26" in unsub.body["email_address"]["opt_out_reason"]
    assert unsub.body["update_source"] == "Account"
    # CC's own values are kept (a PUT nulls what it omits); the opted-out edit is not pushed.
    assert unsub.body["birthday_month"] == 4
    assert "job_title" not in unsub.body


def test_email_change_put_keeps_unmapped_cc_fields():
    plan = run(
        BASE,
        [contact_record(email="new@example.com")],
        links=[link_for(BASE, REC)],
        contacts=[cc()],
    )
    (put,) = [a for a in plan.actions if type(a).__name__ == "UpdateContact"]
    assert put.body["birthday_month"] == 4
    assert put.body["first_name"] == "Ann"
    assert "permission_to_send" not in put.body["email_address"]


def test_unknown_custom_field_is_warned_and_left_out():
    setup = S(
        field_map=[
            {"sf_field": "Tier__c", "cc_field": "cf:Tier", "direction": "sf_to_cc"},
            {"sf_field": "Region__c", "cc_field": "cf:Region"},
        ]
    )
    plan = run(
        setup, [contact_record(Tier__c="Gold", Region__c="EU")], custom_field_ids={"Region": "cf-2"}
    )
    (imp,) = [a for a in plan.actions if type(a).__name__ == "Import"]
    assert "cf:Tier" not in imp.values and imp.values["cf:Region"] == "EU"
    assert len(plan.warnings) == 1 and "cf:Tier" in plan.warnings[0]


def test_echo_rule_at_most_one_write_back_then_nothing():
    # CC→SF created this record; its link has no SF→CC fingerprint yet.
    created = contact_record(Title=None, Account=None)
    links = [link_for(BASE, created, fingerprint=None)]
    contacts = [cc()]
    first = run(BASE, [created], links=links, contacts=contacts)
    assert len(first.cc_actions) == 1
    links = apply_links(links, first, imported_ids={})
    second = run(BASE, [created], links=links, contacts=contacts)
    assert second.cc_actions == []
    assert summary(second) == [("skip", "003A", r.REASON_UNCHANGED)]


def test_new_record_then_rerun_is_unchanged():
    first = run(BASE, [REC])
    links = apply_links([], first, imported_ids={"ann@example.com": "C5"})
    second = run(BASE, [REC], links=links, contacts=[cc("C5")])
    assert second.cc_actions == []


def test_optout_then_uncheck_cycle_never_resubscribes():
    setup = S(unsubscribe_on_sf_opt_out=True)
    links = [link_for(setup, REC)]
    out = run(setup, [contact_record(HasOptedOutOfEmail=True)], links=links, contacts=[cc()])
    links = apply_links(links, out, imported_ids={})
    back = run(
        setup,
        [REC],
        links=links,
        contacts=[cc(permission_to_send="unsubscribed", list_memberships=())],
    )
    kinds = {type(a).__name__ for a in back.cc_actions}
    assert not kinds & {"Import", "AddToLists"}
    assert ("skip", "003A", r.REASON_RESUBSCRIBE) in summary(back)


# --- links that know no contact id (issue 9, defect 1) -----------------------------------------
# A link written for an import's row carries no contact id until someone resolves it by the
# link's address. The caller looks it up first; a link still without one means Constant Contact
# holds no contact there, and the rules must never act on an empty id (PUT /contacts/ is 404).

NO_ID = link_for(BASE, REC, contact_id="")


def test_email_change_of_a_link_without_contact_id_imports_the_new_address() -> None:
    moved = contact_record(email="new@example.com")
    plan = run(BASE, [moved], links=[NO_ID])
    assert summary(plan) == [
        ("import", "new@example.com", (MAIN,)),
        ("link", "003A", None, "new@example.com", (MAIN,), None),
    ]


def test_email_change_after_the_caller_resolved_the_contact_id_moves_the_contact() -> None:
    moved = contact_record(email="new@example.com")
    resolved = link_for(BASE, REC, contact_id="C1")
    plan = run(BASE, [moved], links=[resolved], contacts=[cc("C1")])
    assert [row[:3] for row in summary(plan) if row[0] == "put"] == [
        ("put", "C1", "new@example.com")
    ]


def test_email_change_to_an_address_cc_holds_links_that_contact() -> None:
    moved = contact_record(email="new@example.com")
    plan = run(BASE, [moved], links=[NO_ID], contacts=[cc("C7", email="new@example.com")])
    assert ("link", "003A", "C7", "new@example.com", (MAIN,), None) in summary(plan)
    assert not [row for row in summary(plan) if row[0] == "put"]


@pytest.mark.parametrize(
    ("setup", "record", "expected"),
    [
        pytest.param(
            S(delete_cc_on_blank_email=True),
            contact_record(email=None),
            [("retire", "003A", r.REASON_BLANKED), ("skip", "003A", r.REASON_NO_EMAIL)],
            id="blank-email-nothing-to-delete",
        ),
        pytest.param(
            S(unsubscribe_on_sf_opt_out=True),
            contact_record(HasOptedOutOfEmail=True),
            [("skip", "003A", r.REASON_NOT_IN_CC)],
            id="opt-out-nobody-to-unsubscribe",
        ),
        pytest.param(
            S(remove_on_sf_delete=True),
            contact_record(IsDeleted=True),
            [
                ("update_link", "003A", {"removed_on_delete": True}),
                ("skip", "003A", r.REASON_DELETED),
            ],
            id="delete-no-list-to-leave",
        ),
    ],
)
def test_a_link_without_contact_id_never_acts_on_an_empty_id(setup, record, expected) -> None:
    plan = run(setup, [record], links=[NO_ID])
    assert summary(plan) == expected
    for action in plan.cc_actions:
        assert getattr(action, "contact_id", "x"), action
        assert all(getattr(action, "contact_ids", ("x",))), action


def test_blank_email_with_a_resolved_link_deletes_the_contact() -> None:
    setup = S(delete_cc_on_blank_email=True)
    plan = run(setup, [contact_record(email=None)], links=[link_for(BASE, REC)], contacts=[cc()])
    assert ("delete", "C1") in summary(plan)


# --- an opt-out cleared in Salesforce while CC holds the address unsubscribed (defect 2) --------

UNSUB = cc(permission_to_send="unsubscribed", list_memberships=())


@pytest.mark.parametrize(
    ("setup", "record", "contact", "expected"),
    [
        pytest.param(BASE, REC, UNSUB, True, id="cleared-while-unsubscribed-in-cc"),
        pytest.param(BASE, contact_record(HasOptedOutOfEmail=True), UNSUB, False, id="opted-out"),
        pytest.param(BASE, REC, cc(), False, id="subscribed-in-cc"),
        pytest.param(BASE, REC, None, False, id="cc-unknown"),
        pytest.param(
            S(sync_unsubscribes_to_sf=False), REC, UNSUB, False, id="unsubscribes-not-synced"
        ),
        pytest.param(BASE, contact_record(IsDeleted=True), UNSUB, False, id="deleted-record"),
        pytest.param(
            opts(object_type="Lead"), lead_record(IsConverted=True), UNSUB, False, id="converted"
        ),
        pytest.param(
            BASE,
            REC,
            cc(permission_to_send="unsubscribed", deleted=True),
            False,
            id="deleted-in-cc",
        ),
        pytest.param(BASE, contact_record(email="other@example.com"), UNSUB, False, id="other"),
        pytest.param(
            opts(object_type="Account"),
            {
                "Id": "001A",
                "PersonEmail": "ann@example.com",
                "LastName": "Lee",
                "PersonHasOptedOutOfEmail": False,
                "IsPersonAccount": True,
            },
            UNSUB,
            True,
            id="person-account",
        ),
    ],
)
def test_an_opt_out_cleared_in_salesforce_is_set_again(setup, record, contact, expected) -> None:
    assert r.opt_out_to_set_again(setup, record, contact) is expected


def test_links_remember_that_cc_holds_the_contact_unsubscribed() -> None:
    # Seen unsubscribed: the link says so (the flush then looks at CC when the opt-out clears).
    plan = run(BASE, [REC], links=[link_for(BASE, REC)], contacts=[UNSUB])
    assert ("update_link", "003A", {"cc_unsubscribed": True}) in summary(plan)
    # Already known: nothing to write.
    known = link_for(BASE, REC, cc_unsubscribed=True, list_ids=())
    plan = run(BASE, [REC], links=[known], contacts=[UNSUB])
    assert [row for row in summary(plan) if row[0] == "update_link"] == []
    # Re-subscribed by the person: the link forgets it.
    plan = run(BASE, [REC], links=[known], contacts=[cc()])
    assert ("update_link", "003A", {"list_ids": (MAIN,), "cc_unsubscribed": False}) in summary(plan)
    # A first link to an unsubscribed contact says so too.
    plan = run(BASE, [REC], contacts=[cc("C9", permission_to_send="unsubscribed")])
    (link,) = [a for a in plan.link_changes if a.sf_id == "003A"]
    assert link.cc_unsubscribed is True
