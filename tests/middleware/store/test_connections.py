"""Tests for connections and secrets at rest: encryption, key rotation, optimistic token saves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from middleware.store import connections, setups
from middleware.store.crypto import DecryptionError, TokenCipher
from middleware.store.db import Store

ACCESS = "00Dxx0000001gEH!AQ4AQ.access-token-value"
REFRESH = "5Aep861refresh-token-value"


def _raw_rows(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT access_token_encrypted, refresh_token_encrypted FROM connections")
        )
        return [value for row in rows for value in row if value]


def _new_connection(store: Store, **kw: object) -> int:
    with store.transaction() as session:
        conn = connections.create(
            session,
            vendor="salesforce",
            label="Acme org",
            base_url="https://acme.my.salesforce.com",
            account_id="00Dxx0000001gEH",
            access_token=ACCESS,
            refresh_token=REFRESH,
            expires_at=datetime(2026, 11, 26, 12, tzinfo=UTC),
            scopes=["api", "refresh_token"],
            **kw,  # type: ignore[arg-type]
        )
        return conn.id


def test_tokens_round_trip_and_are_not_stored_in_clear(store: Store) -> None:
    connection_id = _new_connection(store)
    raw = _raw_rows(store)
    assert len(raw) == 2
    assert all(ACCESS not in value and REFRESH not in value for value in raw)
    with store.session() as session:
        tokens = connections.tokens(session, connection_id)
    assert (tokens.access_token, tokens.refresh_token) == (ACCESS, REFRESH)
    assert tokens.expires_at == datetime(2026, 11, 26, 12, tzinfo=UTC)
    assert tokens.scopes == ["api", "refresh_token"]
    assert ACCESS not in repr(tokens)


def test_webhook_secret_is_encrypted(store: Store) -> None:
    with store.transaction() as session:
        setup = setups.create(session, name="Contacts", options={"object_type": "Contact"})
        secret = setups.webhook_secret(session, setup)
        setup_id = setup.id
    assert secret and len(secret) >= 32
    with store.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT webhook_secret_encrypted FROM setups WHERE id = :id"), {"id": setup_id}
        ).scalar_one()
    assert secret not in stored


def test_key_rotation(fernet_key: str, store: Store) -> None:
    connection_id = _new_connection(store)
    new_key = Fernet.generate_key().decode()
    rotated = Store(store.url, (new_key, fernet_key), engine=store.engine)
    with rotated.transaction() as session:
        assert connections.tokens(session, connection_id).access_token == ACCESS
        assert connections.rotate_keys(session) == 2
    only_new = TokenCipher([new_key])
    for value in _raw_rows(store):
        assert only_new.decrypt(value) in (ACCESS, REFRESH)
    with pytest.raises(DecryptionError):
        TokenCipher([fernet_key]).decrypt(_raw_rows(store)[0])


def test_unknown_key_gives_a_clear_error(store: Store) -> None:
    _new_connection(store)
    stranger = TokenCipher([Fernet.generate_key().decode()])
    with pytest.raises(DecryptionError, match="TOKEN_ENCRYPTION_KEY"):
        stranger.decrypt(_raw_rows(store)[0])


def test_save_tokens_is_optimistic(store: Store) -> None:
    connection_id = _new_connection(store)
    expires = datetime(2026, 11, 26, 14, tzinfo=UTC)
    with store.session() as first, store.session() as second:
        seen_by_first = connections.tokens(first, connection_id)
        seen_by_second = connections.tokens(second, connection_id)
        new_version = connections.save_tokens(
            first,
            connection_id,
            expected_version=seen_by_first.version,
            access_token="fresh-1",
            expires_at=expires,
        )
        first.commit()
        assert new_version == seen_by_first.version + 1
        with pytest.raises(connections.StaleTokens):
            connections.save_tokens(
                second,
                connection_id,
                expected_version=seen_by_second.version,
                access_token="fresh-2",
                expires_at=expires,
            )
        second.rollback()
        latest = connections.tokens(second, connection_id)
    assert latest.access_token == "fresh-1"
    assert latest.refresh_token == REFRESH  # kept: this refresh did not rotate it
    assert latest.version == new_version
    assert latest.expires_at == expires


def test_save_tokens_rotates_refresh_token_and_clears_errors(store: Store) -> None:
    connection_id = _new_connection(store)
    with store.transaction() as session:
        connections.mark_status(session, connection_id, "needs_reauth", "invalid_grant")
    with store.transaction() as session:
        version = connections.tokens(session, connection_id).version
        connections.save_tokens(
            session,
            connection_id,
            expected_version=version,
            access_token="a2",
            refresh_token="r2",
            expires_at=None,
        )
    with store.session() as session:
        tokens = connections.tokens(session, connection_id)
        row = connections.get(session, connection_id)
        assert row is not None and row.status == "active" and row.last_error is None
    assert (tokens.access_token, tokens.refresh_token) == ("a2", "r2")


def test_expiry_check() -> None:
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    tokens = connections.Tokens(
        connection_id=1,
        vendor="constantcontact",
        base_url=None,
        account_id=None,
        access_token="x",
        refresh_token=None,
        expires_at=now + timedelta(seconds=30),
        scopes=[],
        status="active",
        version=1,
    )
    assert tokens.expired(now)
    assert not tokens.expired(now, leeway=timedelta(0))


def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(Exception, match="naive datetime"), store.transaction() as session:
        connections.create(session, vendor="salesforce", expires_at=datetime(2026, 1, 1))
