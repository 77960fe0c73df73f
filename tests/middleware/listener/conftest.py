"""Fixtures: a fake Pub/Sub server on a free port, a file SQLite store the listener's threads
share, Salesforce connections and setups on the Pub/Sub door, and a listener with short waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from middleware import connections
from middleware.listener import run, stream
from middleware.salesforce import errors as sf_errors
from middleware.salesforce import oauth as sf_oauth
from middleware.settings import Settings
from middleware.store import connections as connection_repo
from middleware.store import setups as setup_repo
from middleware.store.db import Store
from schemas.setup import validate_setup
from tests.middleware.listener import fake_pubsub
from tests.middleware.salesforce.cdc_avro import ACCOUNT_SCHEMA, CONTACT_SCHEMA, SCHEMA_IDS

ORG_ID = "00DSB0000000001AAA"
INSTANCE = "https://sandbox.my.salesforce.test"
CONTACTS = "/data/ContactChangeEvent"
ACCOUNTS = "/data/AccountChangeEvent"

FAST = stream.Tuning(
    retry_seconds=0.02,
    max_retry_seconds=0.2,
    exhausted_seconds=0.1,
    refused_seconds=0.3,
    rpc_timeout=5.0,
    lease_seconds=1.0,
    renew_seconds=0.2,
    plan_seconds=0.2,
    tick_seconds=0.05,
    stop_seconds=5.0,
    silence_seconds=5.0,
)


def wait_for(predicate: Callable[[], Any], timeout: float = 8.0, what: str = "") -> Any:
    """Poll until ``predicate()`` is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what or predicate}")


@pytest.fixture
def db(tmp_path: Path, fernet_key: str) -> Iterator[Store]:
    """A file SQLite store: the listener's threads each need their own connection."""
    store = Store(f"sqlite:///{tmp_path / 'listener.sqlite3'}", (fernet_key,))
    store.create_all()
    yield store
    store.dispose()


@pytest.fixture
def server() -> Iterator[fake_pubsub.Running]:
    fake = fake_pubsub.FakePubSub(keepalive_seconds=0.1)
    fake.add_topic(CONTACTS, SCHEMA_IDS["Contact"], CONTACT_SCHEMA)
    fake.add_topic(ACCOUNTS, SCHEMA_IDS["Account"], ACCOUNT_SCHEMA)
    running = fake_pubsub.start(fake)
    yield running
    running.close()


@pytest.fixture
def listen_settings(settings: Settings, server: fake_pubsub.Running) -> Settings:
    return settings.replace(salesforce_pubsub_url=server.url, flush_delay_seconds=0.5)


class FakeOAuth:
    """The token endpoint: each refresh issues the next token, or refuses like a revoked grant."""

    def __init__(self) -> None:
        self.issued = 1
        self.revoked = False
        self.calls = 0

    def refresh(self, refresh_token: str) -> sf_oauth.Tokens:
        self.calls += 1
        if self.revoked:
            raise sf_errors.AuthRevoked("expired access/refresh token")
        self.issued += 1
        return sf_oauth.Tokens(
            access_token=f"token-{self.issued}",
            instance_url=INSTANCE,
            refresh_token=refresh_token,
        )


@dataclass
class Org:
    """A Salesforce connection with its setups, and what a listener needs to serve it."""

    store: Store
    redis: Redis
    settings: Settings
    connection_id: int
    oauth: FakeOAuth = field(default_factory=FakeOAuth)
    setup_ids: list[int] = field(default_factory=list)

    def add_setup(self, name: str, *, doors: tuple[str, ...] = ("pubsub",), **options: Any) -> int:
        loaded, _ = validate_setup(
            {"name": name, "main_list": "Main", "salesforce_changes": list(doors), **options}
        )
        with self.store.transaction() as session:
            row = setup_repo.create(
                session,
                name=name,
                options=loaded,
                salesforce_connection_id=self.connection_id,
            )
            self.setup_ids.append(row.id)
            return row.id

    def tokens(self, _connection_id: int) -> sf_oauth.RefreshingTokenSource:
        return sf_oauth.RefreshingTokenSource(
            connections.salesforce_tokens(self.store, self.connection_id),
            self.oauth,  # type: ignore[arg-type]
            threading.Lock(),
        )

    def listener(self, **kwargs: Any) -> run.Listener:
        kwargs.setdefault("tuning", FAST)
        return run.Listener(
            self.settings, self.store, self.redis, token_source=self.tokens, **kwargs
        )

    def status(self) -> str:
        with self.store.transaction() as session:
            row = connection_repo.get(session, self.connection_id)
            assert row is not None
            return row.status

    def access_token(self) -> str | None:
        with self.store.transaction() as session:
            return connection_repo.tokens(session, self.connection_id).access_token


@pytest.fixture
def org(db: Store, fake_redis: Redis, listen_settings: Settings) -> Org:
    with db.transaction() as session:
        row = connection_repo.create(
            session,
            vendor="salesforce",
            label="Sandbox org",
            base_url=INSTANCE,
            account_id=ORG_ID,
            access_token="token-1",
            refresh_token="refresh-1",
        )
        connection_id = row.id
    return Org(db, fake_redis, listen_settings, connection_id)


class Running:
    """A listener in a thread of its own, stopped (leases released) at the end of the test."""

    def __init__(self, listener: run.Listener) -> None:
        self.listener = listener
        self.stop = threading.Event()
        self.thread = threading.Thread(target=listener.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the listener did not stop"

    def stream(self, connection_id: int, channel: str) -> stream.ChannelStream:
        worker = wait_for(
            lambda: self.listener.workers.get(connection_id), what="the connection's worker"
        )
        return worker.streams[channel]  # type: ignore[no-any-return]


@pytest.fixture
def start() -> Iterator[Callable[[run.Listener], Running]]:
    started: list[Running] = []

    def _start(listener: run.Listener) -> Running:
        running = Running(listener)
        started.append(running)
        return running

    yield _start
    for running in started:
        running.close()
