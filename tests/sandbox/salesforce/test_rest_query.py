"""Versions, query/queryAll paging, request-size limits, API usage and the daily limit."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server

from sandbox.common import Clock
from sandbox.salesforce.org import SalesforceSandbox
from sandbox.salesforce.store import QueryResult
from tests.sandbox.salesforce.conftest import API, SF_BASE

NEXT_URL = re.compile(r"^/services/data/v66\.0/query/01g\w+-(\d+)$")


def seed_contacts(sandbox: SalesforceSandbox, n: int, **extra: Any) -> None:
    sandbox.store.insert_many(
        "Contact",
        ({"LastName": f"Person{i:05d}", "Email": f"p{i}@example.org", **extra} for i in range(n)),
    )


def q(session: requests.Session, soql: str, endpoint: str = "query", **headers: str) -> Any:
    return session.get(f"{API}/{endpoint}", params={"q": soql}, headers=headers)


def test_versions_list_needs_no_token(sf_session: requests.Session) -> None:
    resp = sf_session.get(f"{SF_BASE}/services/data/")
    assert resp.status_code == 200
    listed = resp.json()
    assert listed[-1] == {"label": "Spring '26", "url": "/services/data/v66.0", "version": "66.0"}
    labels = {v["version"]: v["label"] for v in listed}
    assert labels["59.0"] == "Winter '24"
    assert labels["64.0"] == "Summer '25"
    assert labels["31.0"] == "Summer '14"
    assert [float(v["version"]) for v in listed] == sorted(float(v["version"]) for v in listed)


def test_unknown_version_is_not_found(sf_api: requests.Session) -> None:
    resp = sf_api.get(
        f"{SF_BASE}/services/data/v99.0/query", params={"q": "SELECT Id FROM Contact"}
    )
    assert resp.status_code == 404
    assert resp.json() == [
        {"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}
    ]


def test_version_root_lists_resources(sf_api: requests.Session) -> None:
    body = sf_api.get(f"{API}/").json()
    assert body["query"] == "/services/data/v66.0/query"
    assert body["sobjects"] == "/services/data/v66.0/sobjects"
    assert body["jobs"] == "/services/data/v66.0/jobs"


def test_unknown_resource_is_a_rest_404(sf_api: requests.Session) -> None:
    resp = sf_api.get(f"{API}/nothing/here")
    assert resp.status_code == 404
    assert resp.json()[0]["errorCode"] == "NOT_FOUND"


def test_query_response_shape(sf_api: requests.Session, sf_sandbox: SalesforceSandbox) -> None:
    seed_contacts(sf_sandbox, 3)
    resp = q(sf_api, "SELECT Id, LastName, Email FROM Contact")
    assert resp.status_code == 200
    body = resp.json()
    assert list(body) == ["totalSize", "done", "records"]
    assert body["totalSize"] == 3 and body["done"] is True
    record = body["records"][0]
    assert list(record)[:2] == ["attributes", "Id"]
    assert record["attributes"] == {
        "type": "Contact",
        "url": f"/services/data/v66.0/sobjects/Contact/{record['Id']}",
    }
    assert sorted(r["LastName"] for r in body["records"]) == [
        "Person00000",
        "Person00001",
        "Person00002",
    ]


def test_attributes_url_follows_the_requested_version(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    seed_contacts(sf_sandbox, 1)
    body = sf_api.get(
        f"{SF_BASE}/services/data/v59.0/query", params={"q": "SELECT Id FROM Contact"}
    ).json()
    assert body["records"][0]["attributes"]["url"].startswith("/services/data/v59.0/sobjects/")


def test_parent_records_are_nested_with_attributes(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    account = sf_sandbox.store.create("Account", {"Name": "Acme"})
    sf_sandbox.store.create("Contact", {"LastName": "With", "AccountId": account})
    sf_sandbox.store.create("Contact", {"LastName": "Without"})
    body = q(sf_api, "SELECT Id, LastName, Account.Name FROM Contact").json()
    by_name = {r["LastName"]: r for r in body["records"]}
    assert by_name["With"]["Account"]["Name"] == "Acme"
    assert by_name["With"]["Account"]["attributes"]["type"] == "Account"
    assert by_name["Without"]["Account"] is None
    with_ref = q(sf_api, "SELECT Id, AccountId, Account.Name FROM Contact WHERE LastName = 'With'")
    assert with_ref.json()["records"][0]["Account"]["attributes"] == {
        "type": "Account",
        "url": f"/services/data/v66.0/sobjects/Account/{account}",
    }


def page_through(session: requests.Session, first: Any, **headers: str) -> list[dict[str, Any]]:
    pages = [first.json()]
    while not pages[-1]["done"]:
        url = pages[-1]["nextRecordsUrl"]
        assert NEXT_URL.match(url), url
        resp = session.get(f"{SF_BASE}{url}", headers=headers)
        assert resp.status_code == 200, resp.text
        pages.append(resp.json())
    return pages


def test_paging_default_batch_of_2000(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    seed_contacts(sf_sandbox, 4500)
    pages = page_through(sf_api, q(sf_api, "SELECT Id FROM Contact"))
    assert [len(p["records"]) for p in pages] == [2000, 2000, 500]
    assert {p["totalSize"] for p in pages} == {4500}
    assert NEXT_URL.match(pages[0]["nextRecordsUrl"]).group(1) == "2000"  # type: ignore[union-attr]
    assert "nextRecordsUrl" not in pages[-1]
    ids = [r["Id"] for p in pages for r in p["records"]]
    assert len(set(ids)) == 4500


@pytest.mark.parametrize(("asked", "served"), [("500", 500), ("50", 200), ("5000", 2000)])
def test_batch_size_header_is_honoured_within_bounds(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox, asked: str, served: int
) -> None:
    seed_contacts(sf_sandbox, 2100)
    header = {"Sforce-Query-Options": f"batchSize={asked}"}
    pages = page_through(sf_api, q(sf_api, "SELECT Id FROM Contact", **header), **header)
    sizes = [len(p["records"]) for p in pages]
    assert sizes[0] == served
    assert sum(sizes) == 2100


def test_query_all_pages_keep_their_endpoint(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    seed_contacts(sf_sandbox, 250)
    first = q(
        sf_api, "SELECT Id FROM Contact", "queryAll", **{"Sforce-Query-Options": "batchSize=200"}
    )
    assert "/queryAll/01g" in first.json()["nextRecordsUrl"]


def test_query_all_sees_the_recycle_bin(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    keep = sf_sandbox.store.create("Contact", {"LastName": "Keep"})
    gone = sf_sandbox.store.create("Contact", {"LastName": "Gone"})
    sf_sandbox.store.delete("Contact", gone)
    live = {r["Id"] for r in q(sf_api, "SELECT Id FROM Contact").json()["records"]}
    every = {r["Id"] for r in q(sf_api, "SELECT Id FROM Contact", "queryAll").json()["records"]}
    assert live == {keep}
    assert every == {keep, gone}


def test_locator_expires_after_15_idle_minutes(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox, sf_clock: Clock
) -> None:
    seed_contacts(sf_sandbox, 4500)
    first = q(sf_api, "SELECT Id FROM Contact").json()
    sf_clock.advance(14 * 60)
    second = sf_api.get(f"{SF_BASE}{first['nextRecordsUrl']}")
    assert second.status_code == 200
    sf_clock.advance(15 * 60 + 1)
    third = sf_api.get(f"{SF_BASE}{second.json()['nextRecordsUrl']}")
    assert third.status_code == 400
    assert third.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_a_retried_page_is_served_again(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    seed_contacts(sf_sandbox, 4500)
    first = q(sf_api, "SELECT Id FROM Contact").json()
    one = sf_api.get(f"{SF_BASE}{first['nextRecordsUrl']}").json()
    again = sf_api.get(f"{SF_BASE}{first['nextRecordsUrl']}").json()
    assert one == again
    last = sf_api.get(f"{SF_BASE}{one['nextRecordsUrl']}").json()
    assert last["done"] is True and len(last["records"]) == 500


def test_unknown_locator(sf_api: requests.Session) -> None:
    resp = sf_api.get(f"{API}/query/01gSBnothere0000000-2000")
    assert resp.status_code == 400
    assert resp.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_big_results_stream_from_the_store_iterator(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    pulled = 0

    def rows() -> Iterator[dict[str, Any]]:
        nonlocal pulled
        for i in range(1_000_000):
            pulled += 1
            yield {"Id": f"003SB{i:013d}"}

    monkeypatch.setattr(
        sf_sandbox.store,
        "query",
        lambda soql, include_deleted=False: QueryResult(1_000_000, rows(), ["Id"]),
    )
    first = q(sf_api, "SELECT Id FROM Contact").json()
    assert first["totalSize"] == 1_000_000
    assert pulled == 2000
    second = sf_api.get(f"{SF_BASE}{first['nextRecordsUrl']}").json()
    assert second["records"][0]["Id"] == "003SB0000000002000"
    assert pulled == 4000


def test_only_ten_cursors_stay_open(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    seed_contacts(sf_sandbox, 201)
    header = {"Sforce-Query-Options": "batchSize=200"}
    firsts = [q(sf_api, "SELECT Id FROM Contact", **header).json() for _ in range(11)]
    oldest = sf_api.get(f"{SF_BASE}{firsts[0]['nextRecordsUrl']}")
    newest = sf_api.get(f"{SF_BASE}{firsts[-1]['nextRecordsUrl']}")
    assert oldest.status_code == 400
    assert newest.status_code == 200


@pytest.mark.parametrize(
    ("soql", "code"),
    [("SELEC Id FROM Contact", "MALFORMED_QUERY"), ("", "MALFORMED_QUERY")],
)
def test_bad_soql_is_a_400_error_array(sf_api: requests.Session, soql: str, code: str) -> None:
    resp = q(sf_api, soql)
    assert resp.status_code == 400
    body = resp.json()
    assert isinstance(body, list) and body[0]["errorCode"] == code and body[0]["message"]


def long_query(length: int) -> str:
    emails = ", ".join(f"'p{i:05d}@example.org'" for i in range(length // 21 + 1))
    return f"SELECT Id FROM Contact WHERE Email IN ({emails})"


def test_uri_over_16k_is_414(sf_api: requests.Session) -> None:
    assert q(sf_api, long_query(20_000)).status_code == 414
    assert q(sf_api, long_query(9_000)).status_code == 200


def test_headers_pushing_past_16k_are_431(sf_api: requests.Session) -> None:
    resp = sf_api.get(f"{API}/limits", headers={"X-Padding": "x" * 16_400})
    assert resp.status_code == 431


def test_414_over_a_real_socket(sf_app: Any, sf_token: str) -> None:
    server = make_server("127.0.0.1", 0, sf_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        session = requests.Session()
        session.trust_env = False
        session.headers["Authorization"] = f"Bearer {sf_token}"
        base = f"http://127.0.0.1:{server.server_port}/services/data/v66.0/query"
        too_long = session.get(base, params={"q": long_query(20_000)}, timeout=10)
        fine = session.get(base, params={"q": long_query(9_000)}, timeout=10)
    finally:
        server.shutdown()
        thread.join(timeout=5)
    assert too_long.status_code == 414
    assert fine.status_code == 200


def test_limit_info_header_counts_calls(sf_api: requests.Session) -> None:
    first = sf_api.get(f"{API}/limits")
    second = sf_api.get(f"{API}/sobjects")
    assert first.headers["Sforce-Limit-Info"] == "api-usage=1/100000"
    assert second.headers["Sforce-Limit-Info"] == "api-usage=2/100000"
    assert second.headers["Content-Type"].startswith("application/json")


def test_calls_are_counted_per_family(
    sf_session: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    sf_sandbox.config["DAILY_API_LIMIT"] = 100
    token = sf_sandbox.auth.issue().access_token
    headers = {"Authorization": f"Bearer {token}"}
    sf_session.get(f"{API}/query", params={"q": "SELECT Id FROM Contact"}, headers=headers)
    sf_session.get(f"{API}/sobjects/Contact/describe", headers=headers)
    sf_session.get(f"{API}/limits", headers=headers)
    sf_session.get(f"{API}/limits")  # no token: not an API call that counts
    state = sf_session.get(f"{SF_BASE}/_sandbox/state").json()
    assert state["api_calls"]["by_family"] == {"query": 1, "sobjects": 1, "limits": 1}
    assert state["api_calls"]["total"] == 3 == sf_sandbox.api_calls
    assert sf_sandbox.usage.calls("query") == 1
    assert sf_session.post(f"{SF_BASE}/_sandbox/reset").status_code == 204
    assert sf_sandbox.api_calls == 0


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (500, "UNKNOWN_EXCEPTION"),
        (503, "SERVER_UNAVAILABLE"),
        (403, "REQUEST_LIMIT_EXCEEDED"),
        (401, "INVALID_SESSION_ID"),
    ],
)
def test_injected_faults_look_like_salesforce(
    sf_api: requests.Session, status: int, code: str
) -> None:
    sf_api.post(f"{SF_BASE}/_sandbox/faults", json={"status": status, "path": "/services/data"})
    resp = sf_api.get(f"{API}/limits")
    assert resp.status_code == status
    assert resp.json()[0]["errorCode"] == code
    assert sf_api.get(f"{API}/limits").status_code == 200


class TestDailyLimit:
    @pytest.fixture
    def sf_config(self) -> dict[str, Any]:
        return {"DAILY_API_LIMIT": 3}

    def test_daily_limit_then_next_day(
        self, sf_api: requests.Session, sf_clock: Clock, sf_sandbox: SalesforceSandbox
    ) -> None:
        # Mid-morning of today, whatever the real time: the token is issued
        # after the move so that it is fresh on the sandbox's clock.
        sf_clock.set(sf_clock.now().replace(hour=10, minute=0))
        sf_api.headers["Authorization"] = f"Bearer {sf_sandbox.auth.issue().access_token}"
        for _ in range(3):
            assert sf_api.get(f"{API}/limits").status_code == 200
        refused = sf_api.get(f"{API}/limits")
        assert refused.status_code == 403
        assert refused.json() == [
            {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
        ]
        assert refused.headers["Sforce-Limit-Info"] == "api-usage=3/3"
        sf_clock.advance(24 * 3600)
        sf_api.headers["Authorization"] = f"Bearer {sf_sandbox.auth.issue().access_token}"
        body = sf_api.get(f"{API}/limits").json()
        assert body["DailyApiRequests"] == {"Max": 3, "Remaining": 2}

    def test_limits_resource_shape(
        self, sf_api: requests.Session, sf_sandbox: SalesforceSandbox
    ) -> None:
        sf_sandbox.usage.consume("DailyBulkV2QueryJobs")
        body = sf_api.get(f"{API}/limits").json()
        assert body["DailyApiRequests"] == {"Max": 3, "Remaining": 2}
        assert body["DailyBulkV2QueryJobs"] == {"Max": 10000, "Remaining": 9999}
        assert body["DailyBulkApiBatches"]["Max"] == 15000
        assert "DailyBulkV2QueryFileStorageMB" in body


def test_expired_locators_release_the_store_iterator(
    sf_api: requests.Session,
    sf_sandbox: SalesforceSandbox,
    sf_clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed: list[bool] = []

    def rows() -> Iterator[dict[str, Any]]:
        try:
            for i in range(10_000):
                yield {"Id": f"003SB{i:013d}"}
        finally:
            closed.append(True)

    monkeypatch.setattr(
        sf_sandbox.store,
        "query",
        lambda soql, include_deleted=False: QueryResult(10_000, rows(), ["Id"]),
    )
    q(sf_api, "SELECT Id FROM Contact")
    assert closed == [] and sf_sandbox.cursors.count() == 1
    sf_clock.advance(16 * 60)
    assert sf_sandbox.cursors.count() == 0
    assert closed == [True]


def test_bulk_routes_pass_the_same_gate(
    sf_api: requests.Session, sf_session: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    job = {"operation": "query", "query": "SELECT Id FROM Contact"}
    resp = sf_api.post(f"{API}/jobs/query", json=job)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Sforce-Limit-Info"] == "api-usage=1/100000"
    assert sf_sandbox.usage.calls("bulk") == 1
    del sf_session.headers["Authorization"]
    assert sf_session.post(f"{API}/jobs/query", json=job).status_code == 401


class TestLongTextBatchCap:
    @pytest.fixture
    def sf_config(self) -> dict[str, Any]:
        notes = [{"name": f"Notes{i}__c", "type": "textarea", "length": 32000} for i in (1, 2)]
        return {"CUSTOM_FIELDS": {"Contact": notes}}

    def test_two_long_text_areas_cap_the_batch_at_200(
        self, sf_api: requests.Session, sf_sandbox: SalesforceSandbox
    ) -> None:
        seed_contacts(sf_sandbox, 450)
        one = q(sf_api, "SELECT Id, Notes1__c FROM Contact").json()
        two = q(sf_api, "SELECT Id, Notes1__c, Notes2__c FROM Contact").json()
        assert len(one["records"]) == 450
        pages = page_through(sf_api, q(sf_api, "SELECT Id, Notes1__c, Notes2__c FROM Contact"))
        assert len(two["records"]) == 200
        assert [len(p["records"]) for p in pages] == [200, 200, 50]
