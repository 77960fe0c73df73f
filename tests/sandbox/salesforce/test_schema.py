"""The sandbox org's schema: standard fields per object and Salesforce's describe shapes."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.salesforce.schema import build_schema
from sandbox.salesforce.store import OrgStore, SalesforceError

CONTACT_FIELDS = [
    "Id",
    "IsDeleted",
    "MasterRecordId",
    "AccountId",
    "LastName",
    "FirstName",
    "Salutation",
    "Name",
    "OtherStreet",
    "OtherCity",
    "OtherState",
    "OtherPostalCode",
    "OtherCountry",
    "OtherLatitude",
    "OtherLongitude",
    "OtherGeocodeAccuracy",
    "OtherAddress",
    "MailingStreet",
    "MailingCity",
    "MailingState",
    "MailingPostalCode",
    "MailingCountry",
    "MailingLatitude",
    "MailingLongitude",
    "MailingGeocodeAccuracy",
    "MailingAddress",
    "Phone",
    "Fax",
    "MobilePhone",
    "HomePhone",
    "OtherPhone",
    "AssistantPhone",
    "ReportsToId",
    "Email",
    "Title",
    "Department",
    "AssistantName",
    "LeadSource",
    "Birthdate",
    "Description",
    "OwnerId",
    "HasOptedOutOfEmail",
    "HasOptedOutOfFax",
    "DoNotCall",
    "CreatedDate",
    "CreatedById",
    "LastModifiedDate",
    "LastModifiedById",
    "SystemModstamp",
    "LastActivityDate",
    "EmailBouncedReason",
    "EmailBouncedDate",
    "IsEmailBounced",
    "IndividualId",
]

LEAD_FIELDS = [
    "Id",
    "IsDeleted",
    "LastName",
    "FirstName",
    "Salutation",
    "Name",
    "Title",
    "Company",
    "Street",
    "City",
    "State",
    "PostalCode",
    "Country",
    "Latitude",
    "Longitude",
    "GeocodeAccuracy",
    "Address",
    "Phone",
    "MobilePhone",
    "Fax",
    "Email",
    "Website",
    "Description",
    "LeadSource",
    "Status",
    "Industry",
    "Rating",
    "AnnualRevenue",
    "NumberOfEmployees",
    "OwnerId",
    "HasOptedOutOfEmail",
    "IsConverted",
    "ConvertedDate",
    "ConvertedAccountId",
    "ConvertedContactId",
    "ConvertedOpportunityId",
    "CreatedDate",
    "SystemModstamp",
    "DoNotCall",
    "EmailBouncedReason",
]

ACCOUNT_FIELDS = [
    "Id",
    "IsDeleted",
    "Name",
    "Type",
    "ParentId",
    "BillingStreet",
    "BillingCity",
    "BillingState",
    "BillingPostalCode",
    "BillingCountry",
    "BillingAddress",
    "ShippingStreet",
    "ShippingCity",
    "ShippingAddress",
    "Phone",
    "Website",
    "Industry",
    "NumberOfEmployees",
    "Description",
    "OwnerId",
    "SystemModstamp",
]

PERSON_FIELDS = [
    "IsPersonAccount",
    "PersonContactId",
    "FirstName",
    "LastName",
    "Salutation",
    "PersonEmail",
    "PersonHasOptedOutOfEmail",
    "PersonMailingStreet",
    "PersonMailingCity",
    "PersonMailingState",
    "PersonMailingPostalCode",
    "PersonMailingCountry",
    "PersonMobilePhone",
    "PersonHomePhone",
    "PersonTitle",
    "PersonBirthdate",
    "PersonDoNotCall",
]

DESCRIBE_KEYS = {
    "name",
    "label",
    "labelPlural",
    "keyPrefix",
    "createable",
    "updateable",
    "deletable",
    "queryable",
    "custom",
    "fields",
    "recordTypeInfos",
    "childRelationships",
    "urls",
}
FIELD_KEYS = {
    "name",
    "label",
    "type",
    "length",
    "nillable",
    "createable",
    "updateable",
    "custom",
    "externalId",
    "idLookup",
    "unique",
    "referenceTo",
    "relationshipName",
    "picklistValues",
    "defaultValue",
    "calculated",
    "filterable",
    "sortable",
}


def fields_of(described: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in described["fields"]}


@pytest.mark.parametrize(
    ("sobject", "expected"),
    [("Contact", CONTACT_FIELDS), ("Lead", LEAD_FIELDS), ("Account", ACCOUNT_FIELDS)],
)
def test_standard_fields_are_there(sobject: str, expected: list[str]) -> None:
    described = OrgStore("standard").describe(sobject)
    missing = set(expected) - set(fields_of(described))
    assert missing == set()


def test_person_account_fields() -> None:
    store = OrgStore("person_accounts")
    assert set(PERSON_FIELDS) <= set(fields_of(store.describe("Account")))
    assert "IsPersonAccount" in fields_of(store.describe("Contact"))


@pytest.mark.parametrize(
    ("sobject", "prefix", "label", "plural"),
    [
        ("Contact", "003", "Contact", "Contacts"),
        ("Lead", "00Q", "Lead", "Leads"),
        ("Account", "001", "Account", "Accounts"),
        ("Campaign", "701", "Campaign", "Campaigns"),
        ("CampaignMember", "00v", "Campaign Member", "Campaign Members"),
    ],
)
def test_describe_shape(sobject: str, prefix: str, label: str, plural: str) -> None:
    described = OrgStore("standard").describe(sobject.lower())
    assert described.keys() >= DESCRIBE_KEYS
    assert (described["name"], described["keyPrefix"]) == (sobject, prefix)
    assert (described["label"], described["labelPlural"]) == (label, plural)
    assert described["queryable"] and described["createable"] and not described["custom"]
    for field in described["fields"]:
        assert field.keys() >= FIELD_KEYS, field["name"]
    assert described["recordTypeInfos"][0]["master"] is True
    assert described["urls"]["sobject"].endswith(f"/sobjects/{sobject}")


def test_contact_field_properties() -> None:
    fields = fields_of(OrgStore("standard").describe("Contact"))
    assert fields["Id"] | {} == fields["Id"]
    assert (fields["Id"]["type"], fields["Id"]["length"], fields["Id"]["nillable"]) == (
        "id",
        18,
        False,
    )
    last = fields["LastName"]
    assert (last["type"], last["length"], last["nillable"], last["createable"]) == (
        "string",
        80,
        False,
        True,
    )
    name = fields["Name"]
    assert not name["createable"] and not name["updateable"]
    email = fields["Email"]
    assert (email["type"], email["length"], email["idLookup"]) == ("email", 80, True)
    assert fields["HasOptedOutOfEmail"]["type"] == "boolean"
    assert fields["HasOptedOutOfEmail"]["defaultValue"] is False
    assert fields["HasOptedOutOfEmail"]["label"] == "Email Opt Out"
    account = fields["AccountId"]
    assert (account["type"], account["referenceTo"], account["relationshipName"]) == (
        "reference",
        ["Account"],
        "Account",
    )
    assert fields["Birthdate"]["type"] == "date"
    assert fields["SystemModstamp"]["type"] == "datetime"
    assert not fields["SystemModstamp"]["updateable"]
    assert fields["MailingAddress"]["type"] == "address"
    assert fields["MailingStreet"]["compoundFieldName"] == "MailingAddress"
    assert fields["Description"]["type"] == "textarea" and not fields["Description"]["filterable"]
    assert fields["Phone"]["type"] == "phone"
    salutations = [p["value"] for p in fields["Salutation"]["picklistValues"]]
    assert "Mr." in salutations and "Dr." in salutations


def test_lead_status_picklist() -> None:
    fields = fields_of(OrgStore("standard").describe("Lead"))
    status = fields["Status"]
    assert status["type"] == "picklist"
    assert [p["value"] for p in status["picklistValues"]] == [
        "Open - Not Contacted",
        "Working - Contacted",
        "Closed - Converted",
        "Closed - Not Converted",
    ]
    defaults = [p["value"] for p in status["picklistValues"] if p["defaultValue"]]
    assert defaults == ["Open - Not Contacted"]
    assert set(status["picklistValues"][0]) == {
        "value",
        "label",
        "active",
        "defaultValue",
        "validFor",
    }
    assert fields["Company"]["nillable"] is False
    assert not fields["IsConverted"]["updateable"]
    assert fields["ConvertedContactId"]["relationshipName"] == "ConvertedContact"
    assert fields["Website"]["type"] == "url"
    assert fields["NumberOfEmployees"]["type"] == "int"


def test_child_relationships() -> None:
    account = OrgStore("standard").describe("Account")
    children = {(c["childSObject"], c["field"]): c for c in account["childRelationships"]}
    assert children[("Contact", "AccountId")]["relationshipName"] == "Contacts"
    campaign = OrgStore("standard").describe("Campaign")
    members = [c for c in campaign["childRelationships"] if c["childSObject"] == "CampaignMember"]
    assert members[0]["relationshipName"] == "CampaignMembers" and members[0]["cascadeDelete"]


def test_describe_global() -> None:
    described = OrgStore("npsp").describe_global()
    assert described["encoding"] == "UTF-8" and described["maxBatchSize"] == 200
    names = [o["name"] for o in described["sobjects"]]
    assert names == [
        "Contact",
        "Lead",
        "Account",
        "Campaign",
        "CampaignMember",
        "CampaignMemberStatus",
        "RecordType",
        "Task",
        "ContentVersion",
        "ContentDocument",
        "ContentDocumentLink",
        "npe5__Affiliation__c",
    ]
    affiliation = described["sobjects"][-1]
    assert affiliation["custom"] is True and affiliation["keyPrefix"].startswith("a0")
    assert "npe5__Affiliation__c" not in [
        o["name"] for o in OrgStore("standard").describe_global()["sobjects"]
    ]


def test_describe_of_unknown_object() -> None:
    with pytest.raises(SalesforceError) as caught:
        OrgStore("standard").describe("Opportunity")
    assert (caught.value.status, caught.value.error_code) == (404, "NOT_FOUND")


def test_npsp_and_state_country_fields() -> None:
    contact = fields_of(OrgStore("npsp,state_country").describe("Contact"))
    preferred = contact["npe01__Preferred_Email__c"]
    assert [p["value"] for p in preferred["picklistValues"]] == ["Personal", "Work", "Alternate"]
    assert preferred["custom"] is True
    assert contact["npsp__Primary_Affiliation__c"]["referenceTo"] == ["Account"]
    for name in ("MailingStateCode", "MailingCountryCode", "OtherStateCode", "OtherCountryCode"):
        assert contact[name]["type"] == "picklist"
    states = [p["value"] for p in contact["MailingStateCode"]["picklistValues"]]
    assert {"CA", "NY", "ON", "QC", "NSW", "VIC"} <= set(states)
    affiliation = fields_of(OrgStore("npsp").describe("npe5__Affiliation__c"))
    assert affiliation["npe5__Organization__c"]["referenceTo"] == ["Account"]
    assert [p["value"] for p in affiliation["npe5__Status__c"]["picklistValues"]] == [
        "Current",
        "Former",
    ]


def test_lookups_ignore_case() -> None:
    schema = build_schema("standard")
    contact = schema.sobject("CONTACT")
    assert contact is not None and contact.name == "Contact"
    assert contact.field("hasoptedoutofemail").name == "HasOptedOutOfEmail"
    assert contact.relationship("account").name == "AccountId"
    assert schema.by_prefix("00Q").name == "Lead"
