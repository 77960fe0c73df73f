"""Queue services: the queues' state, failed jobs with their exceptions, and requeueing them."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry

from middleware import queue

log = logging.getLogger(__name__)


def queue_state(redis: Redis) -> dict[str, Any]:
    """Queue depths, registries and workers (as ``middleware.queue`` reports them)."""
    return queue.queue_state(redis)


def exc_summary(job: Job) -> tuple[str | None, str | None]:
    """A failed job's exception as (type, message), read from its last result's traceback."""
    text: str | None = None
    try:
        result = job.latest_result()
        text = getattr(result, "exc_string", None) if result is not None else None
    except Exception:  # an old or foreign job format: show what we can
        text = None
    if not text:
        return None, None
    last = [line for line in text.strip().splitlines() if line.strip()][-1].strip()
    exc_type, sep, message = last.partition(":")
    if not sep or " " in exc_type:
        return None, last[:1000]
    return exc_type.strip().rpartition(".")[2] or exc_type, message.strip()[:1000]


def failed_jobs(redis: Redis, queue_name: str | None = None, limit: int = 100) -> dict[str, Any]:
    """Failed jobs of every queue (or one), newest first, with their exceptions."""
    items: list[dict[str, Any]] = []
    total = 0
    for name, q in queue.get_queues(redis).items():
        if queue_name and name != queue_name:
            continue
        registry = FailedJobRegistry(queue=q)
        ids = registry.get_job_ids(desc=True)
        total += len(ids)
        room = max(0, limit - len(items))
        for job in Job.fetch_many(ids[:room], connection=redis, serializer=queue.SERIALIZER):
            if job is None:
                continue
            exc_type, exc_message = exc_summary(job)
            items.append(
                {
                    "id": job.id,
                    "queue": name,
                    "func": job.func_name,
                    "args": list(job.args or []),
                    "description": job.description,
                    "enqueued_at": _aware(job.enqueued_at),
                    "ended_at": _aware(job.ended_at),
                    "exc_type": exc_type,
                    "exc_message": exc_message,
                }
            )
    return {"items": items, "total": total}


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def requeue_failed(redis: Redis, selection: Mapping[str, Any]) -> dict[str, Any]:
    """Put the selected failed jobs (or all) back on their queues; unknown ids are listed."""
    registries = {name: FailedJobRegistry(queue=q) for name, q in queue.get_queues(redis).items()}
    where: dict[str, str] = {}
    for name, registry in registries.items():
        for job_id in registry.get_job_ids():
            where[job_id] = name
    wanted = list(where) if selection.get("all") else list(dict.fromkeys(selection["ids"]))
    requeued, missing = [], []
    for job_id in wanted:
        origin = where.get(job_id)
        if origin is None:
            missing.append(job_id)
            continue
        try:
            registries[origin].requeue(job_id)
        except NoSuchJobError:
            missing.append(job_id)
            continue
        requeued.append(job_id)
    log.info("requeued %d failed jobs", len(requeued))
    return {"requeued": requeued, "missing": missing}
