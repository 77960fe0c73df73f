"""Store engine: builds the SQLAlchemy engine and sessions for PostgreSQL or SQLite, lazily.

A ``Store`` owns one engine, one sessionmaker and the token cipher. Sessions it makes carry the
cipher in ``session.info`` so repository functions can encrypt and decrypt without extra arguments.
Nothing here connects until the first query.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from middleware.store.crypto import TokenCipher
from middleware.store.models import Base

log = logging.getLogger(__name__)

CIPHER_KEY = "cipher"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with the per-dialect settings this service needs."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if not database or database == ":memory:":
            # One shared connection, or every session would see its own empty database.
            kwargs.setdefault("poolclass", StaticPool)
        else:
            directory = os.path.dirname(os.path.abspath(database))
            os.makedirs(directory, exist_ok=True)
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # Heroku and PgBouncer drop idle connections: check before use rather than fail a job.
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("max_overflow", 5)
    return create_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # WAL lets the embedded worker thread write while web requests read.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Store:
    """The database of one deployment: engine, sessions, cipher."""

    def __init__(
        self,
        url: str,
        encryption_keys: tuple[str, ...] | list[str],
        *,
        engine: Engine | None = None,
        **engine_kw: Any,
    ) -> None:
        self.url = url
        # Sharing an engine lets a second Store use other keys on the same database (rotation).
        self.engine = engine if engine is not None else make_engine(url, **engine_kw)
        self.cipher = TokenCipher(list(encryption_keys))
        self.sessionmaker = sessionmaker(
            self.engine, expire_on_commit=False, info={CIPHER_KEY: self.cipher}
        )

    def __repr__(self) -> str:
        return f"<Store {self.engine.url.render_as_string(hide_password=True)}>"

    @property
    def dialect(self) -> str:
        """``postgresql`` or ``sqlite``."""
        return self.engine.dialect.name

    def session(self) -> Session:
        """A new session; use as ``with store.session() as s: ...; s.commit()``."""
        return self.sessionmaker()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session inside one transaction: committed on success, rolled back on error."""
        with self.sessionmaker.begin() as session:
            yield session

    def ping(self) -> None:
        """Run ``SELECT 1``; raises the driver's error when the database is unreachable."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def create_all(self) -> None:
        """Create the tables directly from the models (tests, throwaway in-memory databases).

        Real deployments use ``upgrade()`` so the Alembic history stays the source of truth.
        """
        Base.metadata.create_all(self.engine)

    def upgrade(self, revision: str = "head") -> None:
        """Apply Alembic migrations up to ``revision``."""
        from middleware.store.migrate import upgrade

        upgrade(self.engine, revision)

    def dispose(self) -> None:
        """Close pooled connections (at shutdown, and in forked children)."""
        self.engine.dispose()


def cipher_of(session: Session) -> TokenCipher:
    """The token cipher bound to a session made by ``Store``."""
    try:
        cipher = session.info[CIPHER_KEY]
    except KeyError:
        raise RuntimeError("this session was not made by a Store; it has no token cipher") from None
    assert isinstance(cipher, TokenCipher)
    return cipher
