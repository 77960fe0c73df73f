"""Lookups: a setup, connection or run by id, or ``NotFound``."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from middleware.services.exceptions import not_found
from middleware.store import connections as connection_repo
from middleware.store import runs as run_repo
from middleware.store import setups as setup_repo
from middleware.store.models import Connection, Run, Setup
from schemas.setup import MAX_ID


def storable_id(ident: Any) -> bool:
    """Whether ``ident`` can be a row id at all (1 .. PostgreSQL's INTEGER maximum).

    Ids outside that range cannot exist, and handing them to the database fails (SQLite: Python
    int too large; PostgreSQL: integer out of range), so lookups answer "does not exist" first.
    """
    return isinstance(ident, int) and not isinstance(ident, bool) and 1 <= ident <= MAX_ID


def get_setup(session: Session, setup_id: int) -> Setup:
    """The setup, or ``NotFound``."""
    row = setup_repo.get(session, setup_id) if storable_id(setup_id) else None
    if row is None:
        raise not_found("Setup", setup_id)
    return row


def get_connection(session: Session, connection_id: int) -> Connection:
    """The connection, or ``NotFound``."""
    row = connection_repo.get(session, connection_id) if storable_id(connection_id) else None
    if row is None:
        raise not_found("Connection", connection_id)
    return row


def get_run(session: Session, run_id: int) -> Run:
    """The run, or ``NotFound``."""
    row = run_repo.get_run(session, run_id) if storable_id(run_id) else None
    if row is None:
        raise not_found("Run", run_id)
    return row
