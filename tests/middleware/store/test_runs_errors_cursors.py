"""Tests for runs, sync errors, cursors and setup pausing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from middleware.store import cursors, errors, runs, setups
from middleware.store.db import Store

NOW = datetime(2026, 11, 26, 15, 30, tzinfo=UTC)


@pytest.fixture
def setup_id(store: Store) -> int:
    with store.transaction() as session:
        return setups.create(session, name="Contacts", options={"object_type": "Contact"}).id


def test_run_lifecycle_adds_counts(store: Store, setup_id: int) -> None:
    with store.transaction() as session:
        run = runs.open_run(session, setup_id, "full", job_id="job-1", total=100, now=NOW)
        run_id = run.id
        runs.progress(
            session,
            run_id,
            done=50,
            phase="push to Constant Contact",
            counts={"created": 3, "skipped": {"no email": 2}},
            api_calls={"constantcontact": 2},
        )
        runs.finish_run(
            session,
            run_id,
            "succeeded",
            counts={"created": 1, "skipped": {"no email": 1, "role address": 4}},
            api_calls={"constantcontact": 1, "salesforce": 5},
            message="done",
            now=NOW + timedelta(minutes=2),
        )
    with store.session() as session:
        run = runs.get_run(session, run_id)
        assert run is not None
        assert run.status == "succeeded"
        assert run.counts == {"created": 4, "skipped": {"no email": 3, "role address": 4}}
        assert run.api_calls == {"constantcontact": 3, "salesforce": 5}
        assert run.progress_done == 50 and run.progress_total == 100
        assert run.finished_at is not None and run.started_at is not None
        assert run.finished_at - run.started_at == timedelta(minutes=2)
        assert [r.id for r in runs.recent_runs(session, setup_id)] == [run_id]
        assert runs.active_run(session, setup_id) is None


def test_run_states_are_checked(store: Store, setup_id: int) -> None:
    with store.transaction() as session:
        with pytest.raises(ValueError):
            runs.open_run(session, setup_id, "nightly")
        run = runs.open_run(session, setup_id, "sync_now", status="queued")
        assert runs.active_run(session, setup_id, "sync_now") is run
        with pytest.raises(ValueError):
            runs.finish_run(session, run.id, "running")


def test_errors_are_masked_deduplicated_and_resolvable(store: Store, setup_id: int) -> None:
    error = {
        "direction": "sf_to_cc",
        "vendor": "constantcontact",
        "code": "contacts.api.validation.error",
        "message": "email_address is invalid",
        "sf_id": "003000000000001AAA",
        "email": "allison.smith@example.org",
        "payload": {"email": "allison.smith@example.org"},
    }
    with store.transaction() as session:
        run_id = runs.open_run(session, setup_id, "incremental").id
        [first] = errors.record_errors(session, setup_id, [error], run_id=run_id)
        [again] = errors.record_errors(session, setup_id, [{**error, "message": "still bad"}])
        assert again.id == first.id
    with store.session() as session:
        [row] = errors.list_errors(session, setup_id)
        assert row.attempts == 2 and row.message == "still bad"
        assert row.email == "a•••h@example.org"
        assert row.payload == {"email": "allison.smith@example.org"}
        assert row.run_id == run_id
        assert errors.counts_by_code(session, setup_id) == {"contacts.api.validation.error": 1}
    with store.transaction() as session:
        assert errors.resolve_errors(session, setup_id, sf_ids=["003000000000001AAA"]) == 1
    with store.session() as session:
        assert errors.list_errors(session, setup_id) == []
        assert len(errors.list_errors(session, setup_id, status="resolved")) == 1


def test_error_direction_is_checked(store: Store, setup_id: int) -> None:
    with store.transaction() as session, pytest.raises(ValueError):
        errors.record_errors(session, setup_id, [{"direction": "sideways", "code": "x"}])


def test_cursors(store: Store, setup_id: int) -> None:
    with store.transaction() as session:
        assert cursors.get_cursor(session, setup_id, "sf_modstamp") is None
        cursors.set_cursor(session, setup_id, "sf_modstamp", "2026-11-26T10:00:00Z")
        cursors.set_cursor(session, setup_id, "sf_modstamp", "2026-11-26T11:00:00Z")
        cursors.set_cursor(session, setup_id, "cc_poll", "x")
    with store.transaction() as session:
        assert cursors.get_cursor(session, setup_id, "sf_modstamp") == "2026-11-26T11:00:00Z"
        assert cursors.reset_cursors(session, setup_id, ["cc_poll"]) == 1
        assert cursors.all_cursors(session, setup_id) == {"sf_modstamp": "2026-11-26T11:00:00Z"}


def test_a_shared_cursor_is_read_from_the_setup_that_stored_it_last(
    store: Store, setup_id: int
) -> None:
    with store.transaction() as session:
        other = setups.create(session, name="other", options={}).id
        third = setups.create(session, name="third", options={}).id
        assert cursors.newest_cursor(session, [setup_id, other], "replay") is None
        cursors.set_cursor(session, setup_id, "replay", "old")
    with store.transaction() as session:
        cursors.set_cursors(session, [other, third], "replay", "new")
    with store.transaction() as session:
        value, stored_at = cursors.newest_cursor(session, [setup_id, other, third], "replay")
        assert value == "new" and stored_at.tzinfo is not None
        assert cursors.newest_cursor(session, [setup_id], "replay")[0] == "old"
        assert cursors.newest_cursor(session, [], "replay") is None


def test_pause_until_midnight_and_resume(store: Store, setup_id: int) -> None:
    until = setups.next_utc_midnight(NOW)
    assert until == datetime(2026, 11, 27, tzinfo=UTC)
    with store.transaction() as session:
        setups.pause(session, setup_id, "quota_exceeded", until)
    with store.session() as session:
        assert [s.id for s in setups.paused(session, NOW)] == [setup_id]
        assert setups.paused(session, until + timedelta(seconds=1)) == []
        setup = setups.get(session, setup_id)
        assert setup is not None and setup.is_paused(NOW) and not setup.is_paused(until)
    with store.transaction() as session:
        setups.pause(session, setup_id, "account cancelled")
    with store.session() as session:
        assert [s.id for s in setups.paused(session, NOW + timedelta(days=400))] == [setup_id]
    with store.transaction() as session:
        setups.resume(session, setup_id)
    with store.session() as session:
        assert setups.paused(session, NOW) == []


def test_deleting_a_setup_cascades(store: Store, setup_id: int) -> None:
    from sqlalchemy import func, select

    from middleware.store import links
    from middleware.store.models import Link, Setup

    with store.transaction() as session:
        links.upsert_links(session, setup_id, [{"sf_id": "003A", "sf_object": "Contact"}])
        cursors.set_cursor(session, setup_id, "x", "1")
    with store.transaction() as session:
        session.delete(session.get(Setup, setup_id))
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Link)) == 0
