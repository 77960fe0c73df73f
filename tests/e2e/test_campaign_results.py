"""Campaign results end to end on the sandboxes: CC sends and events → SF Campaigns, Tasks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from middleware.results import run as results_run
from middleware.store import errors as errors_repo
from middleware.store import links as links_repo
from middleware.store import runs as run_repo
from tests.e2e.harness import CC_BASE, SF_BASE, SF_VERSION, World

SF_VERSION_PATH = f"v{SF_VERSION}"

LINK = "https://example.org/donate"


@pytest.fixture
def make_world() -> Iterator[Any]:
    made: list[World] = []

    def make(sf_config: dict[str, Any] | None = None, **options: Any) -> World:
        w = World(options=options, sf_config=sf_config)
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


def run_message(w: World, result: dict[str, Any]) -> str:
    with w.store.transaction() as session:
        return str(run_repo.get_run(session, result["run_id"]).message)


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
        f"SELECT LeadOrContactId, Status FROM CampaignMember WHERE CampaignId = '{campaign_id}'",
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
        "SELECT Id, Name, Type, Status, StartDate, Description, NumberSent, IsActive FROM Campaign",
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
    read = result["campaigns"]["March Appeal"]
    assert read["sends"] == 5 and read["opens"] == 4 and read["clicks"] == 1, read
    assert "unfinished" not in read


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
    # Calls of the second run: the listing, then one page of each of the 6 reports.
    assert again["cc_calls_for_results"] == 7, again
    assert first["cc_calls_for_results"] == 10, first  # + the email, its activity, send_history

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


def test_a_member_added_by_hand_meanwhile_gets_its_status(make_world):
    w = make_world(campaign_response_mode="campaign")
    ids = people(w)
    sent = send(w)
    activity = sent["campaign_activity_id"]
    run(w)
    [campaign] = rows(w, "SELECT Id FROM Campaign")
    # The store forgets the opener (keys lost); someone had made them a member by hand.
    with w.store.transaction() as session:
        from middleware.store.models import ResultRecipient

        session.query(ResultRecipient).filter(
            ResultRecipient.email == "opener@example.org"
        ).delete()
    events(w, activity, {"type": "open", "email": "opener@example.org"})
    result = run(w)
    assert result["members_updated"] == 1 and "errors" not in result, result
    assert members(w, campaign["Id"])[ids["opener@example.org"]] == "Opened"


def test_activity_mode_makes_a_task_per_open_and_link_clicked(make_world):
    w = make_world(campaign_response_mode="activity")
    ids = people(w)
    sent = send(w)
    typical_events(w, sent["campaign_activity_id"])
    result = run(w)
    assert not rows(w, "SELECT Id FROM Campaign")
    tasks = rows(w, "SELECT Subject, Status, WhoId, WhatId, Description, ActivityDate FROM Task")
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
    [stranger] = rows(
        w, "SELECT Id, FirstName, LastName FROM Contact WHERE Email = 'stranger@example.org'"
    )
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
    assert "Campaign of email 'March Appeal' was deleted" in run_message(w, later)
    assert "campaigns_created" not in later
    reset = run(w, reset=True)
    assert reset["campaigns_created"] == 1, reset
    [again] = rows(w, "SELECT Id FROM Campaign")
    assert len(members(w, again["Id"])) == 4


def test_a_record_salesforce_refuses_is_a_sync_error_tried_again(make_world):
    w = make_world(campaign_response_mode="activity")
    ids = people(w)
    sent = send(w)
    typical_events(w, sent["campaign_activity_id"])
    # The setup's link still names a Contact someone has deleted: Salesforce refuses its Task.
    gone = ids["opener@example.org"]
    with w.store.transaction() as session:
        links_repo.upsert_links(
            session,
            w.setup_id,
            [{"sf_id": gone, "sf_object": "Contact", "email": "opener@example.org"}],
        )
    w.sf_delete(gone)
    result = run(w)
    assert result["errors"] == 1 and result["tasks_created"] == 2, result
    with w.store.transaction() as session:
        [error] = errors_repo.list_errors(session, w.setup_id)
        assert error.code == "ENTITY_IS_DELETED" and error.direction == "cc_to_sf"
        assert "Task for 'March Appeal'" in error.message
    # Someone fixes the record; the next run tries the recipient again, with nothing new read.
    fixed = w.sf_create("Contact", LastName="Opener", Email="opener@example.org")
    with w.store.transaction() as session:
        links_repo.retire_links(session, w.setup_id, [gone])
    again = run(w)
    assert again["tasks_created"] == 1 and "errors" not in again, again
    assert [t["WhoId"] for t in rows(w, "SELECT WhoId FROM Task WHERE Subject LIKE 'Email Opened%'")
            if t["WhoId"] == fixed]  # fmt: skip
    with w.store.transaction() as session:
        assert [e.status for e in errors_repo.list_errors(session, w.setup_id, status=None)] == [
            "resolved"
        ]


def test_the_email_is_attached_to_its_campaign_once(make_world):
    w = make_world(campaign_response_mode="campaign")
    people(w)
    send(w)
    run(w)
    run(w)
    [campaign] = rows(w, "SELECT Id FROM Campaign")
    links = rows(
        w,
        "SELECT ContentDocumentId FROM ContentDocumentLink"
        f" WHERE LinkedEntityId = '{campaign['Id']}'",
    )
    assert len(links) == 1
    [version] = rows(
        w,
        "SELECT Id, Title, FileExtension FROM ContentVersion"
        f" WHERE ContentDocumentId = '{links[0]['ContentDocumentId']}'",
    )
    assert (version["Title"], version["FileExtension"]) == ("March Appeal", "html")
    body = w.sf_session.get(
        f"{SF_BASE}/services/data/{SF_VERSION_PATH}/sobjects/ContentVersion/{version['Id']}/VersionData",
        headers={"Authorization": f"Bearer {w.sf_token}"},
    )
    assert b"Help us this spring" in body.content


def test_ab_tests_are_reported_as_not_supported(make_world):
    w = make_world(campaign_response_mode="campaign")
    people(w)
    list_id = w.cc_client().get_or_create_list("Main List")["list_id"]
    r = w.cc_session.post(
        f"{CC_BASE}/_sandbox/emails",
        json={"name": "Subject test", "subject": "A", "list_ids": [list_id], "type_code": 57,
              "ab_test": {"alternative_subject": "B", "test_size": 10, "winner_wait_duration": 24}},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    r = w.cc_session.post(
        f"{CC_BASE}/_sandbox/emails",
        json={"name": "Welcome series", "subject": "Hello", "list_ids": [list_id],
              "type": "AUTOMATED_EMAIL", "type_code": 0},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    result = run(w)
    assert result["campaigns_not_supported"] == 2
    assert not rows(w, "SELECT Id FROM Campaign")
    message = run_message(w, result)
    assert "'Subject test' (an A/B test" in message
    assert "'Welcome series' (an automated email" in message


def test_person_accounts_get_members_and_tasks_through_their_person_contact(make_world):
    w = make_world(
        sf_config={"ORG_PROFILE": "person_accounts"},
        object_type="Account",
        campaign_response_mode="campaign_and_activity",
    )
    account = w.sf_create("Account", FirstName="Pat", LastName="Person", PersonEmail="pat@ex.org")
    [row] = rows(w, f"SELECT PersonContactId FROM Account WHERE Id = '{account}'")
    cc_add(w, "pat@ex.org", "Pat", "Person")
    sent = send(w)
    events(w, sent["campaign_activity_id"], {"type": "click", "email": "pat@ex.org", "url": LINK})
    result = run(w)
    assert (result["members_created"], result["tasks_created"]) == (1, 2), result
    [campaign] = rows(w, "SELECT Id FROM Campaign")
    assert members(w, campaign["Id"]) == {row["PersonContactId"]: "Clicked"}
    tasks = rows(w, "SELECT WhoId, WhatId FROM Task")
    assert {(t["WhoId"], t["WhatId"]) for t in tasks} == {(row["PersonContactId"], campaign["Id"])}


def test_results_are_due_every_interval_and_only_when_wanted(make_world):
    from datetime import UTC, datetime, timedelta

    from jobs import results as results_jobs
    from middleware import queue

    w = make_world(campaign_response_mode="campaign", campaign_results={"every_hours": 6})
    other = make_world()  # campaign_response_mode none: never due
    t0 = datetime.now(UTC)
    assert results_run.due_setups(other.store, t0) == []
    assert results_run.due_setups(w.store, t0) == [w.setup_id]
    run(w)
    assert results_run.due_setups(w.store, t0 + timedelta(hours=5)) == []
    assert results_run.due_setups(w.store, t0 + timedelta(hours=6, minutes=1)) == [w.setup_id]
    with queue.use_runtime(w.runtime):
        assert results_jobs.results_tick() == []  # just ran
