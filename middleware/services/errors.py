"""Sync-error services: list a setup's sync errors, retry their records, mark them resolved."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from redis import Redis
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from middleware import intake, queue, runner
from middleware.cc_to_sf import poll
from middleware.services.lookups import get_setup
from middleware.services.shapes import error_view
from middleware.store import connections as connection_repo
from middleware.store import errors as error_repo
from middleware.store.models import SyncError

log = logging.getLogger(__name__)


def _error_filter(
    setup_id: int,
    status: str | None,
    code: str | None,
    direction: str | None = None,
    search: str | None = None,
) -> Any:
    conditions = [SyncError.setup_id == setup_id]
    if status == "unresolved":
        conditions.append(SyncError.status != "resolved")
    elif status is not None and status != "all":
        conditions.append(SyncError.status == status)
    if code:
        conditions.append(SyncError.code == code)
    if direction:
        conditions.append(SyncError.direction == direction)
    if search:
        # A piece of the email, a record or contact id, or the vendor's message; no wildcards.
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions.append(
            or_(
                *(
                    column.ilike(pattern, escape="\\")
                    for column in (
                        SyncError.email,
                        SyncError.sf_id,
                        SyncError.cc_contact_id,
                        SyncError.message,
                    )
                )
            )
        )
    return conditions


def list_errors(
    session: Session,
    setup_id: int,
    *,
    status: str = "open",
    code: str | None = None,
    direction: str | None = None,
    search: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> dict[str, Any]:
    """A page of a setup's sync errors, newest first, with the total for the filter:
    ``status`` (open, retrying, resolved, unresolved or all), ``code``, ``direction``
    (sf_to_cc or cc_to_sf) and ``search`` (a piece of the email, an id or the message)."""
    get_setup(session, setup_id)
    conditions = _error_filter(setup_id, status, code, direction, search)
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


# Where a person opens a record: Lightning's record page on the connection's instance, and the
# contact in Constant Contact's web app (its contact id is the same one the API uses).
SALESFORCE_RECORD_PATH = "/lightning/r/{sf_id}/view"
CONSTANT_CONTACT_CONTACT_URL = (
    "https://app.constantcontact.com/pages/contacts/ui#contact/{contact_id}"
)
_SF_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
_CC_ID = re.compile(r"[A-Za-z0-9-]{1,100}")


def record_links(session: Session, setup_id: int, items: list[dict[str, Any]]) -> None:
    """Add ``salesforce_url`` and ``constantcontact_url`` to each error view where its record
    is known (the Salesforce link needs the setup's connection for its instance URL)."""
    row = get_setup(session, setup_id)
    instance = None
    if row.salesforce_connection_id is not None:
        conn = connection_repo.get(session, row.salesforce_connection_id)
        base = (conn.base_url or "") if conn is not None else ""
        if base.startswith(("https://", "http://")):
            instance = base.rstrip("/")
    for item in items:
        sf_id, contact_id = item.get("sf_id") or "", item.get("cc_contact_id") or ""
        item["salesforce_url"] = (
            instance + SALESFORCE_RECORD_PATH.format(sf_id=sf_id)
            if instance and _SF_ID.fullmatch(sf_id)
            else None
        )
        item["constantcontact_url"] = (
            CONSTANT_CONTACT_CONTACT_URL.format(contact_id=contact_id)
            if _CC_ID.fullmatch(contact_id)
            else None
        )


def _selected_errors(
    session: Session, setup_id: int, selection: Mapping[str, Any]
) -> list[SyncError]:
    conditions = _error_filter(
        setup_id,
        "unresolved",
        selection.get("code"),
        selection.get("direction"),
        selection.get("search"),
    )
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
