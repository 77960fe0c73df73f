"""The CC→SF planner: one table row per behaviour of the seed guide and DESIGN §5a."""

from __future__ import annotations

from typing import Any

import pytest

from middleware.sync import cc_to_sf as r
from middleware.sync.cc_to_sf import CcSubscriber, OrgInfo, SfAccount, SfMatch
from middleware.sync.mapping import fingerprint, map_record
from tests.middleware.sync.conftest import opts

MAIN = "L-main"
EMAIL = "ada@example.org"
SETUP = {"object_type": "Contact", "new_record_object_type": "Contact"}
LEAD_SETUP = {"object_type": "Lead", "new_record_object_type": "Lead"}
NPSP = OrgInfo(npsp=True)
PA = OrgInfo(person_accounts=True)
PICKLISTS = OrgInfo(state_country_picklists=True)


def sub(email: str = EMAIL, *, status: str = "implicit", deleted: bool = False, **values: str):
    base = {"first_name": "Ada", "last_name": "Lovelace"}
    base.update(values)
    return CcSubscriber(
        contact_id="c-1",
        email=email,
        permission_to_send=status,
        deleted=deleted,
        list_memberships=(MAIN,),
        values={k: v for k, v in base.items() if v},
    )


def m(obj: str, sf_id: str, *, on: str | None = None, opted_out: bool = False, created: str = ""):
    field = on or r.EMAIL_FIELD[obj]
    return SfMatch(obj, sf_id, EMAIL, field, opted_out=opted_out, created=created)  # type: ignore[arg-type]


def summary(plan: r.CcToSfPlan) -> list[tuple[Any, ...]]:
    """The plan as short tuples, so each row states exactly what happens."""
    out: list[tuple[Any, ...]] = []
    out += [("opt_out", o.sf_object, o.sf_id, o.field) for o in plan.opt_outs]
    out += [("link", x.sf_object, x.sf_id) for x in plan.links]
    out += [("account", name) for name in plan.accounts_to_create]
    out += [("create", c.sf_object) for c in plan.creates]
    out += [("skip", s.reason) for s in plan.skips]
    out += [("report", s.reason) for s in plan.reports]
    out += [("error", e.code) for e in plan.errors]
    return out


def row(id: str, *, setup=SETUP, contact=None, matches=(), org=OrgInfo(), linked=(), expected):
    return pytest.param(setup, contact or sub(), list(matches), org, linked, expected, id=id)


ROWS = [
    # --- which contacts count ------------------------------------------------------------------
    row("no-email-sms-only-ignored", contact=sub(""), expected=[("skip", r.REASON_NO_EMAIL)]),
    row("deleted-in-cc-ignored", contact=sub(deleted=True), expected=[("skip", r.REASON_DELETED)]),
    row(
        "ever-linked-is-never-a-new-subscriber",
        linked=[EMAIL],
        expected=[("skip", r.REASON_LINKED)],
    ),
    row(
        "sync-to-sf-off-creates-nothing",
        setup={**SETUP, "sync_to_sf": False},
        expected=[("skip", r.REASON_SYNC_TO_SF_OFF)],
    ),
    row(
        "sync-to-sf-off-links-nothing",
        setup={**SETUP, "sync_to_sf": False},
        matches=[m("Contact", "003A")],
        expected=[("skip", r.REASON_SYNC_TO_SF_OFF)],
    ),
    # --- unsubscribes --------------------------------------------------------------------------
    row(
        "unsubscribe-opts-out-the-contact",
        contact=sub(status="unsubscribed"),
        matches=[m("Contact", "003A")],
        expected=[("opt_out", "Contact", "003A", "HasOptedOutOfEmail")],
    ),
    row(
        "unsubscribe-reaches-every-lead-contact-and-person-account",
        contact=sub(status="unsubscribed"),
        matches=[
            m("Lead", "00QA"),
            m("Contact", "003A"),
            m("Contact", "003B"),
            m("Account", "001P"),
        ],
        org=PA,
        expected=[
            ("opt_out", "Account", "001P", "PersonHasOptedOutOfEmail"),
            ("opt_out", "Contact", "003A", "HasOptedOutOfEmail"),
            ("opt_out", "Contact", "003B", "HasOptedOutOfEmail"),
            ("opt_out", "Lead", "00QA", "HasOptedOutOfEmail"),
        ],
    ),
    row(
        "unsubscribed-not-in-salesforce-is-never-created",
        contact=sub(status="unsubscribed"),
        expected=[("skip", r.REASON_UNSUBSCRIBED_NOT_IN_SF)],
    ),
    row(
        "already-opted-out-is-not-written-again",
        contact=sub(status="unsubscribed"),
        matches=[m("Contact", "003A", opted_out=True), m("Lead", "00QA")],
        expected=[("opt_out", "Lead", "00QA", "HasOptedOutOfEmail")],
    ),
    row(
        "all-already-opted-out",
        contact=sub(status="unsubscribed"),
        matches=[m("Contact", "003A", opted_out=True)],
        expected=[("skip", r.REASON_ALREADY_OPTED_OUT)],
    ),
    row(
        "do-not-sync-unsubscribes-option",
        setup={**SETUP, "sync_unsubscribes_to_sf": False},
        contact=sub(status="unsubscribed"),
        matches=[m("Contact", "003A")],
        expected=[("skip", r.REASON_UNSUBSCRIBES_OFF)],
    ),
    row(
        "opt-outs-flow-even-with-sync-to-sf-off",
        setup={**SETUP, "sync_to_sf": False},
        contact=sub(status="unsubscribed"),
        matches=[m("Contact", "003A")],
        expected=[("opt_out", "Contact", "003A", "HasOptedOutOfEmail")],
    ),
    row(
        "opt-outs-reach-linked-records",
        contact=sub(status="unsubscribed"),
        linked=[EMAIL],
        matches=[m("Contact", "003A")],
        expected=[("opt_out", "Contact", "003A", "HasOptedOutOfEmail")],
    ),
    row(
        "opt-outs-ignore-match-same-type-only",
        setup={**SETUP, "match_same_type_only": True},
        contact=sub(status="unsubscribed"),
        matches=[m("Lead", "00QA")],
        expected=[("opt_out", "Lead", "00QA", "HasOptedOutOfEmail")],
    ),
    row(
        "npsp-only-the-preferred-address-opts-out",
        setup={**SETUP, "npsp_alternate_emails": True},
        contact=sub(status="unsubscribed"),
        org=NPSP,
        matches=[m("Contact", "003A", on="npe01__WorkEmail__c"), m("Contact", "003B")],
        expected=[("opt_out", "Contact", "003B", "HasOptedOutOfEmail")],
    ),
    row(
        "npsp-alternate-address-unsubscribe-sets-nothing",
        setup={**SETUP, "npsp_alternate_emails": True},
        contact=sub(status="unsubscribed"),
        org=NPSP,
        matches=[m("Contact", "003A", on="npe01__HomeEmail__c")],
        expected=[("skip", r.REASON_UNSUBSCRIBED_NOT_IN_SF)],
    ),
    # --- matching before creating --------------------------------------------------------------
    row(
        "existing-contact-is-linked-not-duplicated",
        matches=[m("Contact", "003B", created="2024"), m("Contact", "003A", created="2025")],
        expected=[("link", "Contact", "003B")],
    ),
    row(
        "existing-lead-blocks-a-new-contact",
        matches=[m("Lead", "00QA")],
        expected=[("skip", r.REASON_EXISTS)],
    ),
    row(
        "existing-person-account-blocks-a-new-record",
        org=PA,
        matches=[m("Account", "001P")],
        expected=[("skip", r.REASON_EXISTS)],
    ),
    row(
        "opted-out-record-is-not-linked",
        matches=[m("Contact", "003A", opted_out=True)],
        expected=[("skip", r.REASON_EXISTS_OPTED_OUT)],
    ),
    row(
        "match-same-type-only-creates-a-lead-beside-a-contact",
        setup={**SETUP, "new_record_object_type": "Lead", "match_same_type_only": True},
        matches=[m("Contact", "003A")],
        expected=[("create", "Lead")],
    ),
    row(
        "match-same-type-only-still-never-duplicates-its-own-type",
        setup={**SETUP, "match_same_type_only": True},
        matches=[m("Contact", "003A")],
        expected=[("link", "Contact", "003A")],
    ),
    row(
        "npsp-alternate-email-match-prevents-a-duplicate",
        setup={**SETUP, "npsp_alternate_emails": True},
        org=NPSP,
        matches=[m("Contact", "003A", on="npe01__AlternateEmail__c")],
        expected=[("skip", r.REASON_EXISTS)],
    ),
    # --- creating ------------------------------------------------------------------------------
    row("new-subscriber-creates-a-contact", expected=[("create", "Contact")]),
    row("new-subscriber-creates-a-lead", setup=LEAD_SETUP, expected=[("create", "Lead")]),
    row(
        "blank-last-name-fails",
        contact=sub(last_name=""),
        expected=[("error", r.LAST_NAME_REQUIRED)],
    ),
    row(
        "blank-last-name-allowed",
        setup={**SETUP, "allow_blank_last_name": True},
        contact=sub(last_name=""),
        expected=[("create", "Contact")],
    ),
    row(
        "blank-first-name-fails",
        contact=sub(first_name=""),
        expected=[("error", r.FIRST_NAME_REQUIRED)],
    ),
    row(
        "blank-first-name-allowed",
        setup={**SETUP, "allow_blank_first_name": True},
        contact=sub(first_name=""),
        expected=[("create", "Contact")],
    ),
    row(
        "missing-account-is-created",
        contact=sub(company_name="Analytical Engines"),
        expected=[("account", "Analytical Engines"), ("create", "Contact")],
    ),
    row(
        "missing-account-not-created-when-told-and-reported",
        setup={**SETUP, "create_missing_accounts": False},
        contact=sub(company_name="Analytical Engines"),
        expected=[("create", "Contact"), ("report", r.REASON_ACCOUNT_NOT_FOUND)],
    ),
    row(
        "unknown-state-on-a-picklist-org-is-left-out-and-reported",
        org=PICKLISTS,
        contact=sub(state="Atlantis", country="United States"),
        expected=[("create", "Contact"), ("report", r.REASON_STATE_DROPPED)],
    ),
]


@pytest.mark.parametrize(("setup", "contact", "matches", "org", "linked", "expected"), ROWS)
def test_rules(setup, contact, matches, org, linked, expected) -> None:
    plan = r.plan_cc_to_sf(
        opts(setup),
        [contact],
        matches={EMAIL: matches} if matches else {},
        org=org,
        linked_emails=linked,
        main_list_id=MAIN,
    )
    assert summary(plan) == expected


def _created(setup, contact, *, org=OrgInfo(), accounts=()) -> r.NewRecord:
    plan = r.plan_cc_to_sf(
        opts(setup), [contact], matches={}, org=org, accounts=list(accounts), main_list_id=MAIN
    )
    assert len(plan.creates) == 1, summary(plan)
    return plan.creates[0]


FIELD_ROWS = [
    pytest.param(
        LEAD_SETUP, sub(), OrgInfo(), {"Company": "Individual"}, id="lead-company-individual"
    ),
    pytest.param(
        LEAD_SETUP,
        sub(company_name="Babbage & Co"),
        OrgInfo(),
        {"Company": "Babbage & Co"},
        id="lead-company-from-cc",
    ),
    pytest.param(
        {**SETUP, "allow_blank_last_name": True},
        sub(last_name=""),
        OrgInfo(),
        {"LastName": "ada"},
        id="blank-last-name-uses-local-part",
    ),
    pytest.param(
        {**SETUP, "allow_blank_first_name": True},
        sub(first_name=""),
        OrgInfo(),
        {"FirstName": None},
        id="blank-first-name-left-blank",
    ),
    pytest.param(
        SETUP,
        sub(work_phone="1", mobile_phone="2", home_phone="3", job_title="Countess"),
        OrgInfo(),
        {"Phone": "1", "MobilePhone": "2", "HomePhone": "3", "Title": "Countess"},
        id="contact-phones-work-mobile-home",
    ),
    pytest.param(
        LEAD_SETUP,
        sub(work_phone="1", mobile_phone="2", home_phone="3"),
        OrgInfo(),
        {"Phone": "1", "MobilePhone": "2", "HomePhone": None},
        id="lead-has-no-home-phone",
    ),
    pytest.param(
        SETUP,
        sub(state="California", country="United States", city="Palo Alto"),
        OrgInfo(),
        {"MailingState": "CA", "MailingCountry": "United States", "MailingCity": "Palo Alto"},
        id="state-code-by-default",
    ),
    pytest.param(
        {**SETUP, "state_names": True},
        sub(state="California", country="United States"),
        OrgInfo(),
        {"MailingState": "California"},
        id="state-names-option",
    ),
    pytest.param(
        LEAD_SETUP,
        sub(state="Ontario", country="Canada"),
        OrgInfo(),
        {"State": "ON", "Country": "Canada"},
        id="lead-state-code",
    ),
    pytest.param(
        SETUP,
        sub(state="California", country="United States"),
        PICKLISTS,
        {
            "MailingStateCode": "CA",
            "MailingCountryCode": "US",
            "MailingState": None,
            "MailingCountry": None,
        },
        id="picklist-org-gets-codes",
    ),
    pytest.param(
        {**SETUP, "state_names": True},
        sub(state="Victoria"),
        PICKLISTS,
        {"MailingStateCode": "VIC", "MailingCountryCode": "AU"},
        id="picklist-org-state-alone-names-its-country",
    ),
    pytest.param(
        {
            **SETUP,
            "field_map": [
                {"sf_field": "Shoe__c", "cc_field": "cf:shoe", "direction": "cc_to_sf"},
                {"sf_field": "Hat__c", "cc_field": "cf:hat", "direction": "both"},
                {"sf_field": "Pushed__c", "cc_field": "cf:pushed", "direction": "sf_to_cc"},
                {"sf_field": "Title", "cc_field": "cf:role", "direction": "cc_to_sf"},
            ],
        },
        sub(**{"cf:shoe": "42", "cf:hat": "bowler", "cf:pushed": "x", "cf:role": "Analyst"}),
        OrgInfo(),
        {"Shoe__c": "42", "Hat__c": "bowler", "Pushed__c": None, "Title": "Analyst"},
        id="field-map-cc-to-sf-fills-on-create",
    ),
    pytest.param(
        {
            **SETUP,
            "namespace_prefix": "acme",
            "field_map": [{"sf_field": "Shoe__c", "cc_field": "cf:shoe", "direction": "cc_to_sf"}],
        },
        sub(**{"cf:shoe": "42"}),
        OrgInfo(),
        {"acme__Shoe__c": "42"},
        id="field-map-namespace",
    ),
    pytest.param(
        SETUP,
        sub(first_name="A" * 50),
        OrgInfo(),
        {"FirstName": "A" * 40},
        id="long-first-name-cut-to-salesforce-length",
    ),
]


@pytest.mark.parametrize(("setup", "contact", "org", "expected"), FIELD_ROWS)
def test_new_record_fields(setup, contact, org, expected) -> None:
    record = _created(setup, contact, org=org)
    for key, value in expected.items():
        assert record.fields.get(key) == value, key
    assert record.fields["Email"] == EMAIL


def test_new_contact_is_attached_to_the_oldest_account_of_that_name() -> None:
    accounts = [
        SfAccount("001new", "Analytical Engines", "2025-01-01"),
        SfAccount("001old", "ANALYTICAL ENGINES", "2020-01-01"),
        SfAccount("001other", "Difference Engines", "2019-01-01"),
    ]
    record = _created(SETUP, sub(company_name="Analytical Engines"), accounts=accounts)
    assert (record.account_id, record.account_name) == ("001old", None)


def test_one_new_account_per_company_for_the_whole_batch() -> None:
    contacts = [
        CcSubscriber(
            f"c{i}",
            f"p{i}@example.org",
            values={"first_name": "A", "last_name": "B", "company_name": name},
        )
        for i, name in enumerate(["Acme", "ACME", "Initech"])
    ]
    plan = r.plan_cc_to_sf(opts(SETUP), contacts, matches={})
    assert plan.accounts_to_create == ["Acme", "Initech"]
    assert [c.account_name for c in plan.creates] == ["Acme", "Acme", "Initech"]


def test_npsp_affiliation_instead_of_account() -> None:
    setup = {**SETUP, "npsp_affiliations": True}
    found = _created(
        setup, sub(company_name="Acme"), org=NPSP, accounts=[SfAccount("001A", "Acme")]
    )
    assert (found.account_id, found.affiliation_account, found.affiliation_account_id) == (
        None,
        "Acme",
        "001A",
    )
    plan = r.plan_cc_to_sf(opts(setup), [sub(company_name="Initech")], matches={}, org=NPSP)
    assert plan.accounts_to_create == ["Initech"]
    assert plan.creates[0].affiliation_account == "Initech"
    assert plan.creates[0].account_name is None


def test_record_of_another_type_than_the_setup_keeps_a_retired_link() -> None:
    setup = {**SETUP, "new_record_object_type": "Lead"}
    assert _created(setup, sub()).link_active is False
    assert _created(SETUP, sub()).link_active is True


def test_person_account_setup_creates_leads_by_default() -> None:
    assert r.new_record_type(opts(object_type="Account")) == "Lead"


@pytest.mark.parametrize(
    ("setup", "org", "contact"),
    [
        pytest.param(
            SETUP,
            OrgInfo(),
            sub(
                company_name="Acme",
                state="Texas",
                country="United States",
                work_phone="5",
                city="Austin",
            ),
            id="contact",
        ),
        pytest.param(LEAD_SETUP, OrgInfo(), sub(company_name="Acme", state="Texas"), id="lead"),
        pytest.param(SETUP, PICKLISTS, sub(state="Texas", country="United States"), id="picklists"),
        pytest.param(
            {
                **SETUP,
                "field_map": [{"sf_field": "Hat__c", "cc_field": "cf:hat", "direction": "both"}],
            },
            OrgInfo(),
            sub(**{"cf:hat": "bowler"}),
            id="field-map-both",
        ),
    ],
)
def test_fingerprint_is_what_sf_to_cc_will_compute_after_the_create(setup, org, contact) -> None:
    """Echo: the SF→CC direction re-reads the record and must find nothing to write."""
    record = _created(setup, contact, org=org)
    readback: dict[str, Any] = {"Id": "003X", **record.fields}
    prefix = "" if record.sf_object == "Lead" else "Mailing"
    if org.state_country_picklists:
        # Salesforce fills the text fields from the codes (its integration values).
        readback[prefix + "State"] = "Texas"
        readback[prefix + "Country"] = "United States"
    if record.sf_object == "Contact":
        readback["Account"] = {"Name": record.account_name} if record.account_name else None
    assert record.fingerprint == fingerprint(map_record(opts(setup), readback))


def test_same_address_twice_in_a_batch_is_one_person() -> None:
    plan = r.plan_cc_to_sf(opts(SETUP), [sub(), sub()], matches={})
    assert len(plan.creates) == 1


def test_on_main_list_is_remembered_for_the_link() -> None:
    plan = r.plan_cc_to_sf(opts(SETUP), [sub()], matches={}, main_list_id=MAIN)
    assert plan.creates[0].on_main_list is True
    plan = r.plan_cc_to_sf(opts(SETUP), [sub()], matches={}, main_list_id="other")
    assert plan.creates[0].on_main_list is False


def test_subscriber_from_cc_reads_the_resource() -> None:
    resource = {
        "contact_id": "c-9",
        "email_address": {
            "address": " Ada@Example.ORG ",
            "permission_to_send": "unsubscribed",
            "opt_out_date": "2026-11-01T00:00:00Z",
        },
        "first_name": "Ada",
        "last_name": "Lovelace",
        "company_name": "Engines",
        "phone_numbers": [{"phone_number": "555", "kind": "mobile"}],
        "street_addresses": [
            {"kind": "work", "city": "Work City"},
            {"kind": "home", "city": "London", "state": "England", "postal_code": "N1"},
        ],
        "custom_fields": [{"custom_field_id": "cf-1", "value": "42"}],
        "list_memberships": [MAIN],
        "updated_at": "2026-11-02T00:00:00Z",
    }
    contact = r.subscriber_from_cc(resource, {"cf-1": "shoe"})
    assert contact.email == EMAIL
    assert contact.unsubscribed
    assert contact.values == {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "company_name": "Engines",
        "mobile_phone": "555",
        "city": "London",
        "state": "England",
        "zip": "N1",
        "cf:shoe": "42",
    }
    assert contact.list_memberships == (MAIN,)
    assert contact.opt_out_date == "2026-11-01T00:00:00Z"


@pytest.mark.parametrize(
    ("setup", "org", "objects", "contact_fields"),
    [
        (SETUP, OrgInfo(), ["Lead", "Contact"], ["Email"]),
        (SETUP, PA, ["Lead", "Contact", "Account"], ["Email"]),
        ({**SETUP, "match_same_type_only": True}, PA, ["Contact"], ["Email"]),
        (
            {**SETUP, "npsp_alternate_emails": True},
            NPSP,
            ["Lead", "Contact"],
            ["Email", *r.NPSP_EMAIL_FIELDS],
        ),
        ({**SETUP, "npsp_alternate_emails": True}, OrgInfo(), ["Lead", "Contact"], ["Email"]),
    ],
)
def test_where_addresses_are_searched(setup, org, objects, contact_fields) -> None:
    assert r.match_objects(opts(setup), org) == objects
    assert r.email_fields(opts(setup), org, "Contact") == contact_fields
    assert r.opt_out_objects(org) == (
        ["Lead", "Contact", "Account"] if org.person_accounts else ["Lead", "Contact"]
    )


# --- create_missing_accounts: false stops only the creation (issue 9, defect 3) ---------------


def test_every_new_contacts_company_is_asked_for_whatever_create_missing_accounts_says() -> None:
    for create in (True, False):
        setup = {**SETUP, "create_missing_accounts": create}
        plan = r.plan_cc_to_sf(opts(setup), [sub(company_name="Analytical Engines")], matches={})
        assert plan.account_names == ["Analytical Engines"]
    # Leads carry the company as text: no Account is looked up for them.
    plan = r.plan_cc_to_sf(opts(LEAD_SETUP), [sub(company_name="Analytical Engines")], matches={})
    assert plan.account_names == []


def test_an_existing_account_is_linked_when_missing_ones_are_not_created() -> None:
    setup = {**SETUP, "create_missing_accounts": False}
    accounts = [SfAccount("001AE", "Analytical Engines", "2020-01-01")]
    plan = r.plan_cc_to_sf(
        opts(setup), [sub(company_name="analytical engines")], matches={}, accounts=accounts
    )
    assert summary(plan) == [("create", "Contact")]  # nothing to create, nothing to report
    assert (plan.creates[0].account_id, plan.creates[0].account_name) == ("001AE", None)
    # Its echo fingerprint sees the Account's name, as the SF → CC read will.
    assert (
        plan.creates[0].fingerprint
        == _created(SETUP, sub(company_name="analytical engines"), accounts=accounts).fingerprint
    )


def test_npsp_affiliation_with_an_existing_account_when_missing_ones_are_not_created() -> None:
    setup = {**SETUP, "npsp_affiliations": True, "create_missing_accounts": False}
    plan = r.plan_cc_to_sf(opts(setup), [sub(company_name="Acme")], matches={}, org=NPSP)
    assert plan.account_names == ["Acme"]
    assert plan.accounts_to_create == []
    assert plan.creates[0].affiliation_account is None  # none found yet: no affiliation
    found = _created(
        setup, sub(company_name="Acme"), org=NPSP, accounts=[SfAccount("001A", "Acme")]
    )
    assert (found.account_id, found.affiliation_account, found.affiliation_account_id) == (
        None,
        "Acme",
        "001A",
    )
