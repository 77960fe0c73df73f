"""Clock: what the clock process's minute tick enqueues — due Full Syncs, and stranded flushes.

``rq cron`` (one ``clock`` process, see ``jobs/cron.py``) enqueues ``jobs.full_sync.clock_tick``
every minute; a worker runs it:

- each setup whose schedule has a slot since its last Full Sync (:func:`schedule.is_due`, which
  is also the guard that catches up a nightly sync missed while the clock was down) gets one
  Full Sync job, once per slot (a Redis key per setup and slot), and none while one of its Full
  Syncs is queued, running or waiting to resume;
- each setup with changes waiting in its intake but no flush pending gets a flush (a lost flush
  job, or one that failed for good, must not leave changes stranded until the next event).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from redis import Redis
from sqlalchemy import func, select

from middleware import intake, queue
from middleware.fullsync import checkpoint as checkpoints
from middleware.fullsync import schedule
from middleware.store.db import Store
from middleware.store.models import Run, Setup

log = logging.getLogger(__name__)

SLOT_KEY = "ctct:fullsync:slot:"
FLUSH_JOB = "jobs.flush.flush_setup"
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
            slot = schedule.is_due((options or {}).get("schedule"), now, last.get(setup_id),
                                   created=created)  # fmt: skip
        except (ValueError, KeyError) as exc:
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
    flushes = sweep_flushes(store, redis)
    return {"full_syncs": started, "flushes": flushes}


def sweep_flushes(store: Store, redis: Redis) -> list[int]:
    """Schedule a flush for setups whose intake holds changes and that have none pending."""
    with store.transaction() as session:
        ids = list(session.scalars(select(Setup.id)))
    scheduled = []
    for setup_id in ids:
        if not intake.pending(redis, setup_id) and not intake.take_catchups(redis, setup_id):
            continue
        if queue.pending_job_id(f"flush-{setup_id}", connection=redis) is not None:
            continue
        if queue.ensure_scheduled(
            f"flush-{setup_id}", FLUSH_JOB, [setup_id], queue=queue.WEBHOOKS, connection=redis
        ):
            scheduled.append(setup_id)
    if scheduled:
        log.info("flushes scheduled for stranded intake of setups %s", scheduled)
    return scheduled
