"""Which connections, setups and channels the listener serves; where a channel stands; leases."""

from __future__ import annotations

import time

import pytest
from click.testing import Result
from flask import Flask

from middleware.listener import plan
from middleware.listener.lease import Lease
from middleware.store import connections as connection_repo
from tests.middleware.listener.conftest import ACCOUNTS, CONTACTS, ORG_ID


@pytest.mark.parametrize(
    ("entity", "channel"),
    [
        ("Contact", "/data/ContactChangeEvent"),
        ("CampaignMember", "/data/CampaignMemberChangeEvent"),
        ("Member__c", "/data/Member__ChangeEvent"),
    ],
)
def test_channel_names(entity, channel) -> None:
    assert plan.channel_for(entity) == channel


def test_a_connection_serves_its_setups_on_the_door_with_their_channels(org) -> None:
    contacts = org.add_setup("Contacts")
    leads = org.add_setup("Leads", object_type="Lead", campaign_lists={"source": "campaigns"})
    org.add_setup("Webhook", doors=("webhook",))
    org.add_setup("Both", doors=("webhook", "pubsub"), object_type="Account")
    plans = plan.connection_plans(org.store)
    assert list(plans) == [org.connection_id]
    found = plans[org.connection_id]
    assert found.tenant_id == ORG_ID
    channels = {
        channel: [s.setup_id for s in scopes] for channel, scopes in found.channels().items()
    }
    both = org.setup_ids[-1]
    assert channels == {
        ACCOUNTS: [contacts, both],
        "/data/CampaignChangeEvent": [leads],
        "/data/CampaignMemberChangeEvent": [leads],
        CONTACTS: [contacts],
        "/data/LeadChangeEvent": [leads],
    }


@pytest.mark.parametrize("status", ["needs_reauth", "cancelled"])
def test_a_connection_that_needs_attention_is_left_alone(org, status) -> None:
    org.add_setup("Contacts")
    with org.store.transaction() as session:
        connection_repo.mark_status(session, org.connection_id, status, "refused")
    assert plan.connection_plans(org.store) == {}


def test_a_connection_without_an_org_id_is_left_alone(org) -> None:
    org.add_setup("Contacts")
    with org.store.transaction() as session:
        row = connection_repo.get(session, org.connection_id)
        assert row is not None
        row.account_id = None
    assert plan.connection_plans(org.store) == {}


def test_positions_are_shared_by_the_setups_of_a_channel(org) -> None:
    first, second = org.add_setup("A"), org.add_setup("B")
    assert plan.load_position(org.store, [first, second], CONTACTS) is None
    plan.save_position(org.store, [first, second], CONTACTS, b"\x00\x00\x00\x00\x00\x00\x01\x02")
    third = org.add_setup("C")  # joins later: reads the others' position
    position = plan.load_position(org.store, [first, second, third], CONTACTS)
    assert position is not None and position.replay_id == b"\x00\x00\x00\x00\x00\x00\x01\x02"
    assert plan.load_position(org.store, [first], ACCOUNTS) is None


def test_a_lease_has_one_holder_until_it_is_released_or_runs_out(fake_redis) -> None:
    first = Lease(fake_redis, 7, seconds=0.3, owner="first")
    second = Lease(fake_redis, 7, seconds=0.3, owner="second")
    assert first.acquire() and not second.acquire()
    assert first.renew() and not second.renew()
    assert first.acquire()  # taking it again is keeping it
    first.release()
    assert second.acquire() and second.holder() == "second"
    time.sleep(0.4)  # the holder died: nobody renewed
    assert first.acquire() and first.holder() == "first"
    assert not second.renew()
    second.release()  # not its lease any more: nothing happens
    assert first.holder() == "first"


def test_the_listen_command_needs_a_shared_redis(app: Flask) -> None:
    result: Result = app.test_cli_runner().invoke(args=["listen"])
    assert result.exit_code != 0 and "needs REDIS_URL" in result.output
