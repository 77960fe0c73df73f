"""Store runs: the record of each sync run (what it did, how far it got, what it cost)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from middleware.store.models import RUN_KINDS, RUN_STATUSES, Run, utcnow

FINISHED = ("succeeded", "failed", "paused")


def merge_counts(into: Mapping[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
    """Add nested count dicts: ``{"skipped": {"no email": 1}}`` + ``{"skipped": {...}}``."""
    merged: dict[str, Any] = dict(into)
    for key, value in more.items():
        if isinstance(value, Mapping):
            merged[key] = merge_counts(merged.get(key) or {}, value)
        else:
            merged[key] = (merged.get(key) or 0) + value
    return merged


def open_run(
    session: Session,
    setup_id: int,
    kind: str,
    *,
    job_id: str | None = None,
    status: str = "running",
    phase: str | None = None,
    total: int | None = None,
    now: datetime | None = None,
) -> Run:
    """Start (or queue) a run; flushed so it has an id."""
    if kind not in RUN_KINDS:
        raise ValueError(f"run kind must be one of {RUN_KINDS}, not {kind!r}")
    if status not in ("queued", "running"):
        raise ValueError("a new run is queued or running")
    at = now or utcnow()
    run = Run(
        setup_id=setup_id,
        kind=kind,
        status=status,
        phase=phase,
        job_id=job_id,
        created_at=at,
        started_at=at if status == "running" else None,
        progress_total=total,
        counts={},
        api_calls={},
    )
    session.add(run)
    session.flush()
    return run


def start_run(session: Session, run_id: int, *, now: datetime | None = None) -> Run:
    """Move a queued run to running."""
    run = _get(session, run_id)
    run.status = "running"
    run.started_at = now or utcnow()
    session.flush()
    return run


def progress(
    session: Session,
    run_id: int,
    *,
    done: int | None = None,
    total: int | None = None,
    phase: str | None = None,
    counts: Mapping[str, Any] | None = None,
    api_calls: Mapping[str, Any] | None = None,
) -> Run:
    """Record progress; ``counts`` and ``api_calls`` are *added* to what the run has."""
    run = _get(session, run_id)
    if done is not None:
        run.progress_done = done
    if total is not None:
        run.progress_total = total
    if phase is not None:
        run.phase = phase
    if counts:
        run.counts = merge_counts(run.counts or {}, counts)
    if api_calls:
        run.api_calls = merge_counts(run.api_calls or {}, api_calls)
    session.flush()
    return run


def finish_run(
    session: Session,
    run_id: int,
    status: str,
    *,
    counts: Mapping[str, Any] | None = None,
    api_calls: Mapping[str, Any] | None = None,
    message: str | None = None,
    now: datetime | None = None,
) -> Run:
    """Close a run as succeeded, failed or paused, adding its last counts."""
    if status not in FINISHED:
        raise ValueError(f"a run finishes as one of {FINISHED}, not {status!r}")
    run = progress(session, run_id, counts=counts, api_calls=api_calls)
    run.status = status
    run.finished_at = now or utcnow()
    if message is not None:
        run.message = message
    session.flush()
    return run


def get_run(session: Session, run_id: int) -> Run | None:
    """One run, or ``None``."""
    return session.get(Run, run_id)


def recent_runs(session: Session, setup_id: int, limit: int = 20) -> list[Run]:
    """The newest runs of a setup, newest first."""
    stmt = (
        select(Run)
        .where(Run.setup_id == setup_id)
        .order_by(Run.created_at.desc(), Run.id.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


def active_run(session: Session, setup_id: int, kind: str | None = None) -> Run | None:
    """The newest queued or running run of a setup (of one kind, if given)."""
    stmt = select(Run).where(Run.setup_id == setup_id, Run.status.in_(("queued", "running")))
    if kind is not None:
        stmt = stmt.where(Run.kind == kind)
    return session.scalar(stmt.order_by(Run.id.desc()).limit(1))


def running_with_jobs(session: Session, job_id: str | None = None) -> list[Run]:
    """Runs in state ``running`` opened by a job (of ``job_id`` only, if given), oldest first.

    What the worker-death sweep checks against the queue: a running run whose job is no longer
    alive died with its worker.
    """
    stmt = select(Run).where(Run.status == "running", Run.job_id.is_not(None))
    if job_id is not None:
        stmt = stmt.where(Run.job_id == job_id)
    return list(session.scalars(stmt.order_by(Run.id)))


def lock_running(session: Session, run_id: int, job_id: str) -> Run | None:
    """The run, row-locked (PostgreSQL), if it is still running under ``job_id``; else None.

    The sweep re-checks the job under this lock, so a retry that resumes the run meanwhile
    (a Full Sync going on from its checkpoint) is never marked failed.
    """
    stmt = (
        select(Run)
        .where(Run.id == run_id, Run.status == "running", Run.job_id == job_id)
        .with_for_update()
    )
    return session.scalar(stmt)


def _get(session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise LookupError(f"run {run_id} does not exist")
    return run


assert set(FINISHED) < set(RUN_STATUSES)
