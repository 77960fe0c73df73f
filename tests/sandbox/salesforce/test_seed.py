"""Seeding: deterministic, realistic data through the store's fast path, and the control route."""

from __future__ import annotations

import re

import pytest

from sandbox.salesforce.seed import ROLE_LOCAL_PARTS, STATE_NAMES, seed_org
from tests.sandbox.salesforce._sf_fakes import make_app

EMAIL = re.compile(r"^[a-z'-]+\.[a-z'-]+\.\d+@[a-z.]+$")


def _contacts(store, fields: str = "FirstName, LastName, Email, HasOptedOutOfEmail") -> list:
    return list(store.query(f"SELECT {fields} FROM Contact").rows)


def _leads(store) -> list:
    return list(store.query("SELECT Company, Email FROM Lead").rows)


def test_same_seed_same_org_and_another_seed_another():
    orgs = []
    for seed in (7, 7, 8):
        _app, sandbox, store = make_app({"EVENT_DELIVERY": "sync"})
        seed_org(sandbox, contacts=300, leads=50, accounts=10, seed=seed)
        orgs.append(
            [(r["FirstName"], r["LastName"], r["Email"]) for r in _contacts(store)]
            + [
                (r["Company"], r["Email"])
                for r in store.query("SELECT Company, Email FROM Lead").rows
            ]
        )
    assert orgs[0] == orgs[1]
    assert orgs[0] != orgs[2]


def test_people_look_real_and_follow_the_ratios():
    _app, sandbox, store = make_app({"EVENT_DELIVERY": "sync"})
    result = seed_org(
        sandbox, contacts=4000, accounts=40, opted_out_ratio=0.05, no_email_ratio=0.02
    )
    assert result["contacts"] == 4000 and result["accounts"] == 40
    assert result["seconds"] >= 0
    rows = _contacts(
        store,
        "FirstName, LastName, Email, HasOptedOutOfEmail, MailingState, MailingPostalCode, "
        "Phone, Title, AccountId",
    )
    assert len(rows) == 4000
    emails = [r["Email"] for r in rows if r["Email"]]
    assert len(emails) == len(set(emails))  # unique
    no_email = len(rows) - len(emails)
    opted_out = sum(1 for r in rows if r["HasOptedOutOfEmail"])
    assert 40 <= no_email <= 130  # about 2% of 4000
    assert 130 <= opted_out <= 280  # about 5%
    roles = [e for e in emails if e.split("@")[0] in ROLE_LOCAL_PARTS]
    assert roles and all(not EMAIL.match(e) for e in roles)
    ordinary = [e for e in emails if e not in roles]
    assert all(EMAIL.match(e) for e in ordinary), ordinary[:5]
    assert {r["MailingState"] for r in rows} <= set(STATE_NAMES)
    assert len({r["MailingState"] for r in rows}) > 20
    assert all(re.fullmatch(r"\d{5}", r["MailingPostalCode"]) for r in rows)
    assert all(re.fullmatch(r"\(\d{3}\) \d{3}-\d{4}", r["Phone"]) for r in rows)
    assert len({r["FirstName"] for r in rows}) > 100 and len({r["LastName"] for r in rows}) > 100
    assert len({r["Title"] for r in rows}) > 10
    assert all(r["AccountId"] for r in rows)


def test_some_leads_duplicate_contacts_by_email():
    _app, sandbox, store = make_app({"EVENT_DELIVERY": "sync"})
    seed_org(sandbox, contacts=1000, leads=1000)
    contact_emails = {r["Email"] for r in _contacts(store) if r["Email"]}
    leads = list(store.query("SELECT Email, Company, LastName FROM Lead").rows)
    shared = [r for r in leads if r["Email"] in contact_emails]
    assert 10 <= len(shared) <= 40  # about 3%
    assert all(r["Company"] and r["LastName"] for r in leads)


def test_campaigns_with_members_and_progress_reports():
    _app, sandbox, store = make_app({"EVENT_DELIVERY": "sync"})
    calls: list[tuple[int, int]] = []
    result = seed_org(
        sandbox, contacts=100, campaigns=2, progress=lambda done, total: calls.append((done, total))
    )
    assert result["campaigns"] == 2 and result["campaign_members"] == 50
    assert store.count("CampaignMember") == 50
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert calls[-1] == (152, 152)


def test_events_only_when_asked():
    _app, sandbox, _store = make_app({"EVENT_DELIVERY": "sync"})
    seed_org(sandbox, contacts=30)
    assert sandbox.events.replay() == []
    seed_org(sandbox, contacts=30, seed=2, emit_events=True)
    creates = sandbox.events.replay()
    assert len(creates) == 30
    assert {e["data"]["payload"]["ChangeEventHeader"]["changeType"] for e in creates} == {"CREATE"}


def test_person_accounts_need_the_profile_and_state_country_orgs_get_codes():
    _app, sandbox, _store = make_app({"EVENT_DELIVERY": "sync"})
    with pytest.raises(ValueError, match="person_accounts"):
        seed_org(sandbox, person_accounts=5)
    _app, sandbox, store = make_app(
        {"EVENT_DELIVERY": "sync", "ORG_PROFILE": "person_accounts,state_country"}
    )
    result = seed_org(sandbox, person_accounts=20, contacts=20)
    assert result["person_accounts"] == 20
    people = list(
        store.query(
            "SELECT PersonEmail, PersonMailingStateCode FROM Account WHERE IsPersonAccount = true"
        ).rows
    )
    assert len(people) == 20
    assert all(p["PersonMailingStateCode"] in STATE_NAMES for p in people)
    rows = _contacts(store, "MailingState, MailingStateCode, MailingCountryCode")
    assert all(STATE_NAMES[r["MailingStateCode"]] == r["MailingState"] for r in rows)
    assert {r["MailingCountryCode"] for r in rows} == {"US"}


def test_seed_route_returns_counts_and_refuses_bad_input():
    app, _sandbox, store = make_app({"EVENT_DELIVERY": "sync"})
    client = app.test_client()
    resp = client.post("/_sandbox/seed", json={"contacts": 200, "leads": 20})
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["contacts"] == 200 and body["leads"] == 20 and "seconds" in body
    assert store.count("Contact") == 200
    assert client.post("/_sandbox/seed", json={"contacts": -1}).status_code == 400
    assert client.post("/_sandbox/seed", json={"contacts": "many"}).status_code == 400
    assert client.post("/_sandbox/seed", json={"opted_out_ratio": 2}).status_code == 400
