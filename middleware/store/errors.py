"""Store sync errors: record-level problems users can see, fix and retry.

``record_errors`` is idempotent per record and problem: the same open error seen again by the
next run bumps ``attempts`` and refreshes the message instead of piling up duplicates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from middleware.logging import mask_email
from middleware.store.models import DIRECTIONS, ERROR_STATUSES, SyncError, utcnow

_Key = tuple[str, str | None, str | None, str | None, str]


def _key(direction: str, sf_id: Any, cc_contact_id: Any, email: Any, code: str) -> _Key:
    return (direction, sf_id or None, cc_contact_id or None, email or None, code)


def record_errors(
    session: Session,
    setup_id: int,
    errors: Iterable[Mapping[str, Any]],
    *,
    run_id: int | None = None,
) -> list[SyncError]:
    """Store (or refresh) sync errors; return the rows.

    Each error: ``direction`` (sf_to_cc|cc_to_sf), ``code``, ``message``, and any of ``sf_id``,
    ``cc_contact_id``, ``email`` (full address: masked here for display; put what a retry needs
    in ``payload``), ``vendor``, ``payload`` (JSON).
    """
    incoming: dict[_Key, dict[str, Any]] = {}
    for err in errors:
        direction = err["direction"]
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
        values = {
            "direction": direction,
            "code": str(err["code"]),
            "message": str(err.get("message") or ""),
            "sf_id": err.get("sf_id") or None,
            "cc_contact_id": err.get("cc_contact_id") or None,
            "email": mask_email(err.get("email")) or None,
            "vendor": err.get("vendor"),
            "payload": dict(err.get("payload") or {}),
        }
        key = _key(
            direction, values["sf_id"], values["cc_contact_id"], values["email"], values["code"]
        )
        incoming[key] = values
    if not incoming:
        return []
    existing: dict[_Key, SyncError] = {}
    codes = {k[4] for k in incoming}
    stmt = select(SyncError).where(
        SyncError.setup_id == setup_id,
        SyncError.status.in_(("open", "retrying")),
        SyncError.code.in_(codes),
    )
    for row in session.scalars(stmt):
        existing[_key(row.direction, row.sf_id, row.cc_contact_id, row.email, row.code)] = row
    now = utcnow()
    result = []
    for key, values in incoming.items():
        row_or_none = existing.get(key)
        if row_or_none is None:
            row = SyncError(setup_id=setup_id, run_id=run_id, status="open", attempts=1, **values)
            session.add(row)
        else:
            row = row_or_none
            row.attempts += 1
            row.status = "open"
            row.message = values["message"]
            row.payload = values["payload"]
            row.vendor = values["vendor"] or row.vendor
            row.run_id = run_id or row.run_id
            row.updated_at = now
        result.append(row)
    session.flush()
    return result


def resolve_errors(
    session: Session,
    setup_id: int,
    *,
    ids: Iterable[int] | None = None,
    sf_ids: Iterable[str] | None = None,
    codes: Iterable[str] | None = None,
) -> int:
    """Mark errors resolved (by id, or every open error of these records); return how many."""
    stmt = update(SyncError).where(
        SyncError.setup_id == setup_id, SyncError.status.in_(("open", "retrying"))
    )
    if ids is not None:
        stmt = stmt.where(SyncError.id.in_(list(ids)))
    if sf_ids is not None:
        stmt = stmt.where(SyncError.sf_id.in_(list(sf_ids)))
    if codes is not None:
        stmt = stmt.where(SyncError.code.in_(list(codes)))
    result = session.execute(
        stmt.values(status="resolved", updated_at=utcnow()).execution_options(
            synchronize_session=False
        )
    )
    session.expire_all()
    return int(getattr(result, "rowcount", 0) or 0)


def mark_retrying(session: Session, setup_id: int, ids: Iterable[int]) -> list[SyncError]:
    """Flag errors as being retried and return them (their payloads drive the retry)."""
    rows = list(
        session.scalars(
            select(SyncError).where(SyncError.setup_id == setup_id, SyncError.id.in_(list(ids)))
        )
    )
    for row in rows:
        if row.status != "resolved":
            row.status = "retrying"
    session.flush()
    return rows


def list_errors(
    session: Session,
    setup_id: int,
    *,
    status: str | None = "open",
    limit: int = 100,
    offset: int = 0,
) -> list[SyncError]:
    """Errors of a setup, newest first."""
    stmt = select(SyncError).where(SyncError.setup_id == setup_id)
    if status is not None:
        if status not in ERROR_STATUSES:
            raise ValueError(f"status must be one of {ERROR_STATUSES}")
        stmt = stmt.where(SyncError.status == status)
    stmt = stmt.order_by(SyncError.updated_at.desc(), SyncError.id.desc())
    return list(session.scalars(stmt.limit(limit).offset(offset)))


def counts_by_code(session: Session, setup_id: int) -> dict[str, int]:
    """Open errors of a setup per code."""
    rows = session.execute(
        select(SyncError.code, func.count())
        .where(SyncError.setup_id == setup_id, SyncError.status != "resolved")
        .group_by(SyncError.code)
    )
    return {code: int(n) for code, n in rows}
