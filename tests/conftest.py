"""Shared test fixtures: settings and app config, SQLite and PostgreSQL stores, fake and real Redis.

Sub-directories add their own fixtures in their own conftest.py. Fixtures here never touch the
developer's environment variables, and every database or Redis they hand out is private to the
test and cleaned up after it. The only real Redis database used is the one ``TEST_REDIS_URL``
names (default ``redis://127.0.0.1:6379/15``; see tests/redis_claim.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import fakeredis
import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from redis.exceptions import RedisError

from middleware.settings import Settings
from middleware.store.db import Store
from tests.redis_claim import TEST_REDIS_URL, claimed_redis

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture
def fernet_key() -> str:
    """A fresh Fernet key (TOKEN_ENCRYPTION_KEY)."""
    return Fernet.generate_key().decode()


@pytest.fixture
def settings(fernet_key: str) -> Settings:
    """Settings with throwaway secrets, an in-memory SQLite URL, and no embedded worker thread."""
    return Settings.for_tests(token_encryption_keys=(fernet_key,))


@pytest.fixture
def fake_redis() -> Redis:
    """A fakeredis client on a server of its own (with Lua, as RQ and redis-py locks need)."""
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


@pytest.fixture
def config(fernet_key: str, fake_redis: Redis) -> dict[str, Any]:
    """A ``create_app`` config: env-style keys build the Settings, the rest goes to app.config.

    Tests change it before building the app (``config["REDIS"] = real_redis`` ...).
    """
    return {
        "SECRET_KEY": "test-secret-key",
        "ADMIN_TOKEN": "test-admin-token",
        "TOKEN_ENCRYPTION_KEY": fernet_key,
        "DATABASE_URL": "sqlite://",
        "EMBEDDED_WORKER": False,
        "TESTING": True,
        "REDIS": fake_redis,
    }


@pytest.fixture
def app(config: dict[str, Any]) -> Iterator[Flask]:
    """An app on a private in-memory SQLite database (migrated) and a private fakeredis."""
    from app import create_app

    application = create_app(config)
    yield application
    from app import stop_background

    stop_background(application)
    application.extensions["middleware"]["store"].dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of ``app``."""
    return app.test_client()


@pytest.fixture
def sqlite_store(fernet_key: str) -> Iterator[Store]:
    """An in-memory SQLite store with the tables created from the models."""
    store = Store("sqlite://", (fernet_key,))
    store.create_all()
    yield store
    store.dispose()


def _pg_schema_store(keys: tuple[str, ...]) -> tuple[Store, str]:
    schema = f"t_{uuid.uuid4().hex[:16]}"
    store = Store(
        POSTGRES_URL,
        keys,
        connect_args={"options": f"-csearch_path={schema}"},
        pool_size=2,
        max_overflow=2,
    )
    try:
        with store.engine.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except Exception as exc:
        store.dispose()
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is needed for integration tests: {exc}")
    return store, schema


def _drop_pg_schema(store: Store, schema: str) -> None:
    store.dispose()
    admin = Store(POSTGRES_URL, [Fernet.generate_key().decode()])
    with admin.engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    admin.dispose()


@pytest.fixture
def pg_empty_store(fernet_key: str) -> Iterator[Store]:
    """A PostgreSQL store on a private, empty schema (dropped after the test)."""
    store, schema = _pg_schema_store((fernet_key,))
    yield store
    _drop_pg_schema(store, schema)


@pytest.fixture
def pg_store(pg_empty_store: Store) -> Store:
    """A PostgreSQL store on a private schema with the tables created from the models."""
    pg_empty_store.create_all()
    return pg_empty_store


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> Store:
    """The same test on SQLite and (integration) on PostgreSQL."""
    name = "sqlite_store" if request.param == "sqlite" else "pg_store"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture
def real_redis() -> Iterator[Redis]:
    """The real Redis database at ``TEST_REDIS_URL``, claimed for this test and emptied around it.

    Another run using the same database makes this test wait its turn (see tests/redis_claim.py).
    """
    with ExitStack() as stack:
        waiting = f"waiting for {TEST_REDIS_URL}: another test run has it"
        try:
            client = stack.enter_context(claimed_redis(on_wait=waiting))
        except (RedisError, OSError) as exc:
            pytest.fail(f"Redis at {TEST_REDIS_URL} is needed for integration tests: {exc}")
        yield client


@pytest.fixture
def real_redis_url(real_redis: Redis) -> str:
    """The URL of ``real_redis``, for processes the test starts."""
    return TEST_REDIS_URL
