"""Run services without Flask: what may start, the jobs they enqueue, listing runs."""

from __future__ import annotations

from typing import Any

import pytest
from redis import Redis
from rq.job import Job

from middleware import queue
from middleware.services import exceptions as exc
from middleware.services import runs, setups
from middleware.settings import Settings
from middleware.store import runs as run_repo
from middleware.store.db import Store


def new_setup(settings: Settings, store: Store, connected: dict[str, int], **extra: Any) -> int:
    data = {"name": "Contacts", "main_list": "Newsletter", **extra}
    data.setdefault("salesforce_connection", connected["salesforce"])
    data.setdefault("constant_contact_connection", connected["constantcontact"])
    with store.transaction() as session:
        return int(setups.create_setup(settings, session, data)["id"])


def test_sync_now_enqueues_the_job(
    settings: Settings, sqlite_store: Store, fake_redis: Redis, connected: dict[str, int]
) -> None:
    setup_id = new_setup(settings, sqlite_store, connected)
    with sqlite_store.transaction() as session:
        started = runs.start_sync_now(session, setup_id, fake_redis)
    assert started["setup_id"] == setup_id and started["queue"] == queue.DEFAULT
    job = Job.fetch(started["job_id"], connection=fake_redis, serializer=queue.SERIALIZER)
    assert job.func_name == runs.SYNC_NOW_JOB and list(job.args) == [setup_id]


def test_paused_or_unconnected_setups_do_not_start(
    settings: Settings, sqlite_store: Store, fake_redis: Redis, connected: dict[str, int]
) -> None:
    unconnected = new_setup(
        settings, sqlite_store, connected, name="Bare", constant_contact_connection=None
    )
    unready = r"not connected yet \(constant_contact_connection"
    with sqlite_store.transaction() as session, pytest.raises(exc.Conflict, match=unready):
        runs.start_sync_now(session, unconnected, fake_redis)
    setup_id = new_setup(settings, sqlite_store, connected)
    with sqlite_store.transaction() as session:
        setups.pause_setup(settings, session, setup_id, "maintenance")
    with sqlite_store.transaction() as session, pytest.raises(exc.Conflict, match="paused"):
        runs.start_poll(session, setup_id, fake_redis)
    assert queue.get_queue(fake_redis, queue.DEFAULT).count == 0


def test_a_poll_needs_something_to_carry_into_salesforce(
    settings: Settings, sqlite_store: Store, fake_redis: Redis, connected: dict[str, int]
) -> None:
    setup_id = new_setup(
        settings, sqlite_store, connected, sync_to_sf=False, sync_unsubscribes_to_sf=False
    )
    nothing = "nothing to carry into Salesforce"
    with sqlite_store.transaction() as session, pytest.raises(exc.Conflict, match=nothing):
        runs.start_poll(session, setup_id, fake_redis)


def test_full_sync_is_not_available_without_its_job_and_runs_once(
    settings: Settings,
    sqlite_store: Store,
    fake_redis: Redis,
    connected: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    setup_id = new_setup(settings, sqlite_store, connected)
    monkeypatch.setattr(runs, "full_sync_available", lambda: False)
    with sqlite_store.transaction() as session, pytest.raises(exc.NotAvailable):
        runs.start_full_sync(session, setup_id, redis=fake_redis)
    monkeypatch.setattr(runs, "full_sync_available", lambda: True)
    with sqlite_store.transaction() as session:
        started = runs.start_full_sync(session, setup_id, True, fake_redis, partitions=3)
    job = Job.fetch(started["job_id"], connection=fake_redis, serializer=queue.SERIALIZER)
    assert job.kwargs == {"reset": True, "partitions": 3}
    assert started["queue"] == queue.FULL_SYNC
    with sqlite_store.transaction() as session:
        run_repo.open_run(session, setup_id, "full", job_id=job.id)
    with sqlite_store.transaction() as session, pytest.raises(exc.Conflict, match="already"):
        runs.start_full_sync(session, setup_id, redis=fake_redis)


def test_list_and_show_runs(
    settings: Settings, sqlite_store: Store, connected: dict[str, int]
) -> None:
    setup_id = new_setup(settings, sqlite_store, connected)
    with sqlite_store.transaction() as session:
        run = run_repo.open_run(session, setup_id, "incremental")
        run_repo.finish_run(session, run.id, "succeeded", counts={"created": 3})
    with sqlite_store.transaction() as session:
        listed = runs.list_runs(session, setup_id)
        shown = runs.show_run(session, run.id)
        with pytest.raises(exc.NotFound, match="Run 999 does not exist"):
            runs.show_run(session, 999)
        with pytest.raises(exc.NotFound):
            runs.list_runs(session, 999)
    assert [r["id"] for r in listed] == [run.id]
    assert shown["counts"] == {"created": 3} and shown["status"] == "succeeded"
    assert shown["duration_seconds"] is not None
