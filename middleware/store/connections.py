"""Store connections: OAuth connections with tokens encrypted at rest and race-safe refresh.

Two workers may notice an expired token at the same time. Each reads the connection's
``version`` with the tokens, refreshes, and saves with ``save_tokens(expected_version=...)``;
the second save raises ``StaleTokens``, and that worker re-reads the tokens the first one stored
instead of overwriting them (Salesforce and Constant Contact may rotate refresh tokens).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from middleware.store.db import cipher_of
from middleware.store.models import CONNECTION_STATUSES, VENDORS, Connection, Setup, utcnow

log = logging.getLogger(__name__)

_KEEP: Any = object()


class StaleTokens(RuntimeError):
    """Someone saved newer tokens since ours were read; re-read them and retry the call."""


@dataclass(frozen=True)
class Tokens:
    """Decrypted credentials of one connection, with the version they were read at."""

    connection_id: int
    vendor: str
    base_url: str | None
    account_id: str | None
    access_token: str | None
    refresh_token: str | None
    expires_at: datetime | None
    scopes: list[Any]
    status: str
    version: int

    def __repr__(self) -> str:
        return (
            f"Tokens(connection_id={self.connection_id}, vendor={self.vendor!r}, "
            f"expires_at={self.expires_at!r}, version={self.version}, access_token=***)"
        )

    def expired(self, now: datetime, leeway: timedelta = timedelta(seconds=60)) -> bool:
        """Whether the access token is (about to be) expired at ``now``."""
        return self.expires_at is not None and self.expires_at <= now + leeway


def create(
    session: Session,
    *,
    vendor: str,
    label: str = "",
    base_url: str | None = None,
    account_id: str | None = None,
    access_token: str | None = None,
    refresh_token: str | None = None,
    expires_at: datetime | None = None,
    scopes: list[Any] | None = None,
    login_url: str | None = None,
) -> Connection:
    """Store a new connection (tokens encrypted); flushed so it has an id."""
    if vendor not in VENDORS:
        raise ValueError(f"vendor must be one of {VENDORS}, not {vendor!r}")
    cipher = cipher_of(session)
    now = utcnow()
    conn = Connection(
        vendor=vendor,
        label=label,
        base_url=base_url,
        account_id=account_id,
        login_url=login_url,
        access_token_encrypted=cipher.encrypt(access_token),
        refresh_token_encrypted=cipher.encrypt(refresh_token),
        expires_at=expires_at,
        scopes=list(scopes or []),
        status="active",
        refreshed_at=now if access_token else None,
    )
    session.add(conn)
    session.flush()
    log.info("stored %s connection %s (%s)", vendor, conn.id, label)
    return conn


def get(session: Session, connection_id: int) -> Connection | None:
    """The connection row, or ``None``."""
    return session.get(Connection, connection_id)


def tokens(session: Session, connection_id: int) -> Tokens:
    """Decrypt a connection's current tokens, read fresh from the database."""
    row = session.execute(
        select(Connection)
        .where(Connection.id == connection_id)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if row is None:
        raise LookupError(f"connection {connection_id} does not exist")
    return tokens_of(session, row)


def tokens_of(session: Session, row: Connection) -> Tokens:
    """Decrypt the tokens of a loaded connection row."""
    cipher = cipher_of(session)
    return Tokens(
        connection_id=row.id,
        vendor=row.vendor,
        base_url=row.base_url,
        account_id=row.account_id,
        access_token=cipher.decrypt(row.access_token_encrypted),
        refresh_token=cipher.decrypt(row.refresh_token_encrypted),
        expires_at=row.expires_at,
        scopes=list(row.scopes or []),
        status=row.status,
        version=row.version,
    )


def save_tokens(
    session: Session,
    connection_id: int,
    *,
    expected_version: int,
    access_token: str,
    expires_at: datetime | None,
    refresh_token: str | None = _KEEP,
    scopes: list[Any] | None = None,
    base_url: str | None = _KEEP,
) -> int:
    """Save refreshed tokens if nobody else did since ``expected_version``; return the new version.

    ``refresh_token`` and ``base_url`` are kept unless given (not every refresh rotates them).
    Raises ``StaleTokens`` when the stored version moved on; the caller re-reads ``tokens()``.
    Also clears an error status: a successful refresh means the connection works again.
    """
    cipher = cipher_of(session)
    now = utcnow()
    values: dict[str, Any] = {
        "access_token_encrypted": cipher.encrypt(access_token),
        "expires_at": expires_at,
        "refreshed_at": now,
        "updated_at": now,
        "status": "active",
        "last_error": None,
        "version": Connection.version + 1,
    }
    if refresh_token is not _KEEP:
        values["refresh_token_encrypted"] = cipher.encrypt(refresh_token)
    if base_url is not _KEEP:
        values["base_url"] = base_url
    if scopes is not None:
        values["scopes"] = list(scopes)
    result = session.execute(
        update(Connection)
        .where(Connection.id == connection_id, Connection.version == expected_version)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise StaleTokens(
            f"connection {connection_id} changed since version {expected_version}; re-read tokens"
        )
    # Loaded copies in this session are now out of date.
    loaded = session.identity_map.get(session.identity_key(Connection, (connection_id,)))
    if loaded is not None:
        session.expire(loaded)
    log.info(
        "saved refreshed tokens of connection %s (version %s)", connection_id, expected_version + 1
    )
    return expected_version + 1


def mark_status(
    session: Session, connection_id: int, status: str, last_error: str | None = None
) -> None:
    """Record that a connection needs attention (``needs_reauth``, ``error``, ``cancelled``)."""
    if status not in CONNECTION_STATUSES:
        raise ValueError(f"status must be one of {CONNECTION_STATUSES}, not {status!r}")
    session.execute(
        update(Connection)
        .where(Connection.id == connection_id)
        .values(status=status, last_error=last_error, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    loaded = session.identity_map.get(session.identity_key(Connection, (connection_id,)))
    if loaded is not None:
        session.expire(loaded)
    log.warning("connection %s is now %s", connection_id, status)


def find_by_account(session: Session, vendor: str, account_id: str | None) -> Connection | None:
    """The oldest ``vendor`` connection to org/account ``account_id`` (none for an unknown id)."""
    if not account_id:
        return None
    return session.scalars(
        select(Connection)
        .where(Connection.vendor == vendor, Connection.account_id == account_id)
        .order_by(Connection.id)
        .limit(1)
    ).first()


def all_connections(session: Session) -> list[Connection]:
    """Every connection, oldest first."""
    return list(session.scalars(select(Connection).order_by(Connection.id)))


def rotate_keys(session: Session) -> int:
    """Re-encrypt every stored secret under the newest key; return how many values changed."""
    cipher = cipher_of(session)
    changed = 0
    for conn in session.scalars(select(Connection)):
        for attr in ("access_token_encrypted", "refresh_token_encrypted"):
            value = getattr(conn, attr)
            if value is not None:
                setattr(conn, attr, cipher.rotate(value))
                changed += 1
    for setup in session.scalars(select(Setup)):
        if setup.webhook_secret_encrypted is not None:
            setup.webhook_secret_encrypted = cipher.rotate(setup.webhook_secret_encrypted)
            changed += 1
    session.flush()
    return changed
