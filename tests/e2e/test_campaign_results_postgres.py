"""Campaign results on PostgreSQL and real Redis: recipients' keys upserted in the real store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis import Redis

from tests.e2e.harness import World, postgres_world
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
    options = {"campaign_response_mode": "campaign_and_activity"}
    with postgres_world(real_redis, "t_results", options=options) as w:
        yield w


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
