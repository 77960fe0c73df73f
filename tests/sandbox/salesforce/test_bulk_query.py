"""Bulk API 2.0 query jobs: job lifecycle, CSV pages and locators, errors, and simple-salesforce."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
import simple_salesforce.bulk2

from sandbox.adapter import in_process_session
from tests.sandbox.salesforce._sf_fakes import INSTANCE_URL, make_app, sf_client

BASE = "/services/data/v64.0/jobs/query"


@pytest.fixture(autouse=True)
def no_client_sleep(monkeypatch):
    # simple-salesforce sleeps between status polls; the sandbox needs no waiting.
    monkeypatch.setattr(simple_salesforce.bulk2, "sleep", lambda _s: None)


def _seed(store, n: int) -> list[str]:
    acc = store.create("Account", {"Name": 'Acme, "The" Company'})
    ids = []
    for i in range(n):
        values = {
            "FirstName": f"First{i}",
            "LastName": f"Last\n{i}" if i % 5 == 0 else f"Last{i}",
            "Email": f"p{i}@example.org" if i % 3 else None,
            "HasOptedOutOfEmail": i % 2 == 0,
            "AccountId": acc if i % 4 == 0 else None,
        }
        ids.append(store.create("Contact", values))
    return ids


@pytest.fixture
def org():
    app, sandbox, store = make_app(
        {"EVENT_DELIVERY": "sync", "BULK_INDEX_EVERY": 4, "BULK_POLL_WAIT": 0}
    )
    token = sandbox.auth.issue().access_token
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return app, sandbox, store, client


SOQL = "SELECT Id, FirstName, LastName, Email, HasOptedOutOfEmail, CreatedDate, Account.Name FROM Contact"  # noqa: E501


def _create(client, soql: str = SOQL, operation: str = "query"):
    return client.post(
        BASE,
        json={"operation": operation, "query": soql, "contentType": "CSV"},
        headers={"Accept": "text/csv"},
    )


def test_job_info_is_json_and_moves_through_states_on_polls(org):
    _app, sandbox, store, client = org
    sandbox.bulk.steps = 2
    _seed(store, 3)
    resp = _create(client)
    assert resp.status_code == 200 and resp.is_json
    job = resp.get_json()
    for key in (
        "id",
        "operation",
        "object",
        "createdById",
        "createdDate",
        "systemModstamp",
        "concurrencyMode",
        "contentType",
        "apiVersion",
        "lineEnding",
        "columnDelimiter",
    ):
        assert key in job
    assert job["state"] == "UploadComplete" and job["object"] == "Contact"
    assert job["apiVersion"] == 64.0 and job["id"].startswith("750")
    sandbox.bulk.get(job["id"], "query").done.wait(5)
    early = client.get(f"{BASE}/{job['id']}/results")
    assert early.status_code == 412
    assert early.get_json()[0]["errorCode"] == "JOB_NOT_COMPLETE"
    states = [client.get(f"{BASE}/{job['id']}").get_json()["state"] for _ in range(3)]
    assert states == ["InProgress", "InProgress", "JobComplete"]
    listed = client.get(BASE).get_json()["records"]
    assert [j["id"] for j in listed] == [job["id"]]


def test_results_are_salesforce_csv_and_page_with_stable_locators(org):
    _app, sandbox, store, client = org
    ids = _seed(store, 11)
    job_id = _create(client).get_json()["id"]
    sandbox.bulk.wait(job_id)
    pages, locator, seen_locators = [], None, []
    while True:
        url = f"{BASE}/{job_id}/results?maxRecords=3" + (f"&locator={locator}" if locator else "")
        resp = client.get(url)
        assert resp.status_code == 200
        assert resp.headers["Content-Type"].startswith("text/csv")
        pages.append(resp.get_data())
        count = int(resp.headers["Sforce-NumberOfRecords"])
        locator = resp.headers["Sforce-Locator"]
        assert count == len(list(csv.reader(io.StringIO(resp.get_data(as_text=True))))) - 1
        if locator == "null":
            break
        seen_locators.append(locator)
    assert len(pages) == 4
    # Locators look opaque (not the row number) and a page can be fetched again.
    assert all(not loc.isdigit() and len(loc) >= 8 for loc in seen_locators)
    again = client.get(f"{BASE}/{job_id}/results?maxRecords=3&locator={seen_locators[1]}")
    assert again.get_data() == pages[2]

    first = pages[0].decode()
    assert first.startswith(
        '"Id","FirstName","LastName","Email","HasOptedOutOfEmail","CreatedDate","Account.Name"\n'
    )
    rows = [r for p in pages for r in list(csv.reader(io.StringIO(p.decode())))[1:]]
    assert [r[0] for r in rows] == ids
    row0 = rows[0]
    assert row0[2] == "Last\n0"  # an embedded newline survives quoting and paging
    assert row0[3] == ""  # null email
    assert row0[4] == "true" and rows[1][4] == "false"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", row0[5])
    assert row0[6] == 'Acme, "The" Company' and rows[1][6] == ""
    # Every field is quoted, empty ones too.
    assert '"","true"' in first


def test_query_all_includes_deleted_rows(org):
    _app, sandbox, store, client = org
    ids = _seed(store, 4)
    store.delete("Contact", ids[0])
    for operation, expected in (("query", 3), ("queryAll", 4)):
        job_id = _create(client, "SELECT Id FROM Contact", operation).get_json()["id"]
        sandbox.bulk.wait(job_id)
        resp = client.get(f"{BASE}/{job_id}/results")
        assert int(resp.headers["Sforce-NumberOfRecords"]) == expected
        assert resp.headers["Sforce-Locator"] == "null"


@pytest.mark.parametrize(
    "soql, message",
    [
        ("SELECT COUNT() FROM Contact", "Aggregate"),
        ("SELECT LastName, COUNT(Id) FROM Contact GROUP BY LastName", "Aggregate"),
        ("SELECT Id FROM Contact LIMIT 5 OFFSET 10", "OFFSET"),
        ("SELECT Id, MailingAddress FROM Contact", "compound"),
        ("SELECT Id, (SELECT Id FROM Contacts) FROM Account", "Aggregate Relationships"),
    ],
)
def test_soql_bulk_cannot_run_is_refused(org, soql, message):
    _app, _sandbox, _store, client = org
    resp = _create(client, soql)
    assert resp.status_code == 400
    assert message in resp.get_json()[0]["message"]


def test_invalid_soql_is_a_rest_error(org):
    _app, _sandbox, _store, client = org
    resp = _create(client, "SELEC Id FROM Contact")
    assert resp.status_code == 400
    assert resp.get_json()[0]["errorCode"] == "MALFORMED_QUERY"
    assert client.post(BASE, json={"operation": "query"}).status_code == 400
    assert client.post(BASE, json={"operation": "upsert", "query": SOQL}).status_code == 400


def test_version_mismatch_unknown_job_bad_locator_abort_and_delete(org):
    _app, sandbox, store, client = org
    _seed(store, 5)
    job_id = _create(client).get_json()["id"]
    sandbox.bulk.wait(job_id)
    other = client.get(f"/services/data/v63.0/jobs/query/{job_id}/results")
    assert other.status_code == 409
    assert client.get(f"{BASE}/750SB9999999999AAA").status_code == 404
    assert client.get(f"{BASE}/{job_id}/results?locator=MTAwMDA").status_code == 400
    assert client.delete(f"{BASE}/{job_id}").status_code == 204
    assert client.get(f"{BASE}/{job_id}").status_code == 404

    job_id = _create(client).get_json()["id"]
    resp = client.patch(f"{BASE}/{job_id}", json={"state": "Aborted"})
    assert resp.get_json()["state"] == "Aborted"
    assert client.get(f"{BASE}/{job_id}").get_json()["state"] == "Aborted"
    assert client.get(f"{BASE}/{job_id}/results").status_code == 412


def test_needs_a_valid_token(org):
    app, _sandbox, _store, _client = org
    anonymous = app.test_client()
    resp = anonymous.post(BASE, json={"operation": "query", "query": SOQL})
    assert resp.status_code == 401
    assert resp.get_json()[0]["errorCode"] == "INVALID_SESSION_ID"


def test_simple_salesforce_query_and_download(org, tmp_path: Path):
    app, sandbox, store, _client = org
    ids = _seed(store, 10)
    sf = sf_client(app, sandbox)
    pages = list(sf.bulk2.Contact.query("SELECT Id, LastName FROM Contact", max_records=4))
    assert len(pages) == 3
    got = [r["Id"] for p in pages for r in csv.DictReader(io.StringIO(p))]
    assert got == ids
    files = sf.bulk2.Contact.download(
        "SELECT Id, Email FROM Contact", path=str(tmp_path), max_records=6
    )
    assert [f["number_of_records"] for f in files] == [6, 4]
    rows = [
        r for f in files for r in csv.DictReader(io.StringIO(Path(f["file"]).read_text("utf-8")))
    ]
    assert [r["Id"] for r in rows] == ids


def test_in_process_session_mounts_only_the_instance():
    app, _sandbox, _store = make_app()
    session = in_process_session(INSTANCE_URL, app)
    assert session.get_adapter(f"{INSTANCE_URL}/services/data/").__class__.__name__ == (
        "WSGIAdapter"
    )


def test_full_sandbox_app_wiring_with_seed_and_an_expired_session():
    from simple_salesforce import Salesforce
    from simple_salesforce.exceptions import SalesforceExpiredSession

    from sandbox.salesforce import create_app
    from sandbox.salesforce.org import current_sandbox
    from sandbox.salesforce.seed import seed_org

    app = create_app({"BULK_POLL_WAIT": 0, "EVENT_DELIVERY": "sync"})
    with app.app_context():
        sandbox = current_sandbox()
    seed_org(sandbox, contacts=25)
    token = sandbox.auth.issue().access_token
    session = in_process_session(INSTANCE_URL, app)
    sf = Salesforce(session_id=token, instance_url=INSTANCE_URL, version="64.0", session=session)
    pages = list(sf.bulk2.Contact.query("SELECT Id, Email FROM Contact", max_records=10))
    assert sum(len(list(csv.DictReader(io.StringIO(p)))) for p in pages) == 25
    [res] = sf.bulk2.Contact.insert(records=[{"LastName": "Wired"}])
    assert res["numberRecordsProcessed"] == 1 and sandbox.store.count("Contact") == 26
    # Bulk calls never refresh a session: after the token expires they get the REST 401 body.
    sandbox.clock.advance(sandbox.config["ACCESS_TOKEN_TTL"] + 1)
    with pytest.raises(SalesforceExpiredSession):
        list(sf.bulk2.Contact.query("SELECT Id FROM Contact"))
