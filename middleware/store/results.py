"""Campaign results in the store: the activities a setup reads and each recipient's keys.

The keys make a results run idempotent: a recipient's Campaign Member, status and Tasks are
written once, so reading the same reports again writes nothing new (``middleware.results``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from middleware.store.bulk import chunked, dialect_insert
from middleware.store.models import ResultActivity, ResultRecipient
from middleware.sync.results import Stored

RECIPIENT_COLUMNS = (
    "email",
    "sf_person_id",
    "sf_member_id",
    "status",
    "open_task_id",
    "click_tasks",
)


def activities(session: Session, setup_id: int) -> dict[str, ResultActivity]:
    """Every activity the setup has seen, by Constant Contact campaign activity id."""
    rows = session.scalars(select(ResultActivity).where(ResultActivity.setup_id == setup_id))
    return {row.activity_id: row for row in rows}


def stored(session: Session, activity_pk: int, contact_ids: Iterable[str]) -> dict[str, Stored]:
    """The keys held for these recipients of one activity."""
    found: dict[str, Stored] = {}
    for chunk in chunked(dict.fromkeys(contact_ids)):
        rows = session.scalars(
            select(ResultRecipient).where(
                ResultRecipient.activity_id == activity_pk,
                ResultRecipient.cc_contact_id.in_(chunk),
            )
        )
        for row in rows:
            found[row.cc_contact_id] = Stored(
                row.sf_person_id,
                row.sf_member_id,
                row.status,
                row.open_task_id,
                dict(row.click_tasks or {}),
            )
    return found


def save_recipients(
    session: Session, activity_pk: int, rows: Mapping[str, Mapping[str, Any]]
) -> int:
    """Insert or replace recipients' keys (``contact id → every RECIPIENT_COLUMNS value``)."""
    values: list[dict[str, Any]] = [
        {
            "activity_id": activity_pk,
            "cc_contact_id": contact_id,
            **{k: row.get(k) for k in RECIPIENT_COLUMNS},
            "email": row.get("email") or "",
            "click_tasks": dict(row.get("click_tasks") or {}),
        }
        for contact_id, row in rows.items()
    ]
    insert = dialect_insert(session, ResultRecipient)
    stmt = insert.on_conflict_do_update(
        index_elements=["activity_id", "cc_contact_id"],
        set_={k: getattr(insert.excluded, k) for k in RECIPIENT_COLUMNS},
    )
    for batch in chunked(values, 5_000):
        session.execute(stmt, batch)  # executemany: one compiled statement, batched values
    return len(values)


def status_counts(session: Session, activity_pk: int) -> dict[str, int]:
    """How many recipients hold each status (members not in Salesforce included)."""
    rows = session.execute(
        select(ResultRecipient.status, func.count())
        .where(ResultRecipient.activity_id == activity_pk, ResultRecipient.status.is_not(None))
        .group_by(ResultRecipient.status)
    )
    return {str(status): int(n) for status, n in rows}


def forget(session: Session, activity_pks: Iterable[int]) -> int:
    """Drop activities and their recipients' keys (a reset of Campaigns deleted in Salesforce)."""
    pks = list(activity_pks)
    if not pks:
        return 0
    session.execute(delete(ResultRecipient).where(ResultRecipient.activity_id.in_(pks)))
    session.execute(delete(ResultActivity).where(ResultActivity.id.in_(pks)))
    return len(pks)
