"""Tests for middleware.queue on fakeredis (embedded mode) and on a real Redis (integration)."""

from __future__ import annotations

import threading
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis import Redis
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from middleware import embedded_worker, queue
from middleware.settings import Settings
from middleware.store.db import Store

CALLS: list[Any] = []
DONE = threading.Event()


# Jobs are top-level functions with JSON arguments, as in jobs/.
def record(*args: Any) -> str:
    CALLS.append(list(args))
    return "ok"


def explode(reason: str) -> None:
    raise RuntimeError(reason)


def reschedule_self(key: str) -> str | None:
    CALLS.append(["flush", key])
    # A change arriving while this flush runs must get a flush of its own.
    return queue.ensure_scheduled(key, record, ["late"], delay=0)


def report_runtime() -> str:
    return queue.current_runtime().settings.public_url


def signal_done() -> None:
    DONE.set()


@queue.exclusive_per_setup(ttl=30, retry_in=7)
def exclusive(setup_id: int) -> str:
    CALLS.append(["exclusive", setup_id])
    return "ran"


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.integration)])
def conn(request: pytest.FixtureRequest) -> Redis:
    CALLS.clear()
    return request.getfixturevalue("fake_redis" if request.param == "fake" else "real_redis")  # type: ignore[no-any-return]


def run_all(conn: Redis, now: datetime | None = None) -> bool:
    worker = embedded_worker.EmbeddedWorkerThread(conn, clock=lambda: now or datetime.now(UTC))
    return worker.run_pending()


def test_enqueue_runs_job_with_json_arguments(conn: Redis) -> None:
    job = queue.enqueue(record, 1, "two", {"three": [3]}, queue=queue.WEBHOOKS, connection=conn)
    assert job.origin == "webhooks"
    raw = conn.hget(f"rq:job:{job.id}", "data")
    assert raw is not None and b'"three"' in zlib.decompress(raw)  # JSON, not pickle
    assert run_all(conn)
    assert CALLS == [[1, "two", {"three": [3]}]]
    assert Job.fetch(job.id, connection=conn, serializer=queue.SERIALIZER).return_value() == "ok"


def test_non_json_arguments_are_refused_at_enqueue(conn: Redis) -> None:
    with pytest.raises(TypeError, match="plain JSON"):
        queue.enqueue(record, object(), connection=conn)
    with pytest.raises(ValueError, match="top-level"):
        queue.enqueue(lambda: None, connection=conn)
    with pytest.raises(ValueError, match="unknown queue"):
        queue.enqueue(record, queue="urgent", connection=conn)


def test_delayed_job_waits_for_its_time(conn: Redis) -> None:
    job = queue.enqueue(record, "later", delay=30, connection=conn)
    assert job.get_status() == JobStatus.SCHEDULED
    assert not run_all(conn, datetime.now(UTC))
    assert CALLS == []
    assert run_all(conn, datetime.now(UTC) + timedelta(seconds=31))
    assert CALLS == [["later"]]


def test_ensure_scheduled_keeps_exactly_one_pending_job(conn: Redis) -> None:
    first = queue.ensure_scheduled("flush-7", record, [7], delay=1.0, connection=conn)
    assert first is not None
    for _ in range(5):
        assert queue.ensure_scheduled("flush-7", record, [7], delay=1.0, connection=conn) is None
    assert queue.pending_job_id("flush-7", connection=conn) == first
    registry = ScheduledJobRegistry(queue=queue.get_queue(conn))
    assert registry.get_job_ids() == [first]
    # Another key is independent.
    assert queue.ensure_scheduled("flush-8", record, [8], delay=1.0, connection=conn)
    assert run_all(conn, datetime.now(UTC) + timedelta(seconds=2))
    assert sorted(CALLS) == [[7], [8]]
    # Once the job ran, the next event schedules a new one.
    again = queue.ensure_scheduled("flush-7", record, [7], delay=1.0, connection=conn)
    assert again is not None and again != first


def test_ensure_scheduled_during_the_run_schedules_a_follow_up(conn: Redis) -> None:
    queue.ensure_scheduled("flush-9", reschedule_self, ["flush-9"], connection=conn)
    run_all(conn)
    assert CALLS == [["flush", "flush-9"], ["late"]]


def test_stale_guard_does_not_block_scheduling(conn: Redis) -> None:
    conn.set(queue.GUARD_PREFIX + "flush-3", "flush-3-gone|0")
    assert queue.ensure_scheduled("flush-3", record, [3], connection=conn) is not None


def test_setup_lock_excludes_a_second_holder(conn: Redis) -> None:
    with queue.setup_lock(conn, 42, ttl=30):
        with pytest.raises(queue.SetupBusy), queue.setup_lock(conn, 42, ttl=30):
            pass
        with queue.setup_lock(conn, 43, ttl=30):
            pass  # other setups are not blocked
    with queue.setup_lock(conn, 42, ttl=30):
        pass  # released after the block


def test_busy_setup_job_reschedules_itself_instead_of_failing(conn: Redis) -> None:
    job = queue.enqueue(exclusive, 5, connection=conn)
    with queue.setup_lock(conn, 5, ttl=30):
        run_all(conn)
    assert CALLS == []
    assert job.get_status() == JobStatus.FINISHED
    scheduled = ScheduledJobRegistry(queue=queue.get_queue(conn)).get_job_ids()
    assert len(scheduled) == 1
    follow_up = Job.fetch(scheduled[0], connection=conn, serializer=queue.SERIALIZER)
    assert follow_up.meta["lock_waits"] == 1
    assert follow_up.args == [5]
    run_all(conn, datetime.now(UTC) + timedelta(seconds=8))
    assert CALLS == [["exclusive", 5]]


def test_failed_job_is_retried_then_kept_in_failed_registry(conn: Redis) -> None:
    job = queue.enqueue(explode, "vendor down", connection=conn)
    q = queue.get_queue(conn)
    now = datetime.now(UTC)
    for attempt, wait in enumerate(queue.RETRY_INTERVALS, start=1):
        run_all(conn, now)
        assert job.get_status() == JobStatus.SCHEDULED, f"attempt {attempt} should be retried"
        now += timedelta(seconds=wait + 1)
    run_all(conn, now)
    assert job.get_status() == JobStatus.FAILED
    assert FailedJobRegistry(queue=q).get_job_ids() == [job.id]
    state = queue.queue_state(conn)
    assert state["failed"] == 1 and state["queues"]["default"]["failed"] == 1


def test_queue_state_counts(conn: Redis) -> None:
    queue.enqueue(record, 1, queue=queue.WEBHOOKS, connection=conn)
    queue.enqueue(record, 2, queue=queue.FULL_SYNC, connection=conn)
    queue.enqueue(record, 3, delay=60, connection=conn)
    state = queue.queue_state(conn)
    assert state["backlog"] == 2 and state["scheduled"] == 1
    assert state["queues"]["webhooks"]["queued"] == 1
    assert state["queues"]["full_sync"]["queued"] == 1
    assert state["queues"]["default"]["scheduled"] == 1
    assert state["workers"] == []


def test_jobs_see_the_runtime_of_the_embedded_worker(fake_redis: Redis, settings: Settings) -> None:
    store = Store("sqlite://", settings.token_encryption_keys)
    runtime = queue.Runtime(
        settings=settings.replace(public_url="https://x.test"), store=store, redis=fake_redis
    )
    job = queue.enqueue(report_runtime, connection=fake_redis)
    embedded_worker.EmbeddedWorkerThread(fake_redis, runtime).run_pending()
    assert job.return_value() == "https://x.test"
    # Outside a job, enqueue finds Redis through the runtime in use.
    with queue.use_runtime(runtime):
        assert queue.enqueue(record, 1).connection is fake_redis


def test_embedded_worker_thread_runs_jobs_in_the_background(fake_redis: Redis) -> None:
    DONE.clear()
    worker = embedded_worker.start_embedded_worker(fake_redis)
    try:
        queue.enqueue(signal_done, connection=fake_redis)
        assert DONE.wait(timeout=10)
    finally:
        worker.stop()
    assert not worker.alive


def test_embedded_redis_is_one_server_per_process() -> None:
    a, b = queue.embedded_redis(), queue.embedded_redis()
    a.set("ctct-test:shared", "1")
    try:
        assert b.get("ctct-test:shared") == b"1"
    finally:
        a.delete("ctct-test:shared")


def test_rediss_urls_accept_self_signed_certificates() -> None:
    client = queue.redis_from_url("rediss://:pw@redis.example.com:6380/0")
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["ssl_cert_reqs"] is None
    assert kwargs["ssl_check_hostname"] is False
    plain = queue.redis_from_url("redis://localhost:6379/0").connection_pool.connection_kwargs
    assert "ssl_cert_reqs" not in plain


def test_pickled_jobs_from_rq_cron_still_run(conn: Redis) -> None:
    from rq import Queue

    # rq cron (2.12) enqueues with RQ's default pickle serializer; our workers must read them.
    job = Queue("default", connection=conn).enqueue(record, "from cron")
    assert run_all(conn)
    assert CALLS == [["from cron"]]
    assert Job.fetch(job.id, connection=conn, serializer=queue.SERIALIZER).is_finished


def test_rq_cli_connection_class_accepts_self_signed_tls() -> None:
    client = queue.TolerantRedis.from_url("rediss://:pw@redis.example.com:6380/0")
    assert client.connection_pool.connection_kwargs["ssl_cert_reqs"] is None
    assert "socket_timeout" not in client.connection_pool.connection_kwargs


def current_request_id() -> str:
    from middleware.logging import request_id_var

    return request_id_var.get()


def test_request_id_follows_the_job(conn: Redis) -> None:
    from middleware.logging import request_id_var

    token = request_id_var.set("req-42")
    try:
        job = queue.enqueue(current_request_id, connection=conn)
    finally:
        request_id_var.reset(token)
    assert job.meta["request_id"] == "req-42"
    run_all(conn)
    assert job.return_value() == "req-42"


# --- a later-scheduled guard never refuses an earlier request (issue 9: quota stall) ----------


def _scheduled_ids(conn: Redis, name: str = queue.DEFAULT) -> list[str]:
    return [
        j if isinstance(j, str) else j.decode()
        for j in ScheduledJobRegistry(queue=queue.get_queue(conn, name)).get_job_ids()
    ]


def test_an_earlier_request_replaces_a_job_held_for_later(conn: Redis) -> None:
    midnight = queue.ensure_scheduled("flush-5", record, [5], delay=6 * 3600, connection=conn)
    assert midnight is not None
    # A webhook's flush (due in 1 s) is not refused by the job held for the quota reset ...
    soon = queue.ensure_scheduled("flush-5", record, [5], delay=1.0, connection=conn)
    assert soon is not None and soon != midnight
    # ... and still exactly one job is pending: the later one is off the schedule and gone.
    assert queue.pending_job_id("flush-5", connection=conn) == soon
    assert _scheduled_ids(conn) == [soon]
    assert not conn.exists(f"rq:job:{midnight}")
    due = queue.pending_job_due("flush-5", connection=conn)
    assert due is not None and due <= datetime.now(UTC) + timedelta(seconds=2)
    # Further requests, earlier or later, leave the soon one alone.
    assert queue.ensure_scheduled("flush-5", record, [5], delay=0.5, connection=conn) is None
    assert queue.ensure_scheduled("flush-5", record, [5], delay=3600, connection=conn) is None
    assert _scheduled_ids(conn) == [soon]
    assert run_all(conn, datetime.now(UTC) + timedelta(seconds=3))
    assert CALLS == [[5]]  # the replaced job never runs


def test_the_hot_path_sees_a_guard_held_for_later_as_not_fresh(conn: Redis) -> None:
    queue.ensure_scheduled("flush-6", record, [6], delay=3600, connection=conn)
    token = conn.get(queue.guard_key("flush-6"))
    assert not queue.guard_is_fresh(token, 1.0)  # the webhook goes on to replace it
    assert queue.guard_is_fresh(token, 3600)
    queue.ensure_scheduled("flush-6", record, [6], delay=1.0, connection=conn)
    assert queue.guard_is_fresh(conn.get(queue.guard_key("flush-6")), 1.0)


def test_a_guard_past_its_time_is_fresh_while_its_job_still_waits(conn: Redis) -> None:
    # Workers busy: the job is due but still queued. Its status, read with the guard, says
    # what ensure_scheduled's lookup would find, so the hot path needs no more calls.
    now = int(datetime.now(UTC).timestamp())
    late = f"flush-9-abc|{now - 120}|{now - 119}"
    assert not queue.guard_is_fresh(late, 1.0)
    for waiting in ("queued", "scheduled", "deferred", b"queued"):
        assert queue.guard_is_fresh(late, 1.0, waiting)
    for past in (None, "", "started", "finished", "failed", "canceled", "stopped"):
        assert not queue.guard_is_fresh(late, 1.0, past)
    # A job held for later than asked is replaced whatever its status.
    held = f"flush-9-abc|{now}|{now + 3600}"
    assert not queue.guard_is_fresh(held, 1.0, "scheduled")
    # The status stands for what the lookup finds: it agrees with ensure_scheduled.
    job = queue.enqueue(record, "late", connection=conn)
    conn.set(queue.guard_key("flush-9"), f"{job.id}|{now - 120}|{now - 119}")
    status = conn.hget(f"{queue.JOB_KEY_PREFIX}{job.id}", "status")
    assert queue.guard_is_fresh(conn.get(queue.guard_key("flush-9")), 1.0, status)
    assert queue.ensure_scheduled("flush-9", record, [9], delay=1.0, connection=conn) is None


def test_a_guard_written_before_due_times_is_replaced_too(conn: Redis) -> None:
    # Guards of the previous release say only "job|created": the registry knows when it is due.
    old = queue.enqueue(record, "old", delay=3 * 3600, connection=conn)
    conn.set(queue.guard_key("flush-4"), f"{old.id}|{int(datetime.now(UTC).timestamp()) - 120}")
    new = queue.ensure_scheduled("flush-4", record, [4], connection=conn)
    assert new is not None
    assert _scheduled_ids(conn) == [] and not conn.exists(f"rq:job:{old.id}")
    assert run_all(conn)
    assert CALLS == [[4]]


def test_clear_guard_forgets_and_unschedules_the_pending_job(conn: Redis) -> None:
    held = queue.ensure_scheduled("flush-2", record, [2], delay=3600, connection=conn)
    assert queue.clear_guard("flush-2", connection=conn) == held
    assert queue.pending_job_id("flush-2", connection=conn) is None
    assert _scheduled_ids(conn) == []
    assert queue.clear_guard("flush-2", connection=conn) is None


def test_concurrent_requests_replace_a_held_job_exactly_once(conn: Redis) -> None:
    queue.ensure_scheduled("flush-11", record, [11], delay=6 * 3600, connection=conn)
    results: list[str | None] = []
    start = threading.Barrier(8)

    def webhook() -> None:
        start.wait()
        results.append(queue.ensure_scheduled("flush-11", record, [11], delay=1.0, connection=conn))

    threads = [threading.Thread(target=webhook) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    scheduled = [r for r in results if r is not None]
    assert len(scheduled) == 1
    assert _scheduled_ids(conn) == scheduled
    assert queue.pending_job_id("flush-11", connection=conn) == scheduled[0]
