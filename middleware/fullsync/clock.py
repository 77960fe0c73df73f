"""Clock: what the clock process's minute tick enqueues — due Full Syncs, and stranded flushes.

``rq cron`` (one ``clock`` process, see ``jobs/cron.py``) enqueues ``jobs.full_sync.clock_tick``
every minute; a worker runs it:

- each setup whose schedule has a slot since its last Full Sync (:func:`schedule.is_due`, which
  is also the guard that catches up a nightly sync missed while the clock was down) gets one
  Full Sync job, once per slot (a Redis key per setup and slot), and none while one of its Full
  Syncs is queued, running or waiting to resume;
- a Full Sync that stopped without finishing (its worker killed and the job not retried, its
  retries used up, or its budget pause over and the scheduled job lost) is enqueued again to go
  on from its checkpoint, at most every ten minutes, and only when no job of it is alive;
- each setup with changes waiting in its intake but no flush pending gets a flush (a lost flush
  job, or one that failed for good, must not leave changes stranded until the next event).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from marshmallow import ValidationError
from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job
from sqlalchemy import func, select

from middleware import intake, queue, runner
from middleware.fullsync import checkpoint as checkpoints
from middleware.fullsync import schedule
from middleware.fullsync.run import lock_name
from middleware.store.db import Store
from middleware.store.models import Run, Setup
from schemas.setup import setup_options

log = logging.getLogger(__name__)

SLOT_KEY = "ctct:fullsync:slot:"
RESUME_KEY = "ctct:fullsync:resume:"
RESUME_EVERY = 600  # seconds between two attempts to revive one stalled run
ALIVE = ("queued", "started", "scheduled", "deferred")
FULL_SYNC_JOB = "jobs.full_sync.full_sync"


def due_full_syncs(store: Store, now: datetime) -> list[tuple[int, datetime]]:
    """(setup id, slot) of every setup whose scheduled Full Sync is due at ``now``."""
    due: list[tuple[int, datetime]] = []
    with store.transaction() as session:
        last = dict(
            session.execute(
                select(Run.setup_id, func.max(func.coalesce(Run.started_at, Run.created_at)))
                .where(Run.kind == "full")
                .group_by(Run.setup_id)
            ).all()
        )
        busy = set(
            session.scalars(
                select(Run.setup_id).where(
                    Run.kind == "full", Run.status.in_(("queued", "running"))
                )
            )
        )
        setups = list(session.execute(select(Setup.id, Setup.options, Setup.created_at)))
    for setup_id, options, created in setups:
        if setup_id in busy or checkpoints.load(store, setup_id) is not None:
            continue  # running, or waiting to resume: the resume is its slot's run
        try:
            every = setup_options(options).schedule
            slot = schedule.is_due(every, now, last.get(setup_id), created=created)
        except ValidationError as exc:
            log.warning("setup %s has unusable options: %s", setup_id, exc.messages)
            continue
        except ValueError as exc:
            log.warning("setup %s has an unusable schedule: %s", setup_id, exc)
            continue
        if slot is not None:
            due.append((setup_id, slot))
    return due


def tick(store: Store, redis: Redis, now: datetime) -> dict[str, Any]:
    """Enqueue due Full Syncs and stranded flushes; return what was enqueued."""
    started: list[int] = []
    for setup_id, slot in due_full_syncs(store, now):
        key = f"{SLOT_KEY}{setup_id}:{int(slot.timestamp())}"
        if not redis.set(key, "1", nx=True, ex=3 * 24 * 3600):
            continue
        queue.enqueue(FULL_SYNC_JOB, setup_id, False, queue=queue.FULL_SYNC, connection=redis)
        log.info("setup %s: scheduled Full Sync for %s enqueued", setup_id, slot.isoformat())
        started.append(setup_id)
    resumed = resume_stalled(store, redis, now)
    flushes = sweep_flushes(store, redis, now)
    return {"full_syncs": started, "resumed": resumed, "flushes": flushes}


def resume_stalled(store: Store, redis: Redis, now: datetime) -> list[int]:
    """Enqueue the resumption of Full Syncs whose checkpoint no live job is working on."""
    with store.transaction() as session:
        ids = list(session.scalars(select(Setup.id)))
    resumed = []
    for setup_id in ids:
        cp = checkpoints.load(store, setup_id)
        if cp is None or cp.range:  # partitioned runs are driven by their partition jobs
            continue
        if cp.resume_at and datetime.fromisoformat(cp.resume_at) > now:
            continue  # paused for its budget; its job is scheduled for then
        if redis.exists(queue.LOCK_PREFIX + lock_name(setup_id)):
            continue  # a worker holds it
        with store.transaction() as session:
            run = session.get(Run, cp.run_id)
            job_id = run.job_id if run is not None else None
        if job_id and _alive(redis, job_id):
            continue
        if not redis.set(f"{RESUME_KEY}{setup_id}", "1", nx=True, ex=RESUME_EVERY):
            continue
        queue.enqueue(
            FULL_SYNC_JOB,
            setup_id,
            cp.reset,
            1,
            cp.run_id,
            queue=queue.FULL_SYNC,
            connection=redis,
        )
        log.warning("setup %s: Full Sync run %s had stalled; resuming it", setup_id, cp.run_id)
        resumed.append(setup_id)
    return resumed


def _alive(redis: Redis, job_id: str) -> bool:
    try:
        job = Job.fetch(job_id, connection=redis, serializer=queue.SERIALIZER)
    except NoSuchJobError:
        return False
    return str(job.get_status(refresh=False) or "") in ALIVE


def sweep_flushes(store: Store, redis: Redis, now: datetime | None = None) -> list[int]:
    """Schedule a flush for setups whose intake holds changes and whose flush is not due soon.

    A paused setup's flush is held for the pause's end (none for a pause until resumed); any
    other setup's is due now, and replaces a flush held for later (a quota pause an operator
    lifted, say): ``ensure_scheduled`` lets an earlier job replace a later one.
    """
    at = now or datetime.now(UTC)
    with store.transaction() as session:
        rows = list(session.scalars(select(Setup)))
        pauses = {
            s.id: (s.paused_until.replace(tzinfo=s.paused_until.tzinfo or UTC) if s.paused_until
                   else None)
            for s in rows
            if s.is_paused(at)
        }  # fmt: skip
    scheduled = []
    for setup_id in [s.id for s in rows]:
        if not intake.pending(redis, setup_id) and not intake.take_catchups(redis, setup_id):
            continue
        delay = 0.0
        if setup_id in pauses:
            until = pauses[setup_id]
            if until is None:
                continue  # paused until someone resumes it; resuming schedules the flush
            delay = max(0.0, (until - at).total_seconds() + 5)
        job = runner.flush_resume(setup_id)
        if queue.ensure_scheduled(
            job.key, job.func, [setup_id], delay=delay, queue=job.queue, connection=redis
        ):
            scheduled.append(setup_id)
    if scheduled:
        log.info("flushes scheduled for stranded intake of setups %s", scheduled)
    return scheduled
