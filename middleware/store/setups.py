"""Store setups: setup rows, their encrypted webhook secret, and pausing (quota, cancelled account).

The options dict is validated by ``schemas/setup.py`` before it reaches the store; here it is
stored as given. A setup is paused when ``pause_reason`` is set, until ``paused_until`` or, when
that is empty, until someone resumes it.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from middleware.store.db import cipher_of
from middleware.store.models import Setup, utcnow

log = logging.getLogger(__name__)


def new_webhook_secret() -> str:
    """A fresh random secret for signing or authenticating a setup's webhooks."""
    return secrets.token_urlsafe(32)


def create(
    session: Session,
    *,
    name: str,
    options: dict[str, Any],
    salesforce_connection_id: int | None = None,
    constant_contact_connection_id: int | None = None,
    webhook_secret: str | None = None,
) -> Setup:
    """Store a new setup with a webhook secret (generated unless given); flushed so it has an id."""
    setup = Setup(
        name=name,
        options=dict(options),
        salesforce_connection_id=salesforce_connection_id,
        constant_contact_connection_id=constant_contact_connection_id,
        webhook_secret_encrypted=cipher_of(session).encrypt(
            webhook_secret if webhook_secret is not None else new_webhook_secret()
        ),
    )
    session.add(setup)
    session.flush()
    return setup


def get(session: Session, setup_id: int) -> Setup | None:
    """The setup row, or ``None``."""
    return session.get(Setup, setup_id)


def all_setups(session: Session) -> list[Setup]:
    """Every setup, oldest first."""
    return list(session.scalars(select(Setup).order_by(Setup.id)))


def webhook_secret(session: Session, setup: Setup) -> str | None:
    """The decrypted webhook secret of a setup."""
    return cipher_of(session).decrypt(setup.webhook_secret_encrypted)


def set_webhook_secret(session: Session, setup: Setup, secret: str | None = None) -> str:
    """Replace (rotate) a setup's webhook secret; return the new plaintext once."""
    value = secret if secret is not None else new_webhook_secret()
    setup.webhook_secret_encrypted = cipher_of(session).encrypt(value)
    session.flush()
    return value


def next_utc_midnight(now: datetime) -> datetime:
    """00:00 UTC after ``now``: when Constant Contact's daily quota resets."""
    day = now.astimezone(UTC).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def pause(session: Session, setup_id: int, reason: str, until: datetime | None = None) -> None:
    """Pause a setup's jobs until ``until`` (``None`` = until resumed), saying why."""
    setup = session.get(Setup, setup_id)
    if setup is None:
        raise LookupError(f"setup {setup_id} does not exist")
    setup.pause_reason = reason
    setup.paused_until = until
    session.flush()
    log.warning("setup %s paused until %s: %s", setup_id, until or "resumed", reason)


def resume(session: Session, setup_id: int) -> None:
    """Lift a pause."""
    setup = session.get(Setup, setup_id)
    if setup is None:
        raise LookupError(f"setup {setup_id} does not exist")
    setup.pause_reason = None
    setup.paused_until = None
    session.flush()
    log.info("setup %s resumed", setup_id)


def paused(session: Session, now: datetime | None = None) -> list[Setup]:
    """Setups paused at ``now`` (default: the current time)."""
    at = now or utcnow()
    stmt = (
        select(Setup)
        .where(Setup.pause_reason.is_not(None))
        .where(or_(Setup.paused_until.is_(None), Setup.paused_until > at))
        .order_by(Setup.id)
    )
    return list(session.scalars(stmt))
