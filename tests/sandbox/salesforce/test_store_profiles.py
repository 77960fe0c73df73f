"""Org profiles of the sandbox store: person accounts, state/country, NPSP, custom fields."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sandbox.salesforce.store import ChangeRecord, OrgStore, SalesforceError

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class FixedClock:
    def now(self) -> datetime:
        return NOW


def make(profile: str, custom: dict[str, Any] | None = None, **kw: Any) -> OrgStore:
    return OrgStore(profile, custom, clock=FixedClock(), **kw)


def error_of(fn: Any, *args: Any, **kwargs: Any) -> SalesforceError:
    with pytest.raises(SalesforceError) as caught:
        fn(*args, **kwargs)
    return caught.value


# ----------------------------------------------------------------------------- person accounts


@pytest.fixture
def person_org() -> tuple[OrgStore, list[list[ChangeRecord]]]:
    store = make(
        "person_accounts", {"Contact": [{"name": "Color__c", "type": "string", "length": 20}]}
    )
    seen: list[list[ChangeRecord]] = []
    store.subscribe(seen.append)
    return store, seen


def test_person_account_creates_its_contact(person_org: Any) -> None:
    store, seen = person_org
    account = store.create(
        "Account",
        {
            "FirstName": "Ann",
            "LastName": "Smith",
            "PersonEmail": "ann@x.org",
            "PersonHasOptedOutOfEmail": True,
            "PersonMailingCity": "Boston",
            "Color__pc": "red",
        },
    )
    [batch] = seen
    assert [(r.entity, r.change_type) for r in batch] == [
        ("Account", "CREATE"),
        ("Contact", "CREATE"),
    ]
    assert batch[0].values["PersonContactId"] == batch[1].record_id
    assert batch[0].values["IsPersonAccount"] is True
    assert len({r.transaction_key for r in batch}) == 1
    acc = store.get("Account", account)
    assert acc is not None
    assert (acc["Name"], acc["IsPersonAccount"]) == ("Ann Smith", True)
    contact = store.get("Contact", acc["PersonContactId"])
    assert contact is not None
    assert {
        k: contact[k]
        for k in (
            "Name",
            "Email",
            "HasOptedOutOfEmail",
            "MailingCity",
            "AccountId",
            "IsPersonAccount",
            "Color__c",
        )
    } == {
        "Name": "Ann Smith",
        "Email": "ann@x.org",
        "HasOptedOutOfEmail": True,
        "MailingCity": "Boston",
        "AccountId": account,
        "IsPersonAccount": True,
        "Color__c": "red",
    }


def test_person_account_and_contact_stay_in_step(person_org: Any) -> None:
    store, seen = person_org
    account = store.create("Account", {"LastName": "Smith", "PersonEmail": "a@x.org"})
    contact_id = store.get("Account", account, ["PersonContactId"])["PersonContactId"]
    store.update("Account", account, {"PersonEmail": "b@x.org", "FirstName": "Ann"})
    assert [(r.entity, r.change_type) for r in seen[-1]] == [
        ("Account", "UPDATE"),
        ("Contact", "UPDATE"),
    ]
    assert store.get("Contact", contact_id, ["Email", "Name"]) == {
        "Email": "b@x.org",
        "Name": "Ann Smith",
    }
    store.update("Contact", contact_id, {"HasOptedOutOfEmail": True, "Color__c": "blue"})
    assert store.get("Account", account, ["PersonHasOptedOutOfEmail", "Color__pc"]) == {
        "PersonHasOptedOutOfEmail": True,
        "Color__pc": "blue",
    }
    store.delete("Contact", contact_id)  # a person contact goes with its account
    assert store.count("Account") == 0 and store.count("Contact") == 0
    store.undelete("Account", account)
    assert store.count("Account") == 1 and store.count("Contact") == 1


def test_business_and_person_account_fields_do_not_mix(person_org: Any) -> None:
    store, _ = person_org
    business = store.create("Account", {"Name": "Acme"})
    assert store.get("Account", business, ["IsPersonAccount", "PersonContactId"]) == {
        "IsPersonAccount": False,
        "PersonContactId": None,
    }
    err = error_of(store.update, "Account", business, {"PersonEmail": "x@y.org"})
    assert (err.error_code, err.fields) == ("INVALID_FIELD_FOR_INSERT_UPDATE", ["PersonEmail"])
    err = error_of(store.create, "Account", {"Name": "Both", "LastName": "Person"})
    assert err.error_code == "INVALID_FIELD_FOR_INSERT_UPDATE"
    person = store.create("Account", {"LastName": "Person"})
    err = error_of(store.update, "Account", person, {"Name": "Renamed"})
    assert (err.error_code, err.fields) == ("INVALID_FIELD_FOR_INSERT_UPDATE", ["Name"])
    err = error_of(store.create, "Account", {"PersonEmail": "x@y.org"})
    assert err.error_code == "REQUIRED_FIELD_MISSING" and err.fields == ["LastName"]
    rows = store.query("SELECT Name FROM Contact WHERE IsPersonAccount = true").total_size
    assert rows == 1


def test_person_accounts_through_insert_many(person_org: Any) -> None:
    store, seen = person_org
    loaded = store.insert_many("Account", [{"LastName": "P1"}, {"Name": "Biz"}, {"LastName": "P2"}])
    assert loaded == 3 and seen == []
    assert store.query("SELECT COUNT() FROM Contact WHERE IsPersonAccount = true").total_size == 2


def test_standard_org_has_no_person_fields() -> None:
    store = make("standard")
    assert store.schema.sobject("Account").field("PersonEmail") is None
    assert error_of(store.create, "Account", {"LastName": "x"}).error_code == "INVALID_FIELD"


# ----------------------------------------------------------------------------- state & country


@pytest.fixture
def sc_org() -> OrgStore:
    return make("state_country,person_accounts")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"MailingCountryCode": "US", "MailingStateCode": "CA"},
            ("United States", "US", "California", "CA"),
        ),
        (
            {"MailingCountry": "canada", "MailingState": "british columbia"},
            ("Canada", "CA", "British Columbia", "BC"),
        ),
        (
            {"MailingCountryCode": "AU", "MailingState": "Victoria"},
            ("Australia", "AU", "Victoria", "VIC"),
        ),
        # on create the code wins over a disagreeing name
        ({"MailingCountryCode": "DE", "MailingCountry": "France"}, ("Germany", "DE", None, None)),
        ({"MailingCountry": "Germany"}, ("Germany", "DE", None, None)),
        ({"MailingCountryCode": "AW"}, ("Aruba", "AW", None, None)),  # every ISO country
        ({"MailingCountry": "taiwan"}, ("Taiwan", "TW", None, None)),
        ({}, (None, None, None, None)),
    ],
)
def test_codes_and_names_kept_in_step(
    sc_org: OrgStore, values: dict[str, str], expected: tuple[Any, ...]
) -> None:
    contact = sc_org.create("Contact", {"LastName": "A", **values})
    got = sc_org.get(
        "Contact",
        contact,
        ["MailingCountry", "MailingCountryCode", "MailingState", "MailingStateCode"],
    )
    assert tuple(got.values()) == expected


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"MailingCountryCode": "XX"}, "MailingCountryCode"),
        ({"MailingCountry": "Narnia"}, "MailingCountryCode"),
        ({"MailingCountry": "US"}, "MailingCountryCode"),  # the text field takes names, not codes
        ({"MailingCountryCode": "US", "MailingStateCode": "ON"}, "MailingStateCode"),
        ({"MailingCountryCode": "US", "MailingState": "Ontario"}, "MailingStateCode"),
        ({"MailingCountryCode": "FR", "MailingState": "Paris"}, "MailingStateCode"),
        ({"MailingState": "Texas"}, "MailingStateCode"),  # a state needs a country
        ({"OtherCountryCode": "US", "OtherStateCode": "XX"}, "OtherStateCode"),
    ],
)
def test_bad_states_and_countries(sc_org: OrgStore, values: dict[str, str], field: str) -> None:
    err = error_of(sc_org.create, "Contact", {"LastName": "A", **values})
    assert (err.error_code, err.fields) == ("FIELD_INTEGRITY_EXCEPTION", [field])
    if "State" in field:
        assert err.message == (
            "There's a problem with this state, even though it may appear correct. Please select a "
            "state from the list of valid states."
        )


def test_state_country_on_update(sc_org: OrgStore) -> None:
    contact = sc_org.create(
        "Contact", {"LastName": "A", "MailingCountryCode": "US", "MailingStateCode": "TX"}
    )
    err = error_of(
        sc_org.update, "Contact", contact, {"MailingStateCode": "CA", "MailingState": "Texas"}
    )
    assert err.error_code == "FIELD_INTEGRITY_EXCEPTION"
    err = error_of(
        sc_org.update, "Contact", contact, {"MailingCountryCode": "CA"}
    )  # TX is not in CA
    assert err.error_code == "FIELD_INTEGRITY_EXCEPTION"
    sc_org.update("Contact", contact, {"MailingCountryCode": "CA", "MailingStateCode": "QC"})
    sc_org.update("Contact", contact, {"MailingState": "Ontario"})
    got = sc_org.get("Contact", contact, ["MailingCountry", "MailingState", "MailingStateCode"])
    assert got == {"MailingCountry": "Canada", "MailingState": "Ontario", "MailingStateCode": "ON"}
    sc_org.update("Contact", contact, {"MailingCountryCode": None, "MailingStateCode": None})
    assert sc_org.get("Contact", contact, ["MailingCountry", "MailingState"]) == {
        "MailingCountry": None,
        "MailingState": None,
    }


def test_every_address_group_has_codes(sc_org: OrgStore) -> None:
    lead = sc_org.create(
        "Lead", {"LastName": "L", "Company": "C", "CountryCode": "US", "StateCode": "NY"}
    )
    assert sc_org.get("Lead", lead, ["State", "Country"]) == {
        "State": "New York",
        "Country": "United States",
    }
    account = sc_org.create(
        "Account", {"Name": "A", "BillingCountry": "Australia", "ShippingCountryCode": "CA"}
    )
    assert sc_org.get("Account", account, ["BillingCountryCode", "ShippingCountry"]) == {
        "BillingCountryCode": "AU",
        "ShippingCountry": "Canada",
    }
    person = sc_org.create(
        "Account",
        {"LastName": "P", "PersonMailingCountryCode": "US", "PersonMailingStateCode": "WA"},
    )
    contact_id = sc_org.get("Account", person, ["PersonContactId"])["PersonContactId"]
    assert sc_org.get("Contact", contact_id, ["MailingState"]) == {"MailingState": "Washington"}
    described = {f["name"]: f for f in sc_org.describe("Contact")["fields"]}
    assert described["MailingStateCode"]["type"] == "picklist"
    assert {"value": "US", "label": "US"}.items() <= described["MailingCountryCode"][
        "picklistValues"
    ][[p["value"] for p in described["MailingCountryCode"]["picklistValues"]].index("US")].items()
    address = described["MailingAddress"]
    assert address["type"] == "address" and not address["filterable"]
    row = next(sc_org.query(f"SELECT MailingAddress FROM Contact WHERE Id = '{contact_id}'").rows)
    assert row["MailingAddress"]["stateCode"] == "WA"
    assert row["MailingAddress"]["countryCode"] == "US"


def test_lead_conversion_copies_codes(sc_org: OrgStore) -> None:
    lead = sc_org.create(
        "Lead", {"LastName": "L", "Company": "C", "CountryCode": "CA", "StateCode": "QC"}
    )
    result = sc_org.convert_lead(lead)
    assert sc_org.get("Contact", result["contactId"], ["MailingStateCode", "MailingCountry"]) == {
        "MailingStateCode": "QC",
        "MailingCountry": "Canada",
    }
    assert sc_org.get("Account", result["accountId"], ["BillingState"]) == {
        "BillingState": "Quebec"
    }


def test_state_country_through_insert_many(sc_org: OrgStore) -> None:
    sc_org.insert_many(
        "Contact",
        [
            {"LastName": "A", "MailingCountry": "United States", "MailingState": "Ohio"},
            {"LastName": "B", "MailingCountryCode": "AU", "MailingStateCode": "NSW"},
            {"LastName": "C"},
        ],
    )
    rows = sc_org.query(
        "SELECT MailingCountryCode, MailingStateCode, MailingState FROM Contact ORDER BY LastName"
    ).rows
    assert list(rows) == [
        {"MailingCountryCode": "US", "MailingStateCode": "OH", "MailingState": "Ohio"},
        {"MailingCountryCode": "AU", "MailingStateCode": "NSW", "MailingState": "New South Wales"},
        {"MailingCountryCode": None, "MailingStateCode": None, "MailingState": None},
    ]


def test_without_the_profile_any_text_goes() -> None:
    store = make("standard")
    contact = store.create(
        "Contact", {"LastName": "A", "MailingCountry": "Narnia", "MailingState": "XX"}
    )
    assert store.get("Contact", contact, ["MailingState"]) == {"MailingState": "XX"}
    assert store.schema.sobject("Contact").field("MailingStateCode") is None


# ----------------------------------------------------------------------------- NPSP


def test_npsp_fields_and_affiliations() -> None:
    store = make("npsp")
    account = store.create("Account", {"Name": "Food Bank"})
    contact = store.create(
        "Contact",
        {
            "LastName": "Donor",
            "npe01__HomeEmail__c": "home@x.org",
            "npe01__WorkEmail__c": "work@x.org",
            "npe01__Preferred_Email__c": "Work",
            "npsp__Primary_Affiliation__c": account,
        },
    )
    affiliation = store.create(
        "npe5__Affiliation__c",
        {"npe5__Contact__c": contact, "npe5__Organization__c": account, "npe5__Primary__c": True},
    )
    assert affiliation.startswith("a01")
    row = next(
        store.query(
            "SELECT Name, npe5__Status__c, npe5__Primary__c, npe5__Contact__r.npe01__WorkEmail__c,"
            " npe5__Organization__r.Name FROM npe5__Affiliation__c"
        ).rows
    )
    assert row == {
        "Name": "AFF-000001",
        "npe5__Status__c": "Current",
        "npe5__Primary__c": True,
        "npe5__Contact__r": {"npe01__WorkEmail__c": "work@x.org"},
        "npe5__Organization__r": {"Name": "Food Bank"},
    }
    hits = store.query("SELECT Id FROM Contact WHERE npe01__HomeEmail__c = 'HOME@x.org'")
    assert [r["Id"] for r in hits.rows] == [contact]
    err = error_of(store.create, "Contact", {"LastName": "x", "npe01__WorkEmail__c": "nope"})
    assert err.error_code == "INVALID_EMAIL_ADDRESS"
    assert make("standard").schema.sobject("npe5__Affiliation__c") is None


# ----------------------------------------------------------------------------- custom fields


def test_custom_fields_of_every_kind() -> None:
    custom = {
        "Contact": [
            {"name": "Favorite_Color__c", "type": "string", "length": 10},
            {
                "name": "Tier__c",
                "type": "picklist",
                "values": ["Gold", "Silver"],
                "restricted": True,
            },
            {"name": "VIP__c", "type": "boolean"},
            {"name": "Score__c", "type": "double"},
            {"name": "Joined__c", "type": "date"},
            {
                "name": "Ext_Id__c",
                "type": "string",
                "length": 40,
                "externalId": True,
                "unique": True,
            },
            {"name": "Employer__c", "type": "reference", "referenceTo": "Account"},
        ]
    }
    store = make("standard", custom)
    account = store.create("Account", {"Name": "Acme"})
    contact = store.create(
        "Contact",
        {
            "LastName": "A",
            "Favorite_Color__c": "red",
            "Tier__c": "Gold",
            "VIP__c": True,
            "Score__c": 9.5,
            "Joined__c": "2024-02-29",
            "Ext_Id__c": "E-1",
            "Employer__c": account,
        },
    )
    row = next(
        store.query(
            "SELECT Favorite_Color__c, VIP__c, Score__c, Employer__r.Name FROM Contact"
            " WHERE Joined__c < 2025-01-01 AND Tier__c = 'gold'"
        ).rows
    )
    assert row == {
        "Favorite_Color__c": "red",
        "VIP__c": True,
        "Score__c": 9.5,
        "Employer__r": {"Name": "Acme"},
    }
    assert store.find_ids("Contact", "Ext_Id__c", "e-1") == [contact]
    assert error_of(
        store.update, "Contact", contact, {"Favorite_Color__c": "x" * 11}
    ).error_code == ("STRING_TOO_LONG")
    assert error_of(store.update, "Contact", contact, {"Tier__c": "Bronze"}).error_code == (
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    )
    described = {f["name"]: f for f in store.describe("Contact")["fields"]}
    assert described["Ext_Id__c"]["externalId"] and described["Ext_Id__c"]["idLookup"]
    assert described["Employer__c"]["referenceTo"] == ["Account"]
    assert described["Employer__c"]["relationshipName"] == "Employer__r"
    assert (
        described["Favorite_Color__c"]["custom"] and described["Favorite_Color__c"]["length"] == 10
    )


@pytest.mark.parametrize(
    "custom",
    [
        {"Contact": [{"name": "NoSuffix", "type": "string"}]},
        {"Contact": [{"name": "Bad__c", "type": "hologram"}]},
        {"Contact": [{"name": "Email__c"}, {"name": "Email__c"}]},
        {"Widget": [{"name": "A__c"}]},
    ],
)
def test_bad_custom_field_config_is_refused(custom: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        make("standard", custom)


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="ORG_PROFILE"):
        make("standard,enterprise_plus")


# ----------------------------------------------------------------------------- duplicate rule


@pytest.mark.parametrize("sobject", ["Contact", "Lead"])
def test_duplicate_rule(sobject: str) -> None:
    store = make("standard", duplicate_rule=True)
    base = {"Company": "C"} if sobject == "Lead" else {}
    first = store.create(sobject, {"LastName": "A", "Email": "Same@X.org", **base})
    err = error_of(store.create, sobject, {"LastName": "B", "Email": "same@x.ORG", **base})
    assert (err.error_code, err.message) == ("DUPLICATES_DETECTED", "Use one of these records?")
    other = store.create(sobject, {"LastName": "C", "Email": "other@x.org", **base})
    assert error_of(store.update, sobject, other, {"Email": "SAME@x.org"}).error_code == (
        "DUPLICATES_DETECTED"
    )
    store.update(sobject, first, {"Email": "same@x.org", "Title": "still me"})  # itself is fine
    store.create(sobject, {"LastName": "D", "Email": "same@x.org", **base}, allow_save=True)
    store.delete(sobject, other)
    assert store.count(sobject) == 2


def test_duplicate_rule_spans_one_object_and_live_records_only() -> None:
    store = make("standard", duplicate_rule="block")
    store.create("Lead", {"LastName": "L", "Company": "C", "Email": "a@x.org"})
    store.create("Contact", {"LastName": "C", "Email": "a@x.org"})  # another object: no match
    gone = store.create("Contact", {"LastName": "Gone", "Email": "b@x.org"})
    store.delete("Contact", gone)
    store.create("Contact", {"LastName": "New", "Email": "b@x.org"})
    err = error_of(store.create, "Contact", {"LastName": "X", "Email": "a@x.org"}, allow_save=True)
    assert err.error_code == "DUPLICATES_DETECTED"  # a blocking rule ignores allowSave


def test_no_duplicate_rule_by_default() -> None:
    store = make("standard")
    store.create("Contact", {"LastName": "A", "Email": "a@x.org"})
    store.create("Contact", {"LastName": "B", "Email": "a@x.org"})
    assert store.count("Contact") == 2


# ----------------------------------------------------------------------------- campaigns


def test_campaign_members_read_from_their_person() -> None:
    store = make("standard")
    campaign = store.create("Campaign", {"Name": "Fall", "IsActive": True})
    account = store.create("Account", {"Name": "Acme"})
    contact = store.create("Contact", {"LastName": "C", "Email": "c@x.org", "AccountId": account})
    lead = store.create("Lead", {"LastName": "L", "Company": "Initech", "Email": "l@x.org"})
    m1 = store.create("CampaignMember", {"CampaignId": campaign, "ContactId": contact})
    store.create("CampaignMember", {"CampaignId": campaign, "LeadId": lead, "Status": "Responded"})
    err = error_of(store.create, "CampaignMember", {"CampaignId": campaign, "ContactId": contact})
    assert (err.error_code, err.message) == ("DUPLICATE_VALUE", "Already a campaign member.")
    store.update("Contact", contact, {"Email": "new@x.org", "HasOptedOutOfEmail": True})
    rows = list(
        store.query(
            "SELECT Email, Type, CompanyOrAccount, HasOptedOutOfEmail, HasResponded,"
            " LeadOrContactId, FirstRespondedDate FROM CampaignMember ORDER BY Type"
        ).rows
    )
    assert rows == [
        {
            "Email": "new@x.org",
            "Type": "Contact",
            "CompanyOrAccount": "Acme",
            "HasOptedOutOfEmail": True,
            "HasResponded": False,
            "LeadOrContactId": contact,
            "FirstRespondedDate": None,
        },
        {
            "Email": "l@x.org",
            "Type": "Lead",
            "CompanyOrAccount": "Initech",
            "HasOptedOutOfEmail": False,
            "HasResponded": True,
            "LeadOrContactId": lead,
            "FirstRespondedDate": "2026-11-26",
        },
    ]
    counts = next(
        store.query("SELECT NumberOfContacts, NumberOfLeads, NumberOfResponses FROM Campaign").rows
    )
    assert counts == {"NumberOfContacts": 1, "NumberOfLeads": 1, "NumberOfResponses": 1}
    err = error_of(store.update, "CampaignMember", m1, {"ContactId": lead})
    assert err.error_code == "INVALID_FIELD_FOR_INSERT_UPDATE"
    store.delete("Contact", contact)
    assert store.count("CampaignMember") == 1


# ----------------------------------------------------------------------------- record types


def test_record_types() -> None:
    store = make("standard", record_types={"Campaign": ["Webinar", "Trade Event"]})
    assert "RecordTypeId" not in store.schema.objects["Contact"].fields  # only where configured
    campaign = store.create("Campaign", {"Name": "Fall"})
    row = next(store.query("SELECT RecordType.Name, RecordType.DeveloperName FROM Campaign").rows)
    assert row == {"RecordType": {"Name": "Webinar", "DeveloperName": "Webinar"}}
    trade = next(store.query("SELECT Id FROM RecordType WHERE Name = 'Trade Event'").rows)["Id"]
    store.update("Campaign", campaign, {"RecordTypeId": trade})
    infos = store.describe("Campaign")["recordTypeInfos"]
    assert [(i["name"], i["master"], i["defaultRecordTypeMapping"]) for i in infos] == [
        ("Webinar", False, True),
        ("Trade Event", False, False),
        ("Master", True, False),
    ]
    err = error_of(store.update, "Campaign", campaign, {"RecordTypeId": "012SB00000000ZZ"})
    assert (err.error_code, err.fields) == ("INVALID_CROSS_REFERENCE_KEY", ["RecordTypeId"])
    store.reset()
    assert store.count("RecordType") == 2 and store.count("Campaign") == 0
    with pytest.raises(ValueError, match="RECORD_TYPES"):
        make("standard", record_types={"Widget": ["A"]})


def test_person_org_converts_a_company_less_lead_into_a_person_account(person_org: Any) -> None:
    store, seen = person_org
    lead = store.create(
        "Lead",
        {"LastName": "Lee", "FirstName": "Cat", "Email": "cat@x.org", "HasOptedOutOfEmail": True},
    )
    seen.clear()
    result = store.convert_lead(lead)
    assert [(r.entity, r.change_type) for r in seen[0]] == [
        ("Account", "CREATE"),
        ("Contact", "CREATE"),
        ("Lead", "UPDATE"),
    ]
    account = store.get("Account", result["accountId"])
    assert account is not None
    assert (account["IsPersonAccount"], account["Name"], account["PersonEmail"]) == (
        True,
        "Cat Lee",
        "cat@x.org",
    )
    assert account["PersonContactId"] == result["contactId"]
    assert store.get("Contact", result["contactId"], ["HasOptedOutOfEmail", "IsPersonAccount"]) == {
        "HasOptedOutOfEmail": True,
        "IsPersonAccount": True,
    }
    business = store.create("Lead", {"LastName": "B", "Company": "Acme"})
    converted = store.convert_lead(business)
    assert store.get("Account", converted["accountId"], ["IsPersonAccount", "Name"]) == {
        "IsPersonAccount": False,
        "Name": "Acme",
    }
