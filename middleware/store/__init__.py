"""Store: the service's database (SQLAlchemy models, bulk repository functions, migrations).

Use ``Store(url, keys)`` for an engine and sessions, and the repository modules for queries::

    from middleware.store import links, runs
    with store.transaction() as session:
        found = links.for_sf_ids(session, setup_id, ids)
"""

from middleware.store import connections, cursors, errors, links, runs, setups
from middleware.store.crypto import DecryptionError, TokenCipher
from middleware.store.db import Store, cipher_of
from middleware.store.engine import make_engine
from middleware.store.models import (
    Base,
    Connection,
    Cursor,
    Link,
    Run,
    Setup,
    SyncError,
    utcnow,
)

__all__ = [
    "Base",
    "Connection",
    "Cursor",
    "DecryptionError",
    "Link",
    "Run",
    "Setup",
    "Store",
    "SyncError",
    "TokenCipher",
    "cipher_of",
    "connections",
    "cursors",
    "errors",
    "links",
    "make_engine",
    "runs",
    "setups",
    "utcnow",
]
