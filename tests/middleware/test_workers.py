"""Tests for middleware.workers (recovery from dead workers) and the setup lock's keeper.

The real thing — a Procfile worker SIGKILLed mid-flush — is tests/e2e/test_worker_death.py;
these pin each piece on fakeredis.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.utils import utcformat

from middleware import embedded_worker, queue, workers
from middleware.settings import Settings
from middleware.store import runs, setups
from middleware.store.db import Store

SEEN: list[Any] = []


@queue.exclusive_per_setup()
def report_lock(setup_id: int) -> None:
    """A job that notes the lock it holds and the job's holder set."""
    job = queue.get_current_job()
    assert job is not None
    conn = job.connection
    SEEN.append(
        (
            (conn.get(f"{queue.LOCK_PREFIX}{setup_id}") or b"").decode(),
            sorted(m.decode() for m in conn.smembers(queue.lock_holder_key(job.id))),
            job.id,
        )
    )


def register_worker(redis: Redis, name: str, heartbeat_age: float, ours: bool = True) -> None:
    key = f"rq:worker:{name}"
    at = datetime.now(UTC) - timedelta(seconds=heartbeat_age)
    redis.hset(key, mapping={"last_heartbeat": utcformat(at), "birth": utcformat(at)})
    if ours:
        redis.hset(key, workers.HEARTBEAT_FIELD, workers.HEARTBEAT_SECONDS)
    redis.sadd("rq:workers", key)


def started_job(redis: Redis, worker: str, *, in_registry: bool = True) -> Job:
    job = queue.enqueue("tests.middleware.test_queue.record", 1, connection=redis)
    job.set_status(JobStatus.STARTED)
    job.worker_name = worker
    job.save()
    if in_registry:
        registry = StartedJobRegistry(queue=queue.get_queue(redis))
        redis.zadd(registry.key, {f"{job.id}:exec-1": time.time() + 600})
    return job


def open_run(store: Store, job_id: str | None, kind: str = "incremental") -> int:
    with store.transaction() as session:
        setup = setups.create(session, name=f"s-{job_id}", options={})
        return runs.open_run(session, setup.id, kind, job_id=job_id).id


def run_of(store: Store, run_id: int) -> Any:
    with store.transaction() as session:
        return runs.get_run(session, run_id)


def sync_worker(redis: Redis, store: Store) -> workers.SyncWorker:
    worker = workers.SyncWorker(list(queue.get_queues(redis).values()), connection=redis)

    @contextmanager
    def use() -> Iterator[Store]:
        yield store

    worker._store.use = use  # type: ignore[method-assign]
    return worker


# ------------------------------------------------------------------------------- the lock


def test_the_setup_lock_is_renewed_while_its_holder_lives(fake_redis: Redis) -> None:
    key = f"{queue.LOCK_PREFIX}61"
    with queue.setup_lock(fake_redis, 61, ttl=0.6):
        time.sleep(1.5)  # more than twice the TTL: only the keeper keeps it
        assert fake_redis.get(key) is not None
        with pytest.raises(queue.SetupBusy), queue.setup_lock(fake_redis, 61, ttl=0.6):
            pass
    assert fake_redis.get(key) is None


def test_a_lock_not_renewed_lapses_within_its_ttl(fake_redis: Redis) -> None:
    # What a SIGKILLed holder leaves: the value, with the short TTL and no keeper.
    lock = fake_redis.lock(f"{queue.LOCK_PREFIX}62", timeout=queue.LOCK_TTL_SECONDS)
    assert lock.acquire(blocking=False)
    assert 0 < fake_redis.ttl(f"{queue.LOCK_PREFIX}62") <= 30
    assert queue.LOCK_TTL_SECONDS <= 30


def test_a_lock_taken_in_a_job_names_the_job_and_is_listed_for_it(fake_redis: Redis) -> None:
    SEEN.clear()
    job = queue.enqueue(report_lock, 5, connection=fake_redis)
    embedded_worker.EmbeddedWorkerThread(fake_redis).run_pending()
    (value, holder, job_id), *_ = SEEN
    assert job_id == job.id
    assert value.startswith(f"{job.id}|") and value.split("|")[2].isdigit()  # job|host|pid|rand
    assert holder == [f"{queue.LOCK_PREFIX}5\n{value}"]
    # Released after the job, and the holder set forgotten.
    assert fake_redis.get(f"{queue.LOCK_PREFIX}5") is None
    assert not fake_redis.smembers(queue.lock_holder_key(job.id))


def test_release_job_locks_releases_only_what_the_job_still_holds(fake_redis: Redis) -> None:
    holder = queue.lock_holder_key("job-1")
    fake_redis.set("ctct:lock:setup:1", "job-1|h|1|a")
    fake_redis.set("ctct:lock:setup:2", "job-2|h|2|b")  # lapsed and taken by another job
    fake_redis.sadd(holder, "ctct:lock:setup:1\njob-1|h|1|a", "ctct:lock:setup:2\njob-1|h|1|c")
    assert workers.release_job_locks(fake_redis, "job-1") == ["ctct:lock:setup:1"]
    assert fake_redis.get("ctct:lock:setup:1") is None
    assert fake_redis.get("ctct:lock:setup:2") == b"job-2|h|2|b"
    assert not fake_redis.exists(holder)


# ------------------------------------------------------------------------------- liveness


def test_worker_and_job_liveness(fake_redis: Redis, sqlite_store: Store) -> None:
    register_worker(fake_redis, "fresh", heartbeat_age=2)
    register_worker(fake_redis, "silent", heartbeat_age=workers.STALE_AFTER_SECONDS + 5)
    register_worker(fake_redis, "stock", heartbeat_age=300, ours=False)  # RQ's own: by its TTL
    assert workers.worker_state(fake_redis, "fresh")[0]
    alive, why = workers.worker_state(fake_redis, "silent")
    assert not alive and why.startswith("worker silent stopped heartbeating")
    assert workers.worker_state(fake_redis, "stock")[0]
    assert workers.worker_state(fake_redis, "nobody") == (
        False,
        "worker nobody is gone (no heartbeat in Redis)",
    )
    assert workers.live_workers(fake_redis)[0] == ["fresh", "stock"]

    assert workers.job_state(fake_redis, started_job(fake_redis, "fresh").id)[0]
    assert not workers.job_state(fake_redis, started_job(fake_redis, "silent").id)[0]
    assert workers.job_state(fake_redis, "no-such-job") == (False, "its job is gone from Redis")
    failed = started_job(fake_redis, "fresh")
    failed.set_status(JobStatus.FAILED)
    assert workers.job_state(fake_redis, failed.id) == (False, "its job is failed")
    coordinator = started_job(fake_redis, "silent")  # a partitioned Full Sync's first job
    coordinator.set_status(JobStatus.FINISHED)
    assert workers.job_state(fake_redis, coordinator.id)[0]


def test_fail_dead_runs_fails_only_runs_whose_job_died(
    fake_redis: Redis, sqlite_store: Store
) -> None:
    register_worker(fake_redis, "fresh", heartbeat_age=1)
    register_worker(fake_redis, "silent", heartbeat_age=60)
    live = open_run(sqlite_store, started_job(fake_redis, "fresh").id)
    dead_job = started_job(fake_redis, "silent")
    dead = open_run(sqlite_store, dead_job.id)
    full = open_run(sqlite_store, "vanished-job", kind="full")
    no_job = open_run(sqlite_store, None)  # opened outside a job: nothing to judge
    found = workers.fail_dead_runs(sqlite_store, fake_redis)
    assert sorted(d.run_id for d in found) == [dead, full]
    assert run_of(sqlite_store, live).status == "running"
    assert run_of(sqlite_store, no_job).status == "running"
    message = run_of(sqlite_store, dead).message
    assert message.startswith("worker died: worker silent stopped heartbeating")
    assert f"(job {dead_job.id})" in message
    assert run_of(sqlite_store, full).message == (
        "worker died: its job is gone from Redis (job vanished-job); "
        "the Full Sync goes on from its checkpoint when it runs again"
    )
    assert workers.fail_dead_runs(sqlite_store, fake_redis) == []  # idempotent


# ------------------------------------------------------------------------------- the worker


def test_the_sync_worker_heartbeats_often(fake_redis: Redis, sqlite_store: Store) -> None:
    worker = sync_worker(fake_redis, sqlite_store)
    assert worker.dequeue_timeout <= workers.HEARTBEAT_SECONDS
    assert worker.job_monitoring_interval <= workers.HEARTBEAT_SECONDS
    worker.register_birth()
    assert fake_redis.hget(worker.key, workers.HEARTBEAT_FIELD) == b"5"
    assert worker.should_run_maintenance_tasks  # recovery is due at once


def test_a_killed_work_horse_releases_its_locks_and_fails_its_runs(
    fake_redis: Redis, sqlite_store: Store
) -> None:
    worker = sync_worker(fake_redis, sqlite_store)
    job = started_job(fake_redis, worker.name)
    token = queue.lock_token(job.id)
    fake_redis.set(f"{queue.LOCK_PREFIX}7", token, ex=30)
    fake_redis.sadd(queue.lock_holder_key(job.id), f"{queue.LOCK_PREFIX}7\n{token}")
    run_id = open_run(sqlite_store, job.id)
    worker.handle_work_horse_killed(job, 4242, 9, None)  # waitpid status of a SIGKILL
    assert fake_redis.get(f"{queue.LOCK_PREFIX}7") is None
    run = run_of(sqlite_store, run_id)
    assert run.status == "failed"
    assert run.message.startswith(
        f"worker died: work horse killed by signal 9 (SIGKILL) (job {job.id}); its pending "
    )


def test_recovery_retries_the_jobs_of_a_dead_worker_and_fails_their_runs(
    fake_redis: Redis, sqlite_store: Store
) -> None:
    worker = sync_worker(fake_redis, sqlite_store)
    worker.register_birth()
    register_worker(fake_redis, "dead", heartbeat_age=60)
    register_worker(fake_redis, "busy", heartbeat_age=1)
    orphan, working = started_job(fake_redis, "dead"), started_job(fake_redis, "busy")
    orphan_run, working_run = open_run(sqlite_store, orphan.id), open_run(sqlite_store, working.id)

    worker.recover()

    registry = StartedJobRegistry(queue=queue.get_queue(fake_redis))
    assert registry.get_job_ids(cleanup=False) == [working.id]
    assert orphan.get_status(refresh=True) == JobStatus.SCHEDULED  # its Retry, as RQ does it
    assert run_of(sqlite_store, orphan_run).message.startswith(
        "worker died: worker dead stopped heartbeating"
    )
    assert run_of(sqlite_store, working_run).status == "running"


def test_the_embedded_worker_fails_runs_left_by_a_previous_process(
    fake_redis: Redis, sqlite_store: Store
) -> None:
    run_id = open_run(sqlite_store, "job-of-a-previous-process")
    runtime = queue.Runtime(settings=Settings.for_tests(), store=sqlite_store, redis=fake_redis)
    thread = embedded_worker.EmbeddedWorkerThread(fake_redis, runtime).start()
    try:
        deadline = time.monotonic() + 5
        while run_of(sqlite_store, run_id).status == "running" and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        thread.stop()
    assert run_of(sqlite_store, run_id).message.startswith("worker died: its job is gone")


def test_the_procfile_runs_the_sync_worker() -> None:
    procfile = (Path(__file__).resolve().parents[2] / "Procfile").read_text()
    worker = next(line for line in procfile.splitlines() if line.startswith("worker:"))
    assert "--worker-class middleware.workers.SyncWorker" in worker
    assert "--with-scheduler" in worker


def test_a_full_sync_killed_with_its_worker_is_failed_resumably_and_revived_by_the_clock(
    fake_redis: Redis, sqlite_store: Store
) -> None:
    from middleware.fullsync import checkpoint as checkpoints
    from middleware.fullsync import clock
    from middleware.fullsync import run as fullsync_run

    assert fullsync_run.LOCK_TTL == queue.LOCK_TTL_SECONDS  # renewed while alive, lapses fast
    worker = sync_worker(fake_redis, sqlite_store)
    worker.register_birth()
    register_worker(fake_redis, "dead", heartbeat_age=60)
    job = started_job(fake_redis, "dead")
    job.retries_left = 0  # its retries used up: only the clock can revive the run
    job.save()
    run_id = open_run(sqlite_store, job.id, kind="full")
    with sqlite_store.transaction() as session:
        setup_id = runs.get_run(session, run_id).setup_id
    checkpoints.save(sqlite_store, setup_id, checkpoints.Checkpoint(run_id=run_id, phase="sync"))
    lock = f"{queue.LOCK_PREFIX}{fullsync_run.lock_name(setup_id)}"
    fake_redis.set(lock, queue.lock_token(job.id), px=300)  # what the dead horse left

    worker.recover()
    run = run_of(sqlite_store, run_id)
    assert run.status == "failed"
    assert run.message.endswith("the Full Sync goes on from its checkpoint when it runs again")
    now = datetime.now(UTC)
    assert clock.resume_stalled(sqlite_store, fake_redis, now) == []  # its lock still lives
    time.sleep(0.4)
    assert clock.resume_stalled(sqlite_store, fake_redis, now) == [setup_id]
    resumed = queue.get_queue(fake_redis, queue.FULL_SYNC).get_jobs()
    assert [(j.func_name, j.args) for j in resumed] == [
        ("jobs.full_sync.full_sync", [setup_id, False, 1, run_id])
    ]
