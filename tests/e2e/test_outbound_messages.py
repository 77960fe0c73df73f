"""Salesforce → Constant Contact through Outbound Messages: a user's REST writes in the sandbox org
fire its Outbound Message action, the service's SOAP endpoint acks and records them, a flush
syncs them; duplicates change nothing, and a message the service could not take is retried."""

from __future__ import annotations

from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from middleware import intake
from middleware.salesforce.outbound import ACK
from middleware.store import connections as connection_repo
from tests.e2e.harness import SF_BASE, SF_VERSION, World, world

OPTIONS = {"salesforce_changes": ["outbound"]}


def rest(w: World, method: str, path: str, **values: Any) -> Any:
    """A user's REST call (no call-options client: not the service's own write)."""
    r = w.sf_session.request(
        method,
        f"{SF_BASE}/services/data/v{SF_VERSION}/sobjects/{path}",
        json=values,
        headers={"Authorization": f"Bearer {w.sf_token}"},
    )
    assert r.status_code in (200, 201, 204), r.text
    return r.json() if r.content else None


def test_created_edited_and_readdressed_contacts_reach_cc_through_outbound_messages() -> None:
    with world(options=OPTIONS) as w:
        w.deliver_to_webhook = False  # no JSON events: the Outbound Messages are the only door
        w.sf_outbound(object="Contact", fields=["Email"], duplicate_rate=1.0)

        contact_id = rest(
            w, "POST", "Contact", FirstName="Ada", LastName="Lovelace", Email="ada@example.org"
        )["id"]
        # Each message was sent twice (duplicate_rate 1): both acked, one id waiting.
        assert [(status, answer) for _, _, status, answer in w.outbound_posts] == [(200, ACK)] * 2
        assert w.outbound_posts[0][1] == w.outbound_posts[1][1]
        assert intake.pending(w.redis, w.setup_id) == 1
        assert w.flush()["records"] == 1
        created = w.cc_contact("ada@example.org")
        assert created is not None and created["first_name"] == "Ada"

        rest(w, "PATCH", f"Contact/{contact_id}", FirstName="Augusta")
        assert intake.pending(w.redis, w.setup_id) == 1
        w.flush()
        renamed = w.cc_contact("ada@example.org")
        assert renamed is not None and renamed["first_name"] == "Augusta"

        rest(w, "PATCH", f"Contact/{contact_id}", Email="ada.king@example.org")
        w.flush()
        moved = w.cc_contact("ada.king@example.org")
        assert moved is not None and moved["last_name"] == "Lovelace"
        assert moved["contact_id"] == created["contact_id"]
        assert w.cc_contact("ada@example.org") is None

        # Salesforce delivers the first message again a day later (its Ack was lost): acked,
        # and nothing to do.
        before = w.cc_state()
        first_url, first_body = w.outbound_posts[0][0], w.outbound_posts[0][1]
        again = w._deliver_outbound(first_url, first_body, {"Content-Type": "text/xml"})
        assert again == (200, ACK)
        assert intake.pending(w.redis, w.setup_id) == 0
        assert w.flush()["records"] == 0
        assert w.cc_state() == before

        # Deletes send no Outbound Message (the scheduled catch-up finds them).
        sent = len(w.outbound_posts)
        rest(w, "DELETE", f"Contact/{contact_id}")
        assert len(w.outbound_posts) == sent


def test_a_message_the_service_cannot_take_is_retried_with_the_values_then(monkeypatch) -> None:
    with world(options=OPTIONS) as w:
        w.deliver_to_webhook = False
        w.sf_outbound(object="Contact", fields=["Email", "FirstName"])
        real = intake.add_hints

        def down(*_a: Any, **_k: Any) -> None:
            raise RedisConnectionError("connection refused")

        monkeypatch.setattr(intake, "add_hints", down)
        contact_id = rest(
            w, "POST", "Contact", FirstName="Grace", LastName="Hopper", Email="grace@example.org"
        )["id"]
        status, answer = w.outbound_posts[-1][2:]
        assert status == 500 and b"<faultcode>soapenv:Server</faultcode>" in answer
        assert intake.pending(w.redis, w.setup_id) == 0

        monkeypatch.setattr(intake, "add_hints", real)
        rest(w, "PATCH", f"Contact/{contact_id}", FirstName="Amazing Grace")
        w.sf_org.clock.advance(30)  # Salesforce's first retry
        w.sf_org.outbound.step()
        assert [p[2] for p in w.outbound_posts] == [500, 200, 200]
        # The retried message carries the record as it is when sent.
        assert b"<sf:FirstName>Amazing Grace</sf:FirstName>" in w.outbound_posts[-1][1]
        assert intake.pending(w.redis, w.setup_id) == 1
        w.flush()
        grace = w.cc_contact("grace@example.org")
        assert grace is not None and grace["first_name"] == "Amazing Grace"
        queue = w.sf_session.get(f"{SF_BASE}/_sandbox/outbound").json()["queue"]
        assert queue["delivered"] == 2 and queue["pending"] == 0 and queue["attempts"] == 3


def test_another_orgs_messages_are_refused_and_retried_until_dropped() -> None:
    with world(options=OPTIONS) as w:
        w.deliver_to_webhook = False
        with w.store.transaction() as session:
            for conn in connection_repo.all_connections(session):
                if conn.vendor == "salesforce":
                    conn.account_id = "00DXX0000000009AAA"  # the setup's org is another one
        w.sf_outbound(object="Contact", fields=["Email"], retry={"give_up_seconds": 100})
        rest(w, "POST", "Contact", LastName="Mallory", Email="mallory@example.org")
        status, answer = w.outbound_posts[-1][2:]
        assert status == 500 and b"is not the org of setup" in answer
        w.sf_org.clock.advance(200)
        w.sf_org.outbound.step()
        queue = w.sf_session.get(f"{SF_BASE}/_sandbox/outbound").json()["queue"]
        assert queue["dropped"] == 1
        assert intake.pending(w.redis, w.setup_id) == 0
