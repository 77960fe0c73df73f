"""Constant Contact → Salesforce through the real pipeline: CC sign-ups and unsubscribes, the
poll, Salesforce records, and the change events our writes cause coming back as echoes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from middleware import intake
from middleware.cc_to_sf import poll
from middleware.sync_now import run_sync_now
from tests.e2e.harness import CC_BASE, World, world

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def sign_up(w: World, email: str, **fields: Any) -> str:
    cc = w.cc_client()
    body = {
        "email_address": {"address": email, "permission_to_send": "implicit"},
        "first_name": "Grace",
        "last_name": "Hopper",
        "list_memberships": [cc.get_or_create_list("Main List")["list_id"]],
        **fields,
    }
    return str(cc.create_contact(body)["contact_id"])


def run_poll(w: World, now: datetime = T0) -> dict[str, Any]:
    w.last_sf, w.last_cc = w.sf_client(), w.cc_client()
    return poll.run_poll(w.runtime, w.setup_id, sf=w.last_sf, cc=w.last_cc, now=lambda: now)


def sync_now(w: World) -> dict[str, Any]:
    w.last_sf, w.last_cc = w.sf_client(), w.cc_client()
    return run_sync_now(w.runtime, w.setup_id, sf=w.last_sf, cc=w.last_cc)


def test_a_new_subscriber_becomes_a_contact_and_nothing_comes_back() -> None:
    with world() as w:
        sign_up(w, "grace@example.org", company_name="Navy", job_title="Rear Admiral")
        summary = run_poll(w)
        assert summary["created_contacts"] == 1
        # The create's change events reached the webhook and were recognised as our own.
        assert w.last_webhook.get_json()["echoes_ignored"] >= 1
        assert intake.pending(w.redis, w.setup_id) == 0
        # A Sync Now re-reads every record: the linked one is unchanged, nothing is written.
        again = sync_now(w)
        assert again.get("imported", 0) == 0
        assert w.last_cc.calls.by_family().get("activities", 0) == 0, w.last_cc.calls.snapshot()


def test_an_unsubscribe_reaches_salesforce_at_the_next_poll_and_stays() -> None:
    with world(options={"unsubscribe_on_sf_opt_out": True}) as w:
        sign_up(w, "grace@example.org")
        run_poll(w)
        # The person unsubscribes an hour later, by the sandbox's clock.
        w.cc_session.post(f"{CC_BASE}/_sandbox/clock", json={"advance": 3600})
        w.cc_session.post(f"{CC_BASE}/_sandbox/unsubscribe", json={"email": "grace@example.org"})
        summary = run_poll(w, T0 + timedelta(minutes=15))
        assert summary["opted_out"] == 1
        (row,) = w.sf_client().query_iter(
            "SELECT HasOptedOutOfEmail FROM Contact WHERE Email = 'grace@example.org'"
        )
        assert row["HasOptedOutOfEmail"] is True
        # Our opt-out write came back as an echo; CC is not written (already unsubscribed).
        assert intake.pending(w.redis, w.setup_id) == 0
        contact = w.cc_contact("grace@example.org")
        assert contact is not None
        assert contact["email_address"]["permission_to_send"] == "unsubscribed"
        assert contact["email_address"]["opt_out_source"] == "Contact"


def test_a_one_way_cc_to_sf_setup_is_polled() -> None:
    with world(options={"sync_to_cc": False, "new_record_object_type": "Lead"}) as w:
        sign_up(w, "lead@example.org")
        summary = run_poll(w)
        assert summary["created_leads"] == 1
        (lead,) = w.sf_client().query_iter(
            "SELECT Company, LastName FROM Lead WHERE Email = 'lead@example.org'"
        )
        assert lead == {"Company": "Individual", "LastName": "Hopper"}


def test_an_existing_account_is_used_when_missing_ones_are_not_created() -> None:
    # Issue 9, defect 3: create_missing_accounts: false stops only the creation of an Account.
    with world(options={"create_missing_accounts": False}) as w:
        account = w.sf_create("Account", Name="Navy")
        w.flush()  # the Account's own change event (it has no Contacts yet)
        sign_up(w, "grace@example.org", company_name="Navy")
        sign_up(w, "ada@example.org", company_name="Analytical Engines")
        summary = run_poll(w)
        assert summary["created_contacts"] == 2
        assert "accounts_created" not in summary
        got = {
            r["Email"]: r["AccountId"]
            for r in w.sf_client().query_iter("SELECT Email, AccountId FROM Contact")
        }
        assert got == {"grace@example.org": account, "ada@example.org": None}
        # The echo fingerprint counted the Account's name: nothing is written back.
        assert intake.pending(w.redis, w.setup_id) == 0
        again = sync_now(w)
        assert again.get("imported", 0) == 0
        assert w.last_cc.calls.by_family().get("activities", 0) == 0, w.last_cc.calls.snapshot()


def test_an_opt_out_cleared_in_salesforce_is_set_again_by_the_next_change_event() -> None:
    # Issue 9, defect 2 (DESIGN §5a): consent is the person's; Salesforce cannot take it back.
    with world() as w:
        sign_up(w, "grace@example.org")
        run_poll(w)
        w.cc_session.post(f"{CC_BASE}/_sandbox/clock", json={"advance": 3600})
        w.cc_session.post(f"{CC_BASE}/_sandbox/unsubscribe", json={"email": "grace@example.org"})
        assert run_poll(w, T0 + timedelta(minutes=15))["opted_out"] == 1
        (row,) = w.sf_client().query_iter(
            "SELECT Id FROM Contact WHERE Email = 'grace@example.org'"
        )
        # A Salesforce user clears the checkbox: its change event reaches the webhook.
        w.sf_update(row["Id"], HasOptedOutOfEmail=False)
        assert intake.pending(w.redis, w.setup_id) == 1
        summary = w.flush()
        assert summary["opt_outs_set_again"] == 1, summary
        (again,) = w.sf_client().query_iter(
            f"SELECT HasOptedOutOfEmail FROM Contact WHERE Id = '{row['Id']}'"
        )
        assert again["HasOptedOutOfEmail"] is True
        # Our write's change event came back and was dropped as our own echo.
        assert w.last_webhook.get_json()["echoes_ignored"] >= 1
        assert intake.pending(w.redis, w.setup_id) == 0
        contact = w.cc_contact("grace@example.org")
        assert contact["email_address"]["permission_to_send"] == "unsubscribed"
        assert "Main List" not in contact["list_names"]
        # An edit later: opted out in Salesforce now, nothing to set and no CC lookup.
        w.sf_update(row["Id"], Title="Rear Admiral")
        later = w.flush()
        assert "opt_outs_set_again" not in later
        assert w.last_cc.calls.by_family().get("contacts", 0) == 0, w.last_cc.calls.snapshot()


def test_a_new_record_at_an_address_unsubscribed_in_cc_gets_the_opt_out_at_once() -> None:
    # §5a: every record of an unsubscribed address gets the opt-out; the flush's lookup of a
    # new contact's id shows it, so it need not wait for the daily scan (issue 9).
    with world(options={"sync_to_sf": False}) as w:
        sign_up(w, "ada@example.org")
        w.cc_session.post(f"{CC_BASE}/_sandbox/unsubscribe", json={"email": "ada@example.org"})
        sf_id = w.sf_create("Contact", LastName="Lovelace", Email="ada@example.org")
        summary = w.flush()
        assert summary["opt_outs_set_again"] == 1, summary
        (row,) = w.sf_client().query_iter(
            f"SELECT HasOptedOutOfEmail FROM Contact WHERE Id = '{sf_id}'"
        )
        assert row["HasOptedOutOfEmail"] is True
        contact = w.cc_contact("ada@example.org")
        assert contact["email_address"]["permission_to_send"] == "unsubscribed"
        assert "Main List" not in contact["list_names"]
        assert intake.pending(w.redis, w.setup_id) == 0  # our write's event was an echo
