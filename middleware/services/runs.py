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


# Run kinds and the vendors' names, as a person reads them in the live progress line.
KIND_WORDS = {
    "incremental": "Incremental sync",
    "full": "Full Sync",
    "poll": "Constant Contact poll",
    "sync_now": "Sync Now",
    "results": "Campaign results",
}
VENDOR_WORDS = {"salesforce": "Salesforce", "constantcontact": "Constant Contact"}
# Below this share done, an estimate from the elapsed time says more about the start-up than the
# run: no time left is given.
ESTIMATE_FROM_PERCENT = 2.0


def duration_words(seconds: float) -> str:
    """``about 40 s`` / ``about 12 min`` / ``about 2.5 h``: a time left, roughly."""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    if seconds < 5400:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


def _seconds_left(view: dict[str, Any]) -> float | None:
    """The run's own estimate (a Full Sync records ``eta_seconds`` in its sync phase), else one
    from the time since it started and its share done."""
    eta = view["counts"].get("eta_seconds")
    if isinstance(eta, int | float) and not isinstance(eta, bool):
        return float(eta)
    percent = view["progress"]["percent"]
    elapsed = view["duration_seconds"]
    if percent is None or elapsed is None or percent < ESTIMATE_FROM_PERCENT or percent >= 100:
        return None
    return float(elapsed) * (100.0 - percent) / percent


def run_progress(session: Session, setup_id: int) -> dict[str, Any]:
    """What a setup is running now, for a page that polls it: phase, percent, time left, API
    calls per vendor, and a sentence saying all that; with the last finished run, so the page
    knows when the run it watched has ended."""
    get_setup(session, setup_id)
    now = utcnow()
    active = run_repo.active_run(session, setup_id)
    finished = next(
        (r for r in run_repo.recent_runs(session, setup_id, 5) if r.finished_at is not None),
        None,
    )
    last = None
    if finished is not None:
        last = {
            "id": finished.id,
            "kind": finished.kind,
            "status": finished.status,
            "finished_at": finished.finished_at,
            "message": finished.message,
        }
    if active is None:
        text = "Nothing is running."
        if last is not None:
            text += f" The last run ({last['id']}) {last['status']}."
        return {"setup_id": setup_id, "running": False, "run": None, "last": last, "text": text}
    view = run_view(active, now)
    left = _seconds_left(view)
    calls = {
        vendor: int(n)
        for vendor, n in sorted((view["api_calls"] or {}).items())
        if isinstance(n, int) and not isinstance(n, bool)
    }
    run = {
        "id": view["id"],
        "kind": view["kind"],
        "status": view["status"],
        "phase": view["phase"],
        "percent": view["progress"]["percent"],
        "done": view["progress"]["done"],
        "total": view["progress"]["total"],
        "started_at": view["started_at"],
        "elapsed_seconds": view["duration_seconds"],
        "seconds_left": round(left) if left is not None else None,
        "time_left": duration_words(left) if left is not None else None,
        "api_calls": calls,
        "message": view["message"],
    }
    return {
        "setup_id": setup_id,
        "running": True,
        "run": run,
        "last": last,
        "text": progress_sentence(run),
    }


def progress_sentence(run: dict[str, Any]) -> str:
    """``Sync Now run 7 is running, phase sync: 40% done, about 2 min left; API calls so far:
    Salesforce 12, Constant Contact 30.``"""
    kind = KIND_WORDS.get(run["kind"], run["kind"])
    text = f"{kind} run {run['id']} is {run['status']}"
    if run["phase"]:
        text += f", phase {run['phase']}"
    details = []
    if run["percent"] is not None:
        details.append(f"{run['percent']:g}% done")
    elif run["done"]:
        details.append(f"{run['done']:,} done")
    if run["time_left"]:
        details.append(f"{run['time_left']} left")
    if details:
        text += ": " + ", ".join(details)
    text += "."
    if run["api_calls"]:
        calls = ", ".join(
            f"{VENDOR_WORDS.get(vendor, vendor)} {n:,}" for vendor, n in run["api_calls"].items()
        )
        text += f" API calls so far: {calls}."
    return text
