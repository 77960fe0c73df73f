"""SalesforceClient's REST side against the in-process Salesforce sandbox."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
import requests

from middleware.salesforce import errors
from middleware.salesforce.client import (
    MAX_REQUEST_BYTES,
    SalesforceClient,
    SalesforceSession,
    soql_in,
)
from middleware.salesforce.events import parse_events
from middleware.salesforce.oauth import StaticTokenSource
from sandbox.common import Fault
from tests.middleware.salesforce.conftest import SF_BASE, SF_VERSION, issue_token


def contacts(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"LastName": f"Last{i}", "Email": f"p{i}@example.org"} for i in range(start, start + n)]


def seed(sandbox: Any, n: int) -> list[str]:
    sandbox.store.insert_many("Contact", contacts(n))
    return [r["Id"] for r in sandbox.store.query("SELECT Id FROM Contact ORDER BY Id").rows]


class Recorder:
    """Keeps every request the session sent, with the size Salesforce would count."""

    def __init__(self, session: requests.Session) -> None:
        self.requests: list[requests.PreparedRequest] = []
        session.hooks["response"].append(self._hook)

    def _hook(self, resp: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.requests.append(resp.request)

    @staticmethod
    def size(req: requests.PreparedRequest) -> int:
        target = req.path_url
        line = len(f"{req.method} {target} HTTP/1.1")
        headers = dict(req.headers)
        headers.setdefault("Host", "sf.sandbox.test")
        return line + sum(len(k) + len(str(v)) + 4 for k, v in headers.items())

    def matching(self, fragment: str) -> list[requests.PreparedRequest]:
        return [r for r in self.requests if fragment in (r.url or "")]


def test_query_iter_follows_next_records_url(client: SalesforceClient, sandbox: Any) -> None:
    seed(sandbox, 4500)
    rows = list(client.query_iter("SELECT Id, Email FROM Contact"))
    assert len(rows) == 4500 and len({r["Id"] for r in rows}) == 4500
    assert all("attributes" not in r for r in rows)
    assert client.usage.calls["query"] == math.ceil(4500 / 2000)


def test_query_by_ids_keeps_every_request_under_16kb(
    client: SalesforceClient, sandbox: Any, http: requests.Session
) -> None:
    ids = seed(sandbox, 5000)
    recorder = Recorder(client.session)
    missing_id = "003000000000000AAA"
    result = client.query_by_ids(
        "Contact", ["Email", "LastName", "FirstName", "Phone"], [*ids, missing_id]
    )
    assert {r["Id"] for r in result.records} == set(ids)
    assert result.missing == [missing_id]
    sent = recorder.matching("/query")
    sizes = [Recorder.size(r) for r in sent]
    assert max(sizes) <= MAX_REQUEST_BYTES
    # Computed, not guessed small: each full chunk uses most of the budget.
    assert sum(sizes) / len(sizes) > MAX_REQUEST_BYTES * 0.8
    assert len(sent) <= math.ceil(5001 * 27 / (MAX_REQUEST_BYTES - 2000))


def test_query_by_ids_accepts_15_character_ids(client: SalesforceClient, sandbox: Any) -> None:
    ids = seed(sandbox, 3)
    result = client.query_by_ids("Contact", ["Email"], [i[:15] for i in ids])
    assert len(result.records) == 3 and result.missing == []


def test_modified_since_overlaps_and_orders_by_systemmodstamp(
    client: SalesforceClient, sandbox: Any
) -> None:
    ids = seed(sandbox, 5)
    sandbox.clock.advance(3600)
    mark = sandbox.clock.now()
    sandbox.clock.advance(60)
    sandbox.store.update("Contact", ids[3], {"Title": "Boss"})
    sandbox.store.delete("Contact", ids[4])
    rows = list(client.modified_since("Contact", ["Email"], mark, overlap=timedelta(minutes=5)))
    assert [r["Id"] for r in rows] == [ids[3], ids[4]]
    assert rows[1]["IsDeleted"] is True
    everything = list(client.modified_since("Contact", ["Email"], mark, overlap=timedelta(hours=2)))
    assert len(everything) == 5


def test_collections_chunk_by_200_and_keep_input_order(
    client: SalesforceClient, sandbox: Any
) -> None:
    records = contacts(450)
    for bad in (5, 250, 449):
        del records[bad]["LastName"]
    results = client.create_many("Contact", records)
    assert client.usage.calls["composite"] == 3
    assert [r.index for r in results] == list(range(450))
    failed = {r.index: r.error for r in results if not r.success}
    assert set(failed) == {5, 250, 449}
    assert all(e is not None and e.code == "REQUIRED_FIELD_MISSING" for e in failed.values())
    assert all(r.id and r.id.startswith("003") for r in results if r.success)
    assert sandbox.store.count("Contact") == 447


def test_update_many_rejects_records_without_id_locally(
    client: SalesforceClient, sandbox: Any
) -> None:
    ids = seed(sandbox, 2)
    results = client.update_many(
        "Contact", [{"Id": ids[0], "Title": "A"}, {"Title": "no id"}, {"Id": ids[1], "Title": "B"}]
    )
    assert [r.success for r in results] == [True, False, True]
    assert results[1].error is not None and results[1].error.code == "MISSING_ARGUMENT"
    assert client.usage.calls["composite"] == 1


@pytest.mark.parametrize(
    "sf_config",
    [
        {
            "CUSTOM_FIELDS": {
                "Contact": [
                    {"name": "Ext__c", "type": "string", "externalId": True, "unique": True}
                ]
            }
        }
    ],
)
def test_upsert_many_reports_created_and_updated(client: SalesforceClient, sandbox: Any) -> None:
    first = client.upsert_many("Contact", [{"Ext__c": "a", "LastName": "A"}], ext_id="Ext__c")
    assert first[0].success and first[0].created is True
    again = client.upsert_many(
        "Contact",
        [{"Ext__c": "a", "LastName": "A2"}, {"Ext__c": "b", "LastName": "B"}],
        ext_id="Ext__c",
    )
    assert [(r.success, r.created) for r in again] == [(True, False), (True, True)]
    assert again[0].id == first[0].id


def test_every_write_carries_call_options_and_its_events_are_echoes(
    client: SalesforceClient, sandbox: Any
) -> None:
    recorder = Recorder(client.session)
    [created] = client.create_many("Contact", contacts(1))
    client.update_many("Contact", [{"Id": created.id, "Title": "CTO"}])
    writes = [r for r in recorder.requests if r.method != "GET"]
    assert writes and all(
        r.headers.get("Sforce-Call-Options") == "client=ctct-sync" for r in writes
    )
    assert not any(
        "Sforce-Call-Options" in r.headers for r in recorder.requests if r.method == "GET"
    )
    sandbox.events.flush(timeout=2)
    hints = parse_events(sandbox.events.replay(-2), call_client="ctct-sync")
    ours = [h for h in hints if created.id in h.record_ids]
    assert [h.change_type for h in ours] == ["CREATE", "UPDATE"]
    assert all(h.is_own_echo for h in ours)


def test_someone_elses_write_is_not_an_echo(client: SalesforceClient, sandbox: Any) -> None:
    sandbox.store.create(
        "Contact", {"LastName": "Ui"}, origin="com/salesforce/api/soap/66.0;client=SfdcInternalAPI/"
    )
    hints = parse_events(sandbox.events.replay(-2), call_client="ctct-sync")
    assert hints and not any(h.is_own_echo for h in hints)


def test_describe_is_cached(client: SalesforceClient) -> None:
    first = client.describe("Contact")
    assert client.describe("Contact") is first
    assert client.usage.calls["sobjects"] == 1
    assert any(f["name"] == "Email" for f in first["fields"])


def test_limits_and_usage_from_headers(client: SalesforceClient) -> None:
    limits = client.limits()
    assert limits["DailyApiRequests"]["Max"] == 100000
    assert client.usage.org_limit == 100000 and client.usage.org_used is not None
    list(client.query_iter("SELECT Id FROM Contact"))
    assert client.usage.calls == {"limits": 1, "query": 1}
    assert client.usage.org_used >= 2
    snapshot = client.usage.as_dict()
    assert snapshot["total"] == 2
    assert snapshot["org_remaining"] == 100000 - snapshot["org_used"]


def test_updated_and_deleted(client: SalesforceClient, sandbox: Any) -> None:
    start = sandbox.clock.now() - timedelta(minutes=1)
    ids = seed(sandbox, 3)
    sandbox.store.delete("Contact", ids[0])
    sandbox.clock.advance(120)
    end = sandbox.clock.now()
    updated = client.updated("Contact", start, end)
    assert set(updated.ids) == set(ids[1:])  # deleted records are not "updated"
    deleted = client.deleted("Contact", start, end)
    assert [rid for rid, _ in deleted.records] == [ids[0]]


def test_bad_soql_is_a_query_error(client: SalesforceClient) -> None:
    with pytest.raises(errors.QueryError) as exc:
        list(client.query_iter("SELECT Nope__c FROM Contact"))
    assert exc.value.code in ("INVALID_FIELD", "MALFORMED_QUERY")


def test_names_are_checked_before_they_reach_soql(client: SalesforceClient) -> None:
    with pytest.raises(errors.QueryError):
        client.query_by_ids("Contact", ["Email FROM User --"], ["003000000000000AAA"])


@pytest.mark.parametrize("sf_config", [{"DAILY_API_LIMIT": 2}])
def test_daily_limit_stops_without_sleeping(client: SalesforceClient, sleeps) -> None:
    with pytest.raises(errors.ApiLimitExceeded) as exc:
        for _ in range(5):
            list(client.query_iter("SELECT Id FROM Contact"))
    assert not exc.value.retryable
    assert sleeps.calls == []


def test_transient_get_errors_are_retried_with_injected_sleep(
    client: SalesforceClient, sandbox: Any, sleeps
) -> None:
    sandbox.faults.add(Fault(count=2, status=503, path="/services/data", method="GET"))
    assert list(client.query_iter("SELECT Id FROM Contact")) == []
    assert sleeps.calls == [2.0, 4.0]


def test_transient_write_errors_are_not_retried(
    client: SalesforceClient, sandbox: Any, sleeps
) -> None:
    sandbox.faults.add(Fault(count=1, status=503, path="/services/data", method="POST"))
    with pytest.raises(errors.Retryable):
        client.create_many("Contact", contacts(1))
    assert sleeps.calls == [] and sandbox.store.count("Contact") == 0


# -- the session ---------------------------------------------------------------------------------


def test_session_ignores_environment_ca_bundle(monkeypatch, tmp_path) -> None:
    bundle = tmp_path / "ca.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/elsewhere/ca.pem")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    session = SalesforceSession(ca_bundle=str(bundle))
    settings = session.merge_environment_settings(SF_BASE, {}, None, None, None)
    assert settings["verify"] == str(bundle)
    assert not settings["proxies"]


def test_default_timeout_reaches_the_transport(http: requests.Session) -> None:
    seen: list[Any] = []
    adapter = http.get_adapter(SF_BASE + "/")
    original = adapter.send

    def send(request, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs.get("timeout"))
        return original(request, **kwargs)

    adapter.send = send  # type: ignore[method-assign]
    token = issue_token(http)
    client = SalesforceClient(
        SF_BASE, StaticTokenSource(token["access_token"]), http, SF_VERSION, timeout=7.5
    )
    list(client.query_iter("SELECT Id FROM Contact"))
    client.describe("Contact")
    assert seen[-2:] == [7.5, 7.5]


def test_id_chunks_fit_callers_that_join_with_comma_space(
    client: SalesforceClient, sandbox: Any
) -> None:
    ids = seed(sandbox, 2000)
    recorder = Recorder(client.session)
    prefix = (
        "SELECT Id, Email, LastName, FirstName, MailingStreet, MailingCity FROM Contact WHERE Id"
    )
    suffix = "AND IsDeleted = false ORDER BY Id"
    got: list[str] = []
    for chunk in client.id_chunks(prefix, ids, suffix):
        got += [r["Id"] for r in client.query_iter(f"{prefix} IN ({soql_in(chunk)}) {suffix}")]
    assert sorted(got) == sorted(ids)
    assert max(Recorder.size(r) for r in recorder.matching("/query")) <= MAX_REQUEST_BYTES


def test_update_many_retries_a_transient_failure(
    client: SalesforceClient, sandbox: Any, sleeps
) -> None:
    ids = seed(sandbox, 1)
    sandbox.faults.add(Fault(count=1, status=503, path="/services/data", method="PATCH"))
    [result] = client.update_many("Contact", [{"Id": ids[0], "Title": "Again"}])
    assert result.success and sleeps.calls == [2.0]


def test_each_usage_report_reaches_the_hook(client: SalesforceClient) -> None:
    reports: list[tuple[int, int]] = []
    client.on_org_usage = lambda used, limit: reports.append((used, limit))
    list(client.query_iter("SELECT Id FROM Contact"))
    client.limits()
    assert len(reports) >= 2 and all(limit == 100000 for _, limit in reports)
    assert reports[-1] == (client.usage.org_used, 100000)

    def broken(used: int, limit: int) -> None:
        raise RuntimeError("redis is down")

    client.on_org_usage = broken  # a failing recorder never fails the call
    assert list(client.query_iter("SELECT Id FROM Contact")) is not None
