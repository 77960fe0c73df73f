"""Store: the engine, sessions and token cipher of one deployment's database, made lazily.

A ``Store`` owns one engine, one sessionmaker and the token cipher. Sessions it makes carry the
cipher in ``session.info`` so repository functions can encrypt and decrypt without extra arguments.
Nothing here connects until the first query.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from middleware.store import migrate
from middleware.store.crypto import TokenCipher
from middleware.store.engine import make_engine
from middleware.store.models import Base

log = logging.getLogger(__name__)

CIPHER_KEY = "cipher"


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
        migrate.upgrade(self.engine, revision)

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
