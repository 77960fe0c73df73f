"""Full Sync end to end: both sandboxes, the real clients, the store; drift repaired both ways."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from middleware.fullsync import checkpoint as checkpoints
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


def test_drift_on_both_sides_is_repaired_and_only_it_is_written() -> None:
    options = {"remove_on_sf_delete": True}
    with world(options=options) as w:
        w.deliver_to_webhook = False
        ids = [
            w.sf_create(FirstName="Lin", LastName=f"Chen{i}", Email=f"lin{i}@example.org")
            for i in range(30)
        ]
        full_sync(w)
        client = w.cc_client()
        # Salesforce edits (no event reached us), a delete, a CC-side edit, a CC unsubscribe,
        # and a contact deleted in Constant Contact.
        w.sf_update(ids[0], LastName="Edited")
        w.sf_delete(ids[1])
        edited = w.cc_contact("lin2@example.org")
        client.update_contact(
            edited["contact_id"],
            {
                "email_address": {"address": "lin2@example.org"},
                "first_name": "Changed",
                "last_name": "Chen2",
                "update_source": "Account",
            },
        )
        w.cc_session.post(f"{CC_BASE}/_sandbox/unsubscribe", json={"email": "lin3@example.org"})
        client.delete_contact(w.cc_contact("lin4@example.org")["contact_id"])

        summary = full_sync(w)

        assert summary["unchanged"] == 25
        # The Salesforce edit, the CC-side edit, and the contact deleted in Constant Contact
        # (its link has no contact id yet: it is written again by address, which revives it).
        assert summary["imported"] == 3
        assert summary["list_removals"] == 1  # the deleted record leaves the main list
        assert summary["opt_outs_to_salesforce"] == 1
        assert w.cc_contact("lin0@example.org")["last_name"] == "Edited"
        assert w.cc_contact("lin2@example.org")["first_name"] == "Lin"
        assert "Main List" not in w.cc_contact("lin1@example.org")["list_names"]
        revived = w.cc_contact("lin4@example.org")
        assert revived.get("deleted_at") is None and "Main List" in revived["list_names"]
        out = w.sf_session.get(f"{SF_BASE}/_sandbox/records/Contact/{ids[3]}").json()
        assert out["HasOptedOutOfEmail"] is True
        # The unsubscribed contact is never re-subscribed.
        three = w.cc_contact("lin3@example.org")
        assert three["email_address"]["permission_to_send"] == "unsubscribed"

        again = full_sync(w)
        assert again.get("imported", 0) == 0 and again.get("updated", 0) == 0
        assert again["unchanged"] == 28
        assert again.get("opt_outs_to_salesforce", 0) == 0


def test_reset_rewrites_what_cannot_be_compared_and_keeps_links() -> None:
    with world() as w:
        w.deliver_to_webhook = False
        for i in range(5):
            w.sf_create(LastName=f"R{i}", Email=f"r{i}@example.org", Phone="555-0100")
        full_sync(w)
        summary = full_sync(w, reset=True)
        # Phones are not in the export: a reset cannot prove them equal, so it writes them.
        assert summary["imported"] == 5
        with w.store.transaction() as session:
            assert links_repo.counts(session, w.setup_id) == {"active": 5}


def test_filter_leavers_leave_this_setups_lists_only() -> None:
    options = {"filter": {"conditions": [{"field": "Title", "op": "equals", "value": "VIP"}]}}
    with world(options=options) as w:
        w.deliver_to_webhook = False
        vip = w.sf_create(LastName="V", Email="v@example.org", Title="VIP")
        w.sf_create(LastName="N", Email="n@example.org", Title="Other")
        first = full_sync(w)
        assert first["imported"] == 1
        assert first["skipped"]["does not match the setup's segmentation"] == 1
        w.sf_update(vip, Title="Former")
        second = full_sync(w)
        assert second["list_removals"] == 1
        contact = w.cc_contact("v@example.org")
        assert "Main List" not in contact["list_names"]
        assert contact["email_address"]["permission_to_send"] != "unsubscribed"


class Killed(BaseException):
    """A worker killed mid-run (a dyno restart): no handler sees it, nothing is cleaned up."""


def _recording(client: Any, posted: list[str], die_after: int | None = None) -> Any:
    real = client.import_contacts

    def import_contacts(rows: Any, list_ids: Any) -> Any:
        rows = list(rows)
        activities = real(rows, list_ids)
        posted.extend(row["email"] for row in rows)
        if die_after is not None and len(posted) > die_after:
            raise Killed  # posted, not yet awaited nor recorded
        return activities

    client.import_contacts = import_contacts
    return client


def test_a_killed_run_resumes_from_its_checkpoint_without_writing_twice() -> None:
    with world() as w:
        w.deliver_to_webhook = False
        for i in range(30):
            w.sf_create(LastName=f"K{i}", Email=f"k{i:02d}@example.org", Phone="555-0101")
        posted: list[str] = []
        w.last_sf = w.sf_client()
        cc = _recording(w.cc_client(), posted, die_after=10)
        with contextlib.suppress(Killed):
            fs_run.run_full_sync(
                w.runtime, w.setup_id, sf=w.last_sf, cc=cc, page_size=5, flush_rows=5
            )
        assert len(posted) == 15
        with w.store.transaction() as session:
            assert runs.recent_runs(session, w.setup_id)[0].status == "running"
        saved = checkpoints.load(w.store, w.setup_id)
        assert saved is not None and saved.phase == "sync" and len(saved.inflight) == 5

        cc = _recording(w.cc_client(), posted)
        summary = fs_run.run_full_sync(
            w.runtime,
            w.setup_id,
            sf=w.sf_client(),
            cc=cc,
            page_size=5,
            flush_rows=5,
            resume_of=saved.run_id,
        )
        # A second revival of the same run, arriving late, starts nothing new.
        late = fs_run.run_full_sync(
            w.runtime, w.setup_id, sf=w.sf_client(), cc=cc, resume_of=saved.run_id
        )
        assert late["already_finished"] is True

        assert sorted(posted) == [f"k{i:02d}@example.org" for i in range(30)]  # each once
        assert summary["married"] == 5  # the rows posted just before the kill
        with w.store.transaction() as session:
            all_runs = runs.recent_runs(session, w.setup_id)
            assert len(all_runs) == 1 and all_runs[0].status == "succeeded"
            assert links_repo.counts(session, w.setup_id) == {"active": 30}
        assert full_sync(w).get("imported", 0) == 0


def test_a_run_over_its_api_budget_pauses_and_resumes_later() -> None:
    from middleware.fullsync.budget import Budget
    from middleware.queue import FULL_SYNC, get_queue

    with world() as w:
        w.deliver_to_webhook = False
        for i in range(20):
            w.sf_create(LastName=f"B{i}", Email=f"b{i:02d}@example.org")
        posted: list[str] = []
        tight = Budget(cc_daily=100, cc_share=0.08)  # 8 calls for this run
        paused = fs_run.run_full_sync(
            w.runtime,
            w.setup_id,
            sf=w.sf_client(),
            cc=_recording(w.cc_client(), posted),
            budget=tight,
            page_size=5,
            flush_rows=5,
        )
        assert "Constant Contact API budget" in paused["paused"]
        assert "resumes at" in paused["paused"]
        scheduled = get_queue(w.redis, FULL_SYNC).scheduled_job_registry.get_job_ids()
        assert len(scheduled) == 1
        with w.store.transaction() as session:
            run = runs.recent_runs(session, w.setup_id)[0]
            assert run.status == "paused" and "resumes at" in (run.message or "")

        done = fs_run.run_full_sync(
            w.runtime, w.setup_id, sf=w.sf_client(), cc=_recording(w.cc_client(), posted),
            page_size=5, flush_rows=5,
        )  # fmt: skip
        assert sorted(posted) == [f"b{i:02d}@example.org" for i in range(20)]
        assert done["run_id"] == paused["run_id"]


def test_rows_an_import_rejected_become_sync_errors_and_are_tried_again(monkeypatch: Any) -> None:
    from middleware.fullsync import engine
    from middleware.store import errors as errors_repo

    real = engine.list_activities

    def rejecting(cc: Any, limit: int = 500) -> list[dict[str, Any]]:
        found = real(cc, limit)
        for activity in found:
            if activity.get("status", {}).get("person_count"):
                activity["activity_errors"] = ["import_data[2]: email address is invalid."]
        return found

    with world() as w:
        w.deliver_to_webhook = False
        for i in range(5):
            w.sf_create(LastName=f"E{i}", Email=f"e{i}@example.org")
        monkeypatch.setattr(engine, "list_activities", rejecting)
        summary = full_sync(w)
        assert summary["imported"] == 4 and summary["errors"] == 1
        with w.store.transaction() as session:
            [error] = errors_repo.list_errors(session, w.setup_id)
            assert error.code == "import_row_rejected" and "import_data[2]" in error.message
        monkeypatch.setattr(engine, "list_activities", real)
        again = full_sync(w)
        assert again["imported"] == 1  # only the rejected row is written again
        with w.store.transaction() as session:
            assert errors_repo.list_errors(session, w.setup_id, status="open") == []


def test_an_unsubscribe_opts_out_every_lead_and_contact_with_the_address() -> None:
    # DESIGN §5a Opt-outs: the org's every Lead, Contact and Person Account, not only the
    # records of the setup's own object (this setup syncs Contacts).
    with world() as w:
        w.deliver_to_webhook = False
        contact = w.sf_create(LastName="Both", Email="both@example.org")
        lead = w.sf_create("Lead", LastName="Both", Company="Acme", Email="Both@Example.org")
        other = w.sf_create("Lead", LastName="Kept", Company="Acme", Email="kept@example.org")
        full_sync(w)
        w.cc_session.post(f"{CC_BASE}/_sandbox/unsubscribe", json={"email": "both@example.org"})

        summary = full_sync(w)

        assert summary["opt_outs_to_salesforce"] == 2
        for sobject, sf_id, opted in (
            ("Contact", contact, True),
            ("Lead", lead, True),
            ("Lead", other, False),
        ):
            record = w.sf_session.get(f"{SF_BASE}/_sandbox/records/{sobject}/{sf_id}").json()
            assert record["HasOptedOutOfEmail"] is opted, sobject
        # Already opted out: the next run writes nothing to Salesforce.
        assert full_sync(w).get("opt_outs_to_salesforce", 0) == 0


def test_unsubscribes_stay_in_constant_contact_when_the_setup_says_so() -> None:
    with world(options={"sync_unsubscribes_to_sf": False}) as w:
        w.deliver_to_webhook = False
        lead = w.sf_create("Lead", LastName="Lead", Company="Acme", Email="l@example.org")
        w.sf_create(LastName="Contact", Email="l@example.org")
        full_sync(w)
        w.cc_session.post(f"{CC_BASE}/_sandbox/unsubscribe", json={"email": "l@example.org"})
        assert full_sync(w).get("opt_outs_to_salesforce", 0) == 0
        record = w.sf_session.get(f"{SF_BASE}/_sandbox/records/Lead/{lead}").json()
        assert record["HasOptedOutOfEmail"] is False


def test_pages_screened_by_other_processes_give_the_same_run(monkeypatch: Any) -> None:
    from middleware.fullsync import engine

    # Pages of 7: two forked processes classify and screen the next pages while this one plans.
    real = engine.FullSync._screened
    screened: list[Any] = []

    def watched(self: Any, spool: Any) -> Any:
        for page in real(self, spool):
            screened.append(page)
            yield page

    monkeypatch.setattr(engine.FullSync, "_screened", watched)
    with world() as w:
        w.deliver_to_webhook = False
        ids = [
            w.sf_create(FirstName="Pat", LastName=f"Page{i}", Email=f"p{i}@example.org")
            for i in range(30)
        ]
        out = w.sf_create(LastName="Out", Email="out@example.org", HasOptedOutOfEmail=True)
        first = full_sync(w, page_size=7, processes=2)
        assert first["imported"] == 30 and first["records"] == 31
        assert sum(p.count for p in screened) == 31 and not any(p.unchanged for p in screened)
        screened.clear()
        w.sf_update(ids[11], LastName="Moved")
        again = full_sync(w, page_size=7, processes=2)
        assert again["imported"] == 1 and again["unchanged"] == 29
        assert w.cc_contact("p11@example.org")["last_name"] == "Moved"
        # Every page was screened by another process; the in-step records never reached the
        # planner: only the moved one and the opted-out one did.
        assert screened and os.getpid() not in {p.pid for p in screened}
        assert sum(p.unchanged for p in screened) == 29
        assert sorted(r[0] for p in screened for r in p.rows) == sorted([ids[11], out])


def test_a_revoked_connection_fails_the_run_and_keeps_its_checkpoint(monkeypatch: Any) -> None:
    from middleware.salesforce.errors import AuthRevoked
    from middleware.store import connections, setups

    with world() as w:
        w.deliver_to_webhook = False
        w.sf_create(LastName="Kept", Email="kept@example.org")
        sf = w.sf_client()

        def revoked(*_a: Any, **_kw: Any) -> str:
            raise AuthRevoked("invalid_grant: expired access/refresh token")

        monkeypatch.setattr(sf, "start_bulk_query", revoked)
        result = fs_run.run_full_sync(w.runtime, w.setup_id, sf=sf, cc=w.cc_client())

        assert result["failed"] == "salesforce needs_reauth"
        with w.store.transaction() as session:
            run = runs.recent_runs(session, w.setup_id)[0]
            assert run.status == "failed"
            assert "salesforce connection needs to be connected again" in (run.message or "")
            assert "goes on from its checkpoint" in (run.message or "")
            setup = setups.get(session, w.setup_id)
            assert setup is not None and setup.salesforce_connection_id is not None
            conn = connections.get(session, setup.salesforce_connection_id)
            assert conn is not None and conn.status == "needs_reauth"
        assert checkpoints.load(w.store, w.setup_id) is not None


def test_a_hard_delete_after_an_incremental_import_leaves_the_list() -> None:
    """The link an import made knows no contact id yet; the export supplies it for the removal."""
    from middleware import intake

    with world(options={"remove_on_sf_delete": True}) as w:
        w.deliver_to_webhook = False
        rid = w.sf_create(LastName="Gone", Email="gone@example.org")
        intake.mark_dirty(w.redis, w.setup_id, "Contact", [rid])
        w.flush()
        assert w.cc_contact("gone@example.org")["list_memberships"]
        r = w.sf_session.delete(
            f"{SF_BASE}/_sandbox/records/Contact/{rid}", params={"hard": "true"}
        )
        assert r.status_code == 204
        full_sync(w)
        gone = w.cc_contact("gone@example.org")
        assert gone["list_memberships"] == []
        assert gone["email_address"]["permission_to_send"] != "unsubscribed"


def test_a_record_in_the_recycle_bin_leaves_the_list_once_and_an_undelete_brings_it_back() -> None:
    """The spool knows a link's removed_on_delete: a deleted record is removed by one run, not
    by every run while it sits in the recycle bin, and its undelete puts it back."""
    with world(options={"remove_on_sf_delete": True}) as w:
        w.deliver_to_webhook = False
        rid = w.sf_create(LastName="Binned", Email="bin@example.org")
        w.sf_create(LastName="Stays", Email="stays@example.org")
        full_sync(w)
        assert w.cc_contact("bin@example.org")["list_memberships"]
        assert w.sf_session.delete(f"{SF_BASE}/_sandbox/records/Contact/{rid}").status_code == 204
        first = full_sync(w)
        assert first["list_removals"] == 1
        assert w.cc_contact("bin@example.org")["list_memberships"] == []
        again = full_sync(w)
        assert "list_removals" not in again and "imported" not in again
        assert again["api_calls"]["constantcontact"] <= 4  # the export, nothing written
        undo = w.sf_session.post(f"{SF_BASE}/_sandbox/records/Contact/{rid}/undelete")
        assert undo.status_code in (200, 204)
        full_sync(w)
        assert w.cc_contact("bin@example.org")["list_memberships"]


# --- Salesforce changes no event reported, on links a Full Sync made (issue 9, defect 1) --------


def _links(w: World) -> dict[str, Any]:
    with w.store.transaction() as session:
        return {
            sf_id: (row.cc_contact_id, row.email)
            for sf_id, row in links_repo.for_sf_ids(session, w.setup_id, w.all_ids).items()
        }


def _forget_contact_ids(w: World) -> None:
    """Links as an import left them before this fix (or a run killed before it filled them)."""
    from sqlalchemy import update

    from middleware.store.models import Link

    with w.store.transaction() as session:
        session.execute(update(Link).values(cc_contact_id=None))


def _blank_and_move(w: World) -> None:
    w.sf_update(w.all_ids[0], Email="")
    w.sf_update(w.all_ids[1], Email="moved1@example.org")


def _assert_blanked_and_moved(w: World, before: dict[str, Any]) -> None:
    blanked = w.cc_contact("e0@example.org")
    assert blanked is not None and blanked.get("deleted_at"), blanked  # CC's soft delete
    assert w.cc_contact("e1@example.org") is None  # the same contact took the new address
    moved = w.cc_contact("moved1@example.org")
    assert moved is not None and moved["contact_id"] == before[w.all_ids[1]]
    assert "Main List" in moved["list_names"]
    links = _links(w)
    assert w.all_ids[0] not in links
    assert links[w.all_ids[1]] == (before[w.all_ids[1]], "moved1@example.org")
    with w.store.transaction() as session:
        from middleware.store import errors as errors_repo

        assert errors_repo.list_errors(session, w.setup_id) == []


def _seed(w: World, n: int) -> dict[str, Any]:
    w.deliver_to_webhook = False
    w.all_ids = [
        w.sf_create(FirstName="Eve", LastName=f"E{i}", Email=f"e{i}@example.org") for i in range(n)
    ]
    return {sf_id: w.cc_contact(f"e{i}@example.org") for i, sf_id in enumerate(w.all_ids)}


def test_every_link_a_full_sync_writes_knows_its_contact() -> None:
    # Few new contacts: looked up by address once the imports are done.
    with world(options={"delete_cc_on_blank_email": True}) as w:
        _seed(w, 4)
        summary = full_sync(w)
        assert summary["imported"] == 4
        assert summary["contact_ids_resolved"] == 4
        ids = {w.cc_contact(f"e{i}@example.org")["contact_id"] for i in range(4)}
        assert {cid for cid, _ in _links(w).values()} == ids
        assert w.last_cc.calls.total <= 8 + 4, w.last_cc.calls.snapshot()
    # Many: the next run's export gives every one of them its id (no lookup, no write to CC).
    with world(options={"delete_cc_on_blank_email": True}) as w:
        _seed(w, 15)
        first = full_sync(w)
        assert "contact_ids_resolved" not in first
        assert {cid for cid, _ in _links(w).values()} == {None}
        second = full_sync(w)
        assert second["contact_ids_resolved"] == 15
        assert second["unchanged"] == 15 and "imported" not in second
        ids = {w.cc_contact(f"e{i}@example.org")["contact_id"] for i in range(15)}
        assert {cid for cid, _ in _links(w).values()} == ids
        assert w.last_cc.calls.total <= 5, w.last_cc.calls.snapshot()


def test_a_run_fills_a_bounded_number_of_links_the_next_ones_the_rest(monkeypatch) -> None:
    from middleware.fullsync import engine

    monkeypatch.setattr(engine, "FULL_SYNC_FILL_MAX", 10)
    with world() as w:
        _seed(w, 15)
        full_sync(w)
        assert full_sync(w)["contact_ids_resolved"] == 10
        assert full_sync(w)["contact_ids_resolved"] == 5
        assert "contact_ids_resolved" not in full_sync(w)
        assert None not in {cid for cid, _ in _links(w).values()}


def test_full_sync_after_unreported_email_changes_and_blanks() -> None:
    with world(options={"delete_cc_on_blank_email": True}) as w:
        _seed(w, 4)
        full_sync(w)
        before = {sf_id: cid for sf_id, (cid, _) in _links(w).items()}
        _blank_and_move(w)  # no event reaches us
        summary = full_sync(w)
        assert summary["deleted"] == 1 and summary["updated"] == 1, summary
        _assert_blanked_and_moved(w, before)


def test_links_without_contact_ids_are_resolved_by_address_by_every_reader() -> None:
    options = {"delete_cc_on_blank_email": True}
    # Full Sync: the export finds the contacts at the links' addresses.
    with world(options=options) as w:
        _seed(w, 4)
        full_sync(w)
        before = {sf_id: cid for sf_id, (cid, _) in _links(w).items()}
        _forget_contact_ids(w)
        _blank_and_move(w)
        summary = full_sync(w)
        assert summary["deleted"] == 1 and summary["updated"] == 1, summary
        _assert_blanked_and_moved(w, before)
        # The untouched records' links got their ids back from the export too.
        assert {cid for cid, _ in _links(w).values()} == {before[sf_id] for sf_id in w.all_ids[1:]}
    # The change-event flush: one lookup by the link's address.
    with world(options=options) as w:
        _seed(w, 4)
        full_sync(w)
        before = {sf_id: cid for sf_id, (cid, _) in _links(w).items()}
        _forget_contact_ids(w)
        w.deliver_to_webhook = True
        _blank_and_move(w)
        summary = w.flush()
        assert summary["deleted"] == 1 and summary["updated"] == 1, summary
        _assert_blanked_and_moved(w, before)


def test_an_email_change_of_a_link_whose_contact_cc_lacks_imports_the_new_address() -> None:
    with world() as w:
        _seed(w, 2)
        full_sync(w)
        _forget_contact_ids(w)
        # The link's address is one Constant Contact never held (say, an import row it dropped).
        from sqlalchemy import update

        from middleware.store.models import Link

        with w.store.transaction() as session:
            session.execute(
                update(Link).where(Link.sf_id == w.all_ids[1]).values(email="ghost@example.org")
            )
        w.deliver_to_webhook = True
        w.sf_update(w.all_ids[1], Email="new1@example.org")
        summary = w.flush()
        assert summary.get("errors", 0) == 0, summary
        assert summary["imported"] == 1
        new = w.cc_contact("new1@example.org")
        assert new is not None and "Main List" in new["list_names"]
        assert _links(w)[w.all_ids[1]] == (new["contact_id"], "new1@example.org")
