"""Store bulk helpers: dialect-specific INSERT ... ON CONFLICT and chunking of IN lists."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

T = TypeVar("T")

# SQLite allows 32766 bound parameters, PostgreSQL 65535; stay far below both.
IN_CHUNK = 900


def dialect_insert(session: Session, model: Any) -> Any:
    """An INSERT that supports ``on_conflict_do_update`` on the session's database."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(model)
    if name == "sqlite":
        return sqlite.insert(model)
    raise NotImplementedError(f"bulk upserts are implemented for PostgreSQL and SQLite, not {name}")


def chunked(items: Iterable[T], size: int = IN_CHUNK) -> Iterator[list[T]]:
    """Consecutive lists of at most ``size`` items."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
