"""Campaign lists end to end: Salesforce Campaigns become Constant Contact lists and stay current
through Sync Now, CampaignMember / Campaign change events, and the Full Sync."""

from __future__ import annotations

from typing import Any

import pytest

from middleware.fullsync.run import run_full_sync
from middleware.store import cursors, runs
from middleware.sync_now import run_sync_now
from tests.e2e.harness import World, world

OPTIONS = {"campaign_lists": {"source": "campaigns"}}


def lists_by_name(w: World) -> dict[str, str]:
    return {str(item["name"]): str(item["list_id"]) for item in w.cc_client().iter_lists()}


def memberships(w: World, email: str) -> set[str]:
    contact = w.cc_contact(email)
    assert contact is not None, email
    names = {v: k for k, v in lists_by_name(w).items()}
    return {names.get(lid, lid) for lid in contact.get("list_memberships") or ()}


def sync_now(w: World) -> dict[str, Any]:
    w.last_sf, w.last_cc = w.sf_client(), w.cc_client()
    return run_sync_now(w.runtime, w.setup_id, sf=w.last_sf, cc=w.last_cc)


def run_message(w: World, summary: dict[str, Any]) -> str:
    with w.store.transaction() as session:
        run = runs.get_run(session, summary["run_id"])
        assert run is not None
        return run.message or ""


def people(w: World) -> dict[str, str]:
    ids = {}
    for name in ("ann", "bob", "cat", "dan"):
        ids[name] = w.sf_create(FirstName=name.title(), LastName="Member", Email=f"{name}@ex.org")
    return ids


def test_active_campaigns_with_members_become_lists_and_only_members_sync() -> None:
    with world(options=OPTIONS) as w:
        w.deliver_to_webhook = False
        p = people(w)
        spring = w.sf_create("Campaign", Name="Spring Gala", IsActive=True)
        dormant = w.sf_create("Campaign", Name="Dormant Drive", IsActive=False)
        w.sf_create("Campaign", Name="Nobody Yet", IsActive=True)
        for who in ("ann", "bob"):
            w.sf_create("CampaignMember", CampaignId=spring, ContactId=p[who])
        for who in ("bob", "dan"):
            w.sf_create("CampaignMember", CampaignId=dormant, ContactId=p[who])

        summary = sync_now(w)

        names = lists_by_name(w)
        assert "Spring Gala" in names
        assert "Dormant Drive" not in names  # inactive
        assert "Nobody Yet" not in names  # no members
        assert memberships(w, "ann@ex.org") == {"Main List", "Spring Gala"}
        assert memberships(w, "bob@ex.org") == {"Main List", "Spring Gala"}
        # Only members of a maintained Campaign are in scope (the seed guide).
        assert w.cc_contact("cat@ex.org") is None
        assert w.cc_contact("dan@ex.org") is None
        assert summary["sf_to_cc"]["imported"] == 2, summary


def test_members_added_and_removed_through_change_events_follow_within_one_flush() -> None:
    with world(options=OPTIONS) as w:
        w.deliver_to_webhook = False
        p = people(w)
        spring = w.sf_create("Campaign", Name="Spring Gala", IsActive=True)
        member_ann = w.sf_create("CampaignMember", CampaignId=spring, ContactId=p["ann"])
        w.sf_create("CampaignMember", CampaignId=spring, ContactId=p["bob"])
        sync_now(w)
        assert memberships(w, "ann@ex.org") == {"Main List", "Spring Gala"}

        w.deliver_to_webhook = True
        # Cat joins the Campaign; Ann leaves it.
        w.sf_create("CampaignMember", CampaignId=spring, ContactId=p["cat"])
        w.sf_delete(member_ann, "CampaignMember")
        assert w.last_webhook.status_code == 202, w.last_webhook.get_json()
        w.flush()
        assert memberships(w, "cat@ex.org") == {"Main List", "Spring Gala"}
        ann = w.cc_contact("ann@ex.org")
        assert ann is not None
        # Out of every maintained Campaign: off the setup's lists, never unsubscribed.
        assert memberships(w, "ann@ex.org") == set()
        assert ann["email_address"]["permission_to_send"] != "unsubscribed"
        assert memberships(w, "bob@ex.org") == {"Main List", "Spring Gala"}


def test_a_renamed_campaign_renames_its_list_and_a_deactivated_one_is_frozen() -> None:
    with world(options=OPTIONS) as w:
        w.deliver_to_webhook = False
        p = people(w)
        spring = w.sf_create("Campaign", Name="Spring Gala", IsActive=True)
        autumn = w.sf_create("Campaign", Name="Autumn Appeal", IsActive=True)
        w.sf_create("CampaignMember", CampaignId=spring, ContactId=p["ann"])
        w.sf_create("CampaignMember", CampaignId=autumn, ContactId=p["ann"])
        w.sf_create("CampaignMember", CampaignId=autumn, ContactId=p["bob"])
        sync_now(w)
        list_id = lists_by_name(w)["Spring Gala"]

        w.deliver_to_webhook = True
        w.sf_update(spring, "Campaign", Name="Spring Gala 2027")
        w.sf_update(autumn, "Campaign", IsActive=False)
        summary = w.flush()

        names = lists_by_name(w)
        assert names["Spring Gala 2027"] == list_id  # linked by the Campaign's id
        assert "Spring Gala" not in names
        assert "Autumn Appeal" in names  # never deleted
        assert "Campaign 'Autumn Appeal' is no longer active" in run_message(w, summary)
        # The frozen list keeps its members, even Bob's, who is now in no maintained Campaign.
        assert "Autumn Appeal" in memberships(w, "ann@ex.org")
        assert memberships(w, "bob@ex.org") == {"Autumn Appeal"}


def test_selected_record_types_and_excluded_choose_the_campaigns() -> None:
    options = {
        "campaign_lists": {
            "source": "campaigns",
            "selected": ["Spring Gala", "Webinar Week", "Missing One"],
            "excluded": ["Webinar Week"],
        }
    }
    with world(options=options) as w:
        w.deliver_to_webhook = False
        p = people(w)
        for name, who in (("Spring Gala", "ann"), ("Webinar Week", "bob"), ("Other", "cat")):
            campaign = w.sf_create("Campaign", Name=name, IsActive=True)
            w.sf_create("CampaignMember", CampaignId=campaign, ContactId=p[who])
        summary = sync_now(w)
        names = lists_by_name(w)
        assert "Spring Gala" in names
        assert "Webinar Week" not in names and "Other" not in names
        assert w.cc_contact("bob@ex.org") is None
        assert "no Campaign named 'Missing One'" in run_message(w, summary)


def test_full_sync_repairs_lists_both_ways() -> None:
    with world(options=OPTIONS) as w:
        w.deliver_to_webhook = False
        p = people(w)
        spring = w.sf_create("Campaign", Name="Spring Gala", IsActive=True)
        member_ann = w.sf_create("CampaignMember", CampaignId=spring, ContactId=p["ann"])
        w.sf_create("CampaignMember", CampaignId=spring, ContactId=p["bob"])
        sync_now(w)
        # Changes whose events never arrived: Cat joined, Ann left.
        w.sf_create("CampaignMember", CampaignId=spring, ContactId=p["cat"])
        w.sf_delete(member_ann, "CampaignMember")
        w.last_sf, w.last_cc = w.sf_client(), w.cc_client()
        run_full_sync(w.runtime, w.setup_id, sf=w.last_sf, cc=w.last_cc)
        assert memberships(w, "cat@ex.org") == {"Main List", "Spring Gala"}
        assert memberships(w, "ann@ex.org") == set()
        assert memberships(w, "bob@ex.org") == {"Main List", "Spring Gala"}
        with w.store.transaction() as session:
            assert cursors.get_cursor(session, w.setup_id, "campaign_lists")


# --- List Views ------------------------------------------------------------------------------

VIEWS = {"campaign_lists": {"source": "list_views", "selected": ["Bay Area Subscribers"]}}


def city_people(w: World) -> dict[str, str]:
    cities = {"ann": "San Francisco", "bob": "Oakland", "cat": "Chicago"}
    return {
        name: w.sf_create(
            FirstName=name.title(), LastName="Viewer", Email=f"{name}@ex.org", MailingCity=city
        )
        for name, city in cities.items()
    }


def test_a_list_view_becomes_a_list_and_record_edits_move_people_in_and_out() -> None:
    with world(options=VIEWS) as w:
        w.deliver_to_webhook = False
        p = city_people(w)
        sync_now(w)
        assert memberships(w, "ann@ex.org") == {"Main List", "Bay Area Subscribers"}
        assert memberships(w, "bob@ex.org") == {"Main List", "Bay Area Subscribers"}
        assert w.cc_contact("cat@ex.org") is None  # not in the view: not in scope

        w.deliver_to_webhook = True
        w.sf_update(p["cat"], MailingCity="Berkeley")
        w.sf_update(p["ann"], MailingCity="Chicago")
        w.flush()
        assert memberships(w, "cat@ex.org") == {"Main List", "Bay Area Subscribers"}
        assert memberships(w, "ann@ex.org") == set()  # left the view: off the setup's lists
        assert w.cc_contact("ann@ex.org")["email_address"]["permission_to_send"] != "unsubscribed"

        # Missed by events: the Full Sync re-reads every view whole.
        w.deliver_to_webhook = False
        w.sf_update(p["bob"], MailingCity="Chicago")
        w.last_sf, w.last_cc = w.sf_client(), w.cc_client()
        run_full_sync(w.runtime, w.setup_id, sf=w.last_sf, cc=w.last_cc)
        assert memberships(w, "bob@ex.org") == set()
        assert memberships(w, "cat@ex.org") == {"Main List", "Bay Area Subscribers"}


def test_a_list_view_the_org_refuses_is_a_sync_error_and_loses_nothing() -> None:
    options = {
        "campaign_lists": {"source": "list_views", "selected": ["Bay Area Subscribers", "Broken"]}
    }
    with world(options=options) as w:
        w.deliver_to_webhook = False
        made = w.sf_session.post(
            f"{w.sf_app.config.get('BASE_URL', 'https://sf.sandbox.test')}/_sandbox/listviews",
            json={
                "sobjectType": "Contact",
                "label": "Broken",
                "where": "Gone__c = true",
                "allow_invalid": True,
            },
        )
        assert made.status_code in (200, 201), made.text
        city_people(w)
        summary = sync_now(w)
        message = run_message(w, summary)
        assert "List View 'Broken' cannot be read" in message, message
        # Ann and Bob are in the working view; Cat is in neither, but while a selected view
        # cannot be read nobody is taken out of scope because of it.
        assert memberships(w, "ann@ex.org") == {"Main List", "Bay Area Subscribers"}
        assert w.cc_contact("cat@ex.org") is None
        errors = w.web.get(
            f"/admin/api/setups/{w.setup_id}/errors",
            headers={"Authorization": "Bearer e2e-admin"},
        ).get_json()
        assert any("Broken" in e["message"] for e in errors["items"]), errors


def test_a_campaign_past_the_accounts_list_cap_is_a_sync_error_and_the_others_go_on(
    monkeypatch: Any,
) -> None:
    from sandbox.constantcontact import store as cc_store

    monkeypatch.setattr(cc_store, "MAX_LISTS", 2)  # the main list and one more
    with world(options=OPTIONS) as w:
        w.deliver_to_webhook = False
        p = people(w)
        first = w.sf_create("Campaign", Name="Alpha Appeal", IsActive=True)
        second = w.sf_create("Campaign", Name="Beta Benefit", IsActive=True)
        w.sf_create("CampaignMember", CampaignId=first, ContactId=p["ann"])
        w.sf_create("CampaignMember", CampaignId=second, ContactId=p["bob"])
        summary = sync_now(w)
        assert "Campaign 'Beta Benefit' gets no list" in run_message(w, summary)
        assert memberships(w, "ann@ex.org") == {"Main List", "Alpha Appeal"}
        assert w.cc_contact("bob@ex.org") is None
        admin = {"Authorization": "Bearer e2e-admin"}
        errors = w.web.get(f"/admin/api/setups/{w.setup_id}/errors", headers=admin).get_json()
        (error,) = [e for e in errors["items"] if e["code"] == "list_cap"]
        assert error["sf_id"] == second

        # Lists freed (the cap raised here): retrying the error makes the list and syncs Bob.
        monkeypatch.setattr(cc_store, "MAX_LISTS", 1000)
        retried = w.web.post(
            f"/admin/api/setups/{w.setup_id}/errors/retry", json={"all": True}, headers=admin
        )
        assert retried.status_code in (200, 202), retried.get_json()
        w.flush()
        assert memberships(w, "bob@ex.org") == {"Main List", "Beta Benefit"}
        errors = w.web.get(f"/admin/api/setups/{w.setup_id}/errors", headers=admin).get_json()
        assert not [e for e in errors["items"] if e["code"] == "list_cap" and e["status"] == "open"]


@pytest.mark.parametrize("export_from", [25, 1], ids=["lookups by address", "one export"])
def test_links_an_import_made_without_contact_ids_still_change_lists(
    monkeypatch: Any, export_from: int
) -> None:
    from sqlalchemy import select, update

    from middleware.sf_to_cc import read
    from middleware.store.models import Link

    monkeypatch.setattr(read, "EXPORT_FILL_FROM", export_from)
    with world(options=OPTIONS) as w:
        w.deliver_to_webhook = False
        p = people(w)
        spring = w.sf_create("Campaign", Name="Spring Gala", IsActive=True)
        autumn = w.sf_create("Campaign", Name="Autumn Appeal", IsActive=True)
        member_ann = w.sf_create("CampaignMember", CampaignId=spring, ContactId=p["ann"])
        w.sf_create("CampaignMember", CampaignId=autumn, ContactId=p["ann"])
        w.sf_create("CampaignMember", CampaignId=spring, ContactId=p["bob"])
        w.last_sf, w.last_cc = w.sf_client(), w.cc_client()
        run_full_sync(w.runtime, w.setup_id, sf=w.last_sf, cc=w.last_cc)
        # As a large first import leaves them (the JSON import answers no contact ids, and a
        # Full Sync fills at most 50,000 a run): links that know only the address.
        with w.store.transaction() as session:
            session.execute(update(Link).values(cc_contact_id=None))
        w.deliver_to_webhook = True
        w.sf_delete(member_ann, "CampaignMember")  # Ann leaves Spring, stays in Autumn
        w.sf_create("CampaignMember", CampaignId=autumn, ContactId=p["bob"])  # Bob joins Autumn
        w.flush()
        assert memberships(w, "ann@ex.org") == {"Main List", "Autumn Appeal"}
        assert memberships(w, "bob@ex.org") == {"Main List", "Spring Gala", "Autumn Appeal"}
        if export_from == 1:
            # The export filled every link of the setup, the unchanged ones too.
            with w.store.transaction() as session:
                ids = session.scalars(select(Link.cc_contact_id)).all()
            assert ids and all(ids), ids


def test_a_lead_setup_keeps_only_the_campaigns_lead_members() -> None:
    with world(options={"object_type": "Lead", **OPTIONS}) as w:
        w.deliver_to_webhook = False
        lead = w.sf_create("Lead", LastName="Lead", Company="Acme", Email="lead@ex.org")
        other = w.sf_create("Lead", LastName="Other", Company="Acme", Email="other@ex.org")
        contact = w.sf_create(FirstName="Con", LastName="Tact", Email="contact@ex.org")
        gala = w.sf_create("Campaign", Name="Spring Gala", IsActive=True)
        contacts_only = w.sf_create("Campaign", Name="Contacts Only", IsActive=True)
        w.sf_create("CampaignMember", CampaignId=gala, LeadId=lead)
        w.sf_create("CampaignMember", CampaignId=gala, ContactId=contact)
        w.sf_create("CampaignMember", CampaignId=contacts_only, ContactId=contact)
        sync_now(w)
        assert memberships(w, "lead@ex.org") == {"Main List", "Spring Gala"}
        assert w.cc_contact("other@ex.org") is None  # a Lead in no Campaign
        assert w.cc_contact("contact@ex.org") is None  # a Contact: not this setup's object
        assert "Contacts Only" not in lists_by_name(w)  # no Lead members
        assert other


def test_records_held_by_a_refused_view_are_released_once_it_is_deselected() -> None:
    admin = {"Authorization": "Bearer e2e-admin"}
    with world(options=VIEWS) as w:
        w.deliver_to_webhook = False
        broken = w.sf_session.post(
            "https://sf.sandbox.test/_sandbox/listviews",
            json={"sobjectType": "Contact", "label": "Broken", "where": "Gone__c = true",
                  "allow_invalid": True},
        )  # fmt: skip
        assert broken.status_code in (200, 201), broken.text
        p = city_people(w)
        sync_now(w)
        assert memberships(w, "ann@ex.org") == {"Main List", "Bay Area Subscribers"}

        def select(*names: str) -> None:
            body = {"campaign_lists": {"source": "list_views", "selected": list(names)}}
            answer = w.web.patch(f"/admin/api/setups/{w.setup_id}", json=body, headers=admin)
            assert answer.status_code == 200, answer.get_json()

        # Ann leaves the view while a selected view cannot be read: she is held, not removed.
        select("Bay Area Subscribers", "Broken")
        w.sf_update(p["ann"], MailingCity="Chicago")
        sync_now(w)
        assert memberships(w, "ann@ex.org") == {"Main List", "Bay Area Subscribers"}
        # The broken view deselected: nothing holds her any more, and she leaves.
        select("Bay Area Subscribers")
        sync_now(w)
        assert memberships(w, "ann@ex.org") == set()


def test_an_account_that_refuses_us_stops_the_run_instead_of_failing_each_campaign(
    monkeypatch: Any,
) -> None:
    from middleware.constantcontact import errors as cc_errors
    from middleware.constantcontact.client import ConstantContactClient

    def forbidden(self: Any, name: str, description: str | None = None) -> Any:
        raise cc_errors.Forbidden("the application was deactivated", status=403)

    with world(options=OPTIONS) as w:
        w.deliver_to_webhook = False
        p = people(w)
        spring = w.sf_create("Campaign", Name="Spring Gala", IsActive=True)
        w.sf_create("CampaignMember", CampaignId=spring, ContactId=p["ann"])
        monkeypatch.setattr(ConstantContactClient, "create_list", forbidden)
        summary = sync_now(w)
        assert summary["failed"] == "constantcontact needs_reauth", summary
        admin = {"Authorization": "Bearer e2e-admin"}
        errors = w.web.get(f"/admin/api/setups/{w.setup_id}/errors", headers=admin).get_json()
        assert not [e for e in errors["items"] if e["sf_id"] == spring], errors


def test_person_accounts_join_campaigns_through_their_person_contact() -> None:
    options = {"object_type": "Account", **OPTIONS}
    with world(options=options, sf_config={"ORG_PROFILE": "person_accounts"}) as w:
        w.deliver_to_webhook = False
        store = w.sf_app.extensions["sf_sandbox"].store
        people_ids = {}
        for name in ("pat", "sam"):
            account = w.sf_create(
                "Account", FirstName=name.title(), LastName="Person", PersonEmail=f"{name}@ex.org"
            )
            row = next(
                iter(
                    store.query(f"SELECT PersonContactId FROM Account WHERE Id = '{account}'").rows
                )
            )
            people_ids[name] = str(row["PersonContactId"])
        gala = w.sf_create("Campaign", Name="Spring Gala", IsActive=True)
        pat = w.sf_create("CampaignMember", CampaignId=gala, ContactId=people_ids["pat"])
        sync_now(w)
        assert memberships(w, "pat@ex.org") == {"Main List", "Spring Gala"}
        assert w.cc_contact("sam@ex.org") is None  # a Person Account in no Campaign
        # Sam joins and Pat leaves, events lost: the Full Sync (Bulk rows) repairs both.
        w.sf_create("CampaignMember", CampaignId=gala, ContactId=people_ids["sam"])
        w.sf_delete(pat, "CampaignMember")
        w.last_sf, w.last_cc = w.sf_client(), w.cc_client()
        run_full_sync(w.runtime, w.setup_id, sf=w.last_sf, cc=w.last_cc)
        assert memberships(w, "sam@ex.org") == {"Main List", "Spring Gala"}
        assert memberships(w, "pat@ex.org") == set()


def test_a_checkbox_list_follows_its_checkbox_both_ways() -> None:
    options = {"checkbox_lists": [{"field": "Newsletter__c", "list": "Newsletter"}]}
    config = {"CUSTOM_FIELDS": {"Contact": [{"name": "Newsletter__c", "type": "boolean"}]}}
    with world(options=options, sf_config=config) as w:
        w.deliver_to_webhook = False
        ann = w.sf_create(LastName="Ann", Email="ann@ex.org", Newsletter__c=True)
        w.sf_create(LastName="Bob", Email="bob@ex.org", Newsletter__c=False)
        sync_now(w)
        assert memberships(w, "ann@ex.org") == {"Main List", "Newsletter"}
        assert memberships(w, "bob@ex.org") == {"Main List"}  # synced, not on the list
        w.deliver_to_webhook = True
        w.sf_update(ann, Newsletter__c=False)
        w.flush()
        assert memberships(w, "ann@ex.org") == {"Main List"}
