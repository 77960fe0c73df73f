"""Campaign results on PostgreSQL and real Redis: recipients' keys upserted in the real store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from redis import Redis

from middleware.store.db import Store
from tests.conftest import POSTGRES_URL
from tests.e2e.harness import World
from tests.e2e.test_campaign_results import (
    LINK,
    events,
    members,
    people,
    rows,
    run,
    send,
    typical_events,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_world(real_redis: Redis) -> Iterator[World]:
    name = f"t_results_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is needed for integration tests: {exc}")
    url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    schema = Store(url, [Fernet.generate_key().decode()])
    schema.create_all()
    schema.dispose()
    w = World(
        options={"campaign_response_mode": "campaign_and_activity"},
        database_url=url,
        redis=real_redis,
    )
    w.deliver_to_webhook = False
    try:
        yield w
    finally:
        w.close()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def test_campaign_results_on_postgresql(pg_world: World) -> None:
    w = pg_world
    ids = people(w)
    sent = send(w)
    typical_events(w, sent["campaign_activity_id"])
    first = run(w)
    assert (first["campaigns_created"], first["members_created"], first["tasks_created"]) == (
        1,
        4,
        3,
    )
    events(w, sent["campaign_activity_id"], {"type": "click", "email": "opener@example.org",
                                              "url": LINK})  # fmt: skip
    second = run(w)
    assert (second["members_updated"], second["tasks_created"]) == (1, 1), second
    [campaign] = rows(w, "SELECT Id FROM Campaign")
    assert members(w, campaign["Id"])[ids["opener@example.org"]] == "Clicked"
    assert len(rows(w, "SELECT Id FROM Task")) == 4
