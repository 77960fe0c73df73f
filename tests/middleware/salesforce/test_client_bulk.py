"""Bulk API 2.0 through SalesforceClient against the sandbox: streaming, refresh mid-job, ingest."""

from __future__ import annotations

import threading
import tracemalloc
from typing import Any

import pytest
import requests

from middleware.salesforce import errors
from middleware.salesforce.client import BulkJobFailed, SalesforceClient, parse_bulk_error
from middleware.salesforce.errors import RecordRejected
from middleware.salesforce.events import parse_events
from middleware.salesforce.oauth import MemoryTokenStore, RefreshingTokenSource, SalesforceOAuth
from tests.middleware.salesforce.conftest import SF_BASE, SF_VERSION
from tests.middleware.salesforce.test_client_rest import Recorder, contacts, seed
from tests.middleware.salesforce.test_oauth import REDIRECT, connect


def test_bulk_query_rows_are_dicts_with_none_for_empty(
    client: SalesforceClient, sandbox: Any
) -> None:
    sandbox.store.insert_many(
        "Contact",
        [
            {"LastName": 'Quote "q", comma', "Email": "a@example.org", "Description": "two\nlines"},
            {"LastName": "Plain"},
        ],
    )
    rows = list(client.bulk_query("SELECT Id, LastName, Email, Description FROM Contact"))
    assert [r["LastName"] for r in rows] == ['Quote "q", comma', "Plain"]
    assert rows[0]["Description"] == "two\nlines"
    assert rows[1]["Email"] is None and rows[1]["Description"] is None
    assert set(rows[0]) == {"Id", "LastName", "Email", "Description"}


@pytest.mark.slow
def test_bulk_query_streams_100k_rows_fetching_pages_only_as_consumed(
    client: SalesforceClient, sandbox: Any
) -> None:
    sandbox.store.insert_many("Contact", contacts(100_000))
    recorder = Recorder(client.session)
    rows = client.bulk_query("SELECT Id, Email, LastName FROM Contact", page_size=10_000)
    seen: set[str] = set()
    for count, row in enumerate(rows, start=1):
        seen.add(row["Id"])
        if count % 10_000 == 1:
            # Never a page ahead: the page holding this row is the last one fetched.
            assert len(recorder.matching("/results")) == count // 10_000 + 1
    assert len(seen) == 100_000
    assert len(recorder.matching("/results")) == 10


def test_bulk_query_memory_stays_at_one_page(client: SalesforceClient, sandbox: Any) -> None:
    sandbox.store.insert_many("Contact", contacts(8_000))
    soql = "SELECT Id, Email, LastName FROM Contact"

    def peak_while(consume: Any, page_size: int) -> int:
        rows = client.bulk_query(soql, page_size=page_size)
        first = next(rows)  # job done, first page in: trace only the reading from here on
        tracemalloc.start()
        try:
            consume(first, rows)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    held = peak_while(lambda first, rows: [first, *rows], 8_000)
    streamed = peak_while(lambda first, rows: sum(1 for _ in rows), 800)
    # Ten pages streamed cost a small fraction of holding the rows (measured: ~5%).
    assert streamed < held / 5, (streamed, held)


def test_bulk_query_refreshes_mid_job_and_resumes_from_the_same_locator(
    http: requests.Session, sandbox: Any
) -> None:
    oauth = SalesforceOAuth(SF_BASE, "sandbox-client-id", "sandbox-client-secret", REDIRECT, http)
    store = MemoryTokenStore(connect(http, oauth))
    client = SalesforceClient(
        SF_BASE,
        RefreshingTokenSource(store, oauth, threading.Lock()),
        http,
        SF_VERSION,
        sleep=lambda _s: None,
    )
    seed(sandbox, 2500)
    recorder = Recorder(client.session)
    rows = client.bulk_query("SELECT Id FROM Contact", page_size=1000)
    got = [next(rows)["Id"] for _ in range(1000)]  # the whole first page
    http.post(f"{SF_BASE}/_sandbox/tokens/expire")
    got += [r["Id"] for r in rows]
    assert len(got) == 2500 and len(set(got)) == 2500
    assert store.saves == 1
    results = [r for r in recorder.matching("/results")]
    statuses = [
        (r.url or "").split("locator=")[-1] if "locator=" in (r.url or "") else None
        for r in results
    ]
    # page 2 was asked for twice (401, then again with the new token) with the same locator
    assert statuses[1] == statuses[2] and statuses[1] is not None
    assert len(results) == 4


def test_bulk_query_include_deleted_uses_query_all(client: SalesforceClient, sandbox: Any) -> None:
    ids = seed(sandbox, 3)
    sandbox.store.delete("Contact", ids[0])
    live = list(client.bulk_query("SELECT Id FROM Contact"))
    every = list(client.bulk_query("SELECT Id, IsDeleted FROM Contact", include_deleted=True))
    assert len(live) == 2 and len(every) == 3
    assert {r["IsDeleted"] for r in every} == {"true", "false"}


def test_bulk_query_bad_soql_is_a_query_error(client: SalesforceClient) -> None:
    with pytest.raises(errors.QueryError):
        list(client.bulk_query("SELECT Nope__c FROM Contact"))


@pytest.mark.parametrize("sf_config", [{"BULK_STEPS": 4}])
def test_bulk_polls_back_off_with_injected_sleep(
    client: SalesforceClient, sandbox: Any, sleeps
) -> None:
    seed(sandbox, 1)
    assert len(list(client.bulk_query("SELECT Id FROM Contact"))) == 1
    assert len(sleeps.calls) >= 4
    assert sleeps.calls == sorted(sleeps.calls) and sleeps.calls[0] == 0.5


def test_bulk_ingest_results_per_row_in_input_order(client: SalesforceClient, sandbox: Any) -> None:
    rows = contacts(6)
    del rows[1]["LastName"]
    rows[4]["Email"] = "not an email"
    result = client.bulk_ingest("Contact", "insert", rows)
    assert [r.index for r in result.results] == list(range(6))
    assert set(result.failures) == {1, 4}
    assert result.failures[1].code == "REQUIRED_FIELD_MISSING"
    assert result.failures[1].fields == ("LastName",)
    assert result.failures[4].code == "INVALID_EMAIL_ADDRESS"
    assert result.succeeded == 4 and sandbox.store.count("Contact") == 4
    assert all(r.created for r in result.results if r.success)


def test_bulk_ingest_sends_nulls_as_na_and_tags_its_writes(
    client: SalesforceClient, sandbox: Any
) -> None:
    ids = seed(sandbox, 2)
    sandbox.store.update("Contact", ids[0], {"Phone": "555-0100", "Title": "Keep"})
    sandbox.store.update("Contact", ids[1], {"Phone": "555-0101", "Title": "Keep"})
    before = sandbox.events.latest_replay_id
    result = client.bulk_ingest(
        "Contact", "update", [{"Id": ids[0], "Phone": None}, {"Id": ids[1], "Phone": "555-0199"}]
    )
    assert result.failures == {}
    rows = {r["Id"]: r for r in sandbox.store.query("SELECT Id, Phone, Title FROM Contact").rows}
    assert rows[ids[0]]["Phone"] is None and rows[ids[0]]["Title"] == "Keep"
    assert rows[ids[1]]["Phone"] == "555-0199"
    sandbox.events.flush(timeout=2)
    hints = parse_events(sandbox.events.replay(before), call_client="ctct-sync")
    assert hints and all(h.is_own_echo for h in hints)


def test_bulk_ingest_splits_large_input_over_jobs(client: SalesforceClient, sandbox: Any) -> None:
    result = client.bulk_ingest("Contact", "insert", contacts(50), max_job_bytes=600)
    assert len(result.job_ids) > 1
    assert result.succeeded == 50 and sandbox.store.count("Contact") == 50


def test_bulk_ingest_failed_job_raises(client: SalesforceClient) -> None:
    with pytest.raises(BulkJobFailed) as exc:
        client.bulk_ingest("Contact", "insert", [{"LastName": "x", "Nope__c": "y"}])
    assert "Nope__c" in exc.value.message


def test_bulk_ingest_delete(client: SalesforceClient, sandbox: Any) -> None:
    ids = seed(sandbox, 3)
    result = client.bulk_ingest("Contact", "delete", [{"Id": i} for i in ids[:2]])
    assert result.succeeded == 2 and sandbox.store.count("Contact") == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --",
            RecordRejected(
                "REQUIRED_FIELD_MISSING", "Required fields are missing: [LastName]", ["LastName"]
            ),
        ),
        (
            "FIELD_INTEGRITY_EXCEPTION:bad: state:MailingStateCode,MailingCountryCode --",
            RecordRejected(
                "FIELD_INTEGRITY_EXCEPTION",
                "bad: state",
                ["MailingStateCode", "MailingCountryCode"],
            ),
        ),
        (
            "DUPLICATES_DETECTED:Use one of these records?: --",
            RecordRejected("DUPLICATES_DETECTED", "Use one of these records?"),
        ),
        ("something odd", RecordRejected("UNKNOWN", "something odd")),
    ],
)
def test_parse_bulk_error(text: str, expected: RecordRejected) -> None:
    assert parse_bulk_error(text) == expected


@pytest.mark.parametrize("sf_config", [{"BULK_STEPS": 8}])
def test_bulk_query_pages_resume_from_a_locator_and_polls_respect_their_cap(
    client: SalesforceClient, sandbox: Any, sleeps: Any
) -> None:
    seed(sandbox, 2500)
    job_id = client.start_bulk_query("SELECT Id FROM Contact", poll_max=2.0)
    assert sleeps.calls and max(sleeps.calls) <= 2.0  # eight polls, never a longer pause
    pages = client.bulk_query_pages(job_id, page_size=1000)
    first = next(pages)
    first_ids = [row[0] for row in first.rows]
    assert first.header == ["Id"] and len(first_ids) == 1000 and first.next_locator
    # A run stopped after the first page goes on from its locator, without a new query.
    rest = [
        row[0] for page in client.bulk_query_pages(job_id, first.next_locator) for row in page.rows
    ]
    assert len(rest) == 1500 and not set(rest) & set(first_ids)
