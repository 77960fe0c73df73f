"""Sync-error services without Flask: list, retry (dirty marks and jobs), resolve."""

from __future__ import annotations

import pytest
from redis import Redis

from middleware import intake, queue
from middleware.cc_to_sf import poll
from middleware.services import errors, setups
from middleware.services import exceptions as exc
from middleware.settings import Settings
from middleware.store import errors as error_repo
from middleware.store.db import Store


@pytest.fixture
def with_errors(
    settings: Settings, sqlite_store: Store, connected: dict[str, int]
) -> tuple[int, list[int]]:
    with sqlite_store.transaction() as session:
        setup_id = setups.create_setup(
            settings,
            session,
            {
                "name": "Contacts",
                "main_list": "Newsletter",
                "salesforce_connection": connected["salesforce"],
                "constant_contact_connection": connected["constantcontact"],
            },
        )["id"]
        rows = error_repo.record_errors(
            session,
            setup_id,
            [
                {"direction": "sf_to_cc", "code": "invalid_email", "sf_id": "003A"},
                {"direction": "sf_to_cc", "code": "conflict", "sf_id": "003B"},
                {"direction": "cc_to_sf", "code": "sf_rejected", "cc_contact_id": "cc-1"},
            ],
        )
        return setup_id, [r.id for r in rows]


def test_list_filters_by_status_and_code(
    sqlite_store: Store, with_errors: tuple[int, list[int]]
) -> None:
    setup_id, _ids = with_errors
    with sqlite_store.transaction() as session:
        listed = errors.list_errors(session, setup_id)
        only = errors.list_errors(session, setup_id, code="conflict")
        page = errors.list_errors(session, setup_id, limit=1, offset=1)
        with pytest.raises(exc.NotFound):
            errors.list_errors(session, 999)
    assert listed["total"] == 3 and len(listed["items"]) == 3
    assert [e["code"] for e in only["items"]] == ["conflict"]
    assert page["total"] == 3 and len(page["items"]) == 1 and page["offset"] == 1


def test_retry_marks_sf_records_dirty_and_leaves_cc_ones_to_the_poll(
    sqlite_store: Store, fake_redis: Redis, with_errors: tuple[int, list[int]]
) -> None:
    setup_id, _ids = with_errors
    with sqlite_store.transaction() as session:
        result = errors.retry_errors(session, fake_redis, setup_id, {"all": True})
    assert result["retrying"] == 3
    assert result["marked_dirty"] == 2
    assert result["awaiting_poll"] == 1
    assert result["flush_job_id"] == queue.pending_job_id(
        intake.flush_job_key(setup_id), connection=fake_redis
    )
    assert intake.pending(fake_redis, setup_id) == 2
    assert queue.pending_job_id(poll.poll_job_key(setup_id), connection=fake_redis)
    with sqlite_store.transaction() as session:
        retrying = errors.list_errors(session, setup_id, status="retrying")
    assert retrying["total"] == 3


def test_resolve_by_ids_then_all(sqlite_store: Store, with_errors: tuple[int, list[int]]) -> None:
    setup_id, ids = with_errors
    with sqlite_store.transaction() as session:
        assert errors.resolve_errors(session, setup_id, {"ids": [ids[0]]}) == {"resolved": 1}
        assert errors.resolve_errors(session, setup_id, {"all": True}) == {"resolved": 2}
        assert errors.list_errors(session, setup_id)["total"] == 0
        assert errors.list_errors(session, setup_id, status="resolved")["total"] == 3
