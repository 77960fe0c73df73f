"""Bulk API 2.0 ingest jobs: CSV semantics, result files, call options, aborts, bulk2 client."""

from __future__ import annotations

import csv
import io

import pytest
import simple_salesforce.bulk2

from tests.sandbox.salesforce._sf_fakes import make_app, sf_client

BASE = "/services/data/v64.0/jobs/ingest"


@pytest.fixture(autouse=True)
def no_client_sleep(monkeypatch):
    monkeypatch.setattr(simple_salesforce.bulk2, "sleep", lambda _s: None)


@pytest.fixture
def org():
    app, sandbox, store = make_app(
        {
            "EVENT_DELIVERY": "sync",
            "BULK_POLL_WAIT": 0,
            "CUSTOM_FIELDS": {
                "Contact": [{"name": "Ext__c", "type": "string", "externalId": True}]
            },
        }
    )
    token = sandbox.auth.issue().access_token
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return app, sandbox, store, client


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _run_job(client, sandbox, body: dict, data: str, headers: dict | None = None) -> str:
    resp = client.post(BASE, json={"contentType": "CSV", **body}, headers=headers or {})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    job = resp.get_json()
    assert job["state"] == "Open"
    assert job["contentUrl"] == f"services/data/v64.0/jobs/ingest/{job['id']}/batches"
    put = client.put(f"{BASE}/{job['id']}/batches", data=data.encode(), content_type="text/csv")
    assert put.status_code == 201
    closed = client.patch(f"{BASE}/{job['id']}", json={"state": "UploadComplete"})
    assert closed.get_json()["state"] == "UploadComplete"
    sandbox.bulk.wait(job["id"])
    return str(job["id"])


def test_simple_salesforce_insert_reports_successes_and_failures(org):
    app, sandbox, store, _client = org
    sf = sf_client(app, sandbox)
    records = [
        {"FirstName": f"F{i}", "LastName": f"L{i}", "Email": f"p{i}@x.org"} for i in range(5)
    ]
    records.append({"FirstName": "NoLast", "LastName": "", "Email": "n@x.org"})
    [result] = sf.bulk2.Contact.insert(records=records)
    assert result["numberRecordsProcessed"] == 6
    assert result["numberRecordsFailed"] == 1
    ok = _rows(sf.bulk2.Contact.get_successful_records(result["job_id"]))
    assert len(ok) == 5 and all(r["sf__Created"] == "true" for r in ok)
    assert {r["Email"] for r in ok} == {f"p{i}@x.org" for i in range(5)}
    for row in ok:
        assert store.get("Contact", row["sf__Id"])["Email"] == row["Email"]
    [bad] = _rows(sf.bulk2.Contact.get_failed_records(result["job_id"]))
    assert bad["sf__Error"] == (
        "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --"
    )
    assert bad["FirstName"] == "NoLast" and bad["sf__Id"] == ""
    unprocessed = sf.bulk2.Contact.get_unprocessed_records(result["job_id"])
    assert _rows(unprocessed) == []


def test_update_empty_cell_leaves_value_and_na_sets_null(org):
    _app, sandbox, store, client = org
    rid = store.create("Contact", {"LastName": "Keep", "Title": "CTO", "Email": "k@x.org"})
    data = f"Id,Title,Email,HasOptedOutOfEmail\n{rid},,#N/A,true\n"
    job_id = _run_job(client, sandbox, {"object": "Contact", "operation": "update"}, data)
    record = store.get("Contact", rid)
    assert record["Title"] == "CTO"
    assert record.get("Email") is None
    assert record["HasOptedOutOfEmail"] is True
    info = client.get(f"{BASE}/{job_id}").get_json()
    assert info["state"] == "JobComplete"
    assert info["numberRecordsProcessed"] == 1 and info["numberRecordsFailed"] == 0
    ok = _rows(client.get(f"{BASE}/{job_id}/successfulResults").get_data(as_text=True))
    assert ok == [
        {
            "sf__Id": rid,
            "sf__Created": "false",
            "Id": rid,
            "Title": "",
            "Email": "#N/A",
            "HasOptedOutOfEmail": "true",
        }
    ]


def test_upsert_by_external_id_creates_then_updates(org):
    _app, sandbox, store, client = org
    existing = store.create("Contact", {"LastName": "Old", "Ext__c": "A"})
    data = "Ext__c,LastName\nA,Updated\nB,Created\nB,Again\n"
    body = {"object": "Contact", "operation": "upsert", "externalIdFieldName": "Ext__c"}
    job_id = _run_job(client, sandbox, body, data)
    ok = _rows(client.get(f"{BASE}/{job_id}/successfulResults").get_data(as_text=True))
    assert [(r["Ext__c"], r["sf__Created"]) for r in ok] == [
        ("A", "false"),
        ("B", "true"),
        ("B", "false"),
    ]
    assert ok[0]["sf__Id"] == existing
    assert store.get("Contact", existing)["LastName"] == "Updated"
    assert store.get("Contact", ok[1]["sf__Id"])["LastName"] == "Again"
    missing = client.post(BASE, json={"object": "Contact", "operation": "upsert"})
    assert missing.status_code == 400 and "External ID" in missing.get_json()[0]["message"]


def test_simple_salesforce_update_and_delete_tagged_with_call_options(org):
    app, sandbox, store, _client = org
    ids = [store.create("Contact", {"LastName": f"L{i}"}) for i in range(3)]
    sf = sf_client(app, sandbox)
    bulk2 = sf.bulk2  # a new handler on every attribute access: keep one to add the header
    bulk2.headers["Sforce-Call-Options"] = "client=ctct-sync"
    [res] = bulk2.Contact.update(records=[{"Id": i, "Title": "Boss"} for i in ids])
    assert res["numberRecordsFailed"] == 0
    assert all(store.get("Contact", i)["Title"] == "Boss" for i in ids)
    [res] = bulk2.Contact.delete(records=[{"Id": ids[0]}])
    assert res["numberRecordsProcessed"] == 1
    assert store.get("Contact", ids[0]) is None
    changes = sandbox.events.replay()[3:]
    origins = {e["data"]["payload"]["ChangeEventHeader"]["changeOrigin"] for e in changes}
    assert origins == {"com/salesforce/api/bulkapi/64.0;client=ctct-sync"}
    types = [e["data"]["payload"]["ChangeEventHeader"]["changeType"] for e in changes]
    assert types == ["UPDATE", "UPDATE", "UPDATE", "DELETE"]


def test_hard_delete_leaves_no_event_and_bad_ids_fail(org):
    _app, sandbox, store, client = org
    rid = store.create("Contact", {"LastName": "Gone"})
    vanished = store.create("Contact", {"LastName": "Vanished"})
    store.hard_delete("Contact", vanished)
    before = len(sandbox.events.replay())
    data = f"Id\n{rid}\n{vanished}\n"
    job_id = _run_job(client, sandbox, {"object": "Contact", "operation": "hardDelete"}, data)
    assert store.get("Contact", rid, include_deleted=True) is None
    assert len(sandbox.events.replay()) == before
    [failed] = _rows(client.get(f"{BASE}/{job_id}/failedResults").get_data(as_text=True))
    assert failed["sf__Id"] == vanished
    assert failed["sf__Error"].split(":")[0] in ("NOT_FOUND", "ENTITY_IS_DELETED")


@pytest.mark.parametrize(
    "operation, data, message",
    [
        ("delete", "Id,LastName\n003A,x\n", "must contain only ids"),
        ("update", "LastName\nx\n", "Field name not found : Id"),
    ],
)
def test_bad_header_fails_the_job_with_a_message(org, operation, data, message):
    _app, sandbox, _store, client = org
    job_id = _run_job(client, sandbox, {"object": "Contact", "operation": operation}, data)
    info = client.get(f"{BASE}/{job_id}").get_json()
    assert info["state"] == "Failed"
    assert message in info["errorMessage"]


def test_abort_before_processing_returns_rows_as_unprocessed(org):
    _app, sandbox, store, client = org
    job = client.post(BASE, json={"object": "Contact", "operation": "insert"}).get_json()
    client.put(f"{BASE}/{job['id']}/batches", data=b"LastName\nA\nB\n", content_type="text/csv")
    resp = client.patch(f"{BASE}/{job['id']}", json={"state": "Aborted"})
    assert resp.get_json()["state"] == "Aborted"
    sandbox.bulk.wait(job["id"])
    for spelling in ("unprocessedrecords", "unprocessedRecords"):
        text = client.get(f"{BASE}/{job['id']}/{spelling}").get_data(as_text=True)
        assert _rows(text) == [{"LastName": "A"}, {"LastName": "B"}]
    assert store.count("Contact") == 0
    closed = client.patch(f"{BASE}/{job['id']}", json={"state": "UploadComplete"})
    assert closed.status_code == 400


def test_uploads_only_while_open_results_only_when_done_and_listing(org):
    _app, sandbox, _store, client = org
    job = client.post(BASE, json={"object": "Contact", "operation": "insert"}).get_json()
    early = client.get(f"{BASE}/{job['id']}/successfulResults")
    assert early.status_code == 412
    wrong_type = client.put(f"{BASE}/{job['id']}/batches", data=b"x", content_type="text/plain")
    assert wrong_type.status_code == 400
    client.put(f"{BASE}/{job['id']}/batches", data=b"LastName\nA\n", content_type="text/csv")
    client.put(f"{BASE}/{job['id']}/batches", data=b"LastName\nB", content_type="text/csv")
    client.patch(f"{BASE}/{job['id']}", json={"state": "UploadComplete"})
    late = client.put(f"{BASE}/{job['id']}/batches", data=b"LastName\nC\n", content_type="text/csv")
    assert late.status_code == 409
    sandbox.bulk.wait(job["id"])
    assert client.get(f"{BASE}/{job['id']}").get_json()["numberRecordsProcessed"] == 2
    assert [j["id"] for j in client.get(BASE).get_json()["records"]] == [job["id"]]
    assert client.delete(f"{BASE}/{job['id']}").status_code == 204
    assert client.get(f"{BASE}/{job['id']}").status_code == 404


@pytest.mark.slow
def test_ten_thousand_rows_are_processed_quickly(org):
    import time

    _app, sandbox, store, client = org
    lines = ["FirstName,LastName,Email"] + [f"F{i},L{i},p{i}@x.org" for i in range(10000)]
    started = time.perf_counter()
    job_id = _run_job(
        client, sandbox, {"object": "Contact", "operation": "insert"}, "\n".join(lines)
    )
    elapsed = time.perf_counter() - started
    info = client.get(f"{BASE}/{job_id}").get_json()
    assert info["numberRecordsProcessed"] == 10000 and info["numberRecordsFailed"] == 0
    assert store.count("Contact") == 10000
    # About 2 s on a quiet machine; the bound only catches a pathological (quadratic) slowdown
    # on a busy shared one.
    assert elapsed < 30
