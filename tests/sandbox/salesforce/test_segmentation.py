"""Segmentation in the Salesforce sandbox: List Views, campaign member statuses, campaign change
events and seeding campaigns at scale."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from sandbox import cli
from sandbox.salesforce.org import SalesforceSandbox
from sandbox.salesforce.seed import seed_org
from sandbox.salesforce.store import OrgStore, SalesforceError
from tests.sandbox.salesforce._sf_fakes import make_app
from tests.sandbox.salesforce.conftest import API, SF_BASE

CTL = f"{SF_BASE}/_sandbox"


def _views(sf_api: requests.Session, sobject: str) -> dict[str, dict[str, Any]]:
    body = sf_api.get(f"{API}/sobjects/{sobject}/listviews").json()
    return {v["developerName"]: v for v in body["listviews"]}


def _error_of(call: Any, *args: Any) -> SalesforceError:
    with pytest.raises(SalesforceError) as info:
        call(*args)
    return info.value


# -- List Views over REST ------------------------------------------------------------------------


def test_list_views_of_an_object(sf_api: requests.Session) -> None:
    resp = sf_api.get(f"{API}/sobjects/Contact/listviews")
    assert resp.status_code == 200
    body = resp.json()
    assert list(body) == ["done", "listviews", "nextRecordsUrl", "size", "sobjectType"]
    assert body["done"] is True and body["nextRecordsUrl"] is None
    assert body["sobjectType"] == "Contact" and body["size"] == len(body["listviews"]) >= 3
    first = body["listviews"][0]
    assert list(first) == [
        "describeUrl",
        "developerName",
        "id",
        "label",
        "resultsUrl",
        "soqlCompatible",
        "url",
    ]
    assert first["id"].startswith("00B") and len(first["id"]) == 18
    assert (
        first["url"]
        == f"/services/data/v{API.rsplit('/v', 1)[1]}/sobjects/Contact/listviews/{first['id']}"
    )
    assert first["describeUrl"] == first["url"] + "/describe"
    assert first["resultsUrl"] == first["url"] + "/results"
    labels = {v["label"] for v in body["listviews"]}
    assert {"All Contacts", "Bay Area Subscribers", "Newsletter Subscribers"} <= labels
    leads = _views(sf_api, "Lead")
    assert {"AllOpenLeads", "TodaysLeads"} <= set(leads)
    one = sf_api.get(f"{SF_BASE}{first['url']}")
    assert one.status_code == 200 and one.json() == first


def test_describe_gives_a_query_the_org_runs(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    store = sf_sandbox.store
    store.create(
        "Contact", {"LastName": "Oak", "Email": "oak@example.org", "MailingCity": "Oakland"}
    )
    store.create(
        "Contact", {"LastName": "Bos", "Email": "bos@example.org", "MailingCity": "Boston"}
    )
    store.create(
        "Contact",
        {"LastName": "Out", "MailingCity": "Berkeley", "HasOptedOutOfEmail": True},
    )
    view = _views(sf_api, "Contact")["BayAreaSubscribers"]
    described = sf_api.get(f"{SF_BASE}{view['describeUrl']}").json()
    assert set(described) >= {
        "columns",
        "id",
        "orderBy",
        "query",
        "scope",
        "sobjectType",
        "whereCondition",
    }
    assert described["id"] == view["id"] and described["sobjectType"] == "Contact"
    assert described["query"].startswith("SELECT Name, ")
    assert " FROM Contact WHERE MailingCity IN (" in described["query"]
    assert described["query"].endswith("ORDER BY Name ASC NULLS FIRST, Id ASC NULLS FIRST")
    assert described["orderBy"][0] == {
        "fieldNameOrPath": "Name",
        "nullsPosition": "first",
        "sortDirection": "ascending",
    }
    assert described["whereCondition"]["conjunction"] == "and"
    city, opt_out = described["whereCondition"]["conditions"]
    assert city["field"] == "MailingCity" and city["operator"] == "in"
    assert "'Oakland'" in city["values"]
    assert opt_out == {"field": "HasOptedOutOfEmail", "operator": "equals", "values": ["false"]}
    id_column = next(c for c in described["columns"] if c["fieldNameOrPath"] == "Id")
    assert id_column["hidden"] is True and id_column["type"] == "id"
    name_column = described["columns"][0]
    assert name_column["sortIndex"] == 0 and name_column["sortDirection"] == "ascending"
    result = sf_api.get(f"{API}/query", params={"q": described["query"]}).json()
    assert [r["Name"] for r in result["records"]] == ["Oak"]


def test_results_page_with_limit_and_offset(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    for i in range(30):
        sf_sandbox.store.create("Contact", {"LastName": f"P{i:02d}", "Email": f"p{i}@example.org"})
    view = _views(sf_api, "Contact")["AllContacts"]
    first = sf_api.get(f"{SF_BASE}{view['resultsUrl']}")
    assert first.status_code == 200
    body = first.json()
    assert list(body) == ["columns", "developerName", "done", "id", "label", "records", "size"]
    assert body["developerName"] == "AllContacts" and body["label"] == "All Contacts"
    assert body["size"] == 25 and body["done"] is False  # 25 by default
    row = body["records"][0]["columns"]
    assert row[0] == {"fieldNameOrPath": "Name", "value": "P00"}
    created = next(c for c in row if c["fieldNameOrPath"] == "CreatedDate")["value"]
    assert re.match(r"^[A-Z][a-z]{2} [A-Z][a-z]{2} \d{2} \d{2}:\d{2}:\d{2} GMT \d{4}$", created)
    rest = sf_api.get(f"{SF_BASE}{view['resultsUrl']}", params={"limit": 10, "offset": 25}).json()
    assert rest["size"] == 5 and rest["done"] is True
    assert rest["records"][0]["columns"][0]["value"] == "P25"
    big = sf_api.get(f"{SF_BASE}{view['resultsUrl']}", params={"limit": 5000}).json()
    assert big["size"] == 30  # limit is capped at 2000


def test_unknown_or_foreign_view_is_not_found(sf_api: requests.Session) -> None:
    contact_view = _views(sf_api, "Contact")["AllContacts"]["id"]
    for path in (
        f"{API}/sobjects/Contact/listviews/00BSB0000000zzzAAA/describe",
        f"{API}/sobjects/Lead/listviews/{contact_view}/describe",
        f"{API}/sobjects/Lead/listviews/{contact_view}/results",
        f"{API}/sobjects/Lead/listviews/{contact_view}",
        f"{API}/sobjects/Nope__c/listviews",
    ):
        resp = sf_api.get(path)
        assert resp.status_code == 404, path
        assert resp.json()[0]["errorCode"] == "NOT_FOUND"


def test_list_views_need_a_token_and_v32(
    sf_session: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    assert sf_session.get(f"{API}/sobjects/Contact/listviews").status_code == 401
    token = sf_sandbox.auth.issue().access_token
    sf_session.headers["Authorization"] = f"Bearer {token}"
    old = sf_session.get(f"{SF_BASE}/services/data/v31.0/sobjects/Contact/listviews")
    assert old.status_code == 404
    assert sf_session.get(f"{API}/sobjects/Contact/listviews").status_code == 200


# -- List Views defined by tests -----------------------------------------------------------------


def test_control_route_defines_and_deletes_a_view(
    sf_api: requests.Session, sf_session: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    sf_sandbox.store.create("Lead", {"LastName": "Web", "Company": "W", "LeadSource": "Web"})
    sf_sandbox.store.create(
        "Lead", {"LastName": "Tel", "Company": "T", "LeadSource": "Phone Inquiry"}
    )
    created = sf_session.post(
        f"{CTL}/listviews",
        json={
            "sobjectType": "lead",
            "label": "Phone Leads",
            "where": "LeadSource = 'Phone Inquiry'",
            "columns": ["LastName", "Company", "Email"],
        },
    )
    assert created.status_code == 201, created.text
    view = created.json()
    assert view["developerName"] == "Phone_Leads" and view["sobjectType"] == "Lead"
    assert "Phone_Leads" in _views(sf_api, "Lead")
    results = sf_api.get(f"{SF_BASE}{view['resultsUrl']}").json()
    assert [r["columns"][0]["value"] for r in results["records"]] == ["Tel"]
    again = sf_session.post(
        f"{CTL}/listviews",
        json={"sobjectType": "Lead", "label": "Phone Leads", "developerName": "Phone_Leads"},
    )
    assert again.status_code == 400 and again.json()["errorCode"] == "DUPLICATE_DEVELOPER_NAME"
    assert sf_session.delete(f"{CTL}/listviews/{view['id']}").status_code == 204
    assert "Phone_Leads" not in _views(sf_api, "Lead")
    assert sf_api.get(f"{SF_BASE}{view['describeUrl']}").status_code == 404
    assert sf_session.delete(f"{CTL}/listviews/{view['id']}").status_code == 404


def test_a_view_the_org_refuses(sf_api: requests.Session, sf_session: requests.Session) -> None:
    body = {"sobjectType": "Contact", "label": "Blue", "where": "Favorite_Color__c = 'Blue'"}
    refused = sf_session.post(f"{CTL}/listviews", json=body)
    assert refused.status_code == 400 and refused.json()["errorCode"] == "INVALID_FIELD"
    created = sf_session.post(f"{CTL}/listviews", json={**body, "allow_invalid": True})
    assert created.status_code == 201
    view = created.json()
    described = sf_api.get(f"{SF_BASE}{view['describeUrl']}").json()
    assert "Favorite_Color__c = 'Blue'" in described["query"]
    ran = sf_api.get(f"{API}/query", params={"q": described["query"]})
    assert ran.status_code == 400 and ran.json()[0]["errorCode"] == "INVALID_FIELD"
    results = sf_api.get(f"{SF_BASE}{view['resultsUrl']}")
    assert results.status_code == 400 and results.json()[0]["errorCode"] == "INVALID_FIELD"


def test_reset_brings_back_the_default_views(
    sf_api: requests.Session, sf_session: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    default = _views(sf_api, "Contact")["AllContacts"]["id"]
    sf_session.delete(f"{CTL}/listviews/{default}")
    sf_session.post(f"{CTL}/listviews", json={"sobjectType": "Contact", "label": "Mine"})
    assert sf_session.post(f"{CTL}/reset").status_code in (200, 204)
    token = sf_sandbox.auth.issue().access_token  # a reset ends every token
    sf_api.headers["Authorization"] = f"Bearer {token}"
    after = _views(sf_api, "Contact")
    assert "AllContacts" in after and "Mine" not in after


def test_views_survive_a_snapshot(tmp_path: Any) -> None:
    path = str(tmp_path / "org.sqlite")
    store = OrgStore()
    store.add_list_view("Contact", "Kept", "Kept", "Email != null", ["Name"])
    store.snapshot(path)
    again = OrgStore(path=path)
    assert [v["developerName"] for v in again.list_views("Contact")] == ["Kept"]


# -- Campaign member statuses --------------------------------------------------------------------


def test_a_new_campaign_gets_salesforces_two_default_statuses() -> None:
    store = OrgStore()
    campaign = store.create("Campaign", {"Name": "Fall", "IsActive": True})
    rows = list(
        store.query(
            "SELECT Label, IsDefault, HasResponded, SortOrder FROM CampaignMemberStatus"
            f" WHERE CampaignId = '{campaign}' ORDER BY SortOrder"
        ).rows
    )
    assert rows == [
        {"Label": "Sent", "IsDefault": True, "HasResponded": False, "SortOrder": 1},
        {"Label": "Responded", "IsDefault": False, "HasResponded": True, "SortOrder": 2},
    ]


def test_member_status_comes_from_its_campaign() -> None:
    store = OrgStore()
    campaign = store.create("Campaign", {"Name": "Gala"})
    contact = store.create("Contact", {"LastName": "A"})
    other = store.create("Contact", {"LastName": "B"})
    store.create(
        "CampaignMemberStatus",
        {"CampaignId": campaign, "Label": "Attended", "HasResponded": True, "IsDefault": True},
    )
    member = store.create("CampaignMember", {"CampaignId": campaign, "ContactId": contact})
    assert store.get("CampaignMember", member, ["Status", "HasResponded"]) == {
        "Status": "Attended",  # the campaign's default now
        "HasResponded": True,
    }
    err = _error_of(
        store.create,
        "CampaignMember",
        {"CampaignId": campaign, "ContactId": other, "Status": "Clicked"},
    )
    assert err.error_code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" and err.fields == ["Status"]
    sent = store.create(
        "CampaignMember", {"CampaignId": campaign, "ContactId": other, "Status": "sent"}
    )
    assert store.get("CampaignMember", sent, ["Status", "HasResponded"]) == {
        "Status": "Sent",
        "HasResponded": False,
    }
    store.update("CampaignMember", sent, {"Status": "Responded"})
    assert store.get("CampaignMember", sent, ["HasResponded"]) == {"HasResponded": True}
    assert _error_of(store.update, "CampaignMember", sent, {"Status": "Nope"}).status == 400
    defaults = store.query(
        f"SELECT Label FROM CampaignMemberStatus WHERE CampaignId = '{campaign}'"
        " AND IsDefault = true"
    )
    assert [r["Label"] for r in defaults.rows] == ["Attended"]  # one default only
    duplicate = _error_of(
        store.create, "CampaignMemberStatus", {"CampaignId": campaign, "Label": "Sent"}
    )
    assert duplicate.error_code == "DUPLICATE_VALUE"
    counts = next(store.query("SELECT NumberOfContacts, NumberOfResponses FROM Campaign").rows)
    assert counts == {"NumberOfContacts": 2, "NumberOfResponses": 2}


def test_statuses_go_with_their_campaign_and_make_no_events() -> None:
    store = OrgStore()
    seen: list[Any] = []
    store.subscribe(seen.extend)
    campaign = store.create("Campaign", {"Name": "Drive"})
    store.delete("Campaign", campaign)
    assert store.count("CampaignMemberStatus") == 0
    assert store.count("CampaignMemberStatus", include_deleted=True) == 2
    store.undelete("Campaign", campaign)
    assert store.count("CampaignMemberStatus") == 2
    assert {c.entity for c in seen} == {"Campaign"}


def test_bulk_loaded_campaigns_get_statuses_too() -> None:
    store = OrgStore()
    store.insert_many("Campaign", [{"Name": f"C{i}", "IsActive": True} for i in range(3)])
    assert store.count("CampaignMemberStatus") == 6
    assert store.query("SELECT Id FROM CampaignMemberStatus WHERE IsDefault = true").total_size == 3


# -- Change Data Capture for campaigns -----------------------------------------------------------


@pytest.fixture
def org():
    _app, sandbox, store = make_app({"EVENT_DELIVERY": "sync"})
    delivered: list[list[dict[str, Any]]] = []
    sandbox.events.configure_delivery(None, sink=delivered.append)
    yield sandbox, store, delivered
    sandbox.events.close()


def _events(delivered: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [env for batch in delivered for env in batch]


def test_campaign_and_member_changes_are_change_events(org: Any) -> None:
    sandbox, store, delivered = org
    campaign = store.create("Campaign", {"Name": "Spring", "IsActive": True, "Type": "Email"})
    contact = store.create("Contact", {"LastName": "Ada", "Email": "ada@example.org"})
    member = store.create("CampaignMember", {"CampaignId": campaign, "ContactId": contact})
    store.update("Campaign", campaign, {"IsActive": False})
    store.update("CampaignMember", member, {"Status": "Responded"})
    envs = [e for e in _events(delivered) if "Campaign" in e["channel"]]
    assert [
        (e["channel"], e["data"]["payload"]["ChangeEventHeader"]["changeType"]) for e in envs
    ] == [
        ("/data/CampaignChangeEvent", "CREATE"),
        ("/data/CampaignMemberChangeEvent", "CREATE"),
        ("/data/CampaignChangeEvent", "UPDATE"),
        ("/data/CampaignMemberChangeEvent", "UPDATE"),
    ]
    created = envs[1]["data"]["payload"]
    assert created["ChangeEventHeader"]["entityName"] == "CampaignMember"
    assert created["ChangeEventHeader"]["recordIds"] == [member]
    assert created["CampaignId"] == campaign and created["ContactId"] == contact
    assert created["Status"] == "Sent"
    campaign_create = envs[0]["data"]["payload"]
    assert campaign_create["Name"] == "Spring" and campaign_create["IsActive"] is True
    assert "NumberOfContacts" not in campaign_create  # formula fields are never in events
    update = envs[3]["data"]["payload"]
    assert set(update["ChangeEventHeader"]["changedFields"]) >= {"Status", "HasResponded"}
    kept = [e for e in sandbox.events.replay() if "Campaign" in e["channel"]]
    assert kept == envs  # kept for replay like every other change event


@pytest.mark.parametrize("parent", ["Contact", "Lead", "Campaign"])
def test_member_deletes_and_cascades_are_header_only_events(org: Any, parent: str) -> None:
    _sandbox, store, delivered = org
    campaign = store.create("Campaign", {"Name": "Gala"})
    contact = store.create("Contact", {"LastName": "C"})
    lead = store.create("Lead", {"LastName": "L", "Company": "Co"})
    by_contact = store.create("CampaignMember", {"CampaignId": campaign, "ContactId": contact})
    by_lead = store.create("CampaignMember", {"CampaignId": campaign, "LeadId": lead})
    delivered.clear()
    parent_id = {"Contact": contact, "Lead": lead, "Campaign": campaign}[parent]
    store.delete(parent, parent_id)
    gone = {"Contact": [by_contact], "Lead": [by_lead], "Campaign": [by_contact, by_lead]}[parent]
    deletes = [
        e["data"]["payload"]
        for e in _events(delivered)
        if e["channel"] == "/data/CampaignMemberChangeEvent"
    ]
    assert [d["ChangeEventHeader"]["recordIds"] for d in deletes] == [[m] for m in gone]
    for payload in deletes:
        assert payload["ChangeEventHeader"]["changeType"] == "DELETE"
        assert list(payload) == ["ChangeEventHeader"]  # the header only, as in Salesforce
    keys = {d["ChangeEventHeader"]["transactionKey"] for d in deletes}
    parent_event = next(
        e for e in _events(delivered) if e["channel"] == f"/data/{parent}ChangeEvent"
    )
    assert keys == {parent_event["data"]["payload"]["ChangeEventHeader"]["transactionKey"]}
    ids = ", ".join(f"'{m}'" for m in gone)
    kept = list(
        store.query(
            f"SELECT Id, IsDeleted, ContactId, LeadId, CampaignId FROM CampaignMember"
            f" WHERE Id IN ({ids}) ORDER BY Id",
            include_deleted=True,
        ).rows
    )
    assert [r["IsDeleted"] for r in kept] == [True] * len(gone)
    assert all(r["CampaignId"] == campaign for r in kept)
    assert all(r["ContactId"] == contact or r["LeadId"] == lead for r in kept)
    assert store.query(f"SELECT Id FROM CampaignMember WHERE Id IN ({ids})").total_size == 0


def test_a_deleted_member_reads_back_with_query_all(
    sf_api: requests.Session, sf_sandbox: SalesforceSandbox
) -> None:
    store = sf_sandbox.store
    campaign = store.create("Campaign", {"Name": "Fall"})
    contact = store.create("Contact", {"LastName": "Q"})
    member = store.create("CampaignMember", {"CampaignId": campaign, "ContactId": contact})
    assert sf_api.delete(f"{API}/sobjects/CampaignMember/{member}").status_code == 204
    q = f"SELECT Id, IsDeleted, ContactId, CampaignId FROM CampaignMember WHERE Id = '{member}'"
    assert sf_api.get(f"{API}/query", params={"q": q}).json()["totalSize"] == 0
    row = sf_api.get(f"{API}/queryAll", params={"q": q}).json()["records"][0]
    assert row["IsDeleted"] is True and row["ContactId"] == contact
    assert row["CampaignId"] == campaign


# -- Seeding campaigns ---------------------------------------------------------------------------


def test_seed_campaigns_with_members_from_contacts_and_leads() -> None:
    _app, sandbox, store = make_app(
        {"EVENT_DELIVERY": "sync", "RECORD_TYPES": {"Campaign": ["Webinar", "Event"]}}
    )
    result = seed_org(
        sandbox, contacts=200, leads=100, campaigns=12, members_per_campaign=40, seed=3
    )
    assert result["campaigns"] == 12 and result["campaign_members"] == 12 * 40
    campaigns = list(
        store.query("SELECT Id, Name, IsActive, Status, RecordTypeId FROM Campaign").rows
    )
    assert len({c["Name"] for c in campaigns}) == 12
    assert all(c["IsActive"] for c in campaigns)
    assert {c["Status"] for c in campaigns} <= {"Planned", "In Progress"}
    assert len({c["RecordTypeId"] for c in campaigns}) == 2
    counts = list(store.query("SELECT NumberOfContacts, NumberOfLeads FROM Campaign").rows)
    assert all(c["NumberOfContacts"] + c["NumberOfLeads"] == 40 for c in counts)
    assert all(c["NumberOfLeads"] == 10 for c in counts)  # a quarter from leads by default
    pairs = [
        (r["CampaignId"], r["ContactId"] or r["LeadId"])
        for r in store.query("SELECT CampaignId, ContactId, LeadId FROM CampaignMember").rows
    ]
    assert len(pairs) == len(set(pairs))  # nobody twice in one campaign
    only_contacts = seed_org(sandbox, campaigns=1, members_per_campaign=30, lead_member_ratio=0)
    newest = list(
        store.query("SELECT NumberOfLeads, Name FROM Campaign ORDER BY Id DESC LIMIT 1").rows
    )
    assert newest[0]["NumberOfLeads"] == 0 and only_contacts["campaign_members"] == 30
    assert newest[0]["Name"] not in {c["Name"] for c in campaigns}


def test_seed_default_is_25_members_and_never_more_than_the_people() -> None:
    _app, sandbox, store = make_app({"EVENT_DELIVERY": "sync"})
    assert seed_org(sandbox, contacts=100, campaigns=2)["campaign_members"] == 50
    _app, sandbox, store = make_app({"EVENT_DELIVERY": "sync"})
    assert seed_org(sandbox, contacts=10, campaigns=3)["campaign_members"] == 30
    assert store.query("SELECT NumberOfContacts FROM Campaign").total_size == 3


def test_seed_route_takes_members_per_campaign() -> None:
    app, _sandbox, store = make_app({"EVENT_DELIVERY": "sync"})
    client = app.test_client()
    resp = client.post(
        "/_sandbox/seed",
        json={"contacts": 50, "campaigns": 2, "members_per_campaign": 5, "lead_member_ratio": 0.5},
    )
    assert resp.status_code == 200 and resp.get_json()["campaign_members"] == 10
    bad = client.post("/_sandbox/seed", json={"campaigns": 1, "members_per_campaign": -1})
    assert bad.status_code == 400
    assert store.count("CampaignMember") == 10


def test_seed_100_campaigns_of_1000_members_is_fast() -> None:
    _app, sandbox, store = make_app({"EVENT_DELIVERY": "sync"})
    seed_org(sandbox, contacts=5000, leads=1000)
    started = time.perf_counter()
    result = seed_org(sandbox, campaigns=100, members_per_campaign=1000, seed=9)
    took = time.perf_counter() - started
    assert result["campaign_members"] == 100_000 and store.count("CampaignMember") == 100_000
    assert took < 30  # about 2 s on the project's 2-core machine


def test_cli_seed_sends_the_campaign_options(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, dict[str, Any]]] = []

    def fake_post(_session: Any, url: str, body: dict[str, Any]) -> dict[str, Any]:
        sent.append((url, body))
        return {"campaigns": body.get("campaigns")}

    monkeypatch.setattr(cli, "_post", fake_post)
    runner = CliRunner()
    args = ["seed", "--campaigns", "100", "--members-per-campaign", "1000"]
    result = runner.invoke(cli.sandbox_cli, [*args, "--member-lead-ratio", "0.1"])
    assert result.exit_code == 0, result.output
    url, body = sent[0]
    assert url.endswith("/_sandbox/seed")
    assert body["campaigns"] == 100 and body["members_per_campaign"] == 1000
    assert body["lead_member_ratio"] == 0.1
    sent.clear()
    assert runner.invoke(cli.sandbox_cli, ["seed", "--campaigns", "2"]).exit_code == 0
    assert sent[0][1]["members_per_campaign"] == 25 and "lead_member_ratio" not in sent[0][1]
