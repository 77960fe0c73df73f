"""The planner's decisions the I/O code asks too: who claims an address, when CC must be read,
who may join lists. One row per behaviour; the planner tests pin the same rules end to end."""

from __future__ import annotations

import pytest

from middleware.sync import sf_to_cc as r
from middleware.sync.types import Link
from tests.middleware.sync.conftest import cc, contact_record, lead_record, opts

EMAIL = "ann@example.com"
LINK = Link("003A", "C1", EMAIL, fingerprint="fp", list_ids=("L-main",))


@pytest.mark.parametrize(
    ("setup", "record", "email", "blocker"),
    [
        pytest.param(opts(), contact_record(), EMAIL, None, id="ordinary-record-claims"),
        pytest.param(
            opts(), contact_record(IsDeleted=True), EMAIL, r.REASON_DELETED, id="deleted-first"
        ),
        pytest.param(
            opts(),
            contact_record(IsDeleted=True, HasOptedOutOfEmail=True),
            "",
            r.REASON_DELETED,
            id="deleted-before-blank-and-opt-out",
        ),
        pytest.param(
            opts(object_type="Lead"),
            lead_record(IsConverted=True),
            EMAIL,
            r.REASON_CONVERTED,
            id="converted-lead",
        ),
        pytest.param(
            opts(),
            contact_record(IsConverted=True),
            EMAIL,
            None,
            id="converted-means-nothing-outside-lead-setups",
        ),
        pytest.param(opts(), contact_record(email=None), "", r.REASON_NO_EMAIL, id="blank"),
        pytest.param(
            opts(),
            contact_record(email="not-an-address"),
            "not-an-address",
            r.REASON_INVALID_EMAIL,
            id="invalid",
        ),
        pytest.param(
            opts(),
            contact_record(email="abuse@example.com"),
            "abuse@example.com",
            r.REASON_ROLE_ADDRESS,
            id="role-address",
        ),
        pytest.param(
            opts(sync_role_addresses=True),
            contact_record(email="abuse@example.com"),
            "abuse@example.com",
            None,
            id="role-address-allowed",
        ),
        pytest.param(
            opts(),
            contact_record(email="abuse@example.com", HasOptedOutOfEmail=True),
            "abuse@example.com",
            r.REASON_ROLE_ADDRESS,
            id="role-address-before-opt-out",
        ),
        pytest.param(
            opts(),
            contact_record(HasOptedOutOfEmail=True),
            EMAIL,
            r.REASON_OPTED_OUT,
            id="opted-out",
        ),
    ],
)
def test_claim_blocker(setup, record, email, blocker) -> None:
    assert r.claim_blocker(setup, record, email) == blocker
    assert r.claims_address(setup, record, email) is (blocker is None)


@pytest.mark.parametrize(
    ("setup", "record", "link", "outside", "needed"),
    [
        pytest.param(opts(), contact_record(), LINK, False, False, id="unchanged-needs-nothing"),
        pytest.param(
            opts(),
            contact_record(email="new@example.com"),
            LINK,
            False,
            True,
            id="email-change",
        ),
        pytest.param(
            opts(), contact_record(), Link("003A", "", EMAIL), True, True, id="leaves-lists-no-id"
        ),
        pytest.param(opts(), contact_record(), LINK, True, False, id="leaves-lists-id-known"),
        pytest.param(opts(), None, LINK, False, False, id="gone-default"),
        pytest.param(opts(remove_on_sf_delete=True), None, LINK, False, True, id="gone-removes"),
        pytest.param(
            opts(remove_on_sf_delete=True),
            contact_record(IsDeleted=True),
            Link("003A", "C1", EMAIL, removed_on_delete=True),
            False,
            False,
            id="deleted-already-removed",
        ),
        pytest.param(
            opts(object_type="Lead"),
            lead_record(IsConverted=True),
            LINK,
            False,
            False,
            id="converted-default",
        ),
        pytest.param(
            opts(object_type="Lead", remove_converted_leads=True),
            lead_record(IsConverted=True),
            LINK,
            False,
            True,
            id="converted-removes",
        ),
        pytest.param(opts(), contact_record(email=None), LINK, False, False, id="blank-default"),
        pytest.param(
            opts(delete_cc_on_blank_email=True),
            contact_record(email=None),
            LINK,
            False,
            True,
            id="blank-deletes",
        ),
        pytest.param(
            opts(),
            contact_record(HasOptedOutOfEmail=True),
            LINK,
            False,
            False,
            id="opt-out-not-propagated",
        ),
        pytest.param(
            opts(unsubscribe_on_sf_opt_out=True),
            contact_record(HasOptedOutOfEmail=True),
            LINK,
            False,
            True,
            id="opt-out-propagated",
        ),
        pytest.param(
            opts(unsubscribe_on_sf_opt_out=True),
            contact_record(HasOptedOutOfEmail=True),
            Link("003A", "C1", EMAIL, opted_out=True),
            False,
            False,
            id="opt-out-already-propagated",
        ),
        pytest.param(
            opts(),
            contact_record(),
            Link("003A", "C1", EMAIL, cc_unsubscribed=True),
            False,
            True,
            id="opt-out-cleared-while-cc-unsubscribed",
        ),
        pytest.param(
            opts(sync_unsubscribes_to_sf=False),
            contact_record(),
            Link("003A", "C1", EMAIL, cc_unsubscribed=True),
            False,
            False,
            id="cleared-but-unsubscribes-not-synced",
        ),
        pytest.param(
            opts(),
            contact_record(),
            Link("003A", "C1", EMAIL, removed_on_delete=True),
            False,
            True,
            id="undeleted",
        ),
    ],
)
def test_needs_cc_contact(setup, record, link, outside, needed) -> None:
    assert r.needs_cc_contact(setup, record, link, outside) is needed


@pytest.mark.parametrize(
    ("contact", "joins"),
    [
        pytest.param(cc(), True, id="subscribed"),
        pytest.param(cc(permission_to_send="explicit"), True, id="explicit"),
        pytest.param(cc(permission_to_send="unsubscribed"), False, id="unsubscribed-never"),
    ],
)
def test_joins_lists(contact, joins) -> None:
    assert r.joins_lists(contact) is joins


def test_cc_contact_keeps_only_top_level_fields_cc_holds() -> None:
    contact = r.cc_contact(
        {
            "contact_id": "C1",
            "email_address": {"address": " Ann@Example.com ", "permission_to_send": "unsubscribed"},
            "first_name": "Ann",
            "job_title": None,
            "birthday_month": 4,
            "list_memberships": ["L1"],
            "street_addresses": [{"city": "Paris"}],
        }
    )
    assert contact.email == EMAIL
    assert contact.unsubscribed
    assert dict(contact.fields) == {"first_name": "Ann", "birthday_month": 4}
    assert contact.list_memberships == ("L1",)


@pytest.mark.parametrize(
    ("link", "wanted", "needed"),
    [
        pytest.param(
            Link("003A", "", EMAIL, list_ids=("L-main",)),
            ("L-main", "L-gala"),
            True,
            id="no contact id, joins a list: its id is needed",
        ),
        pytest.param(
            Link("003A", "", EMAIL, list_ids=("L-main", "L-gala")),
            ("L-main",),
            True,
            id="no contact id, leaves a list",
        ),
        pytest.param(
            Link("003A", "", EMAIL, list_ids=("L-main", "L-gala")),
            ("L-main", "L-gala"),
            False,
            id="no contact id, same lists",
        ),
        pytest.param(
            Link("003A", "C1", EMAIL, list_ids=("L-main",)),
            ("L-main", "L-gala"),
            False,
            id="the id is known: the link is enough",
        ),
        pytest.param(
            Link("003A", "", EMAIL, list_ids=("L-main",)),
            None,
            False,
            id="not segmented",
        ),
    ],
)
def test_needs_cc_contact_when_an_id_less_link_changes_lists(link, wanted, needed) -> None:
    assert r.needs_cc_contact(opts(), contact_record(), link, False, wanted) is needed
