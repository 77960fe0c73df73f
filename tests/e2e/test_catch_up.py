"""The scheduled catch-up: Salesforce changes whose events never arrived reach Constant Contact
without waiting for the nightly Full Sync — an edit with no event delivered (Redis restarted
empty, a callout refused) and a hard delete (which emits none) — and an idle catch-up costs one
query per object and no Constant Contact call, our own Salesforce writes included."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from middleware import intake, queue
from middleware.cc_to_sf import poll
from middleware.sf_to_cc import catch_up, collect
from middleware.store import cursors, links, setups
from tests.e2e.harness import CC_BASE, SF_BASE, World, world


def run_catch_up(w: World, now: datetime | None = None) -> dict[str, Any]:
    w.last_sf, w.last_cc = w.sf_client(), w.cc_client()
    clock = (lambda: now) if now is not None else None
    return catch_up.run_catch_up(w.runtime, w.setup_id, sf=w.last_sf, cc=w.last_cc, now=clock)


def cc_writes(w: World) -> list[tuple[str, str]]:
    """Every non-GET request the Constant Contact sandbox received from now on."""
    seen: list[tuple[str, str]] = []

    def hook(response: Any, *_a: Any, **_k: Any) -> None:
        request = response.request
        if request.method != "GET" and "/v3/" in request.url:
            seen.append((request.method, request.url))

    w.cc_session.hooks["response"].append(hook)
    return seen


def grace_id(w: World) -> str:
    (row,) = w.sf_client().query_iter("SELECT Id FROM Contact WHERE Email = 'grace@example.org'")
    return str(row["Id"])


def main_list_id(w: World) -> str:
    return str(w.cc_client().get_or_create_list("Main List")["list_id"])


def test_an_edit_without_an_event_and_a_hard_delete_reach_cc_by_the_catch_up() -> None:
    with world(options={"remove_on_sf_delete": True}) as w:
        kept = w.sf_create(FirstName="Ada", LastName="Lovelace", Email="ada@example.org")
        gone = w.sf_create(FirstName="Alan", LastName="Turing", Email="alan@example.org")
        assert w.flush()["records"] == 2  # their events arrived: both in CC, on the list
        listed = main_list_id(w)
        assert listed in w.cc_contact("alan@example.org")["list_memberships"]
        run_catch_up(w)  # the setup's first catch-up: everything is in step already

        # Events stop arriving (Redis restarted empty, a Flow callout answered 503) ...
        w.deliver_to_webhook = False
        w.sf_update(kept, FirstName="Augusta")
        # ... and a record is erased for good: Salesforce emits nothing for that anyway.
        r = w.sf_session.delete(f"{SF_BASE}/_sandbox/records/Contact/{gone}?hard=true")
        assert r.status_code in (200, 204), r.text
        assert intake.pending(w.redis, w.setup_id) == 0

        # getDeleted covers whole minutes only: the next catch-up, minutes later, sees it.
        w.sf_session.post(f"{SF_BASE}/_sandbox/clock", json={"advance": 120})
        later = datetime.now(UTC) + timedelta(seconds=120)
        summary = run_catch_up(w, later)
        assert summary["records"] == 2, summary
        assert w.cc_contact("ada@example.org")["first_name"] == "Augusta"
        alan = w.cc_contact("alan@example.org")
        assert listed not in alan["list_memberships"]  # removed from the list ...
        assert alan["email_address"]["permission_to_send"] != "unsubscribed"  # ... not unsubscribed

        # Nothing changed since: one query per object, no Constant Contact call at all.
        idle = run_catch_up(w, later + timedelta(minutes=10))
        assert idle["records"] == 0
        calls = w.last_sf.usage.calls
        assert w.last_cc.calls.total == 0, w.last_cc.calls.snapshot()
        # Contact + Account (company names) SOQL queries and one getDeleted.
        assert w.last_sf.usage.total == 3, dict(calls)
        # Even with its memory lost, re-planning what is in step writes nothing to CC.
        with w.store.transaction() as session:
            cursors.set_cursor(session, w.setup_id, catch_up.CURSOR_STATE, None)
        replanned = run_catch_up(w, later + timedelta(minutes=5))
        assert replanned["records"] >= 1, replanned
        assert w.last_cc.calls.total == 0, w.last_cc.calls.snapshot()


def test_our_own_salesforce_writes_cause_no_constant_contact_writes() -> None:
    with world(options={"unsubscribe_on_sf_opt_out": True}) as w:
        cc = w.cc_client()
        listed = main_list_id(w)
        cc.create_contact(
            {
                "email_address": {"address": "grace@example.org", "permission_to_send": "implicit"},
                "first_name": "Grace",
                "last_name": "Hopper",
                "list_memberships": [listed],
            }
        )
        w.sf_create(FirstName="Kept", LastName="Apart", Email="kept@example.org")
        assert w.flush()["records"] == 1
        # The poll creates a Contact from the subscriber (our write, SystemModstamp moves) ...
        poll.run_poll(w.runtime, w.setup_id, sf=w.sf_client(), cc=w.cc_client())
        # ... and a later unsubscribe sets HasOptedOutOfEmail on it (another write of ours).
        w.cc_session.post(f"{CC_BASE}/_sandbox/clock", json={"advance": 3600})
        w.cc_session.post(f"{CC_BASE}/_sandbox/unsubscribe", json={"email": "grace@example.org"})
        later = datetime.now(UTC) + timedelta(hours=1)
        assert (
            poll.run_poll(
                w.runtime, w.setup_id, sf=w.sf_client(), cc=w.cc_client(), now=lambda: later
            )["opted_out"]
            == 1
        )
        writes = cc_writes(w)
        summary = run_catch_up(w)
        assert summary["records"] >= 1  # it did see our writes
        assert writes == [], writes
        # One read: is the opted-out contact unsubscribed in CC already? (It is; nothing to do.)
        assert w.last_cc.calls.snapshot() == {"contacts": {"200": 1}}
        with w.store.transaction() as session:
            (link,) = [row for row in links.for_sf_ids(session, w.setup_id, [grace_id(w)]).values()]
            assert link.opted_out_propagated  # so no later run reads it again
        again = run_catch_up(w, datetime.now(UTC) + timedelta(minutes=10))
        assert again["records"] == 0 and w.last_cc.calls.total == 0


def test_a_change_in_a_paused_setup_waits_and_a_quota_answer_pauses() -> None:
    with world() as w:
        w.deliver_to_webhook = False
        rid = w.sf_create(LastName="Paused", Email="paused@example.org")
        with w.store.transaction() as session:
            setups.pause(session, w.setup_id, "maintenance")
        assert "paused" in run_catch_up(w)
        assert w.cc_contact("paused@example.org") is None
        with w.store.transaction() as session:
            setups.resume(session, w.setup_id)
        w.cc_session.post(
            f"{CC_BASE}/_sandbox/faults",
            json={"status": 429, "error_key": "quota_exceeded", "count": 1},
        )
        assert "paused" in run_catch_up(w)
        with w.store.transaction() as session:
            assert cursors.get_cursor(session, w.setup_id, catch_up.CURSOR_STATE) is None
            setups.resume(session, w.setup_id)
        # The cursor did not move: the next catch-up still has the change.
        assert run_catch_up(w)["records"] == 1
        assert w.cc_contact("paused@example.org") is not None
        assert rid


def test_due_setups_follow_catch_up_minutes_and_skip_what_cannot_push() -> None:
    with world() as w:
        now = datetime.now(UTC)
        assert catch_up.due_setups(w.store, now) == [w.setup_id]  # never caught up
        run_catch_up(w, now)
        assert catch_up.due_setups(w.store, now + timedelta(minutes=9)) == []
        assert catch_up.due_setups(w.store, now + timedelta(minutes=10)) == [w.setup_id]
        # the minute tick a few seconds short of the interval counts: not every other tick
        assert catch_up.due_setups(w.store, now + timedelta(minutes=9, seconds=50)) == [w.setup_id]
        for schedule_change, expected in (
            ({"catch_up_minutes": 0}, []),
            ({"catch_up_minutes": 30}, []),
            ({"catch_up_minutes": 5}, [w.setup_id]),
        ):
            with w.store.transaction() as session:
                row = setups.get(session, w.setup_id)
                row.options = {
                    **row.options,
                    "schedule": {**row.options["schedule"], **schedule_change},
                }
            assert catch_up.due_setups(w.store, now + timedelta(minutes=10)) == expected
        with w.store.transaction() as session:
            row = setups.get(session, w.setup_id)
            row.options = {**row.options, "sync_to_cc": False}
        assert catch_up.due_setups(w.store, now + timedelta(minutes=10)) == []
        with w.store.transaction() as session:
            row = setups.get(session, w.setup_id)
            row.options = {**row.options, "sync_to_cc": True}
            setups.pause(session, w.setup_id, "maintenance")
        assert catch_up.due_setups(w.store, now + timedelta(minutes=10)) == []


@pytest.mark.parametrize("backend", ["fake", pytest.param("real", marks=pytest.mark.integration)])
def test_the_clock_tick_schedules_one_catch_up_per_due_setup(
    backend: str, request: pytest.FixtureRequest
) -> None:
    from jobs.catch_up import catch_up_tick

    redis = request.getfixturevalue("fake_redis" if backend == "fake" else "real_redis")
    with world(redis=redis) as w, queue.use_runtime(w.runtime):
        assert catch_up_tick() == [w.setup_id]
        assert catch_up_tick() == [w.setup_id]  # still due: the job has not run yet ...
        job_id = queue.pending_job_id(catch_up.job_key(w.setup_id), connection=redis)
        assert job_id is not None  # ... but exactly one is pending
        assert len(queue.get_queue(redis).job_ids) == 1


def test_a_delete_window_salesforce_refuses_is_reported_not_failed_forever() -> None:
    from middleware.store import runs

    with world() as w:
        w.deliver_to_webhook = False
        run_catch_up(w)
        w.sf_create(LastName="Skew", Email="skew@example.org")
        # The delete cursor in Salesforce's future (clocks apart): getDeleted refuses the window.
        ahead = datetime.now(UTC) + timedelta(days=1)
        with w.store.transaction() as session:
            raw = cursors.get_cursor(session, w.setup_id, catch_up.CURSOR_STATE)
            state = {**json.loads(raw or "{}"), collect.DELETED: ahead.isoformat()}
            cursors.set_cursor(session, w.setup_id, catch_up.CURSOR_STATE, json.dumps(state))
        summary = run_catch_up(w, ahead)
        assert "records" in summary, summary  # the run succeeded, changes still synced
        assert w.cc_contact("skew@example.org") is not None
        with w.store.transaction() as session:
            run = runs.recent_runs(session, w.setup_id, 1)[0]
            assert run.status == "succeeded"
            assert "left to the Full Sync" in (run.message or "")


def test_changes_accepted_before_redis_restarted_empty_reach_cc_by_the_catch_up() -> None:
    with world() as w:
        rid = w.sf_create(FirstName="Before", LastName="Restart", Email="restart@example.org")
        assert w.flush()["records"] == 1
        run_catch_up(w)
        w.sf_update(rid, FirstName="Accepted")
        assert w.last_webhook.status_code == 202  # accepted: its id is in Redis ...
        assert intake.pending(w.redis, w.setup_id) == 1
        w.redis.flushall()  # ... which restarts empty (no AOF)
        assert w.flush()["records"] == 0  # the flush has nothing left to do
        assert w.cc_contact("restart@example.org")["first_name"] == "Before"
        assert run_catch_up(w)["records"] == 1
        assert w.cc_contact("restart@example.org")["first_name"] == "Accepted"
