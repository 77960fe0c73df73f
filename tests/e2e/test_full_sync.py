"""Full Sync end to end: both sandboxes, the real clients, the store; drift repaired both ways."""

from __future__ import annotations

from typing import Any

from middleware.fullsync import run as fs_run
from middleware.store import links as links_repo
from middleware.store import runs
from tests.e2e.harness import CC_BASE, SF_BASE, World, world


def full_sync(w: World, reset: bool = False, **kw: Any) -> dict[str, Any]:
    w.last_sf, w.last_cc = w.sf_client(), w.cc_client()
    return fs_run.run_full_sync(
        w.runtime, w.setup_id, reset=reset, sf=w.last_sf, cc=w.last_cc, **kw
    )


def cc_seed(w: World, **body: Any) -> dict[str, Any]:
    """A contact created in Constant Contact directly (as a person or a marketer would)."""
    client = w.cc_client()
    return client.create_contact(body)


def test_first_full_sync_marries_by_email_and_keeps_unsubscribes() -> None:
    with world() as w:
        w.deliver_to_webhook = False
        ids = [
            w.sf_create(FirstName=f"Ada{i}", LastName="Lovelace", Email=f"ada{i}@example.org")
            for i in range(20)
        ]
        w.sf_create(LastName="NoEmail")
        w.sf_create(LastName="Role", Email="sales@example.org")
        w.sf_create(LastName="Out", Email="out@example.org", HasOptedOutOfEmail=True)
        existing = cc_seed(
            w,
            email_address={"address": "ada1@example.org", "permission_to_send": "implicit"},
            first_name="Old",
        )
        gone = cc_seed(
            w,
            email_address={"address": "ada2@example.org", "permission_to_send": "implicit"},
            last_name="Lovelace",
        )
        w.cc_session.post(f"{CC_BASE}/_sandbox/unsubscribe", json={"email": "ada2@example.org"})

        summary = full_sync(w)

        assert summary["records"] == 23
        assert summary["imported"] == 19  # ada2 is unsubscribed: linked, never imported
        assert summary["skipped"]["no email"] == 1
        assert summary["skipped"]["role address"] == 1
        assert summary["skipped"]["opted out, never synced"] == 1
        assert summary["opt_outs_to_salesforce"] == 1
        one = w.cc_contact("ada1@example.org")
        assert one["contact_id"] == existing["contact_id"]  # married, not duplicated
        assert one["first_name"] == "Ada1"
        assert "Main List" in one["list_names"]
        two = w.cc_contact("ada2@example.org")
        assert two["contact_id"] == gone["contact_id"]
        assert two["email_address"]["permission_to_send"] == "unsubscribed"
        assert "Main List" not in two["list_names"]
        assert w.cc_contact("out@example.org") is None
        record = w.sf_session.get(f"{SF_BASE}/_sandbox/records/Contact/{ids[2]}").json()
        assert record["HasOptedOutOfEmail"] is True
        with w.store.transaction() as session:
            assert links_repo.counts(session, w.setup_id) == {"active": 20}
            run = runs.recent_runs(session, w.setup_id)[0]
            assert run.kind == "full" and run.status == "succeeded"
            assert run.api_calls["constantcontact"] == w.last_cc.calls.total
            assert run.progress_done == run.progress_total == 23
        assert w.last_cc.calls.total <= 12, w.last_cc.calls.snapshot()


def test_second_full_sync_writes_nothing() -> None:
    with world() as w:
        w.deliver_to_webhook = False
        for i in range(15):
            w.sf_create(FirstName="Grace", LastName=f"Hopper{i}", Email=f"g{i}@example.org")
        full_sync(w)
        again = full_sync(w)
        assert again.get("imported", 0) == 0
        assert again["unchanged"] == 15
        calls = w.last_cc.calls.by_family()
        assert calls.get("activities", 0) <= 2  # the export and its poll
        assert w.last_cc.calls.total <= 5, w.last_cc.calls.snapshot()
