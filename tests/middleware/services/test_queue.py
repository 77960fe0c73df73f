"""Queue services without Flask: failed jobs with their exception, requeueing them."""

from __future__ import annotations

from redis import Redis
from rq import SimpleWorker

from middleware import queue
from middleware.services import queue as jobs


def fail_one_job(redis: Redis) -> str:
    # json.loads of a non-JSON string fails: an importable job that always raises.
    job = queue.enqueue("json.loads", "not json", retry=None, connection=redis)
    SimpleWorker(
        [queue.get_queue(redis, queue.DEFAULT)], connection=redis, serializer=queue.SERIALIZER
    ).work(burst=True)
    return job.id


def test_failed_jobs_show_their_exception_and_can_be_requeued(fake_redis: Redis) -> None:
    assert jobs.failed_jobs(fake_redis) == {"items": [], "total": 0}
    job_id = fail_one_job(fake_redis)
    failed = jobs.failed_jobs(fake_redis)
    assert failed["total"] == 1
    item = failed["items"][0]
    assert item["id"] == job_id and item["queue"] == queue.DEFAULT
    assert item["func"] == "json.loads" and item["exc_type"] == "JSONDecodeError"
    assert item["ended_at"].tzinfo is not None
    assert jobs.failed_jobs(fake_redis, queue.FULL_SYNC)["total"] == 0
    assert jobs.queue_state(fake_redis)["failed"] == 1

    result = jobs.requeue_failed(fake_redis, {"ids": [job_id, "no-such-job"]})
    assert result == {"requeued": [job_id], "missing": ["no-such-job"]}
    assert jobs.failed_jobs(fake_redis)["total"] == 0
    assert queue.get_queue(fake_redis, queue.DEFAULT).count == 1
