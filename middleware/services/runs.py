"""Run services: start Sync Now, a Full Sync or a poll as queued jobs, and list a setup's runs."""

from __future__ import annotations

import importlib.util
import logging
import uuid
from typing import Any

from redis import Redis
from sqlalchemy.orm import Session

from middleware import queue
from middleware.cc_to_sf import poll
from middleware.results import run as results
from middleware.services.exceptions import Conflict, NotAvailable
from middleware.services.lookups import get_run, get_setup
from middleware.services.shapes import run_view
from middleware.store import runs as run_repo
from middleware.store.models import Setup, utcnow
from schemas.setup import setup_options

log = logging.getLogger(__name__)

SYNC_NOW_JOB = "jobs.sync.sync_now"
FULL_SYNC_JOB = "jobs.full_sync.full_sync"
POLL_JOB = "jobs.poll.poll_setup"
RESULTS_JOB = "jobs.results.campaign_results"


def list_runs(session: Session, setup_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """A setup's runs, newest first."""
    get_setup(session, setup_id)
    return [run_view(r) for r in run_repo.recent_runs(session, setup_id, limit)]


def show_run(session: Session, run_id: int) -> dict[str, Any]:
    """One run with its progress and timings."""
    return run_view(get_run(session, run_id))


def start_sync_now(session: Session, setup_id: int, redis: Redis | None = None) -> dict[str, Any]:
    """Enqueue Sync Now for a setup that can sync; return the job id."""
    row = get_setup(session, setup_id)
    _refuse_unready(row)
    job_id = f"sync-now-{setup_id}-{uuid.uuid4().hex[:12]}"
    job = queue.enqueue(
        SYNC_NOW_JOB,
        setup_id,
        queue=queue.DEFAULT,
        job_id=job_id,
        description=f"Sync Now of setup {setup_id}",
        connection=redis,
    )
    log.info("setup %s: Sync Now enqueued as %s", setup_id, job.id)
    return {"setup_id": setup_id, "job_id": job.id, "queue": queue.DEFAULT}


def start_poll(session: Session, setup_id: int, redis: Redis | None = None) -> dict[str, Any]:
    """Enqueue one Constant Contact poll of a setup (CC → SF changes and opt-outs) on its own."""

    row = get_setup(session, setup_id)
    _refuse_unready(row)
    if not poll.polls(row.options or {}):
        raise Conflict(
            f"Setup {setup_id} has sync_to_sf and sync_unsubscribes_to_sf both off: a poll would "
            "have nothing to carry into Salesforce.",
        )
    job = queue.enqueue(
        POLL_JOB,
        setup_id,
        queue=queue.DEFAULT,
        job_id=f"poll-now-{setup_id}-{uuid.uuid4().hex[:12]}",
        description=f"Constant Contact poll of setup {setup_id}",
        connection=redis,
    )
    log.info("setup %s: poll enqueued as %s", setup_id, job.id)
    return {"setup_id": setup_id, "job_id": job.id, "queue": queue.DEFAULT}


def start_campaign_results(
    session: Session, setup_id: int, reset: bool = False, redis: Redis | None = None
) -> dict[str, Any]:
    """Enqueue a campaign results run now; ``reset`` makes again Campaigns deleted in Salesforce.

    409 when the setup brings no results back (``campaign_response_mode`` none and no
    recipients to create), is paused or not connected, or a results run is already going.
    """
    row = get_setup(session, setup_id)
    _refuse_unready(row)
    if not results.wanted(setup_options(row.options or {})):
        raise Conflict(
            f"Setup {setup_id} brings no campaign results back: set campaign_response_mode "
            "(campaign, activity or campaign_and_activity) or sync_all_campaign_recipients first.",
        )
    _refuse_running(session, setup_id, "results", "campaign results run")
    job = queue.enqueue(
        RESULTS_JOB,
        setup_id,
        kwargs={"reset": True} if reset else None,
        queue=queue.DEFAULT,
        job_id=f"results-now-{setup_id}-{uuid.uuid4().hex[:12]}",
        description=f"Campaign results of setup {setup_id}{' (reset)' if reset else ''}",
        connection=redis,
    )
    log.info("setup %s: campaign results enqueued as %s (reset=%s)", setup_id, job.id, reset)
    return {"setup_id": setup_id, "job_id": job.id, "queue": queue.DEFAULT}


def _refuse_running(session: Session, setup_id: int, kind: str, what: str) -> None:
    running = run_repo.active_run(session, setup_id, kind)
    if running is not None:
        raise Conflict(
            f"A {what} of setup {setup_id} is already {running.status} (run {running.id}).",
        )


def _refuse_unready(row: Setup) -> None:
    if row.is_paused(utcnow()):
        until = f" until {row.paused_until.isoformat()}" if row.paused_until else ""
        raise Conflict(
            f"Setup {row.id} is paused{until} ({row.pause_reason}); resume it first.",
        )
    missing = [
        name
        for name, value in (
            ("salesforce_connection", row.salesforce_connection_id),
            ("constant_contact_connection", row.constant_contact_connection_id),
        )
        if value is None
    ]
    if missing:
        raise Conflict(f"Setup {row.id} is not connected yet ({', '.join(missing)}).")


def full_sync_available() -> bool:
    """Whether the Full Sync job is installed in this version."""
    try:
        return importlib.util.find_spec(FULL_SYNC_JOB.rpartition(".")[0]) is not None
    except ModuleNotFoundError:
        return False


def start_full_sync(
    session: Session,
    setup_id: int,
    reset: bool = False,
    redis: Redis | None = None,
    *,
    partitions: int = 1,
) -> dict[str, Any]:
    """Enqueue a Full Sync (optionally a reset, optionally split into Id ranges)."""
    row = get_setup(session, setup_id)
    if not full_sync_available():
        raise NotAvailable(
            "Full Sync is not available in this version yet; use Sync Now for pending and "
            "recent changes.",
        )
    _refuse_unready(row)
    _refuse_running(session, setup_id, "full", "Full Sync")
    kwargs: dict[str, Any] = {}
    if reset:
        kwargs["reset"] = True
    if partitions > 1:
        kwargs["partitions"] = partitions
    job = queue.enqueue(
        FULL_SYNC_JOB,
        setup_id,
        kwargs=kwargs or None,
        queue=queue.FULL_SYNC,
        job_id=f"full-sync-{setup_id}-{uuid.uuid4().hex[:12]}",
        description=f"Full Sync of setup {setup_id}{' (reset)' if reset else ''}",
        connection=redis,
    )
    log.info("setup %s: Full Sync enqueued as %s (reset=%s)", setup_id, job.id, reset)
    return {"setup_id": setup_id, "job_id": job.id, "queue": queue.FULL_SYNC}
