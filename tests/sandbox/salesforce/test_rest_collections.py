"""sObject Collections: create, update, delete, upsert, retrieve; allOrNone, limits, duplicates."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from sandbox.salesforce.org import SalesforceSandbox
from sandbox.salesforce.store import ChangeRecord
from tests.sandbox.salesforce.conftest import API, MISSING_CONTACT_ID, REAL_STORE

ROLLED_BACK = {
    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "message": "Record rolled back because not all records were valid and the request was using "
    "AllOrNone header",
    "fields": [],
}


def contact(**values: Any) -> dict[str, Any]:
    return {"attributes": {"type": "Contact"}, **values}


def post(session: requests.Session, records: list[Any], all_or_none: bool = False, **h: str) -> Any:
    return session.post(
        f"{API}/composite/sobjects",
        json={"allOrNone": all_or_none, "records": records},
        headers=h,
    )


@pytest.fixture
def changes(sf_sandbox: SalesforceSandbox) -> list[list[ChangeRecord]]:
    batches: list[list[ChangeRecord]] = []
    sf_sandbox.store.subscribe(lambda batch: batches.append(list(batch)))
    return batches


def test_create_results_in_request_order(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox, changes: list[list[ChangeRecord]]
) -> None:
    records = [contact(LastName=f"N{i}", Email=f"n{i}@example.org") for i in range(5)]
    resp = post(sf_api, records, **{"Sforce-Call-Options": "client=ctct-sync"})
    assert resp.status_code == 200
    results = resp.json()
    assert [set(r) for r in results] == [{"id", "success", "errors"}] * 5
    assert all(r["success"] and r["errors"] == [] for r in results)
    names = [sf_sandbox.store.get("Contact", r["id"], ["LastName"])["LastName"] for r in results]
    assert names == [f"N{i}" for i in range(5)]
    # One request is one transaction, tagged with the caller's client token.
    flat = [c for batch in changes for c in batch]
    assert len({c.transaction_key for c in flat}) == 1
    assert {c.origin for c in flat} == {"com/salesforce/api/rest/66.0;client=ctct-sync"}


def test_partial_success_without_all_or_none(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    resp = post(
        sf_api, [contact(LastName="Ok"), contact(FirstName="NoLast"), contact(LastName="Ok2")]
    )
    assert resp.status_code == 200
    ok, bad, ok2 = resp.json()
    assert ok["success"] and ok2["success"]
    assert bad["success"] is False and "id" not in bad
    (error,) = bad["errors"]
    assert set(error) == {"statusCode", "message", "fields"}
    assert error["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert sf_sandbox.store.count("Contact") == 2


def test_all_or_none_rolls_everything_back(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox, changes: list[list[ChangeRecord]]
) -> None:
    resp = post(
        sf_api, [contact(LastName="A"), contact(FirstName="NoLast"), contact(LastName="C")], True
    )
    assert resp.status_code == 200
    first, bad, third = resp.json()
    assert first == {"success": False, "errors": [ROLLED_BACK]}
    assert third == {"success": False, "errors": [ROLLED_BACK]}
    assert bad["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert sf_sandbox.store.count("Contact") == 0
    assert [c for batch in changes for c in batch] == []


def test_more_than_200_records_is_refused(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    resp = post(sf_api, [contact(LastName=f"N{i}") for i in range(201)])
    assert resp.status_code == 400
    assert resp.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    assert sf_sandbox.store.count("Contact") == 0
    assert post(sf_api, [contact(LastName=f"N{i}") for i in range(200)]).status_code == 200


def test_record_without_a_type(sf_api: requests.Session) -> None:
    (result,) = post(sf_api, [{"LastName": "Typeless"}]).json()
    assert result["success"] is False
    assert result["errors"][0]["statusCode"] == "INVALID_TYPE"


def test_mixed_types_in_one_create(sf_api: requests.Session, sf_sandbox: SalesforceSandbox) -> None:
    records = [
        {"attributes": {"type": "Account"}, "Name": "Acme"},
        contact(LastName="Ng"),
        {"attributes": {"type": "Lead"}, "LastName": "Lee", "Company": "Co"},
    ]
    results = post(sf_api, records).json()
    assert [r["id"][:3] for r in results] == ["001", "003", "00Q"]


def test_update_and_per_record_failures(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    one = sf_sandbox.store.create("Contact", {"LastName": "One"})
    two = sf_sandbox.store.create("Contact", {"LastName": "Two"})
    missing = MISSING_CONTACT_ID
    resp = sf_api.patch(
        f"{API}/composite/sobjects",
        json={
            "allOrNone": False,
            "records": [
                contact(id=one, HasOptedOutOfEmail=True),
                contact(id=missing, LastName="X"),
                contact(id=two, LastName="Deux"),
            ],
        },
    )
    assert resp.status_code == 200
    r1, r2, r3 = resp.json()
    assert r1 == {"id": one, "success": True, "errors": []}
    assert r2["id"] == missing and r2["success"] is False
    assert r3 == {"id": two, "success": True, "errors": []}
    assert sf_sandbox.store.get("Contact", two, ["LastName"]) == {"LastName": "Deux"}
    assert (
        sf_sandbox.store.get("Contact", one, ["HasOptedOutOfEmail"])["HasOptedOutOfEmail"] is True
    )


def test_update_all_or_none_keeps_ids_in_rolled_back_results(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    one = sf_sandbox.store.create("Contact", {"LastName": "One"})
    resp = sf_api.patch(
        f"{API}/composite/sobjects",
        json={
            "allOrNone": True,
            "records": [contact(id=one, LastName="Changed"), contact(id=MISSING_CONTACT_ID)],
        },
    )
    first, _ = resp.json()
    assert first == {"id": one, "success": False, "errors": [ROLLED_BACK]}
    assert sf_sandbox.store.get("Contact", one, ["LastName"]) == {"LastName": "One"}


def test_delete_by_ids(sf_api: requests.Session, sf_sandbox: SalesforceSandbox) -> None:
    one = sf_sandbox.store.create("Contact", {"LastName": "One"})
    lead = sf_sandbox.store.create("Lead", {"LastName": "L", "Company": "Co"})
    resp = sf_api.delete(
        f"{API}/composite/sobjects", params={"ids": f"{one},{lead},{MISSING_CONTACT_ID}"}
    )
    assert resp.status_code == 200
    r1, r2, r3 = resp.json()
    assert r1 == {"id": one, "success": True, "errors": []}
    assert r2 == {"id": lead, "success": True, "errors": []}
    assert r3["success"] is False
    assert sf_sandbox.store.count("Contact") == 0 and sf_sandbox.store.count("Lead") == 0


def test_delete_all_or_none(sf_api: requests.Session, sf_sandbox: SalesforceSandbox) -> None:
    one = sf_sandbox.store.create("Contact", {"LastName": "One"})
    resp = sf_api.delete(
        f"{API}/composite/sobjects",
        params={"ids": f"{one},{MISSING_CONTACT_ID}", "allOrNone": "true"},
    )
    assert resp.json()[0] == {"id": one, "success": False, "errors": [ROLLED_BACK]}
    assert sf_sandbox.store.count("Contact") == 1


def test_delete_needs_ids_and_at_most_200(sf_api: requests.Session) -> None:
    assert sf_api.delete(f"{API}/composite/sobjects").status_code == 400
    ids = ",".join(f"003SB{i:013d}" for i in range(201))
    resp = sf_api.delete(f"{API}/composite/sobjects", params={"ids": ids})
    assert resp.status_code == 400
    assert resp.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_upsert_by_external_id(sf_api: requests.Session, sf_sandbox: SalesforceSandbox) -> None:
    existing = sf_sandbox.store.create("Contact", {"LastName": "Old", "Email": "old@example.org"})
    resp = sf_api.patch(
        f"{API}/composite/sobjects/Contact/Email",
        json={
            "allOrNone": False,
            "records": [
                contact(Email="old@example.org", LastName="Renamed"),
                contact(Email="new@example.org", LastName="New"),
                contact(LastName="No email"),
            ],
        },
    )
    assert resp.status_code == 200
    updated, created, failed = resp.json()
    assert updated == {"id": existing, "success": True, "errors": [], "created": False}
    assert created["success"] and created["created"] is True
    assert failed["success"] is False
    assert sf_sandbox.store.get("Contact", existing, ["LastName"]) == {"LastName": "Renamed"}
    assert sf_sandbox.store.get("Contact", created["id"], ["Email"]) == {"Email": "new@example.org"}


def test_upsert_on_an_unknown_field(sf_api: requests.Session) -> None:
    resp = sf_api.patch(
        f"{API}/composite/sobjects/Contact/Nope__c", json={"records": [contact(LastName="X")]}
    )
    assert resp.status_code == 404


def test_retrieve_by_ids(sf_api: requests.Session, sf_sandbox: SalesforceSandbox) -> None:
    one = sf_sandbox.store.create("Contact", {"LastName": "One", "Email": "one@example.org"})
    resp = sf_api.get(
        f"{API}/composite/sobjects/Contact",
        params={"ids": f"{one},{MISSING_CONTACT_ID}", "fields": "Id,Email"},
    )
    assert resp.status_code == 200
    found, missing = resp.json()
    assert found == {
        "attributes": {"type": "Contact", "url": f"/services/data/v66.0/sobjects/Contact/{one}"},
        "Id": one,
        "Email": "one@example.org",
    }
    assert missing is None
    by_post = sf_api.post(
        f"{API}/composite/sobjects/Contact", json={"ids": [one], "fields": ["LastName"]}
    )
    assert by_post.json()[0]["LastName"] == "One"
    assert sf_api.get(f"{API}/composite/sobjects/Contact", params={"ids": one}).status_code == 400


@pytest.mark.skipif(not REAL_STORE, reason="the duplicate rule lives in the store")
class TestDuplicates:
    @pytest.fixture
    def sf_config(self) -> dict[str, Any]:
        return {"DUPLICATE_RULE": True}

    def test_duplicates_are_reported_per_record(
        self, sf_api: requests.Session, sf_sandbox: SalesforceSandbox
    ) -> None:
        sf_sandbox.store.create("Contact", {"LastName": "Has", "Email": "taken@example.org"})
        results = post(
            sf_api,
            [
                contact(LastName="A", Email="taken@example.org"),
                contact(LastName="B", Email="fresh@example.org"),
                contact(LastName="C", Email="fresh@example.org"),  # twin within the request
            ],
        ).json()
        assert results[0]["errors"][0]["statusCode"] == "DUPLICATES_DETECTED"
        assert results[1]["success"] is True
        assert results[2]["errors"][0]["statusCode"] == "DUPLICATES_DETECTED"

    def test_allow_save_header(
        self, sf_api: requests.Session, sf_sandbox: SalesforceSandbox
    ) -> None:
        sf_sandbox.store.create("Contact", {"LastName": "Has", "Email": "taken@example.org"})
        results = post(
            sf_api,
            [contact(LastName="A", Email="taken@example.org")],
            **{"Sforce-Duplicate-Rule-Header": "allowSave=true"},
        ).json()
        assert results[0]["success"] is True


def test_collections_do_not_exist_in_old_versions(sf_api: requests.Session) -> None:
    old = API.replace("v66.0", "v41.0")
    records = {"records": [contact(LastName="Old")]}
    assert sf_api.post(f"{old}/composite/sobjects", json=records).status_code == 404
    upsert_45 = API.replace("v66.0", "v45.0") + "/composite/sobjects/Contact/Email"
    assert sf_api.patch(upsert_45, json=records).status_code == 404
    assert sf_api.post(API.replace("v66.0", "v42.0") + "/composite/sobjects", json=records).ok
