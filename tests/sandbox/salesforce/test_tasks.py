"""Task: fields Salesforce derives, polymorphic WhoId/WhatId checks, cascades, no change events,
and writes through REST, sObject Collections and Bulk API 2.0."""

from __future__ import annotations

import csv
import io
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from sandbox.salesforce.org import SalesforceSandbox
from sandbox.salesforce.store import ChangeRecord, OrgStore, SalesforceError
from tests.sandbox.salesforce.conftest import API, MISSING_CONTACT_ID

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
MISSING_LEAD_ID = "00QSB00000999992AA"


class FixedClock:
    def __init__(self) -> None:
        self.when = NOW

    def now(self) -> datetime:
        return self.when


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def store(clock: FixedClock) -> OrgStore:
    return OrgStore("standard", clock=clock)


@pytest.fixture
def people(store: OrgStore) -> dict[str, str]:
    account = store.create("Account", {"Name": "Acme"})
    return {
        "account": account,
        "contact": store.create(
            "Contact", {"LastName": "Ng", "Email": "ng@example.org", "AccountId": account}
        ),
        "lead": store.create("Lead", {"LastName": "Li", "Company": "Initech"}),
        "campaign": store.create("Campaign", {"Name": "Spring newsletter"}),
    }


def error_of(fn: Any, *args: Any, **kwargs: Any) -> SalesforceError:
    with pytest.raises(SalesforceError) as caught:
        fn(*args, **kwargs)
    return caught.value


# ----------------------------------------------------------------------------- the object


def test_describe_lists_task_with_polymorphic_references(store: OrgStore) -> None:
    entry = next(o for o in store.describe_global()["sobjects"] if o["name"] == "Task")
    assert entry["keyPrefix"] == "00T" and entry["createable"] and entry["deletable"]
    fields = {f["name"]: f for f in store.describe("Task")["fields"]}
    assert fields["WhoId"]["referenceTo"] == ["Contact", "Lead"]
    assert fields["WhoId"]["relationshipName"] == "Who"
    assert fields["WhatId"]["referenceTo"] == ["Account", "Campaign", "Opportunity"]
    assert fields["WhatId"]["relationshipName"] == "What"
    assert fields["Subject"]["type"] == "combobox" and fields["Subject"]["length"] == 255
    assert [p["value"] for p in fields["Status"]["picklistValues"]] == [
        "Not Started",
        "In Progress",
        "Completed",
        "Waiting on someone else",
        "Deferred",
    ]
    assert fields["Status"]["defaultValue"] == "Not Started"
    assert fields["Priority"]["defaultValue"] == "Normal"
    assert fields["Description"]["filterable"] is False
    assert fields["Description"]["length"] == 32000
    assert fields["IsClosed"]["createable"] is False and fields["IsClosed"]["updateable"] is False
    assert fields["TaskSubtype"]["createable"] is True
    assert fields["TaskSubtype"]["updateable"] is False
    assert {"Email", "Call", "Meeting", "Other"} <= {
        p["value"] for p in fields["Type"]["picklistValues"]
    }
    for name in ("OwnerId", "CreatedDate", "CreatedById", "LastModifiedDate", "SystemModstamp"):
        assert name in fields


def test_parents_list_their_tasks(store: OrgStore) -> None:
    for parent, field in (
        ("Contact", "WhoId"),
        ("Lead", "WhoId"),
        ("Campaign", "WhatId"),
        ("Account", "WhatId"),
    ):
        children = store.describe(parent)["childRelationships"]
        [tasks] = [c for c in children if c["childSObject"] == "Task"]
        assert (tasks["field"], tasks["relationshipName"], tasks["cascadeDelete"]) == (
            field,
            "Tasks",
            True,
        )


def test_defaults_and_derived_fields(store: OrgStore, people: dict[str, str]) -> None:
    task = store.create("Task", {"Subject": "Email: Spring", "WhoId": people["contact"]})
    row = store.get("Task", task)
    assert row is not None
    assert (row["Status"], row["Priority"]) == ("Not Started", "Normal")
    assert row["IsClosed"] is False and row["IsHighPriority"] is False
    assert row["CompletedDateTime"] is None
    assert row["AccountId"] == people["account"]  # the contact's account
    assert row["OwnerId"] == store.user_id and row["CreatedDate"].startswith("2026-11-26T12:00")


def test_closing_a_task_stamps_it_and_reopening_clears(
    store: OrgStore, people: dict[str, str], clock: FixedClock
) -> None:
    task = store.create("Task", {"Subject": "Call", "WhoId": people["lead"], "Priority": "High"})
    clock.when += timedelta(hours=1)
    store.update("Task", task, {"Status": "Completed"})
    row = store.get("Task", task, ["IsClosed", "IsHighPriority", "CompletedDateTime"])
    assert row == {
        "IsClosed": True,
        "IsHighPriority": True,
        "CompletedDateTime": "2026-11-26T13:00:00.000+0000",
    }
    store.update("Task", task, {"Status": "In Progress"})
    assert store.get("Task", task, ["IsClosed", "CompletedDateTime"]) == {
        "IsClosed": False,
        "CompletedDateTime": None,
    }


def test_account_is_the_what_when_that_is_an_account(
    store: OrgStore, people: dict[str, str]
) -> None:
    other = store.create("Account", {"Name": "Other"})
    task = store.create("Task", {"WhoId": people["contact"], "WhatId": other})
    assert store.get("Task", task, ["AccountId"]) == {"AccountId": other}


def test_picklists_and_insert_only_subtype(store: OrgStore, people: dict[str, str]) -> None:
    bad = error_of(store.create, "Task", {"Status": "Done"})
    assert bad.error_code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" and bad.fields == ["Status"]
    task = store.create("Task", {"TaskSubtype": "Email", "Type": "Email"})
    refused = error_of(store.update, "Task", task, {"TaskSubtype": "Call"})
    assert refused.error_code == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert refused.fields == ["TaskSubtype"]
    cleared = error_of(store.update, "Task", task, {"Status": None})
    assert cleared.error_code == "REQUIRED_FIELD_MISSING"
    closed = error_of(store.update, "Task", task, {"IsClosed": True})
    assert closed.error_code == "INVALID_FIELD_FOR_INSERT_UPDATE"


# ----------------------------------------------------------------------------- references


@pytest.mark.parametrize(
    ("field", "target", "code"),
    [
        ("WhoId", "campaign", "FIELD_INTEGRITY_EXCEPTION"),  # not a person
        ("WhoId", "account", "FIELD_INTEGRITY_EXCEPTION"),
        ("WhatId", "contact", "FIELD_INTEGRITY_EXCEPTION"),  # a person is a Who, not a What
        ("WhoId", "missing-contact", "INVALID_CROSS_REFERENCE_KEY"),
        ("WhoId", "missing-lead", "INVALID_CROSS_REFERENCE_KEY"),
        ("WhoId", "malformed", "MALFORMED_ID"),
    ],
)
def test_references_are_checked_like_salesforce(
    store: OrgStore, people: dict[str, str], field: str, target: str, code: str
) -> None:
    value = {
        **people,
        "missing-contact": MISSING_CONTACT_ID,
        "missing-lead": MISSING_LEAD_ID,
        "malformed": "003-not-an-id",
    }[target]
    error = error_of(store.create, "Task", {field: value})
    assert (error.error_code, error.fields) == (code, [field])
    assert store.count("Task") == 0


def test_wrong_type_message_names_the_field_label(store: OrgStore, people: dict[str, str]) -> None:
    error = error_of(store.create, "Task", {"WhoId": people["account"]})
    assert error.message == f"Name ID: id value of incorrect type: {people['account']}"


def test_a_deleted_who_is_refused(store: OrgStore, people: dict[str, str]) -> None:
    store.delete("Contact", people["contact"])
    error = error_of(store.create, "Task", {"WhoId": people["contact"]})
    assert error.error_code == "ENTITY_IS_DELETED"


def test_a_leads_task_cannot_have_a_what(store: OrgStore, people: dict[str, str]) -> None:
    error = error_of(store.create, "Task", {"WhoId": people["lead"], "WhatId": people["campaign"]})
    assert (error.error_code, error.fields) == ("FIELD_INTEGRITY_EXCEPTION", ["WhoId", "WhatId"])
    task = store.create("Task", {"WhoId": people["lead"]})
    error = error_of(store.update, "Task", task, {"WhatId": people["campaign"]})
    assert error.error_code == "FIELD_INTEGRITY_EXCEPTION"
    store.create("Task", {"WhoId": people["contact"], "WhatId": people["campaign"]})


def test_opportunity_whats_are_accepted_unchecked(store: OrgStore) -> None:
    # The sandbox holds no Opportunity records but takes their ids, as for OwnerId's users.
    store.create("Task", {"WhatId": "006SB0000000001YAA"})


# ----------------------------------------------------------------------------- SOQL


def test_soql_filters_on_who_and_what(store: OrgStore, people: dict[str, str]) -> None:
    mine = store.create("Task", {"WhoId": people["contact"], "WhatId": people["campaign"]})
    theirs = store.create("Task", {"WhoId": people["lead"], "Status": "Completed"})
    store.create("Task", {"Subject": "Nobody"})

    def ids(where: str) -> list[str]:
        rows = store.query(f"SELECT Id FROM Task WHERE {where} ORDER BY Id").rows
        return [r["Id"] for r in rows]

    assert ids(f"WhoId IN ('{people['contact']}', '{people['lead']}')") == [mine, theirs]
    assert ids(f"WhatId = '{people['campaign']}'") == [mine]
    assert ids("IsClosed = true") == [theirs]
    assert ids("WhoId IN (SELECT Id FROM Lead WHERE Company = 'Initech')") == [theirs]


def test_polymorphic_traversal_is_refused_clearly(store: OrgStore) -> None:
    error = error_of(store.query, "SELECT Who.Email FROM Task")
    assert error.error_code == "INVALID_FIELD" and "polymorphic" in error.message
    error = error_of(store.query, "SELECT Id FROM Task WHERE Description = 'x'")
    assert error.error_code == "INVALID_FIELD" and "can not be filtered" in error.message


# ----------------------------------------------------------------------------- cascades


@pytest.mark.parametrize("parent", ["contact", "lead", "campaign", "account"])
def test_tasks_go_to_the_bin_with_their_parent_and_come_back(
    store: OrgStore, people: dict[str, str], parent: str
) -> None:
    field = "WhoId" if parent in ("contact", "lead") else "WhatId"
    task = store.create("Task", {field: people[parent]})
    sobject = parent.capitalize()
    store.delete(sobject, people[parent])
    assert store.count("Task") == 0
    [row] = store.query("SELECT Id, IsDeleted FROM Task", include_deleted=True).rows
    assert row == {"Id": task, "IsDeleted": True}
    store.undelete(sobject, people[parent])
    assert store.get("Task", task, ["IsDeleted"]) == {"IsDeleted": False}


def test_an_accounts_contacts_take_their_tasks(store: OrgStore, people: dict[str, str]) -> None:
    task = store.create("Task", {"WhoId": people["contact"], "WhatId": people["campaign"]})
    store.delete("Account", people["account"])
    assert store.get("Task", task) is None
    store.hard_delete("Account", people["account"])
    assert store.get("Task", task, include_deleted=True) is None


def test_lead_conversion_moves_its_tasks_to_the_contact(
    store: OrgStore, people: dict[str, str]
) -> None:
    task = store.create("Task", {"WhoId": people["lead"], "Subject": "Call"})
    converted = store.convert_lead(people["lead"])
    assert store.get("Task", task, ["WhoId", "WhatId"]) == {
        "WhoId": converted["contactId"],
        "WhatId": converted["accountId"],
    }


# ----------------------------------------------------------------------------- events, loads


def test_tasks_make_no_change_events(store: OrgStore, people: dict[str, str]) -> None:
    seen: list[ChangeRecord] = []
    store.subscribe(seen.extend)
    task = store.create("Task", {"WhoId": people["contact"]})
    store.update("Task", task, {"Status": "Completed"})
    store.delete("Contact", people["contact"])  # takes the task along
    assert [(r.entity, r.change_type) for r in seen] == [("Contact", "DELETE")]


def test_insert_many_fills_defaults_and_completion(store: OrgStore, people: dict[str, str]) -> None:
    rows = [
        {"WhoId": people["contact"], "Subject": "Sent", "Status": "Completed"},
        {"WhoId": people["lead"], "Subject": "Open"},
    ]
    assert store.insert_many("Task", rows) == 2
    got = list(
        store.query("SELECT Subject, Status, Priority, IsClosed, CompletedDateTime FROM Task").rows
    )
    assert sorted(got, key=lambda r: r["Subject"]) == [
        {
            "Subject": "Open",
            "Status": "Not Started",
            "Priority": "Normal",
            "IsClosed": False,
            "CompletedDateTime": None,
        },
        {
            "Subject": "Sent",
            "Status": "Completed",
            "Priority": "Normal",
            "IsClosed": True,
            "CompletedDateTime": "2026-11-26T12:00:00.000+0000",
        },
    ]


def test_snapshots_keep_tasks_and_older_ones_still_load(tmp_path: Any, clock: FixedClock) -> None:
    path = str(tmp_path / "org.sqlite")
    first = OrgStore("standard", clock=clock, path=path)
    contact = first.create("Contact", {"LastName": "Ng"})
    task = first.create("Task", {"WhoId": contact, "Subject": "Kept"})
    first.save_snapshot()
    second = OrgStore("standard", clock=clock, path=path)
    assert second.get("Task", task, ["Subject", "WhoId"]) == {"Subject": "Kept", "WhoId": contact}
    assert second.create("Task", {"Subject": "After"}) > task  # the id counter carried over

    # A snapshot written before these objects existed has none of their tables.
    old = str(tmp_path / "old.sqlite")
    second.snapshot(old)
    conn = sqlite3.connect(old)
    for table in ("Task", "ContentVersion", "ContentDocument", "ContentDocumentLink"):
        conn.execute(f'DROP TABLE "{table}"')
    conn.commit()
    conn.close()
    third = OrgStore("standard", clock=clock, path=old)
    assert third.get("Contact", contact, ["LastName"]) == {"LastName": "Ng"}
    assert third.count("Task") == 0
    third.create("Task", {"WhoId": contact})


# ----------------------------------------------------------------------------- over HTTP


@pytest.fixture
def sf_config() -> dict[str, Any]:
    return {"EVENT_DELIVERY": "sync", "BULK_POLL_WAIT": 0}


@pytest.fixture
def org(sf_sandbox: SalesforceSandbox) -> dict[str, str]:
    store = sf_sandbox.store
    return {
        "contact": store.create("Contact", {"LastName": "Ng", "Email": "ng@example.org"}),
        "lead": store.create("Lead", {"LastName": "Li", "Company": "Initech"}),
        "campaign": store.create("Campaign", {"Name": "Spring newsletter"}),
    }


def test_rest_create_read_and_query(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox, org: dict[str, str]
) -> None:
    kept = len(sf_sandbox.events.replay())  # the setup records' own events
    resp = sf_api.post(
        f"{API}/sobjects/Task",
        json={
            "Subject": "Email: Spring newsletter",
            "WhoId": org["contact"],
            "WhatId": org["campaign"],
            "Status": "Completed",
            "TaskSubtype": "Email",
            "ActivityDate": "2026-11-26",
        },
    )
    assert resp.status_code == 201, resp.text
    task = resp.json()["id"]
    assert task.startswith("00T")
    got = sf_api.get(f"{API}/sobjects/Task/{task}").json()
    assert got["attributes"] == {
        "type": "Task",
        "url": f"/services/data/v66.0/sobjects/Task/{task}",
    }
    assert (got["IsClosed"], got["TaskSubtype"], got["ActivityDate"]) == (
        True,
        "Email",
        "2026-11-26",
    )
    soql = f"SELECT Id, Subject FROM Task WHERE WhatId = '{org['campaign']}'"
    body = sf_api.get(f"{API}/query", params={"q": soql}).json()
    assert [r["Id"] for r in body["records"]] == [task]
    assert len(sf_sandbox.events.replay()) == kept  # nothing announced to the webhook


def test_rest_refuses_a_wrong_type_who(sf_api: requests.Session, org: dict[str, str]) -> None:
    resp = sf_api.post(f"{API}/sobjects/Task", json={"WhoId": org["campaign"]})
    assert resp.status_code == 400
    assert resp.json() == [
        {
            "message": f"Name ID: id value of incorrect type: {org['campaign']}",
            "errorCode": "FIELD_INTEGRITY_EXCEPTION",
            "fields": ["WhoId"],
        }
    ]


def test_collections_create_and_update_tasks(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox, org: dict[str, str]
) -> None:
    def task(**values: Any) -> dict[str, Any]:
        return {"attributes": {"type": "Task"}, **values}

    resp = sf_api.post(
        f"{API}/composite/sobjects",
        json={
            "allOrNone": False,
            "records": [
                task(Subject="Opened", WhoId=org["contact"], WhatId=org["campaign"]),
                task(Subject="Bounced", WhoId=MISSING_CONTACT_ID),
                task(Subject="Lead", WhoId=org["lead"], WhatId=org["campaign"]),
            ],
        },
    )
    first, missing, lead = resp.json()
    assert first["success"] is True and first["id"].startswith("00T")
    assert missing == {
        "success": False,
        "errors": [
            {
                "statusCode": "INVALID_CROSS_REFERENCE_KEY",
                "message": "invalid cross reference id",
                "fields": ["WhoId"],
            }
        ],
    }
    assert lead["errors"][0]["statusCode"] == "FIELD_INTEGRITY_EXCEPTION"
    resp = sf_api.patch(
        f"{API}/composite/sobjects",
        json={"records": [task(id=first["id"], Status="Completed", Priority="High")]},
    )
    assert resp.json() == [{"id": first["id"], "success": True, "errors": []}]
    row = sf_sandbox.store.get("Task", first["id"], ["IsClosed", "IsHighPriority"])
    assert row == {"IsClosed": True, "IsHighPriority": True}


def test_collections_all_or_none_rolls_back_tasks(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox, org: dict[str, str]
) -> None:
    resp = sf_api.post(
        f"{API}/composite/sobjects",
        json={
            "allOrNone": True,
            "records": [
                {"attributes": {"type": "Task"}, "WhoId": org["contact"]},
                {"attributes": {"type": "Task"}, "WhoId": org["campaign"]},
            ],
        },
    )
    assert [r["success"] for r in resp.json()] == [False, False]
    assert sf_sandbox.store.count("Task") == 0


def _ingest(api: requests.Session, sandbox: SalesforceSandbox, csv_text: str) -> str:
    job = api.post(
        f"{API}/jobs/ingest", json={"object": "Task", "operation": "insert", "contentType": "CSV"}
    ).json()
    put = api.put(
        f"{API}/jobs/ingest/{job['id']}/batches",
        data=csv_text.encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert put.status_code == 201
    api.patch(f"{API}/jobs/ingest/{job['id']}", json={"state": "UploadComplete"})
    sandbox.bulk.wait(job["id"])
    return str(job["id"])


def test_bulk_ingest_inserts_tasks_and_fails_bad_references(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox, org: dict[str, str]
) -> None:
    text = (
        "Subject,WhoId,WhatId,Status,TaskSubtype,ActivityDate\n"
        f"Sent,{org['contact']},{org['campaign']},Completed,Email,2026-11-26\n"
        f"Sent,{org['campaign']},,Completed,Email,2026-11-26\n"
        f"Sent,{org['lead']},,Completed,Email,2026-11-26\n"
    )
    job = _ingest(sf_api, sf_sandbox, text)
    info = sf_api.get(f"{API}/jobs/ingest/{job}").json()
    assert (info["state"], info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (
        "JobComplete",
        3,
        1,
    )
    ok = list(
        csv.DictReader(io.StringIO(sf_api.get(f"{API}/jobs/ingest/{job}/successfulResults").text))
    )
    assert [r["WhoId"] for r in ok] == [org["contact"], org["lead"]]
    [bad] = csv.DictReader(io.StringIO(sf_api.get(f"{API}/jobs/ingest/{job}/failedResults").text))
    assert bad["sf__Error"].startswith("FIELD_INTEGRITY_EXCEPTION:Name ID: id value of incorrect")
    rows = sf_sandbox.store.query("SELECT WhoId, IsClosed, CompletedDateTime FROM Task").rows
    assert all(r["IsClosed"] and r["CompletedDateTime"] for r in rows)


def test_rest_delete_of_a_contact_bins_its_tasks(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox, org: dict[str, str]
) -> None:
    task = sf_sandbox.store.create("Task", {"WhoId": org["contact"]})
    assert sf_api.delete(f"{API}/sobjects/Contact/{org['contact']}").status_code == 204
    soql = f"SELECT Id, IsDeleted FROM Task WHERE Id = '{task}'"
    assert sf_api.get(f"{API}/query", params={"q": soql}).json()["totalSize"] == 0
    body = sf_api.get(f"{API}/queryAll", params={"q": soql}).json()
    assert body["records"][0]["IsDeleted"] is True
