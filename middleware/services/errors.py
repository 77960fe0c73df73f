"""Sync-error services: list a setup's sync errors, retry their records, mark them resolved."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from redis import Redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from middleware import intake, queue, runner
from middleware.cc_to_sf import poll
from middleware.services.lookups import get_setup
from middleware.services.shapes import error_view
from middleware.store import errors as error_repo
from middleware.store.models import SyncError

log = logging.getLogger(__name__)


def _error_filter(setup_id: int, status: str | None, code: str | None) -> Any:
    conditions = [SyncError.setup_id == setup_id]
    if status == "unresolved":
        conditions.append(SyncError.status != "resolved")
    elif status is not None and status != "all":
        conditions.append(SyncError.status == status)
    if code:
        conditions.append(SyncError.code == code)
    return conditions


def list_errors(
    session: Session,
    setup_id: int,
    *,
    status: str = "open",
    code: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> dict[str, Any]:
    """A page of a setup's sync errors, newest first, with the total for the filter."""
    get_setup(session, setup_id)
    conditions = _error_filter(setup_id, status, code)
    total = session.scalar(select(func.count()).select_from(SyncError).where(*conditions)) or 0
    rows = session.scalars(
        select(SyncError)
        .where(*conditions)
        .order_by(SyncError.updated_at.desc(), SyncError.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return {
        "items": [error_view(r) for r in rows],
        "total": int(total),
        "limit": limit,
        "offset": offset,
    }


def _selected_errors(
    session: Session, setup_id: int, selection: Mapping[str, Any]
) -> list[SyncError]:
    conditions = _error_filter(setup_id, "unresolved", selection.get("code"))
    if selection.get("ids"):
        conditions.append(SyncError.id.in_(list(selection["ids"])))
    return list(session.scalars(select(SyncError).where(*conditions).order_by(SyncError.id)))


def retry_errors(
    session: Session, redis: Redis, setup_id: int, selection: Mapping[str, Any]
) -> dict[str, Any]:
    """Sync the records of the selected errors again: mark them dirty and schedule a flush."""
    row = get_setup(session, setup_id)
    default_object = (row.options or {}).get("object_type") or "Contact"
    selected = _selected_errors(session, setup_id, selection)
    by_object: dict[str, set[str]] = {}
    awaiting_poll = 0
    for err in selected:
        payload = err.payload or {}
        sf_id = err.sf_id or payload.get("sf_id")
        if sf_id and err.direction == "sf_to_cc":
            by_object.setdefault(payload.get("sf_object") or default_object, set()).add(sf_id)
        else:
            awaiting_poll += 1
    error_repo.mark_retrying(session, setup_id, [e.id for e in selected])
    marked = 0
    for sf_object, ids in sorted(by_object.items()):
        marked += intake.mark_dirty(redis, setup_id, sf_object, sorted(ids))
    flush_job = None
    if marked:
        job = runner.flush_resume(setup_id)
        flush_job = queue.ensure_scheduled(
            job.key, job.func, [setup_id], queue=job.queue, connection=redis
        ) or queue.pending_job_id(job.key, connection=redis)
    if awaiting_poll:
        # CC → SF errors are retried by the poll, which re-reads the contacts they name.
        queue.ensure_scheduled(
            poll.poll_job_key(setup_id), poll.POLL_JOB, [setup_id], connection=redis
        )
    log.info(
        "setup %s: retrying %d errors (%d records marked dirty)", setup_id, len(selected), marked
    )
    return {
        "retrying": len(selected),
        "marked_dirty": marked,
        "awaiting_poll": awaiting_poll,
        "flush_job_id": flush_job,
    }


def resolve_errors(session: Session, setup_id: int, selection: Mapping[str, Any]) -> dict[str, Any]:
    """Mark the selected unresolved errors resolved (nothing is retried)."""
    get_setup(session, setup_id)
    ids = [e.id for e in _selected_errors(session, setup_id, selection)]
    resolved = error_repo.resolve_errors(session, setup_id, ids=ids) if ids else 0
    return {"resolved": resolved}
