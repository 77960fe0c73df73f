"""Store cursors: named high-water marks per setup (SystemModstamp, CC poll time, replay ids)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from middleware.store.bulk import dialect_insert
from middleware.store.models import Cursor, utcnow


def get_cursor(session: Session, setup_id: int, name: str) -> str | None:
    """The stored value, or ``None`` when the setup has none yet (a first run)."""
    return session.scalar(
        select(Cursor.value).where(Cursor.setup_id == setup_id, Cursor.name == name)
    )


def set_cursor(session: Session, setup_id: int, name: str, value: str | None) -> None:
    """Store a cursor value (insert or overwrite, one statement)."""
    stmt = dialect_insert(session, Cursor).values(
        setup_id=setup_id, name=name, value=value, updated_at=utcnow()
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["setup_id", "name"],
        set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
    )
    session.execute(stmt)


def set_cursors(session: Session, setup_ids: Iterable[int], name: str, value: str | None) -> None:
    """The same cursor value on several setups (one position several setups share)."""
    for setup_id in setup_ids:
        set_cursor(session, setup_id, name, value)


def newest_cursor(
    session: Session, setup_ids: Iterable[int], name: str
) -> tuple[str, datetime] | None:
    """The most recently stored value of a cursor among some setups, and when it was stored.

    For a position several setups share (a Pub/Sub replay id of their Salesforce connection):
    a setup that joined later has none yet, one that left for a while holds an older one.
    """
    row = session.execute(
        select(Cursor.value, Cursor.updated_at)
        .where(
            Cursor.setup_id.in_(list(setup_ids)),
            Cursor.name == name,
            Cursor.value.is_not(None),
        )
        .order_by(Cursor.updated_at.desc())
        .limit(1)
    ).first()
    if row is None or row.value is None:
        return None
    return row.value, row.updated_at


def all_cursors(session: Session, setup_id: int) -> dict[str, str | None]:
    """Every cursor of a setup, by name."""
    rows = session.execute(select(Cursor.name, Cursor.value).where(Cursor.setup_id == setup_id))
    return {name: value for name, value in rows}


def reset_cursors(session: Session, setup_id: int, names: Iterable[str] | None = None) -> int:
    """Forget some (or all) cursors of a setup, e.g. for a reset Full Sync; return how many."""
    stmt = delete(Cursor).where(Cursor.setup_id == setup_id)
    if names is not None:
        stmt = stmt.where(Cursor.name.in_(list(names)))
    result = session.execute(stmt)
    return int(getattr(result, "rowcount", 0) or 0)
