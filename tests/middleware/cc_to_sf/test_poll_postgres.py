"""The CC → SF poll on PostgreSQL and real Redis: links, cursors and errors in the real store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from redis import Redis

from middleware.store import errors as errors_repo
from middleware.store import links
from tests.e2e.harness import World, postgres_world
from tests.middleware.cc_to_sf.test_poll import T0, by_email, cc_add, run, unsubscribe

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_world(real_redis: Redis) -> Iterator[World]:
    with postgres_world(real_redis, "t_poll") as w:
        yield w


def test_poll_on_postgresql(pg_world: World) -> None:
    w = pg_world
    known = w.sf_create("Contact", LastName="Known", Email="known@example.org")
    cc_add(w, "known@example.org")
    cc_add(w, "new@example.org", company_name="Acme")
    cc_add(w, "nameless@example.org", last="")
    first: dict[str, Any] = run(w)
    assert (first["created_contacts"], first["linked"], first["errors"]) == (1, 1, 1)
    unsubscribe(w, "known@example.org")
    second = run(w, T0 + timedelta(minutes=15))
    assert second["opted_out"] == 1
    assert set(by_email(w)) == {"known@example.org", "new@example.org"}
    with w.store.transaction() as session:
        found = links.for_emails(session, w.setup_id, ["known@example.org", "new@example.org"])
        assert found["known@example.org"][0].sf_id == known
        assert found["new@example.org"][0].fingerprint
        (err,) = errors_repo.list_errors(session, w.setup_id)
        assert err.code == "LAST_NAME_REQUIRED"
    # Nothing new: one Salesforce query, because the known contact's link remembers its
    # unsubscribe (an opt-out cleared in Salesforce since would be set again, issue 9).
    with w.store.transaction() as session:
        (row,) = links.for_emails(session, w.setup_id, ["known@example.org"])["known@example.org"]
        assert row.subscribed_when_synced is False
    third = run(w, T0 + timedelta(minutes=30))
    assert third["records"] == 0
    assert w.last_sf.usage.total == 1
