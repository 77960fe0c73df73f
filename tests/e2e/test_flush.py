"""Salesforce → Constant Contact through the real pipeline: sandbox records, flush, CC contacts."""

from __future__ import annotations

from middleware import intake
from middleware.sync_now import run_sync_now
from tests.e2e.harness import world


def test_new_contacts_reach_the_main_list_in_one_import() -> None:
    with world() as w:
        w.deliver_to_webhook = False
        ids = [
            w.sf_create(FirstName=f"Ada{i}", LastName="Lovelace", Email=f"ada{i}@example.org")
            for i in range(25)
        ]
        intake.mark_dirty(w.redis, w.setup_id, "Contact", ids)
        summary = w.flush()
        assert summary["records"] == 25
        contact = w.cc_contact("ada3@example.org")
        assert contact is not None
        assert contact["first_name"] == "Ada3"
        assert intake.pending(w.redis, w.setup_id) == 0
        assert w.last_cc.calls.total <= 6, w.last_cc.calls.snapshot()


def test_sync_now_catches_up_everything_then_only_what_changed() -> None:
    with world() as w:
        w.deliver_to_webhook = False
        for i in range(30):
            w.sf_create(FirstName="Grace", LastName=f"Hopper{i}", Email=f"grace{i}@example.org")
        w.sf_create(LastName="NoEmail")
        w.sf_create(LastName="Role", Email="sales@example.org")
        first = runner_sync_now(w)
        pushed = first["sf_to_cc"]
        assert pushed["imported"] == 30
        assert pushed["skipped"] == {"no email": 1, "role address": 1}
        assert w.cc_contact("grace7@example.org")["last_name"] == "Hopper7"
        assert w.cc_contact("sales@example.org") is None
        # The poll of the same Sync Now sees our own contacts and creates nothing from them.
        assert "created" not in first.get("cc_to_sf", {}), first
        # Nothing changed: the overlap re-reads recent records but writes nothing.
        second = runner_sync_now(w)
        assert second["sf_to_cc"].get("imported", 0) == 0
        assert second["sf_to_cc"]["skipped"].get("unchanged", 0) >= 30


def runner_sync_now(w):
    w.last_sf, w.last_cc = w.sf_client(), w.cc_client()
    return run_sync_now(w.runtime, w.setup_id, sf=w.last_sf, cc=w.last_cc)


def test_opt_out_delete_and_email_change_follow_the_options() -> None:
    options = {"unsubscribe_on_sf_opt_out": True, "remove_on_sf_delete": True}
    with world(options=options) as w:
        w.deliver_to_webhook = False
        keep = w.sf_create(LastName="Keep", Email="keep@example.org")
        leave = w.sf_create(LastName="Leave", Email="leave@example.org")
        gone = w.sf_create(LastName="Gone", Email="gone@example.org")
        moved = w.sf_create(LastName="Moved", Email="old@example.org")
        intake.mark_dirty(w.redis, w.setup_id, "Contact", [keep, leave, gone, moved])
        w.flush()
        main = w.cc_contact("keep@example.org")["list_memberships"]
        assert main

        w.sf_update(leave, HasOptedOutOfEmail=True)
        w.sf_delete(gone)
        w.sf_update(moved, Email="new@example.org")
        intake.mark_dirty(w.redis, w.setup_id, "Contact", [leave, gone, moved])
        summary = w.flush()
        assert summary.get("unsubscribed") == 1, summary

        left = w.cc_contact("leave@example.org")
        assert left["email_address"]["permission_to_send"] == "unsubscribed"
        assert left["list_memberships"] == []
        removed = w.cc_contact("gone@example.org")
        assert removed["list_memberships"] == []
        assert removed["email_address"]["permission_to_send"] != "unsubscribed"
        assert w.cc_contact("old@example.org") is None
        assert w.cc_contact("new@example.org")["last_name"] == "Moved"


def test_changes_flow_from_salesforce_events_through_the_webhook() -> None:
    with world() as w:
        a = w.sf_create(FirstName="Katherine", LastName="Johnson", Email="kj@example.org")
        assert w.last_webhook.status_code == 202, w.last_webhook.json
        b = w.sf_create(LastName="Vaughan", Email="dv@example.org")
        w.sf_update(a, Title="Mathematician")
        summary = w.flush()
        assert summary["records"] == 2
        assert w.cc_contact("kj@example.org")["job_title"] == "Mathematician"
        # Our own write-back to Salesforce would come back as an echo: nothing to do.
        r = w.sf_session.patch(
            f"https://sf.sandbox.test/services/data/v66.0/sobjects/Contact/{b}",
            json={"Title": "Engineer"},
            headers={
                "Authorization": f"Bearer {w.sf_token}",
                "Sforce-Call-Options": "client=ctct-sync",
            },
        )
        assert r.status_code == 204
        assert w.last_webhook.json["echoes_ignored"] == 1
        assert w.flush()["records"] == 0


def test_undelete_puts_a_removed_contact_back_on_the_list() -> None:
    with world(options={"remove_on_sf_delete": True}) as w:
        w.deliver_to_webhook = False
        rid = w.sf_create(LastName="Phoenix", Email="phoenix@example.org")
        intake.mark_dirty(w.redis, w.setup_id, "Contact", [rid])
        w.flush()
        main = list(w.cc_contact("phoenix@example.org")["list_memberships"])
        w.sf_delete(rid)
        intake.mark_dirty(w.redis, w.setup_id, "Contact", [rid])
        w.flush()
        assert w.cc_contact("phoenix@example.org")["list_memberships"] == []
        r = w.sf_session.post(f"https://sf.sandbox.test/_sandbox/records/Contact/{rid}/undelete")
        assert r.status_code in (200, 201), r.text
        intake.mark_dirty(w.redis, w.setup_id, "Contact", [rid])
        w.flush()
        assert w.cc_contact("phoenix@example.org")["list_memberships"] == main


def test_two_records_with_one_email_make_one_contact_owned_by_the_oldest() -> None:
    with world() as w:
        w.deliver_to_webhook = False
        older = w.sf_create(LastName="Older", Email="Shared@Example.org")
        newer = w.sf_create(LastName="Newer", Email="shared@EXAMPLE.org")
        intake.mark_dirty(w.redis, w.setup_id, "Contact", [older, newer])
        summary = w.flush()
        assert w.cc_contact("shared@example.org")["last_name"] == "Older"
        assert summary["skipped"] == {f"duplicate of {older}": 1}


def test_the_filter_decides_who_syncs_and_who_leaves_the_list() -> None:
    options = {
        "filter": {
            "match": "all",
            "conditions": [{"field": "LeadSource", "op": "equals", "value": "Web"}],
        }
    }
    with world(options=options) as w:
        w.deliver_to_webhook = False
        web = w.sf_create(LastName="Web", Email="web@example.org", LeadSource="Web")
        phone = w.sf_create(LastName="Phone", Email="phone@example.org", LeadSource="Phone")
        intake.mark_dirty(w.redis, w.setup_id, "Contact", [web, phone])
        w.flush()
        assert w.cc_contact("web@example.org")["list_memberships"]
        assert w.cc_contact("phone@example.org") is None
        w.sf_update(web, LeadSource="Phone")
        intake.mark_dirty(w.redis, w.setup_id, "Contact", [web])
        w.flush()
        left = w.cc_contact("web@example.org")
        assert left["list_memberships"] == []  # leaves this setup's list, never deleted
        assert left["email_address"]["permission_to_send"] != "unsubscribed"


def test_quota_exceeded_pauses_the_setup_until_midnight_and_keeps_the_changes() -> None:
    from middleware.store import runs, setups

    with world() as w:
        w.deliver_to_webhook = False
        rid = w.sf_create(LastName="Quota", Email="quota@example.org")
        intake.mark_dirty(w.redis, w.setup_id, "Contact", [rid])
        w.cc_session.post(
            "https://api.cc.sandbox.test/_sandbox/faults",
            json={"status": 429, "error_key": "quota_exceeded", "count": 50},
        )
        summary = w.flush()
        assert "quota" in summary["paused"]
        assert intake.pending(w.redis, w.setup_id) == 1  # nothing lost
        with w.store.transaction() as session:
            setup = setups.get(session, w.setup_id)
            assert setup.paused_until is not None and setup.paused_until.hour == 0
            run = runs.recent_runs(session, w.setup_id, 1)[0]
            assert run.status == "paused" and "resume" in run.message
        ready = w.web.get("/readyz")
        assert ready.status_code == 503
        assert "paused" in ready.get_data(as_text=True)
        # While paused, a flush leaves the changes where they are.
        assert "paused" in w.flush()


def test_an_outage_fails_the_run_visibly_and_keeps_the_changes_for_the_retry() -> None:
    import pytest

    from middleware.store import runs

    with world() as w:
        w.deliver_to_webhook = False
        rid = w.sf_create(LastName="Outage", Email="outage@example.org")
        intake.mark_dirty(w.redis, w.setup_id, "Contact", [rid])
        w.cc_session.post(
            "https://api.cc.sandbox.test/_sandbox/faults", json={"status": 503, "count": 50}
        )
        with pytest.raises(Exception, match="503"):
            w.flush()
        with w.store.transaction() as session:
            run = runs.recent_runs(session, w.setup_id, 1)[0]
            assert run.status == "failed" and "503" in run.message
        assert intake.pending(w.redis, w.setup_id) == 1
        w.cc_session.delete("https://api.cc.sandbox.test/_sandbox/faults")
        assert w.flush()["records"] == 1  # the retry finds the change still waiting
        assert w.cc_contact("outage@example.org") is not None


def test_addresses_the_import_cannot_carry_go_one_by_one() -> None:
    with world() as w:
        w.deliver_to_webhook = False
        good = w.sf_create(LastName="Good", Email="good@example.org")
        # The JSON import takes 50 characters, a contact 80: this one needs its own call.
        longer = ("b" * 50) + "@example.org"
        long_one = w.sf_create(LastName="Long", Email=longer)
        intake.mark_dirty(w.redis, w.setup_id, "Contact", [good, long_one])
        summary = w.flush()
        assert summary["imported"] == 2 and "errors" not in summary, summary
        assert w.cc_contact("good@example.org") is not None
        assert w.cc_contact(longer)["list_memberships"]
        # An edit later updates the same contact in place.
        w.sf_update(long_one, Title="Longest")
        intake.mark_dirty(w.redis, w.setup_id, "Contact", [long_one])
        w.flush()
        assert w.cc_contact(longer)["job_title"] == "Longest"
