"""The Pub/Sub door end to end: the sandbox org's own Pub/Sub API server, our listener, the flush.

No webhook is configured: a change made in the Salesforce sandbox reaches Constant Contact only
through Change Data Capture over gRPC, decoded by the listener and recorded in the intake.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from middleware import connections, intake
from middleware.listener import run
from middleware.salesforce import oauth as sf_oauth
from middleware.store import connections as connection_repo
from tests.e2e.harness import SF_BASE, World
from tests.middleware.listener.conftest import FAST, Running, wait_for


class SandboxOAuth:
    """The token endpoint, as the sandbox issues tokens: each refresh is a new live token."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.calls = 0

    def refresh(self, refresh_token: str) -> sf_oauth.Tokens:
        self.calls += 1
        token = self.w.sf_session.post(f"{SF_BASE}/_sandbox/tokens").json()["access_token"]
        return sf_oauth.Tokens(
            access_token=token, instance_url=SF_BASE, refresh_token=refresh_token or "r"
        )


@pytest.fixture
def pubsub_world(tmp_path: Path) -> Iterator[tuple[World, Any]]:
    # A file database: the listener's thread and the test's flushes write at the same time,
    # and an in-memory SQLite database is one connection that two threads must not share.
    w = World(
        options={"salesforce_changes": ["pubsub"], "remove_on_sf_delete": True},
        database_url=f"sqlite:///{tmp_path / 'pubsub.sqlite3'}",
    )
    w.deliver_to_webhook = False
    _server, port = w.start_pubsub()
    oauth = SandboxOAuth(w)
    w.oauth = oauth  # type: ignore[attr-defined]
    with w.store.transaction() as session:  # a connection made by OAuth holds a refresh token
        [conn] = [c for c in connection_repo.all_connections(session) if c.vendor == "salesforce"]
        connection_repo.save_tokens(
            session,
            conn.id,
            expected_version=conn.version,
            access_token=w.sf_token,
            expires_at=None,
            refresh_token="sandbox-refresh",
        )
    settings = w.runtime.settings.replace(
        salesforce_pubsub_url=f"http://127.0.0.1:{port}", flush_delay_seconds=0.2
    )

    def tokens(connection_id: int) -> sf_oauth.RefreshingTokenSource:
        return sf_oauth.RefreshingTokenSource(
            connections.salesforce_tokens(w.store, connection_id),
            oauth,  # type: ignore[arg-type]
            threading.Lock(),
        )

    def listener(owner: str = "one") -> run.Listener:
        return run.Listener(
            settings, w.store, w.redis, tuning=FAST, owner=owner, token_source=tokens
        )

    started: list[Running] = []

    def start(owner: str = "one") -> Running:
        running = Running(listener(owner))
        started.append(running)
        return running

    try:
        yield w, start
    finally:
        for running in started:
            if running.thread.is_alive():
                running.close()
        w.close()


def oauth_calls(w: World) -> int:
    return int(w.oauth.calls)  # type: ignore[attr-defined]


def subscribed(w: World, n: int = 1) -> Any:
    state = w.sf_session.get(f"{SF_BASE}/_sandbox/pubsub/state").json()
    return len(state["subscribers"]) >= n


def synced(w: World, email: str, **expected: Any) -> Any:
    """Wait until the intake holds the change, flush it, and read the contact back."""

    def arrived() -> Any:
        if intake.pending(w.redis, w.setup_id):
            w.flush()
        contact = w.cc_contact(email)
        if contact is None:
            return None
        return contact if all(contact.get(k) == v for k, v in expected.items()) else None

    return wait_for(arrived, timeout=15, what=f"{email} right in Constant Contact")


def test_changes_reach_constant_contact_through_the_listener(pubsub_world) -> None:
    w, start = pubsub_world
    start()
    wait_for(lambda: subscribed(w), what="the listener's subscription")
    contact = w.sf_create("Contact", FirstName="Ada", LastName="Pubsub", Email="ada@ps.org")
    synced(w, "ada@ps.org", first_name="Ada")
    w.sf_update(contact, FirstName="Augusta")
    synced(w, "ada@ps.org", first_name="Augusta")
    w.sf_update(contact, Email="ada@new.ps.org")
    synced(w, "ada@new.ps.org")

    # A delete takes the contact off the setup's lists; an undelete puts it back.
    main = list(synced(w, "ada@new.ps.org")["list_memberships"])
    w.sf_delete(contact)
    wait_for(
        lambda: synced(w, "ada@new.ps.org")["list_memberships"] == [] or None,
        what="the deleted record off the list",
    )
    r = w.sf_session.post(f"{SF_BASE}/_sandbox/records/Contact/{contact}/undelete")
    assert r.status_code in (200, 201), r.text
    wait_for(
        lambda: synced(w, "ada@new.ps.org")["list_memberships"] == main or None,
        what="the undeleted record back on the list",
    )


def test_the_listener_survives_a_stream_close_an_expired_token_and_a_restart(
    pubsub_world,
) -> None:
    w, start = pubsub_world
    first = start("one")
    wait_for(lambda: subscribed(w), what="the subscription")
    w.sf_create("Contact", FirstName="Before", LastName="Close", Email="before@ps.org")
    synced(w, "before@ps.org")

    # Salesforce closes the stream (RST_STREAM): the listener subscribes again from its replay id.
    w.sf_session.post(f"{SF_BASE}/_sandbox/pubsub/disconnect")
    w.sf_create("Contact", FirstName="During", LastName="Close", Email="during@ps.org")
    synced(w, "during@ps.org")

    # Every session expires: the listener refreshes its token and goes on (the test's own
    # flushes take a new token too).
    w.sf_session.post(f"{SF_BASE}/_sandbox/tokens/expire")
    w.sf_token = w.sf_session.post(f"{SF_BASE}/_sandbox/tokens").json()["access_token"]
    w.sf_session.post(f"{SF_BASE}/_sandbox/pubsub/disconnect")
    w.sf_create("Contact", FirstName="After", LastName="Expiry", Email="expiry@ps.org")
    synced(w, "expiry@ps.org")
    assert oauth_calls(w) >= 1

    # The process stops; changes made meanwhile come from the stored replay id on restart.
    first.close()
    w.sf_create("Contact", FirstName="While", LastName="Down", Email="down@ps.org")
    start("two")
    synced(w, "down@ps.org")


def test_a_second_listener_does_not_consume_the_same_connection(pubsub_world) -> None:
    w, start = pubsub_world
    start("one")
    wait_for(lambda: subscribed(w), what="the first listener")
    second = start("two")
    w.sf_create("Contact", FirstName="Only", LastName="Once", Email="once@ps.org")
    synced(w, "once@ps.org")
    state = w.sf_session.get(f"{SF_BASE}/_sandbox/pubsub/state").json()
    channels = [s["topic"] for s in state["subscribers"]]
    assert len(channels) == len(set(channels)), state["subscribers"]
    assert not second.listener.workers, "the second listener took a leased connection"
