"""The sandbox org's records: ids, validation, change records, transactions, bin, replication."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sandbox.salesforce import store as store_module
from sandbox.salesforce.store import ChangeRecord, OrgStore, SalesforceError, open_store

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
USER = "005SB0000000001AAA"


class FixedClock:
    def __init__(self, when: datetime = NOW) -> None:
        self.when = when

    def now(self) -> datetime:
        return self.when

    def advance(self, **delta: float) -> None:
        self.when += timedelta(**delta)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def store(clock: FixedClock) -> OrgStore:
    return OrgStore("standard", clock=clock)


@pytest.fixture
def changes(store: OrgStore) -> list[list[ChangeRecord]]:
    seen: list[list[ChangeRecord]] = []
    store.subscribe(seen.append)
    return seen


def flat(batches: list[list[ChangeRecord]]) -> list[ChangeRecord]:
    return [rec for batch in batches for rec in batch]


def error_of(fn: Any, *args: Any, **kwargs: Any) -> SalesforceError:
    with pytest.raises(SalesforceError) as caught:
        fn(*args, **kwargs)
    return caught.value


# ----------------------------------------------------------------------------- ids


def test_ids_have_key_prefixes_and_valid_checksums(store: OrgStore) -> None:
    account = store.create("Account", {"Name": "Acme"})
    contact = store.create("Contact", {"LastName": "Smith"})
    lead = store.create("Lead", {"LastName": "Jones", "Company": "Globex"})
    campaign = store.create("Campaign", {"Name": "Fall"})
    member = store.create("CampaignMember", {"CampaignId": campaign, "ContactId": contact})
    made = {"001": account, "003": contact, "00Q": lead, "701": campaign, "00v": member}
    for prefix, record_id in made.items():
        assert len(record_id) == 18
        assert record_id.startswith(prefix)
        assert store_module.normalize_id(record_id[:15]) == record_id
        assert store.sobject_for_id(record_id) is not None
    assert store.sobject_for_id(contact) == "Contact"
    assert len(set(made.values())) == 5


def test_ids_increase_and_survive_many_records(store: OrgStore) -> None:
    first = store.create("Contact", {"LastName": "A"})
    store.insert_many("Contact", ({"LastName": f"N{i}"} for i in range(5000)))
    last = store.create("Contact", {"LastName": "Z"})
    ids = [r["Id"] for r in store.query("SELECT Id FROM Contact ORDER BY Id").rows]
    assert ids[0] == first and ids[-1] == last
    assert len(set(ids)) == 5002
    assert all(store_module.normalize_id(i) == i for i in ids)


def test_fifteen_character_ids_are_accepted_as_input(store: OrgStore) -> None:
    contact = store.create("Contact", {"LastName": "Smith"})
    store.update("Contact", contact[:15], {"Title": "CEO"})
    assert store.get("Contact", contact[:15], ["Title"]) == {"Title": "CEO"}


@pytest.mark.parametrize("bad", ["003", "003SB000000000!AAA", "003SB0000000001ZZZ", "x" * 18])
def test_malformed_ids(store: OrgStore, bad: str) -> None:
    for call in (
        lambda: store.update("Contact", bad, {"Title": "x"}),
        lambda: store.delete("Contact", bad),
        lambda: store.get("Contact", bad),
    ):
        err = error_of(call)
        assert err.error_code == "MALFORMED_ID"
        assert bad in err.message


def test_id_of_another_object_is_not_found(store: OrgStore) -> None:
    account = store.create("Account", {"Name": "Acme"})
    assert error_of(store.update, "Contact", account, {"Title": "x"}).error_code == "NOT_FOUND"
    assert store.get("Contact", account) is None


def test_unknown_sobject_is_not_found(store: OrgStore) -> None:
    err = error_of(store.create, "Opportunity", {"Name": "x"})
    assert (err.status, err.error_code) == (404, "NOT_FOUND")


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("sobject", "values", "code", "message", "fields"),
    [
        (
            "Contact",
            {"FirstName": "Ann"},
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [LastName]",
            ["LastName"],
        ),
        (
            "Lead",
            {"FirstName": "Ann"},
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [LastName, Company]",
            ["LastName", "Company"],
        ),
        (
            "Lead",
            {"LastName": "Lee", "Company": ""},
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [Company]",
            ["Company"],
        ),
        (
            "Account",
            {"Phone": "1"},
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [Name]",
            ["Name"],
        ),
        (
            "Contact",
            {"LastName": "A", "Foo__c": "x"},
            "INVALID_FIELD",
            "No such column 'Foo__c' on sobject of type Contact",
            ["Foo__c"],
        ),
        (
            "Contact",
            {"LastName": "A", "Name": "A B", "IsDeleted": True},
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            "Unable to create/update fields: Name, IsDeleted. Please check the security settings"
            " of this field and verify that it is read/write for your profile or permission set.",
            ["Name", "IsDeleted"],
        ),
        (
            "Contact",
            {"LastName": "A", "CreatedDate": "2020-01-01T00:00:00Z"},
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            "Unable to create/update fields: CreatedDate",
            ["CreatedDate"],
        ),
        (
            "Lead",
            {"LastName": "L", "Company": "C", "IsConverted": True},
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            "Unable to create/update fields: IsConverted",
            ["IsConverted"],
        ),
        (
            "Contact",
            {"LastName": "x" * 81},
            "STRING_TOO_LONG",
            "Last Name: data value too large: " + "x" * 81 + " (max length=80)",
            ["LastName"],
        ),
        (
            "Contact",
            {"LastName": "A", "Email": "not-an-email"},
            "INVALID_EMAIL_ADDRESS",
            "Email: invalid email address: not-an-email",
            ["Email"],
        ),
        (
            "Contact",
            {"LastName": "A", "Email": "a@b"},
            "INVALID_EMAIL_ADDRESS",
            "Email: invalid email address: a@b",
            ["Email"],
        ),
        (
            "Lead",
            {"LastName": "L", "Company": "C", "Status": "Hot Prospect"},
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            "Status: bad value for restricted picklist field: Hot Prospect",
            ["Status"],
        ),
        (
            "Contact",
            {"LastName": "A", "HasOptedOutOfEmail": "maybe"},
            "JSON_PARSER_ERROR",
            "Cannot deserialize instance of boolean",
            [],
        ),
        (
            "Contact",
            {"LastName": "A", "Birthdate": "2020-13-01"},
            "JSON_PARSER_ERROR",
            "Cannot deserialize instance of date",
            [],
        ),
        (
            "Account",
            {"Name": "A", "NumberOfEmployees": "many"},
            "JSON_PARSER_ERROR",
            "Cannot deserialize instance of int",
            [],
        ),
        (
            "Contact",
            {"LastName": "A", "AccountId": "001nope"},
            "MALFORMED_ID",
            "Account ID: id value of incorrect type: 001nope",
            ["AccountId"],
        ),
        (
            "Contact",
            {"LastName": "A", "AccountId": "003SB0000000001YAA"},
            "FIELD_INTEGRITY_EXCEPTION",
            "Account ID: id value of incorrect type: 003SB0000000001YAA",
            ["AccountId"],
        ),
        (
            "Contact",
            {"LastName": "A", "AccountId": "001SB00000000ZZ"},
            "INVALID_CROSS_REFERENCE_KEY",
            "invalid cross reference id",
            ["AccountId"],
        ),
        (
            "CampaignMember",
            {"CampaignId": "701SB00000000ZZ"},
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [ContactId/LeadId]",
            ["ContactId/LeadId"],
        ),
    ],
)
def test_create_validation(
    store: OrgStore,
    changes: list[Any],
    sobject: str,
    values: dict[str, Any],
    code: str,
    message: str,
    fields: list[str],
) -> None:
    err = error_of(store.create, sobject, values)
    assert (err.status, err.error_code) == (400, code)
    assert err.message.startswith(message)
    assert err.fields == fields
    assert store.count(sobject) == 0
    assert changes == []


def test_validation_error_bodies(store: OrgStore) -> None:
    err = error_of(store.create, "Contact", {})
    assert err.rest_body() == [
        {
            "message": "Required fields are missing: [LastName]",
            "errorCode": "REQUIRED_FIELD_MISSING",
            "fields": ["LastName"],
        }
    ]
    assert err.collection_error()["statusCode"] == "REQUIRED_FIELD_MISSING"


def test_update_validation(store: OrgStore) -> None:
    contact = store.create("Contact", {"LastName": "Smith"})
    cases = [
        ({"LastName": None}, "REQUIRED_FIELD_MISSING"),
        ({"LastName": ""}, "REQUIRED_FIELD_MISSING"),
        ({"Name": "x"}, "INVALID_FIELD_FOR_INSERT_UPDATE"),
        ({"Id": "003SB00000000ZZ"}, "INVALID_FIELD_FOR_INSERT_UPDATE"),
        ({"Nope": 1}, "INVALID_FIELD"),
        ({"Email": "bad@"}, "INVALID_EMAIL_ADDRESS"),
        ({"Title": "t" * 129}, "STRING_TOO_LONG"),
    ]
    for values, code in cases:
        assert error_of(store.update, "Contact", contact, values).error_code == code
    assert store.get("Contact", contact, ["LastName", "Title"]) == {
        "LastName": "Smith",
        "Title": None,
    }
    store.update(
        "Contact", contact, {"Id": contact, "attributes": {"type": "Contact"}, "Title": "A"}
    )
    assert store.get("Contact", contact, ["Title"]) == {"Title": "A"}


def test_missing_and_deleted_records(store: OrgStore) -> None:
    contact = store.create("Contact", {"LastName": "Smith"})
    missing = contact[:-6] + "ZZZ" + contact[-3:]
    missing = store_module.normalize_id(missing[:15]) or ""
    err = error_of(store.update, "Contact", missing, {"Title": "x"})
    assert (err.status, err.error_code) == (404, "NOT_FOUND")
    store.delete("Contact", contact)
    for call in (
        lambda: store.update("Contact", contact, {"Title": "x"}),
        lambda: store.delete("Contact", contact),
    ):
        assert error_of(call).error_code == "ENTITY_IS_DELETED"
    assert error_of(
        store.create, "Contact", {"LastName": "B", "ReportsToId": contact}
    ).error_code == ("ENTITY_IS_DELETED")


def test_values_are_typed_and_normalised(store: OrgStore) -> None:
    contact = store.create(
        "Contact",
        {
            "LastName": "Smith",
            "FirstName": "Ann",
            "HasOptedOutOfEmail": "true",
            "Birthdate": "1990-05-01",
            "EmailBouncedDate": "2026-11-20T10:00:00+02:00",
            "MailingLatitude": "42.5",
            "Email": "",
        },
    )
    got = store.get(
        "Contact",
        contact,
        [
            "Name",
            "HasOptedOutOfEmail",
            "DoNotCall",
            "Birthdate",
            "EmailBouncedDate",
            "MailingLatitude",
            "Email",
            "IsEmailBounced",
        ],
    )
    assert got == {
        "Name": "Ann Smith",
        "HasOptedOutOfEmail": True,
        "DoNotCall": False,
        "Birthdate": "1990-05-01",
        "EmailBouncedDate": "2026-11-20T08:00:00.000+0000",
        "MailingLatitude": 42.5,
        "Email": None,
        "IsEmailBounced": True,
    }


def test_system_fields_come_from_clock_and_user(store: OrgStore, clock: FixedClock) -> None:
    contact = store.create("Contact", {"LastName": "Smith"})
    clock.advance(minutes=5)
    store.update("Contact", contact, {"Title": "CEO"})
    got = store.get("Contact", contact)
    assert got is not None
    assert got["CreatedDate"] == "2026-11-26T12:00:00.000+0000"
    assert got["LastModifiedDate"] == got["SystemModstamp"] == "2026-11-26T12:05:00.000+0000"
    assert got["CreatedById"] == got["LastModifiedById"] == got["OwnerId"] == USER
    assert got["IsDeleted"] is False
    assert got["MailingAddress"] is None


def test_clearing_a_checkbox_unchecks_it(store: OrgStore) -> None:
    contact = store.create("Contact", {"LastName": "S", "HasOptedOutOfEmail": True})
    store.update("Contact", contact, {"HasOptedOutOfEmail": None})
    assert store.get("Contact", contact, ["HasOptedOutOfEmail"]) == {"HasOptedOutOfEmail": False}


def test_new_email_clears_the_bounce(store: OrgStore) -> None:
    contact = store.create(
        "Contact",
        {
            "LastName": "S",
            "Email": "a@x.org",
            "EmailBouncedReason": "550",
            "EmailBouncedDate": None,
        },
    )
    assert store.get("Contact", contact, ["IsEmailBounced"]) == {"IsEmailBounced": True}
    store.update("Contact", contact, {"Email": "b@x.org"})
    assert store.get("Contact", contact, ["IsEmailBounced", "EmailBouncedReason"]) == {
        "IsEmailBounced": False,
        "EmailBouncedReason": None,
    }


def test_get_fields_and_unknown_fields(store: OrgStore) -> None:
    account = store.create("Account", {"Name": "Acme"})
    contact = store.create("Contact", {"LastName": "Smith", "AccountId": account})
    assert store.get("Contact", contact, ["id", "lastname", "Account.Name"]) == {
        "Id": contact,
        "LastName": "Smith",
        "Account": {"Name": "Acme"},
    }
    assert error_of(store.get, "Contact", contact, ["Nope"]).error_code == "INVALID_FIELD"
    many = store.get_many("Contact", [contact, account, contact[:15]], ["LastName"])
    assert many == [{"LastName": "Smith"}, None, {"LastName": "Smith"}]


def test_find_ids_ignores_case_and_deleted(store: OrgStore) -> None:
    a = store.create("Contact", {"LastName": "A", "Email": "Same@X.org"})
    b = store.create("Contact", {"LastName": "B", "Email": "same@x.org"})
    c = store.create("Contact", {"LastName": "C", "Email": "same@x.ORG"})
    store.delete("Contact", c)
    assert store.find_ids("Contact", "email", "SAME@x.org") == [a, b]


# ----------------------------------------------------------------------------- change records


def test_create_record(store: OrgStore, changes: list[list[ChangeRecord]]) -> None:
    contact = store.create(
        "Contact", {"LastName": "Smith", "FirstName": "Ann", "Email": "a@x.org"}, origin="o1"
    )
    [[rec]] = changes
    assert (rec.entity, rec.record_id, rec.change_type, rec.origin) == (
        "Contact",
        contact,
        "CREATE",
        "o1",
    )
    assert rec.values["LastName"] == "Smith"
    assert rec.values["Name"] == "Ann Smith"
    assert rec.values["HasOptedOutOfEmail"] is False
    assert rec.values["CreatedDate"] == "2026-11-26T12:00:00.000+0000"
    assert "Title" not in rec.values  # null fields are left out
    assert not {"Id", "IsDeleted", "SystemModstamp"} & rec.values.keys()
    assert rec.changed_fields == [] and rec.nulled_fields == []
    assert (rec.sequence_number, rec.commit_user) == (1, USER)
    assert rec.commit_timestamp == int(NOW.timestamp() * 1000)


def test_update_record_carries_only_changes(
    store: OrgStore, changes: list[list[ChangeRecord]], clock: FixedClock
) -> None:
    contact = store.create("Contact", {"LastName": "Smith", "Title": "CEO", "Phone": "1"})
    clock.advance(seconds=30)
    store.update("Contact", contact, {"Title": None, "Phone": "1", "FirstName": "Ann"})
    rec = changes[-1][0]
    assert rec.change_type == "UPDATE"
    assert rec.changed_fields == ["FirstName", "Name", "Title", "LastModifiedDate"]
    assert rec.nulled_fields == ["Title"]
    assert rec.values == {
        "FirstName": "Ann",
        "Name": "Ann Smith",
        "Title": None,
        "LastModifiedDate": "2026-11-26T12:00:30.000+0000",
    }


def test_no_change_means_no_event_and_no_modstamp(
    store: OrgStore, changes: list[list[ChangeRecord]], clock: FixedClock
) -> None:
    contact = store.create("Contact", {"LastName": "Smith", "Email": "a@x.org"})
    before = store.get("Contact", contact, ["SystemModstamp"])
    clock.advance(minutes=1)
    store.update("Contact", contact, {"LastName": "Smith", "Email": "a@x.org", "Title": None})
    assert len(changes) == 1
    assert store.get("Contact", contact, ["SystemModstamp"]) == before


def test_delete_and_undelete_records(store: OrgStore, changes: list[list[ChangeRecord]]) -> None:
    contact = store.create("Contact", {"LastName": "Smith", "Title": "CEO"})
    store.delete("Contact", contact, origin="del")
    store.undelete("Contact", contact, origin="undel")
    deleted, undeleted = changes[1][0], changes[2][0]
    assert (deleted.change_type, deleted.values, deleted.origin) == ("DELETE", {}, "del")
    assert undeleted.change_type == "UNDELETE"
    assert undeleted.values["Title"] == "CEO" and undeleted.values["LastName"] == "Smith"
    assert store.get("Contact", contact, ["Id"]) == {"Id": contact}


def test_listener_errors_do_not_undo_writes(store: OrgStore) -> None:
    def broken(batch: list[ChangeRecord]) -> None:
        raise RuntimeError("listener down")

    seen: list[Any] = []
    store.subscribe(broken)
    store.subscribe(seen.append)
    contact = store.create("Contact", {"LastName": "Smith"})
    assert store.get("Contact", contact, ["Id"]) is not None
    assert len(seen) == 1


# ----------------------------------------------------------------------------- transactions


def test_transaction_groups_writes(store: OrgStore, changes: list[list[ChangeRecord]]) -> None:
    with store.transaction(origin="batch"):
        a = store.create("Contact", {"LastName": "A"})
        b = store.create("Contact", {"LastName": "B"})
        store.update("Contact", a, {"Title": "x"})
        assert changes == []  # nothing is announced before commit
    [batch] = changes
    assert [(r.record_id, r.change_type) for r in batch] == [
        (a, "CREATE"),
        (b, "CREATE"),
        (a, "UPDATE"),
    ]
    assert [r.sequence_number for r in batch] == [1, 2, 3]
    assert len({r.transaction_key for r in batch}) == 1
    assert {r.origin for r in batch} == {"batch"}
    store.create("Contact", {"LastName": "C"})
    assert changes[1][0].transaction_key != batch[0].transaction_key


def test_failed_write_inside_transaction_keeps_the_others(
    store: OrgStore, changes: list[list[ChangeRecord]]
) -> None:
    with store.transaction():
        store.create("Contact", {"LastName": "A"})
        with pytest.raises(SalesforceError):
            store.create("Contact", {"FirstName": "no last name"})
        store.create("Contact", {"LastName": "B"})
    assert store.count("Contact") == 2
    assert [r.sequence_number for r in changes[0]] == [1, 2]


def test_exception_rolls_back_everything(
    store: OrgStore, changes: list[list[ChangeRecord]]
) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.create("Contact", {"LastName": "A"})
        raise RuntimeError("abort")
    assert store.count("Contact") == 0
    assert changes == []
    store.create("Contact", {"LastName": "B"})
    assert store.count("Contact") == 1


# ----------------------------------------------------------------------------- lead conversion


def test_convert_lead(
    store: OrgStore, changes: list[list[ChangeRecord]], clock: FixedClock
) -> None:
    lead = store.create(
        "Lead",
        {
            "LastName": "Lee",
            "FirstName": "Cat",
            "Company": "Initech",
            "Email": "cat@initech.com",
            "Phone": "555",
            "Title": "CTO",
            "City": "Austin",
            "HasOptedOutOfEmail": True,
        },
    )
    campaign = store.create("Campaign", {"Name": "Webinar"})
    member = store.create("CampaignMember", {"CampaignId": campaign, "LeadId": lead})
    clock.advance(hours=1)
    changes.clear()
    result = store.convert_lead(lead, origin="convert")
    assert set(result) == {"accountId", "contactId", "leadId"}
    [batch] = changes
    assert [(r.entity, r.change_type) for r in batch] == [
        ("Account", "CREATE"),
        ("Contact", "CREATE"),
        ("Lead", "UPDATE"),
        ("CampaignMember", "UPDATE"),
    ]
    assert [r.sequence_number for r in batch] == [1, 2, 3, 4]
    assert len({r.transaction_key for r in batch}) == 1
    assert batch[0].values["Name"] == "Initech"
    contact = store.get("Contact", result["contactId"])
    assert contact is not None
    assert (contact["Email"], contact["Title"], contact["MailingCity"]) == (
        "cat@initech.com",
        "CTO",
        "Austin",
    )
    assert contact["HasOptedOutOfEmail"] is True
    assert contact["AccountId"] == result["accountId"]
    lead_update = batch[2]
    assert lead_update.values == {
        "Status": "Closed - Converted",
        "IsConverted": True,
        "ConvertedDate": "2026-11-26",
        "ConvertedAccountId": result["accountId"],
        "ConvertedContactId": result["contactId"],
    }
    assert "LastModifiedDate" not in lead_update.changed_fields
    assert store.get("CampaignMember", member, ["ContactId", "LeadId"]) == {
        "ContactId": result["contactId"],
        "LeadId": lead,
    }
    err = error_of(store.update, "Lead", lead, {"Title": "x"})
    assert (err.error_code, err.message) == (
        "CANNOT_UPDATE_CONVERTED_LEAD",
        "cannot reference converted lead",
    )
    assert error_of(store.convert_lead, lead).error_code == "CANNOT_UPDATE_CONVERTED_LEAD"
    polled = store.query(
        "SELECT Id FROM Lead WHERE SystemModstamp > 2026-11-26T12:30:00Z AND IsConverted = true"
    )
    assert polled.total_size == 1


def test_convert_lead_into_existing_account(
    store: OrgStore, changes: list[list[ChangeRecord]]
) -> None:
    account = store.create("Account", {"Name": "Existing"})
    lead = store.create("Lead", {"LastName": "Lee", "Company": "Whatever"})
    changes.clear()
    result = store.convert_lead(lead, account_id=account)
    assert result["accountId"] == account
    assert [(r.entity, r.change_type) for r in changes[0]] == [
        ("Contact", "CREATE"),
        ("Lead", "UPDATE"),
    ]
    assert store.count("Account") == 1
    missing = store_module.normalize_id("001SB00000000ZZ")
    assert (
        error_of(
            store.convert_lead,
            store.create("Lead", {"LastName": "X", "Company": "Y"}),
            account_id=missing,
        ).error_code
        == "NOT_FOUND"
    )


# ----------------------------------------------------------------------------- recycle bin


def test_recycle_bin_and_purge(store: OrgStore, clock: FixedClock, changes: list[Any]) -> None:
    contact = store.create("Contact", {"LastName": "Smith"})
    store.delete("Contact", contact)
    assert store.get("Contact", contact) is None
    assert store.get("Contact", contact, ["IsDeleted"], include_deleted=True) == {"IsDeleted": True}
    assert store.count("Contact") == 0 and store.count("Contact", include_deleted=True) == 1
    clock.advance(days=14)
    assert store.query("SELECT Id FROM Contact", include_deleted=True).total_size == 1
    clock.advance(days=2)
    assert store.query("SELECT Id FROM Contact", include_deleted=True).total_size == 0
    assert error_of(store.undelete, "Contact", contact).error_code == "NOT_FOUND"


def test_undelete_needs_the_recycle_bin(store: OrgStore) -> None:
    contact = store.create("Contact", {"LastName": "Smith"})
    assert error_of(store.undelete, "Contact", contact).error_code == "UNDELETE_FAILED"


def test_account_delete_takes_its_contacts_and_undelete_brings_them_back(
    store: OrgStore, changes: list[list[ChangeRecord]]
) -> None:
    account = store.create("Account", {"Name": "Acme"})
    c1 = store.create("Contact", {"LastName": "A", "AccountId": account})
    c2 = store.create("Contact", {"LastName": "B", "AccountId": account})
    other = store.create("Contact", {"LastName": "C"})
    campaign = store.create("Campaign", {"Name": "Fall"})
    store.create("CampaignMember", {"CampaignId": campaign, "ContactId": c1})
    changes.clear()
    store.delete("Account", account)
    assert [(r.entity, r.change_type) for r in changes[0]] == [
        ("Account", "DELETE"),
        ("Contact", "DELETE"),
        ("CampaignMember", "DELETE"),
        ("Contact", "DELETE"),
    ]
    assert [r["Id"] for r in store.query("SELECT Id FROM Contact").rows] == [other]
    store.undelete("Account", account)
    assert store.count("Contact") == 3 and store.count("CampaignMember") == 1
    assert {r.record_id for r in changes[1]} >= {account, c1, c2}


def test_hard_delete_sends_no_event(store: OrgStore, changes: list[list[ChangeRecord]]) -> None:
    contact = store.create("Contact", {"LastName": "Smith"})
    store.delete("Contact", contact)
    store.hard_delete("Contact", contact)
    assert [r.change_type for r in flat(changes)] == ["CREATE", "DELETE"]
    assert store.count("Contact", include_deleted=True) == 0
    live = store.create("Contact", {"LastName": "Live"})
    store.hard_delete("Contact", live)
    assert store.get("Contact", live, include_deleted=True) is None
    assert len(flat(changes)) == 3


# ----------------------------------------------------------------------------- replication


def test_get_updated(store: OrgStore, clock: FixedClock) -> None:
    old = store.create("Contact", {"LastName": "Old"})
    clock.advance(hours=1)
    new = store.create("Contact", {"LastName": "New"})
    clock.advance(hours=1)
    store.update("Contact", old, {"Title": "touched"})
    gone = store.create("Contact", {"LastName": "Gone"})
    store.delete("Contact", gone)
    clock.advance(minutes=1, seconds=30)
    window = store.updated_ids("Contact", "2026-11-26T12:30:00Z", "2026-11-26T13:30:00Z")
    assert window == {"ids": [new], "latestDateCovered": "2026-11-26T13:30:00.000+0000"}
    later = store.updated_ids("Contact", "2026-11-26T12:30:00Z", "2026-12-31T00:00:00Z")
    assert later["ids"] == sorted([old, new])
    # the end is capped at now and rounded down to the minute
    assert later["latestDateCovered"] == "2026-11-26T14:01:00.000+0000"


def test_get_deleted(store: OrgStore, clock: FixedClock) -> None:
    contact = store.create("Contact", {"LastName": "Gone"})
    clock.advance(minutes=10)
    store.delete("Contact", contact)
    clock.advance(minutes=10)
    result = store.deleted_records("Contact", "2026-11-26T12:00:00Z", "2026-11-26T12:20:00Z")
    assert result == {
        "deletedRecords": [{"id": contact, "deletedDate": "2026-11-26T12:10:00.000+0000"}],
        "earliestDateAvailable": "2026-11-11T12:20:00.000+0000",
        "latestDateCovered": "2026-11-26T12:20:00.000+0000",
    }
    store.undelete("Contact", contact)
    assert (
        store.deleted_records("Contact", "2026-11-26T12:00:00Z", "2026-11-26T12:20:00Z")[
            "deletedRecords"
        ]
        == []
    )


@pytest.mark.parametrize(
    ("call", "start", "end"),
    [
        ("updated_ids", "2026-10-26T11:00:00Z", "2026-11-26T11:00:00Z"),  # > 30 days back
        ("deleted_records", "2026-11-10T00:00:00Z", "2026-11-26T11:00:00Z"),  # > 15 days back
        ("updated_ids", "2026-11-26T11:00:00Z", "2026-11-26T10:00:00Z"),  # end before start
        ("updated_ids", "2026-11-26T11:00:10Z", "2026-11-26T11:00:50Z"),  # same minute
        ("deleted_records", "yesterday", "2026-11-26T11:00:00Z"),
    ],
)
def test_replication_windows(store: OrgStore, call: str, start: str, end: str) -> None:
    err = error_of(getattr(store, call), "Contact", start, end)
    assert (err.status, err.error_code) == (400, "INVALID_REPLICATION_DATE")


def test_get_updated_id_limit(
    store: OrgStore, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "ID_LIMIT", 3)
    store.insert_many("Contact", ({"LastName": f"N{i}"} for i in range(3)))
    clock.advance(minutes=5)
    assert (
        len(store.updated_ids("Contact", "2026-11-26T11:00:00Z", "2026-11-26T12:01:00Z")["ids"])
        == 3
    )
    store.insert_many("Contact", [{"LastName": "one too many"}])
    clock.advance(minutes=5)
    err = error_of(store.updated_ids, "Contact", "2026-11-26T11:00:00Z", "2026-11-26T12:30:00Z")
    assert err.error_code == "EXCEEDED_ID_LIMIT"


# ----------------------------------------------------------------------------- bulk load


def test_insert_many_fills_defaults_and_checks_basics(
    store: OrgStore, changes: list[list[ChangeRecord]]
) -> None:
    rows = [
        {"LastName": "A", "FirstName": "Ann", "HasOptedOutOfEmail": True, "Email": "a@x.org"},
        {"LastName": "B", "CreatedDate": "2025-01-01T00:00:00Z"},
    ]
    assert store.insert_many("Contact", rows) == 2
    assert changes == []
    got = list(
        store.query(
            "SELECT Name, HasOptedOutOfEmail, DoNotCall, CreatedDate, OwnerId, IsDeleted"
            " FROM Contact ORDER BY LastName"
        ).rows
    )
    assert got == [
        {
            "Name": "Ann A",
            "HasOptedOutOfEmail": True,
            "DoNotCall": False,
            "CreatedDate": "2026-11-26T12:00:00.000+0000",
            "OwnerId": USER,
            "IsDeleted": False,
        },
        {
            "Name": "B",
            "HasOptedOutOfEmail": False,
            "DoNotCall": False,
            "CreatedDate": "2025-01-01T00:00:00.000+0000",
            "OwnerId": USER,
            "IsDeleted": False,
        },
    ]
    assert store.insert_many("Lead", [{"LastName": "L", "Company": "C"}]) == 1
    assert store.get_many(
        "Lead", [r["Id"] for r in store.query("SELECT Id FROM Lead").rows], ["Status"]
    ) == [{"Status": "Open - Not Contacted"}]
    for bad, code in (
        ([{"LastName": "A"}, {"FirstName": "no last"}], "REQUIRED_FIELD_MISSING"),
        ([{"LastName": "A", "Nope": 1}], "INVALID_FIELD"),
        ([{"LastName": "A", "Name": "x"}], "INVALID_FIELD_FOR_INSERT_UPDATE"),
        ([{"LastName": "A", "DoNotCall": "perhaps"}], "JSON_PARSER_ERROR"),
    ):
        assert error_of(store.insert_many, "Contact", bad).error_code == code
    assert store.count("Contact") == 2  # a failed load leaves nothing behind


def test_insert_many_with_events(store: OrgStore, changes: list[list[ChangeRecord]]) -> None:
    assert (
        store.insert_many("Contact", ({"LastName": f"N{i}"} for i in range(450)), events=True)
        == 450
    )
    sizes = [len(batch) for batch in changes]
    assert sizes == [200, 200, 50]
    assert all(r.change_type == "CREATE" for r in flat(changes))
    assert [r.sequence_number for r in changes[2]] == list(range(1, 51))
    assert len({r.transaction_key for r in flat(changes)}) == 3


def test_insert_many_indexes_rebuilt_after_empty_load(store: OrgStore) -> None:
    store.insert_many(
        "Contact", ({"LastName": f"N{i}", "Email": f"p{i}@x.org"} for i in range(100))
    )
    plan = store._conn.execute(  # the query plan is the point here
        "EXPLAIN QUERY PLAN SELECT Id FROM Contact WHERE Email = 'p5@x.org' COLLATE NOCASE"
    ).fetchall()
    assert "Contact_email" in str(plan)


# ----------------------------------------------------------------------------- whole org


def test_reset_drops_records_but_keeps_profile() -> None:
    store = OrgStore("person_accounts", clock=FixedClock())
    store.create("Account", {"LastName": "Person"})
    store.reset()
    assert store.count("Account") == 0 and store.count("Contact") == 0
    assert store.describe("Account")["fields"][-1]["name"]  # still the person-account schema
    assert store.schema.person_accounts


def test_snapshot_round_trip(tmp_path: Any, clock: FixedClock) -> None:
    path = str(tmp_path / "org.sqlite")
    first = OrgStore("standard", clock=clock, path=path)
    account = first.create("Account", {"Name": "Acme"})
    contact = first.create("Contact", {"LastName": "Smith", "AccountId": account})
    first.delete("Contact", first.create("Contact", {"LastName": "Gone"}))
    first.save_snapshot()
    clock.advance(minutes=1)
    second = OrgStore("standard", clock=clock, path=path)
    assert second.get("Contact", contact, ["Account.Name"]) == {"Account": {"Name": "Acme"}}
    assert second.count("Contact", include_deleted=True) == 2
    assert second.deleted_records("Contact", "2026-11-26T11:00:00Z", "2026-11-26T13:00:00Z")[
        "deletedRecords"
    ]
    newer = second.create("Contact", {"LastName": "After"})
    assert newer not in (contact,) and newer > contact  # the id counter carried over


def test_snapshot_adds_columns_of_new_custom_fields(tmp_path: Any, clock: FixedClock) -> None:
    path = str(tmp_path / "org.sqlite")
    OrgStore("standard", clock=clock).snapshot(path)
    custom = {"Contact": [{"name": "Color__c", "type": "string", "length": 20}]}
    store = OrgStore("standard", custom, clock=clock, path=path)
    contact = store.create("Contact", {"LastName": "A", "Color__c": "red"})
    assert store.get("Contact", contact, ["Color__c"]) == {"Color__c": "red"}


def test_open_store_reads_the_sandbox_config(tmp_path: Any) -> None:
    class Sandbox:
        config = {
            "ORG_PROFILE": "person_accounts,state_country",
            "CUSTOM_FIELDS": {"Lead": [{"name": "Score__c", "type": "double"}]},
            "DUPLICATE_RULE": True,
            "SNAPSHOT": str(tmp_path / "s.sqlite"),
            "USER_ID": "005SB0000000002AAA",
        }
        clock = FixedClock()

    opened = open_store(Sandbox())
    assert opened.schema.person_accounts and opened.schema.state_country
    assert opened.schema.objects["Lead"].field("score__c") is not None
    assert opened.duplicate_rule == "alert"
    lead = opened.create("Lead", {"LastName": "L", "Company": "C", "Score__c": 4})
    assert opened.get("Lead", lead, ["OwnerId", "Score__c"]) == {
        "OwnerId": "005SB0000000002AAA",
        "Score__c": 4.0,
    }


def test_insert_many_other_objects_and_derived_fields(store: OrgStore) -> None:
    assert store.insert_many("Account", [{"Name": "Acme"}, {"Name": "Globex"}]) == 2
    store.insert_many("Campaign", [{"Name": "Fall", "IsActive": True}])
    campaign = next(store.query("SELECT Id FROM Campaign").rows)["Id"]
    store.insert_many(
        "Contact", [{"LastName": "A", "EmailBouncedReason": "550"}, {"LastName": "B"}]
    )
    a, b = (r["Id"] for r in store.query("SELECT Id FROM Contact ORDER BY LastName").rows)
    store.insert_many(
        "CampaignMember",
        [
            {"CampaignId": campaign, "ContactId": a, "Status": "Responded"},
            {"CampaignId": campaign, "ContactId": b},
        ],
    )
    assert list(
        store.query("SELECT LastName, IsEmailBounced FROM Contact ORDER BY LastName").rows
    ) == [
        {"LastName": "A", "IsEmailBounced": True},
        {"LastName": "B", "IsEmailBounced": False},
    ]
    assert next(store.query("SELECT NumberOfContacts, NumberOfResponses FROM Campaign").rows) == {
        "NumberOfContacts": 2,
        "NumberOfResponses": 1,
    }
    store.insert_many(
        "Lead",
        [{"LastName": "L", "Company": "C", "IsConverted": True, "ConvertedDate": "2026-01-02"}],
    )
    assert store.query("SELECT COUNT() FROM Lead WHERE IsConverted = true").total_size == 1


def test_listeners_run_outside_the_lock(store: OrgStore) -> None:
    # A listener that posts to a server which writes back to this org (on another thread) must
    # not deadlock, as a Flow callout into the middleware's embedded worker would.
    finished: list[str] = []

    def calls_back(batch: list[ChangeRecord]) -> None:
        if batch[0].values.get("LastName") != "First":
            return
        worker = threading.Thread(
            target=lambda: finished.append(store.create("Contact", {"LastName": "Echo"}))
        )
        worker.start()
        worker.join(timeout=10)

    store.subscribe(calls_back)
    store.create("Contact", {"LastName": "First"})
    assert len(finished) == 1
    assert store.count("Contact") == 2


def test_writes_from_a_listener_are_announced_after_the_current_transaction(
    store: OrgStore,
) -> None:
    order: list[tuple[str, str]] = []

    def first(batch: list[ChangeRecord]) -> None:
        name = batch[0].values.get("LastName", "")
        order.append(("first", name))
        if name == "A":
            store.create("Contact", {"LastName": "B"})

    store.subscribe(first)
    store.subscribe(lambda batch: order.append(("second", batch[0].values.get("LastName", ""))))
    store.create("Contact", {"LastName": "A"})
    assert order == [("first", "A"), ("second", "A"), ("first", "B"), ("second", "B")]
