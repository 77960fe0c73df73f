"""sObject rows: describe, CRUD, upsert by external ID, getUpdated/getDeleted, duplicates."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from sandbox.salesforce.org import SalesforceSandbox
from sandbox.salesforce.store import ChangeRecord
from tests.sandbox.salesforce.conftest import API, MISSING_CONTACT_ID, REAL_STORE

needs_real_store = pytest.mark.skipif(not REAL_STORE, reason="needs sandbox/salesforce/store.py")


@pytest.fixture
def changes(sf_sandbox: SalesforceSandbox) -> list[ChangeRecord]:
    seen: list[ChangeRecord] = []
    sf_sandbox.store.subscribe(seen.extend)
    return seen


def create(session: requests.Session, sobject: str, values: dict[str, Any], **headers: str) -> Any:
    return session.post(f"{API}/sobjects/{sobject}", json=values, headers=headers)


def test_global_describe_lists_objects(sf_api: requests.Session) -> None:
    body = sf_api.get(f"{API}/sobjects").json()
    names = {o["name"]: o for o in body["sobjects"]}
    assert {"Contact", "Lead", "Account"} <= set(names)
    assert names["Contact"]["keyPrefix"] == "003"
    assert body["maxBatchSize"] == 200


def test_sobject_basic_info_and_describe(sf_api: requests.Session) -> None:
    info = sf_api.get(f"{API}/sobjects/Contact").json()
    assert info["objectDescribe"]["name"] == "Contact"
    assert info["recentItems"] == []
    described = sf_api.get(f"{API}/sobjects/Contact/describe").json()
    fields = {f["name"]: f for f in described["fields"]}
    assert fields["Email"]["idLookup"] is True
    assert described["keyPrefix"] == "003"


def test_unknown_sobject_is_not_found(sf_api: requests.Session) -> None:
    for path in ("sobjects/Nope__c", "sobjects/Nope__c/describe"):
        resp = sf_api.get(f"{API}/{path}")
        assert resp.status_code == 404
        assert resp.json()[0]["errorCode"] == "NOT_FOUND"


def test_create_answers_201_with_the_documented_shape(sf_api: requests.Session) -> None:
    resp = create(sf_api, "Contact", {"LastName": "Ng", "Email": "ng@example.org"})
    assert resp.status_code == 201
    body = resp.json()
    assert body == {"id": body["id"], "success": True, "errors": []}
    assert body["id"].startswith("003") and len(body["id"]) == 18


def test_create_with_missing_required_field(sf_api: requests.Session) -> None:
    resp = create(sf_api, "Contact", {"FirstName": "No last name"})
    assert resp.status_code == 400
    error = resp.json()[0]
    assert error["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert "LastName" in error["fields"]


def test_create_refuses_an_id(sf_api: requests.Session) -> None:
    resp = create(sf_api, "Contact", {"LastName": "X", "Id": "003SB0000000000001AAA"})
    assert resp.status_code == 400


def test_broken_json_is_json_parser_error(sf_api: requests.Session) -> None:
    resp = sf_api.post(
        f"{API}/sobjects/Contact", data="{nope", headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400
    assert resp.json()[0]["errorCode"] == "JSON_PARSER_ERROR"


def test_get_record_whole_and_with_fields(sf_api: requests.Session) -> None:
    new_id = create(sf_api, "Contact", {"LastName": "Ng", "Email": "ng@example.org"}).json()["id"]
    whole = sf_api.get(f"{API}/sobjects/Contact/{new_id}").json()
    assert whole["attributes"] == {
        "type": "Contact",
        "url": f"/services/data/v66.0/sobjects/Contact/{new_id}",
    }
    assert whole["Email"] == "ng@example.org" and whole["Id"] == new_id
    some = sf_api.get(f"{API}/sobjects/Contact/{new_id}", params={"fields": "Id,Email"}).json()
    assert set(some) == {"attributes", "Id", "Email"}


@needs_real_store  # the fallback store's ids carry no case-safe suffix
def test_a_15_character_id_finds_the_record(sf_api: requests.Session) -> None:
    new_id = create(sf_api, "Contact", {"LastName": "Ng"}).json()["id"]
    short = sf_api.get(f"{API}/sobjects/Contact/{new_id[:15]}", params={"fields": "Id"})
    assert short.json()["Id"] == new_id


def test_update_is_204_and_carries_the_client_origin(
    sf_api: requests.Session, changes: list[ChangeRecord]
) -> None:
    new_id = create(sf_api, "Contact", {"LastName": "Ng"}).json()["id"]
    resp = sf_api.patch(
        f"{API}/sobjects/Contact/{new_id}",
        json={"HasOptedOutOfEmail": True},
        headers={"Sforce-Call-Options": "client=ctct-sync"},
    )
    assert resp.status_code == 204 and resp.content == b""
    assert changes[0].origin == "com/salesforce/api/rest/66.0"
    assert changes[-1].change_type == "UPDATE"
    assert changes[-1].origin == "com/salesforce/api/rest/66.0;client=ctct-sync"
    got = sf_api.get(f"{API}/sobjects/Contact/{new_id}", params={"fields": "HasOptedOutOfEmail"})
    assert got.json()["HasOptedOutOfEmail"] is True


def test_delete_then_get_says_deleted(sf_api: requests.Session) -> None:
    new_id = create(sf_api, "Contact", {"LastName": "Ng"}).json()["id"]
    assert sf_api.delete(f"{API}/sobjects/Contact/{new_id}").status_code == 204
    gone = sf_api.get(f"{API}/sobjects/Contact/{new_id}")
    assert gone.status_code == 404
    assert gone.json()[0]["errorCode"] == "ENTITY_IS_DELETED"
    again = sf_api.patch(f"{API}/sobjects/Contact/{new_id}", json={"LastName": "Back"})
    assert again.status_code == 404
    assert again.json()[0]["errorCode"] == "ENTITY_IS_DELETED"


def test_unknown_record_is_not_found(sf_api: requests.Session) -> None:
    resp = sf_api.get(f"{API}/sobjects/Contact/{MISSING_CONTACT_ID}")
    assert resp.status_code == 404
    assert resp.json()[0] == {
        "message": "The requested resource does not exist",
        "errorCode": "NOT_FOUND",
    }
    assert sf_api.delete(f"{API}/sobjects/Contact/{MISSING_CONTACT_ID}").status_code == 404


def test_wrong_method_is_405_with_salesforce_body(sf_api: requests.Session) -> None:
    resp = sf_api.put(f"{API}/sobjects/Contact/{MISSING_CONTACT_ID}", json={})
    assert resp.status_code == 405
    assert resp.json()[0]["errorCode"] == "METHOD_NOT_ALLOWED"


def upsert(session: requests.Session, value: str, values: dict[str, Any], **params: str) -> Any:
    return session.patch(f"{API}/sobjects/Contact/Email/{value}", json=values, params=params)


def test_upsert_creates_then_updates(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    created = upsert(sf_api, "kim@example.org", {"LastName": "Kim"})
    assert created.status_code == 201
    body = created.json()
    assert body == {"id": body["id"], "success": True, "errors": [], "created": True}
    updated = upsert(sf_api, "kim@example.org", {"LastName": "Kim-Lee"})
    assert updated.status_code == 200
    assert updated.json() == {"id": body["id"], "success": True, "errors": [], "created": False}
    record = sf_sandbox.store.get("Contact", body["id"], ["LastName", "Email"])
    assert record == {"LastName": "Kim-Lee", "Email": "kim@example.org"}


def test_upsert_with_several_matches_is_300(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    one = sf_sandbox.store.create("Contact", {"LastName": "A", "Email": "twin@example.org"})
    two = sf_sandbox.store.create("Contact", {"LastName": "B", "Email": "twin@example.org"})
    resp = upsert(sf_api, "twin@example.org", {"LastName": "C"})
    assert resp.status_code == 300
    assert sorted(resp.json()) == sorted(
        f"/services/data/v66.0/sobjects/Contact/{i}" for i in (one, two)
    )
    assert sf_sandbox.store.get("Contact", one, ["LastName"]) == {"LastName": "A"}


def test_upsert_update_only_and_unknown_field(sf_api: requests.Session) -> None:
    assert (
        upsert(sf_api, "new@example.org", {"LastName": "N"}, updateOnly="true").status_code == 404
    )
    resp = sf_api.patch(f"{API}/sobjects/Contact/NoSuchField__c/x", json={"LastName": "N"})
    assert resp.status_code == 404
    assert resp.json()[0]["errorCode"] == "NOT_FOUND"
    not_external = sf_api.patch(f"{API}/sobjects/Contact/LastName/x", json={"FirstName": "N"})
    assert not_external.status_code == 404


def test_upsert_body_must_agree_with_the_url(sf_api: requests.Session) -> None:
    resp = upsert(sf_api, "a@example.org", {"LastName": "A", "Email": "b@example.org"})
    assert resp.status_code == 400
    assert resp.json()[0]["errorCode"] == "INVALID_FIELD"


def test_get_by_external_id(sf_api: requests.Session) -> None:
    new_id = upsert(sf_api, "kim@example.org", {"LastName": "Kim"}).json()["id"]
    got = sf_api.get(f"{API}/sobjects/Contact/Email/kim@example.org", params={"fields": "Id"})
    assert got.status_code == 200 and got.json()["Id"] == new_id
    assert sf_api.get(f"{API}/sobjects/Contact/Email/none@example.org").status_code == 404


@needs_real_store
def test_updated_and_deleted_windows(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    start = sf_sandbox.clock.now()
    new_id = create(sf_api, "Contact", {"LastName": "Ng"}).json()["id"]
    gone = create(sf_api, "Contact", {"LastName": "Gone"}).json()["id"]
    sf_api.delete(f"{API}/sobjects/Contact/{gone}")
    end = sf_sandbox.clock.advance(120)
    window = {"start": start.isoformat(), "end": end.isoformat()}
    updated = sf_api.get(f"{API}/sobjects/Contact/updated/", params=window)
    assert updated.status_code == 200, updated.text
    assert new_id in updated.json()["ids"]
    deleted = sf_api.get(f"{API}/sobjects/Contact/deleted/", params=window)
    assert deleted.status_code == 200, deleted.text
    assert [d["id"] for d in deleted.json()["deletedRecords"]] == [gone]


def test_updated_needs_a_window(sf_api: requests.Session) -> None:
    resp = sf_api.get(f"{API}/sobjects/Contact/updated/")
    assert resp.status_code == 400


@needs_real_store
class TestDuplicateRule:
    @pytest.fixture
    def sf_config(self) -> dict[str, Any]:
        return {"DUPLICATE_RULE": "alert"}

    def test_same_email_is_detected(self, sf_api: requests.Session) -> None:
        assert create(sf_api, "Contact", {"LastName": "A", "Email": "dup@example.org"}).ok
        resp = create(sf_api, "Contact", {"LastName": "B", "Email": "dup@example.org"})
        assert resp.status_code == 400
        assert resp.json()[0]["errorCode"] == "DUPLICATES_DETECTED"

    def test_allow_save_header_lets_an_alert_rule_through(self, sf_api: requests.Session) -> None:
        assert create(sf_api, "Contact", {"LastName": "A", "Email": "dup@example.org"}).ok
        resp = create(
            sf_api,
            "Contact",
            {"LastName": "B", "Email": "dup@example.org"},
            **{"Sforce-Duplicate-Rule-Header": "allowSave=true; includeRecordDetails=false"},
        )
        assert resp.status_code == 201

    def test_updating_a_record_keeping_its_own_email_is_fine(
        self, sf_api: requests.Session
    ) -> None:
        new_id = create(sf_api, "Contact", {"LastName": "A", "Email": "me@example.org"}).json()[
            "id"
        ]
        resp = sf_api.patch(
            f"{API}/sobjects/Contact/{new_id}", json={"Email": "me@example.org", "LastName": "Z"}
        )
        assert resp.status_code == 204


@needs_real_store
class TestBlockingDuplicateRule:
    @pytest.fixture
    def sf_config(self) -> dict[str, Any]:
        return {"DUPLICATE_RULE": "block"}

    def test_block_rule_ignores_allow_save(self, sf_api: requests.Session) -> None:
        assert create(sf_api, "Contact", {"LastName": "A", "Email": "dup@example.org"}).ok
        resp = create(
            sf_api,
            "Contact",
            {"LastName": "B", "Email": "dup@example.org"},
            **{"Sforce-Duplicate-Rule-Header": "allowSave=true"},
        )
        assert resp.status_code == 400
