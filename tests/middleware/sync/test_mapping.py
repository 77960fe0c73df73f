"""Salesforce record → Constant Contact values, per object type and option (seed Step 3)."""

import json

import pytest

from middleware.sync.mapping import (
    apply_namespace,
    fingerprint,
    import_row,
    import_row_size,
    map_record,
    put_body,
    soql_fields,
)
from tests.middleware.sync.conftest import opts

CONTACT = {
    "Id": "003A",
    "Email": " Ann.Lee@Example.com ",
    "FirstName": "Ann",
    "LastName": "Lee",
    "Title": "Head of Finance",
    "Account": {"Name": "Acme Ltd"},
    "Phone": "555-0100",
    "MobilePhone": "555-0101",
    "HomePhone": "555-0102",
    "MailingStreet": "1 Main St",
    "MailingCity": "Springfield",
    "MailingState": "Illinois",
    "MailingPostalCode": "62701",
    "MailingCountry": "United States",
    "HasOptedOutOfEmail": False,
}
LEAD = {
    "Id": "00QA",
    "Email": "bo@example.com",
    "FirstName": "Bo",
    "LastName": "Diaz",
    "Title": "CTO",
    "Company": "Diaz & Co",
    "Phone": "555-0200",
    "MobilePhone": None,
    "Street": "2 Side Rd",
    "City": "Austin",
    "State": "TX",
    "PostalCode": "73301",
    "Country": "US",
    "IsConverted": False,
}
PERSON = {
    "Id": "001A",
    "PersonEmail": "cy@example.com",
    "FirstName": "Cy",
    "LastName": "Park",
    "PersonTitle": "Donor",
    "Phone": "555-0300",
    "PersonMobilePhone": "555-0301",
    "PersonHomePhone": "555-0302",
    "PersonMailingStreet": "3 Hill Ave",
    "PersonMailingCity": "Denver",
    "PersonMailingState": "CO",
    "PersonMailingPostalCode": "80201",
    "PersonMailingCountry": "USA",
    "Name": "Cy Park",
}


def setup(object_type="Contact", **options):
    return opts(object_type=object_type, **options)


@pytest.mark.parametrize(
    ("object_type", "record", "expected"),
    [
        pytest.param(
            "Contact",
            CONTACT,
            {
                "email": "ann.lee@example.com",
                "first_name": "Ann",
                "last_name": "Lee",
                "job_title": "Head of Finance",
                "company_name": "Acme Ltd",
                "work_phone": "555-0100",
                "mobile_phone": "555-0101",
                "home_phone": "555-0102",
                "street": "1 Main St",
                "city": "Springfield",
                "state": "Illinois",
                "zip": "62701",
                "country": "United States",
            },
            id="contact-premapped-company-is-account-name",
        ),
        pytest.param(
            "Lead",
            LEAD,
            {
                "email": "bo@example.com",
                "first_name": "Bo",
                "last_name": "Diaz",
                "job_title": "CTO",
                "company_name": "Diaz & Co",
                "work_phone": "555-0200",
                "mobile_phone": "",
                "street": "2 Side Rd",
                "city": "Austin",
                "state": "TX",
                "zip": "73301",
                "country": "US",
            },
            id="lead-premapped-company-field-no-home-phone",
        ),
        pytest.param(
            "Account",
            PERSON,
            {
                "email": "cy@example.com",
                "first_name": "Cy",
                "last_name": "Park",
                "job_title": "Donor",
                "work_phone": "555-0300",
                "mobile_phone": "555-0301",
                "home_phone": "555-0302",
                "street": "3 Hill Ave",
                "city": "Denver",
                "state": "CO",
                "zip": "80201",
                "country": "USA",
            },
            id="person-account-person-fields-no-company",
        ),
    ],
)
def test_premapped_fields_per_object_type(object_type, record, expected):
    assert map_record(setup(object_type), record) == expected


@pytest.mark.parametrize(
    ("options", "absent", "present"),
    [
        pytest.param(
            {"sync_address": False},
            {"street", "city", "state", "zip", "country"},
            {"company_name"},
            id="do-not-sync-physical-address",
        ),
        pytest.param(
            {"sync_company": False}, {"company_name"}, {"street"}, id="do-not-sync-company-name"
        ),
        pytest.param({}, set(), {"company_name", "street"}, id="defaults-sync-both"),
    ],
)
def test_address_and_company_options(options, absent, present):
    values = map_record(setup(**options), CONTACT)
    assert not absent & set(values)
    assert present <= set(values)


def test_contact_without_account_has_blank_company():
    assert map_record(setup(), {**CONTACT, "Account": None})["company_name"] == ""


@pytest.mark.parametrize(
    ("field_map", "record_extra", "expected"),
    [
        pytest.param(
            [{"sf_field": "Department", "cc_field": "cf:Department", "direction": "sf_to_cc"}],
            {"Department": "Sales"},
            {"cf:Department": "Sales"},
            id="sf-to-cc-custom-field",
        ),
        pytest.param(
            [{"sf_field": "Nickname__c", "cc_field": "first_name", "direction": "both"}],
            {"Nickname__c": "Annie"},
            {"first_name": "Annie"},
            id="field-map-overrides-premapped-field",
        ),
        pytest.param(
            [{"sf_field": "Nickname__c", "cc_field": "first_name", "direction": "cc_to_sf"}],
            {"Nickname__c": "Annie"},
            {"first_name": "Ann"},
            id="cc-to-sf-entries-are-not-pushed",
        ),
        pytest.param(
            [{"sf_field": "Is_Donor__c", "cc_field": "cf:Donor", "direction": "sf_to_cc"}],
            {"Is_Donor__c": True},
            {"cf:Donor": "true"},
            id="checkbox-becomes-true-false-text",
        ),
        pytest.param(
            [{"sf_field": "Gifts__c", "cc_field": "cf:Gifts", "direction": "sf_to_cc"}],
            {"Gifts__c": 3.0},
            {"cf:Gifts": "3"},
            id="whole-number-without-decimal-point",
        ),
        pytest.param(
            [{"sf_field": "Owner.Name", "cc_field": "cf:Owner", "direction": "sf_to_cc"}],
            {"Owner": {"Name": "Dee"}},
            {"cf:Owner": "Dee"},
            id="relationship-path",
        ),
        pytest.param(
            [{"sf_field": "Birth_Month__c", "cc_field": "birthday_month", "direction": "sf_to_cc"}],
            {"Birth_Month__c": 7},
            {"birthday_month": "7"},
            id="birthday-month-contact-field",
        ),
    ],
)
def test_field_map(field_map, record_extra, expected):
    values = map_record(setup(field_map=field_map), {**CONTACT, **record_extra})
    assert {k: values[k] for k in expected} == expected


def test_other_email_fields_go_to_custom_fields_not_the_address():
    values = map_record(
        setup(other_email_fields=[{"sf_field": "Work_Email__c", "cc_field": "cf:Work_Email"}]),
        {**CONTACT, "Work_Email__c": " Ann@Work.example "},
    )
    assert values["cf:Work_Email"] == "Ann@Work.example"
    assert values["email"] == "ann.lee@example.com"


def test_values_longer_than_cc_allows_are_cut_to_its_limit():
    values = map_record(
        setup(field_map=[{"sf_field": "Notes__c", "cc_field": "cf:Notes"}]),
        {**CONTACT, "Title": "T" * 128, "Notes__c": "n" * 300},
    )
    assert values["job_title"] == "T" * 50
    assert values["cf:Notes"] == "n" * 255


@pytest.mark.parametrize(
    ("name", "prefix", "expected"),
    [
        pytest.param("Foo__c", "acme", "acme__Foo__c", id="unprefixed-custom-gets-namespace"),
        pytest.param("Foo__c", None, "Foo__c", id="no-prefix-configured"),
        pytest.param(
            "npe01__HomeEmail__c", "acme", "npe01__HomeEmail__c", id="already-namespaced-left-alone"
        ),
        pytest.param("Title", "acme", "Title", id="standard-field-left-alone"),
        pytest.param("Region__r.Name", "acme", "acme__Region__r.Name", id="relationship-segment"),
        pytest.param("Foo__pc", "acme", "acme__Foo__pc", id="person-account-mirror-field"),
    ],
)
def test_apply_namespace(name, prefix, expected):
    assert apply_namespace(name, prefix) == expected


def test_namespace_prefix_applies_to_mapping_reads():
    s = setup(
        namespace_prefix="acme",
        field_map=[{"sf_field": "Tier__c", "cc_field": "cf:Tier", "direction": "sf_to_cc"}],
    )
    assert map_record(s, {**CONTACT, "acme__Tier__c": "Gold", "Tier__c": "wrong"})["cf:Tier"] == (
        "Gold"
    )


@pytest.mark.parametrize(
    ("object_type", "options", "must", "must_not"),
    [
        pytest.param(
            "Contact",
            {},
            [
                "Id",
                "Email",
                "HasOptedOutOfEmail",
                "IsDeleted",
                "CreatedDate",
                "SystemModstamp",
                "Account.Name",
                "HomePhone",
                "MailingStreet",
            ],
            ["IsConverted", "PersonEmail"],
            id="contact-fields",
        ),
        pytest.param(
            "Lead",
            {},
            [
                "Email",
                "IsConverted",
                "ConvertedContactId",
                "ConvertedAccountId",
                "Company",
                "Street",
            ],
            ["Account.Name", "HomePhone"],
            id="lead-fields-include-conversion",
        ),
        pytest.param(
            "Account",
            {},
            ["PersonEmail", "PersonHasOptedOutOfEmail", "PersonMailingCity", "IsPersonAccount"],
            ["Email", "Account.Name"],
            id="person-account-fields",
        ),
        pytest.param(
            "Contact",
            {"sync_address": False, "sync_company": False},
            ["Email"],
            ["MailingStreet", "Account.Name"],
            id="options-drop-unsynced-fields",
        ),
        pytest.param(
            "Contact",
            {
                "namespace_prefix": "acme",
                "field_map": [
                    {"sf_field": "Tier__c", "cc_field": "cf:Tier", "direction": "both"},
                    {"sf_field": "Back__c", "cc_field": "cf:Back", "direction": "cc_to_sf"},
                ],
                "other_email_fields": [{"sf_field": "npe01__WorkEmail__c", "cc_field": "cf:W"}],
                "checkbox_lists": [{"field": "VIP__c", "list": "VIPs"}],
            },
            ["acme__Tier__c", "npe01__WorkEmail__c", "acme__VIP__c"],
            ["Tier__c", "acme__Back__c", "Back__c"],
            id="mapped-fields-namespaced",
        ),
    ],
)
def test_soql_fields(object_type, options, must, must_not):
    fields = soql_fields(setup(object_type, **options))
    assert set(must) <= set(fields)
    assert not set(must_not) & set(fields)
    assert len(fields) == len(set(fields))


class TestFingerprint:
    def test_stable_for_equal_values(self):
        assert fingerprint(map_record(setup(), CONTACT)) == fingerprint(
            map_record(setup(), CONTACT)
        )

    def test_independent_of_key_order(self):
        values = map_record(setup(), CONTACT)
        assert fingerprint(dict(reversed(list(values.items())))) == fingerprint(values)

    @pytest.mark.parametrize("key", ["email", "first_name", "company_name", "zip", "home_phone"])
    def test_sensitive_to_every_value(self, key):
        values = map_record(setup(), CONTACT)
        assert fingerprint({**values, key: values[key] + "x"}) != fingerprint(values)

    def test_sensitive_to_a_cleared_value(self):
        values = map_record(setup(), CONTACT)
        cleared = map_record(setup(), {**CONTACT, "Title": None})
        assert fingerprint(cleared) != fingerprint(values)

    def test_sensitive_to_the_set_of_mapped_keys(self):
        assert fingerprint(map_record(setup(sync_address=False), CONTACT)) != fingerprint(
            map_record(setup(), CONTACT)
        )


def test_import_row_uses_flat_keys_and_drops_blank_phone_and_address_parts():
    values = map_record(setup("Lead"), {**LEAD, "City": None})
    row = import_row(values)
    assert row["company_name"] == "Diaz & Co"
    assert "mobile_phone" not in row and "city" not in row
    assert row["work_phone"] == "555-0200"
    assert import_row_size(values) == len(json.dumps(row).encode()) + 2


def test_import_row_keeps_blank_names_so_clears_reach_cc():
    row = import_row(map_record(setup(), {**CONTACT, "Title": None}))
    assert row["job_title"] == ""


def test_put_body_shape():
    values = {
        **map_record(setup(), CONTACT),
        "cf:Tier": "Gold",
        "cf:Missing": "x",
        "birthday_month": "7",
    }
    body = put_body(
        values,
        custom_field_ids={"Tier": "cf-1"},
        current_fields={"anniversary": "2001-02-03", "first_name": "Old"},
        permission_to_send=None,
        list_ids=["L1"],
    )
    assert body["email_address"] == {"address": "ann.lee@example.com"}
    assert body["update_source"] == "Account"
    assert body["first_name"] == "Ann"
    assert body["anniversary"] == "2001-02-03"
    assert body["birthday_month"] == 7
    assert body["phone_numbers"] == [
        {"phone_number": "555-0100", "kind": "work"},
        {"phone_number": "555-0101", "kind": "mobile"},
        {"phone_number": "555-0102", "kind": "home"},
    ]
    assert body["street_addresses"] == [
        {
            "kind": "home",
            "street": "1 Main St",
            "city": "Springfield",
            "state": "Illinois",
            "postal_code": "62701",
            "country": "United States",
        }
    ]
    assert body["custom_fields"] == [{"custom_field_id": "cf-1", "value": "Gold"}]
    assert body["list_memberships"] == ["L1"]


def test_put_body_clears_blank_mapped_fields_and_leaves_unmapped_sub_resources_out():
    values = map_record(setup(sync_address=False), {**CONTACT, "Title": ""})
    body = put_body(values, custom_field_ids={}, permission_to_send="unsubscribed")
    assert "job_title" not in body  # omitted = cleared by PUT; the contract has no nulls
    assert "street_addresses" not in body
    assert "list_memberships" not in body
    assert body["email_address"]["permission_to_send"] == "unsubscribed"
