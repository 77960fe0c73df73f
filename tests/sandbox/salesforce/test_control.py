"""Control routes: a user editing in the UI, read-back, state, reset, conversion, snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from sandbox.salesforce.org import SalesforceSandbox
from sandbox.salesforce.store import ChangeRecord
from tests.sandbox.salesforce.conftest import API, REAL_STORE, SF_BASE

CTL = f"{SF_BASE}/_sandbox"
needs_real_store = pytest.mark.skipif(not REAL_STORE, reason="needs sandbox/salesforce/store.py")


@pytest.fixture
def changes(sf_sandbox: SalesforceSandbox) -> list[ChangeRecord]:
    seen: list[ChangeRecord] = []
    sf_sandbox.store.subscribe(seen.extend)
    return seen


def test_ui_edits_write_through_the_store_with_empty_origin(
    sf_session: requests.Session, changes: list[ChangeRecord]
) -> None:
    created = sf_session.post(
        f"{CTL}/records/Contact", json={"LastName": "Ui", "Email": "ui@example.org"}
    )
    assert created.status_code == 201
    record_id = created.json()["id"]
    assert created.json()["record"]["Email"] == "ui@example.org"
    edited = sf_session.patch(
        f"{CTL}/records/Contact/{record_id}", json={"HasOptedOutOfEmail": True}
    )
    assert edited.status_code == 200
    assert edited.json()["HasOptedOutOfEmail"] is True
    assert sf_session.delete(f"{CTL}/records/Contact/{record_id}").status_code == 204
    assert [c.change_type for c in changes] == ["CREATE", "UPDATE", "DELETE"]
    assert {c.origin for c in changes} == {""}


def test_ui_routes_need_no_token_and_are_not_api_calls(
    sf_session: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    sf_session.post(f"{CTL}/records/Contact", json={"LastName": "Ui"})
    sf_session.get(f"{CTL}/records/Contact")
    assert sf_sandbox.api_calls == 0


def test_read_back_by_email(sf_session: requests.Session, sf_sandbox: SalesforceSandbox) -> None:
    sf_sandbox.store.create("Contact", {"LastName": "A", "Email": "a@example.org"})
    sf_sandbox.store.create("Contact", {"LastName": "B", "Email": "b@example.org"})
    resp = sf_session.get(f"{CTL}/records/Contact", params={"email": "b@example.org"})
    assert resp.status_code == 200
    body = resp.json()
    assert body["totalSize"] == 1
    assert body["records"][0]["LastName"] == "B"
    assert body["records"][0]["attributes"]["type"] == "Contact"


def test_read_back_limit(sf_session: requests.Session, sf_sandbox: SalesforceSandbox) -> None:
    for i in range(5):
        sf_sandbox.store.create("Contact", {"LastName": f"N{i}"})
    assert sf_session.get(f"{CTL}/records/Contact", params={"limit": 2}).json()["totalSize"] == 2


def test_errors_carry_the_salesforce_code(sf_session: requests.Session) -> None:
    resp = sf_session.post(f"{CTL}/records/Contact", json={"FirstName": "No last name"})
    assert resp.status_code == 400
    assert resp.json()["errorCode"] == "REQUIRED_FIELD_MISSING"
    unknown = sf_session.get(f"{CTL}/records/Nope__c")
    assert unknown.status_code == 404
    assert unknown.json()["errorCode"] == "NOT_FOUND"


def test_hard_delete_leaves_no_trace_and_no_event(
    sf_session: requests.Session, sf_sandbox: SalesforceSandbox, changes: list[ChangeRecord]
) -> None:
    record_id = sf_sandbox.store.create("Contact", {"LastName": "Gone"})
    changes.clear()
    resp = sf_session.delete(f"{CTL}/records/Contact/{record_id}", params={"hard": "true"})
    assert resp.status_code == 204
    assert changes == []
    assert sf_sandbox.store.get("Contact", record_id, include_deleted=True) is None


def test_state_counts_records_calls_and_tokens(
    sf_session: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    sf_sandbox.store.create("Contact", {"LastName": "Live"})
    gone = sf_sandbox.store.create("Contact", {"LastName": "Binned"})
    sf_sandbox.store.delete("Contact", gone)
    token = sf_session.post(f"{CTL}/tokens", json={}).json()["access_token"]
    sf_session.get(f"{API}/limits", headers={"Authorization": f"Bearer {token}"})
    state = sf_session.get(f"{CTL}/state").json()
    assert state["records"]["Contact"] == 1
    assert state["recycle_bin"]["Contact"] == 1
    assert state["tokens"]["active"] == 1
    assert state["api_calls"]["by_family"] == {"limits": 1}
    assert state["query_cursors"] == 0


def test_reset_clears_records_tokens_and_counts(
    sf_session: requests.Session, sf_sandbox: SalesforceSandbox, sf_token: str
) -> None:
    sf_sandbox.store.create("Contact", {"LastName": "Live"})
    sf_session.get(f"{API}/limits", headers={"Authorization": f"Bearer {sf_token}"})
    assert sf_session.post(f"{CTL}/reset").status_code == 204
    state = sf_session.get(f"{CTL}/state").json()
    assert state["records"]["Contact"] == 0
    assert state["tokens"]["active"] == 0
    assert state["api_calls"]["total"] == 0
    after = sf_session.get(f"{API}/limits", headers={"Authorization": f"Bearer {sf_token}"})
    assert after.status_code == 401


@needs_real_store
def test_undelete_restores_the_record(
    sf_session: requests.Session, sf_sandbox: SalesforceSandbox, changes: list[ChangeRecord]
) -> None:
    record_id = sf_sandbox.store.create("Contact", {"LastName": "Back"})
    sf_session.delete(f"{CTL}/records/Contact/{record_id}")
    resp = sf_session.post(f"{CTL}/records/Contact/{record_id}/undelete")
    assert resp.status_code == 200, resp.text
    assert resp.json()["Id"] == record_id
    assert changes[-1].change_type == "UNDELETE" and changes[-1].origin == ""


@needs_real_store
def test_lead_conversion(sf_session: requests.Session, sf_sandbox: SalesforceSandbox) -> None:
    lead = sf_sandbox.store.create(
        "Lead", {"LastName": "Lee", "Company": "Co", "Email": "lee@example.org"}
    )
    resp = sf_session.post(f"{CTL}/leads/{lead}/convert", json={})
    assert resp.status_code == 200, resp.text
    ids = resp.json()
    converted = sf_sandbox.store.get("Lead", lead, ["IsConverted", "ConvertedContactId"])
    assert converted["IsConverted"] is True
    assert converted["ConvertedContactId"] in ids.values()


@needs_real_store
def test_snapshot_writes_a_file(sf_session: requests.Session, tmp_path: Path) -> None:
    target = tmp_path / "org.sqlite"
    resp = sf_session.post(f"{CTL}/snapshot", json={"path": str(target)})
    assert resp.status_code == 200, resp.text
    assert target.exists() and target.stat().st_size > 0


def test_snapshot_needs_a_path(sf_session: requests.Session) -> None:
    assert sf_session.post(f"{CTL}/snapshot", json={}).status_code == 400
