"""Campaign results end to end on the sandboxes: CC sends and events → SF Campaigns, members, Tasks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from middleware.results import run as results_run
from middleware.store import errors as errors_repo
from tests.e2e.harness import CC_BASE, World

LINK = "https://example.org/donate"


@pytest.fixture
def make_world() -> Iterator[Any]:
    made: list[World] = []

    def make(**options: Any) -> World:
        w = World(options=options)
        w.deliver_to_webhook = False
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def cc_add(w: World, email: str, first: str = "Ada", last: str = "Lovelace") -> str:
    cc = w.cc_client()
    body = {
        "email_address": {"address": email, "permission_to_send": "implicit"},
        "list_memberships": [cc.get_or_create_list("Main List")["list_id"]],
        "first_name": first,
        "last_name": last,
    }
    return str(cc.create_contact(body)["contact_id"])


def send(w: World, name: str = "March Appeal", subject: str = "Help us this spring") -> dict:
    list_id = w.cc_client().get_or_create_list("Main List")["list_id"]
    r = w.cc_session.post(
        f"{CC_BASE}/_sandbox/emails",
        json={"name": name, "subject": subject, "list_ids": [list_id]},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def events(w: World, activity: str, *items: dict[str, Any]) -> None:
    r = w.cc_session.post(f"{CC_BASE}/_sandbox/emails/{activity}/events", json=list(items))
    assert r.status_code == 201, r.text


def run(w: World, reset: bool = False) -> dict[str, Any]:
    return results_run.run_results(
        w.runtime, w.setup_id, reset=reset, sf=w.sf_client(), cc=w.cc_client()
    )


def rows(w: World, soql: str) -> list[dict[str, Any]]:
    return list(w.sf_client().query_iter(soql))


def people(w: World) -> dict[str, str]:
    """email → id of the sandbox org's Contacts and Leads made for a test."""
    ids = {}
    for email, sobject in (
        ("opener@example.org", "Contact"),
        ("clicker@example.org", "Contact"),
        ("bouncer@example.org", "Contact"),
        ("leaver@example.org", "Lead"),
    ):
        extra = {"Company": "Acme"} if sobject == "Lead" else {}
        ids[email] = w.sf_create(sobject, LastName=email.split("@")[0], Email=email, **extra)
        cc_add(w, email)
    cc_add(w, "stranger@example.org", "Sam", "Stranger")
    return ids


def typical_events(w: World, activity: str) -> None:
    events(
        w,
        activity,
        {"type": "open", "email": "opener@example.org"},
        {"type": "open", "email": "opener@example.org"},
        {"type": "open", "email": "clicker@example.org"},
        {"type": "click", "email": "clicker@example.org", "url": LINK},
        {"type": "bounce", "email": "bouncer@example.org", "bounce_code": "B"},
        {"type": "optout", "email": "leaver@example.org"},
        {"type": "open", "email": "stranger@example.org"},
    )


def members(w: World, campaign_id: str) -> dict[str, str]:
    found = rows(
        w,
        "SELECT LeadOrContactId, Status FROM CampaignMember"
        f" WHERE CampaignId = '{campaign_id}'",
    )
    return {r["LeadOrContactId"]: r["Status"] for r in found}


def test_campaign_mode_makes_a_campaign_with_members_by_status(make_world):
    w = make_world(campaign_response_mode="campaign")
    ids = people(w)
    sent = send(w)
    typical_events(w, sent["campaign_activity_id"])

    result = run(w)
    assert result["campaigns_created"] == 1, result
    [campaign] = rows(
        w,
        "SELECT Id, Name, Type, Status, StartDate, Description, NumberSent, IsActive"
        " FROM Campaign",
    )
    assert campaign["Name"] == "March Appeal"
    assert campaign["Type"] == "Email"
    assert campaign["Description"] == "Help us this spring"
    assert campaign["StartDate"]
    assert campaign["NumberSent"] == 5
    statuses = {
        r["Label"]: r["HasResponded"]
        for r in rows(
            w,
            "SELECT Label, HasResponded FROM CampaignMemberStatus"
            f" WHERE CampaignId = '{campaign['Id']}'",
        )
    }
    assert {k: statuses[k] for k in ("Sent", "Opened", "Clicked", "Bounced", "Unsubscribed")} == {
        "Sent": False,
        "Opened": True,
        "Clicked": True,
        "Bounced": False,
        "Unsubscribed": False,
    }
    assert members(w, campaign["Id"]) == {
        ids["opener@example.org"]: "Opened",
        ids["clicker@example.org"]: "Clicked",
        ids["bouncer@example.org"]: "Bounced",
        ids["leaver@example.org"]: "Unsubscribed",
    }
    # The opt-out follows the opt-out rules; the stranger is counted, not created.
    [lead] = rows(w, "SELECT HasOptedOutOfEmail FROM Lead")
    assert lead["HasOptedOutOfEmail"] is True
    assert result["recipients_not_in_salesforce"] == 1
    [read] = result["campaigns"]
    assert read["sends"] == 5 and read["opens"] == 4 and read["clicks"] == 1, read
    assert read["complete"] is True


def test_a_second_run_writes_nothing_new_and_statuses_only_go_up(make_world):
    w = make_world(campaign_response_mode="campaign")
    ids = people(w)
    sent = send(w)
    activity = sent["campaign_activity_id"]
    typical_events(w, activity)
    first = run(w)
    again = run(w)
    assert "members_created" not in again and "campaigns_created" not in again, again
    assert again["records"] == 0, again
    # Calls of the second run: the listing, then one page of each report.
    assert again["cc_calls_for_results"] <= 8, again
    assert again["cc_calls_for_results"] * 3 < first["cc_calls_for_results"], (first, again)

    # The opener clicks later; the clicker opens again (no change); the bouncer's status stays.
    events(
        w,
        activity,
        {"type": "click", "email": "opener@example.org", "url": LINK},
        {"type": "open", "email": "clicker@example.org"},
    )
    third = run(w)
    assert third["members_updated"] == 1, third
    [campaign] = rows(w, "SELECT Id FROM Campaign")
    got = members(w, campaign["Id"])
    assert got[ids["opener@example.org"]] == "Clicked"
    assert got[ids["clicker@example.org"]] == "Clicked"
    assert len(rows(w, "SELECT Id FROM Campaign")) == 1


def test_activity_mode_makes_a_task_per_open_and_link_clicked(make_world):
    w = make_world(campaign_response_mode="activity")
    ids = people(w)
    sent = send(w)
    typical_events(w, sent["campaign_activity_id"])
    result = run(w)
    assert not rows(w, "SELECT Id FROM Campaign")
    tasks = rows(
        w, "SELECT Subject, Status, WhoId, WhatId, Description, ActivityDate FROM Task"
    )
    by = sorted((t["WhoId"], t["Subject"]) for t in tasks)
    assert by == sorted(
        [
            (ids["opener@example.org"], "Email Opened: March Appeal"),
            (ids["clicker@example.org"], "Email Opened: March Appeal"),
            (ids["clicker@example.org"], "Email Clicked: March Appeal"),
        ]
    )
    assert all(t["Status"] == "Completed" and t["WhatId"] is None for t in tasks)
    [click] = [t for t in tasks if t["Subject"].startswith("Email Clicked")]
    assert LINK in click["Description"]
    assert result["tasks_created"] == 3
    assert "tasks_created" not in run(w)


def test_campaign_and_activity_relates_contacts_tasks_to_the_campaign(make_world):
    w = make_world(campaign_response_mode="campaign_and_activity")
    people(w)
    sent = send(w)
    typical_events(w, sent["campaign_activity_id"])
    run(w)
    [campaign] = rows(w, "SELECT Id FROM Campaign")
    tasks = rows(w, "SELECT WhatId FROM Task")
    assert len(tasks) == 3 and all(t["WhatId"] == campaign["Id"] for t in tasks)


def test_all_recipients_creates_the_ones_salesforce_lacks(make_world):
    w = make_world(campaign_response_mode="campaign", sync_all_campaign_recipients=True)
    people(w)
    sent = send(w)
    typical_events(w, sent["campaign_activity_id"])
    result = run(w)
    [stranger] = rows(w, "SELECT Id, FirstName, LastName FROM Contact WHERE Email = 'stranger@example.org'")
    assert (stranger["FirstName"], stranger["LastName"]) == ("Sam", "Stranger")
    [campaign] = rows(w, "SELECT Id FROM Campaign")
    assert members(w, campaign["Id"])[stranger["Id"]] == "Opened"
    assert "recipients_not_in_salesforce" not in result


def test_selection_limits_the_campaigns_read(make_world):
    w = make_world(campaign_response_mode="campaign", campaign_selection=["march appeal"])
    people(w)
    send(w)
    send(w, name="Gala Invite", subject="Join us")
    result = run(w)
    assert [r["Name"] for r in rows(w, "SELECT Name FROM Campaign")] == ["March Appeal"]
    assert result["campaigns_not_selected"] == 1


def test_a_campaign_deleted_in_salesforce_comes_back_only_by_reset(make_world):
    w = make_world(campaign_response_mode="campaign")
    people(w)
    sent = send(w)
    typical_events(w, sent["campaign_activity_id"])
    run(w)
    [campaign] = rows(w, "SELECT Id FROM Campaign")
    w.sf_delete(campaign["Id"], "Campaign")
    later = run(w)
    assert not rows(w, "SELECT Id FROM Campaign")
    assert "was deleted" in str(w.runs()[-1]["message"]) if hasattr(w, "runs") else True
    assert "campaigns_created" not in later
    reset = run(w, reset=True)
    assert reset["campaigns_created"] == 1, reset
    [again] = rows(w, "SELECT Id FROM Campaign")
    assert len(members(w, again["Id"])) == 4


def test_a_member_salesforce_refuses_is_a_sync_error_tried_again(make_world):
    w = make_world(campaign_response_mode="activity")
    ids = people(w)
    sent = send(w)
    typical_events(w, sent["campaign_activity_id"])
    # The clicker's Contact goes away between the read and the write: simulate by deleting it
    # before the run, with its link still pointing at it.
    w.sf_delete(ids["opener@example.org"])
    result = run(w)
    assert result.get("errors", 0) >= 1, result
    with w.store.transaction() as session:
        open_errors = errors_repo.list_errors(session, w.setup_id)
    assert any(e.cc_contact_id for e in open_errors)
