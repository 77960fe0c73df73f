"""The clock's minute tick: scheduled Full Syncs once per slot, never beside a running one, and
flushes for intakes nobody is flushing."""

from __future__ import annotations

from datetime import UTC, datetime

from redis import Redis

from middleware import intake
from middleware.fullsync import checkpoint as checkpoints
from middleware.fullsync import clock
from middleware.queue import FULL_SYNC, WEBHOOKS, get_queue
from middleware.store import runs, setups
from middleware.store.db import Store
from schemas.setup import validate_setup

SLOT = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
DAILY = {"schedule": {"full_sync": "daily", "at": "02:00", "timezone": "UTC"}}


def _setup(store: Store, name: str, options: dict, created: datetime | None = None) -> int:
    stored, _ = validate_setup({"name": name, "main_list": "Main", **options})
    with store.transaction() as session:
        row = setups.create(session, name=name, options=stored)
        row.created_at = created or datetime(2026, 1, 1, tzinfo=UTC)
        return row.id


def _queued(redis: Redis, name: str) -> list[tuple[str, tuple]]:
    q = get_queue(redis, name)
    return [(job.func_name, tuple(job.args)) for job in q.get_jobs()]


def test_due_setups_get_one_full_sync_per_slot(sqlite_store: Store, fake_redis: Redis) -> None:
    daily = _setup(sqlite_store, "daily", DAILY)
    _setup(sqlite_store, "manual", {"schedule": {"full_sync": "manual"}})
    first = clock.tick(sqlite_store, fake_redis, SLOT)
    assert first["full_syncs"] == [daily]
    assert _queued(fake_redis, FULL_SYNC) == [("jobs.full_sync.full_sync", (daily, False))]
    # The next minute, the job not yet started: the slot is taken, nothing more is queued.
    later = clock.tick(sqlite_store, fake_redis, SLOT.replace(minute=1))
    assert later["full_syncs"] == []
    assert len(_queued(fake_redis, FULL_SYNC)) == 1


def test_missed_slot_runs_after_the_clock_comes_back(
    sqlite_store: Store, fake_redis: Redis
) -> None:
    daily = _setup(sqlite_store, "daily", DAILY)
    with sqlite_store.transaction() as session:
        runs.open_run(session, daily, "full", now=datetime(2026, 11, 25, 2, 0, tzinfo=UTC))
        for run in runs.recent_runs(session, daily):
            runs.finish_run(session, run.id, "succeeded")
    assert clock.tick(sqlite_store, fake_redis, SLOT.replace(hour=6))["full_syncs"] == [daily]


def test_no_second_full_sync_beside_a_running_or_resumable_one(
    sqlite_store: Store, fake_redis: Redis
) -> None:
    running = _setup(sqlite_store, "running", DAILY)
    waiting = _setup(sqlite_store, "waiting", DAILY)
    with sqlite_store.transaction() as session:
        runs.open_run(session, running, "full", now=datetime(2026, 11, 25, 1, 0, tzinfo=UTC))
    checkpoints.save(sqlite_store, waiting, checkpoints.Checkpoint(run_id=99, phase="sync"))
    assert clock.tick(sqlite_store, fake_redis, SLOT)["full_syncs"] == []


def test_stranded_intake_gets_a_flush(sqlite_store: Store, fake_redis: Redis) -> None:
    busy = _setup(sqlite_store, "busy", {"schedule": {"full_sync": "manual"}})
    idle = _setup(sqlite_store, "idle", {"schedule": {"full_sync": "manual"}})
    intake.mark_dirty(fake_redis, busy, "Contact", ["003000000000001AAA"])
    first = clock.tick(sqlite_store, fake_redis, SLOT)
    assert first["flushes"] == [busy]
    assert idle not in first["flushes"]
    assert [name for name, _ in _queued(fake_redis, WEBHOOKS)] == ["middleware.queue.run_guarded"]
    # A flush is pending now: the next tick leaves it alone.
    assert clock.tick(sqlite_store, fake_redis, SLOT)["flushes"] == []


def test_the_clock_process_config_registers_the_minute_tick(fake_redis: Redis) -> None:
    from rq.cron import CronScheduler

    scheduler = CronScheduler(connection=fake_redis)
    scheduler.load_config_from_file("jobs/cron.py")
    jobs = {job.func_name: job for job in scheduler.get_jobs()}
    job = jobs["jobs.full_sync.clock_tick"]
    assert job.interval == 60 and job.queue_name == "default"


def test_a_stalled_run_is_resumed_once_and_never_beside_a_live_job(
    sqlite_store: Store, fake_redis: Redis
) -> None:
    manual = {"schedule": {"full_sync": "manual"}}
    stalled = _setup(sqlite_store, "stalled", manual)
    paused = _setup(sqlite_store, "paused", manual)
    with sqlite_store.transaction() as session:
        run_id = runs.open_run(session, stalled, "full", job_id="gone-job").id
    checkpoints.save(sqlite_store, stalled, checkpoints.Checkpoint(run_id=run_id, phase="sync"))
    checkpoints.save(
        sqlite_store,
        paused,
        checkpoints.Checkpoint(run_id=99, phase="sync", resume_at="2026-11-27T00:00:00+00:00"),
    )
    first = clock.tick(sqlite_store, fake_redis, SLOT)
    assert first["resumed"] == [stalled]
    assert _queued(fake_redis, FULL_SYNC) == [
        ("jobs.full_sync.full_sync", (stalled, False, 1, run_id))
    ]
    assert clock.tick(sqlite_store, fake_redis, SLOT)["resumed"] == []  # once per ten minutes
    # A worker holds the run's lock: nothing to revive.
    fake_redis.delete(f"{clock.RESUME_KEY}{stalled}")
    fake_redis.set(f"ctct:lock:setup:fullsync:{stalled}", "token")
    assert clock.tick(sqlite_store, fake_redis, SLOT)["resumed"] == []
