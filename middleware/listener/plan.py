"""What the listener serves: each Salesforce connection's setups on the Pub/Sub door, their
channels, and where each channel's stream stands (its replay id).

A setup takes the Pub/Sub door when its `salesforce_changes` option names `pubsub`. Its changes
arrive on one Change Data Capture channel per object that matters to it (`changes.Scope`): its
own object, Account for Contact setups (company names), Campaign and CampaignMember for setups
whose lists come from Campaigns. One connection's setups share its streams: a channel is
subscribed once per connection, and each event goes to every setup it matters to.

A channel's replay id belongs to the connection, not to one setup, but it is kept as a cursor
of each setup the channel serves (`pubsub_replay:<channel>`, base64), all written together after
every setup recorded the batch. Read back, the most recently stored one counts: a setup that
joins later has none yet, one that left the door for a while holds an older one. When the
stream last stood there (the cursor's time) is where a catch-up starts if the id has expired.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from middleware.services.changes import Scope
from middleware.store import cursors
from middleware.store.db import Store
from middleware.store.models import Connection, Setup

DOOR = "pubsub"
# A connection in these states could only be refused: it waits until it is connected again.
IDLE_STATUSES = ("needs_reauth", "cancelled")


def channel_for(entity: str) -> str:
    """The object's CDC channel: `/data/ContactChangeEvent`, `/data/Thing__ChangeEvent`."""
    if entity.endswith("__c"):
        return f"/data/{entity[:-3]}__ChangeEvent"
    return f"/data/{entity}ChangeEvent"


def cursor_name(channel: str) -> str:
    return f"pubsub_replay:{channel}"


def on_the_door(options: Mapping[str, Any]) -> bool:
    """Whether a setup's stored options take its Salesforce changes through Pub/Sub."""
    doors = options.get("salesforce_changes") or ()
    return isinstance(doors, list | tuple) and DOOR in doors


@dataclass(frozen=True)
class ConnectionPlan:
    """One Salesforce connection's part of the listener: its org and the setups it serves."""

    connection_id: int
    tenant_id: str
    scopes: tuple[Scope, ...]

    def channels(self) -> dict[str, tuple[Scope, ...]]:
        """Each channel to subscribe, with the setups its events go to."""
        out: dict[str, list[Scope]] = {}
        for scope in self.scopes:
            for entity in scope.entities():
                out.setdefault(channel_for(entity), []).append(scope)
        return {channel: tuple(scopes) for channel, scopes in sorted(out.items())}


def connection_plans(store: Store) -> dict[int, ConnectionPlan]:
    """Every connection the listener should consume now, by connection id.

    A connection that needs re-consent (or was cancelled) is left out until it is connected
    again; so is one without an org id (the `tenantid` every call needs).
    """
    with store.transaction() as session:
        rows = session.execute(
            select(Setup.id, Setup.options, Connection.id, Connection.account_id)
            .join(Connection, Connection.id == Setup.salesforce_connection_id)
            .where(Connection.vendor == "salesforce", Connection.status.not_in(IDLE_STATUSES))
            .order_by(Setup.id)
        ).all()
    grouped: dict[int, tuple[str, list[Scope]]] = {}
    for setup_id, options, connection_id, account_id in rows:
        if not account_id or not on_the_door(options or {}):
            continue
        grouped.setdefault(connection_id, (account_id, []))[1].append(
            Scope.of(setup_id, options or {})
        )
    return {
        connection_id: ConnectionPlan(connection_id, tenant_id, tuple(scopes))
        for connection_id, (tenant_id, scopes) in grouped.items()
    }


@dataclass(frozen=True)
class Position:
    """Where a channel's stream stood: the last replay id handled, and when it was stored."""

    replay_id: bytes
    stored_at: datetime


def load_position(store: Store, setup_ids: Iterable[int], channel: str) -> Position | None:
    with store.transaction() as session:
        found = cursors.newest_cursor(session, setup_ids, cursor_name(channel))
    if found is None:
        return None
    value, stored_at = found
    try:
        replay_id = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None  # not ours to read: start as with none
    return Position(replay_id, stored_at) if replay_id else None


def save_position(store: Store, setup_ids: Iterable[int], channel: str, replay_id: bytes) -> None:
    """Store the channel's replay id on every setup it serves, in one transaction."""
    value = base64.b64encode(replay_id).decode("ascii")
    with store.transaction() as session:
        cursors.set_cursors(session, setup_ids, cursor_name(channel), value)
