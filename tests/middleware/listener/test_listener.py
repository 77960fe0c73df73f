"""The listener against a fake Pub/Sub server: events reach the intake of every setup, the replay
id moves only after they are recorded, and every failure resumes without losing events."""

from __future__ import annotations

import base64
import os
import signal
import threading
from dataclasses import replace

import grpc
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from middleware import intake, metrics, queue
from middleware.listener import plan, run
from middleware.listener.lease import Lease, lease_key
from middleware.salesforce.ids import to_18
from middleware.store import cursors
from sandbox.tls import ensure_certificates
from tests.middleware.listener import fake_pubsub
from tests.middleware.listener.conftest import ACCOUNTS, CONTACTS, FAST, ORG_ID, wait_for
from tests.middleware.salesforce.cdc_avro import (
    ACCOUNT_SCHEMA,
    CONTACT_SCHEMA,
    SCHEMA_IDS,
    contact_event,
    encode,
    header,
)

C1, C2, C3 = (to_18(f"003SB{n:010d}") for n in (1, 2, 3))
ACCOUNT = to_18("001SB0000000001")
LEADS = "/data/LeadChangeEvent"


def stored_replay(org, setup_id: int, channel: str = CONTACTS) -> int | None:
    with org.store.transaction() as session:
        value = cursors.get_cursor(session, setup_id, plan.cursor_name(channel))
    return int.from_bytes(base64.b64decode(value), "big") if value else None


def pending_ids(org, setup_id: int) -> set[str]:
    raw = org.redis.hkeys(intake.dirty_key(setup_id))
    return {key.decode().split(":", 1)[1] for key in raw}


def subscribed(server, channel: str = CONTACTS) -> list[fake_pubsub.SubscribeLog]:
    return [log for log in server.fake.subscribes if log.topic == channel]


def test_events_reach_every_setup_of_the_connection_then_the_replay_id_is_stored(
    org, server, start
) -> None:
    first = org.add_setup("Contacts A")
    second = org.add_setup("Contacts B")
    org.add_setup("Webhook only", doors=("webhook",))
    running = start(org.listener())
    stream = running.stream(org.connection_id, CONTACTS)
    wait_for(lambda: stream.stats.keepalives, what="a first keepalive")

    replay = server.fake.publish(CONTACTS, contact_event([C1, C2]))
    wait_for(lambda: stored_replay(org, second) == replay, what="the replay id stored")
    assert pending_ids(org, first) == pending_ids(org, second) == {C1, C2}
    assert stored_replay(org, first) == replay
    for setup_id in (first, second):
        assert queue.pending_job_id(f"flush-{setup_id}", connection=org.redis) is not None
    # One stream per channel for the whole connection; the auth metadata Salesforce wants.
    assert len(subscribed(server)) == 1 and len(subscribed(server, ACCOUNTS)) == 1
    metadata = subscribed(server)[0].metadata
    assert metadata["accesstoken"] == "token-1"
    assert metadata["tenantid"] == ORG_ID
    assert metadata["instanceurl"] == "https://sandbox.my.salesforce.test"
    assert subscribed(server)[0].preset == "LATEST"  # nothing stored yet: the tip
    assert stream.stats.accepted == 2 and server.fake.schema_requests == [SCHEMA_IDS["Contact"]]
    counted = metrics.redis_counter_values(org.redis, "listener_events")
    assert counted[("received",)] == 1 and counted[("accepted",)] == 2


def test_an_account_change_reaches_contact_setups(org, server, start) -> None:
    setup_id = org.add_setup("Contacts")
    running = start(org.listener())
    stream = running.stream(org.connection_id, ACCOUNTS)
    wait_for(lambda: stream.stats.keepalives, what="a first keepalive")
    event = encode(ACCOUNT_SCHEMA, {"ChangeEventHeader": header("Account", [ACCOUNT])})
    server.fake.publish(ACCOUNTS, event)
    wait_for(lambda: stream.stats.accepted == 1)
    assert org.redis.hkeys(intake.dirty_key(setup_id)) == [f"Account:{ACCOUNT}".encode()]


def test_a_restart_resumes_after_the_stored_replay_id(org, server, start) -> None:
    setup_id = org.add_setup("Contacts")
    running = start(org.listener())
    stream = running.stream(org.connection_id, CONTACTS)
    wait_for(lambda: stream.stats.keepalives)
    seen = server.fake.publish(CONTACTS, contact_event([C1]))
    wait_for(lambda: stored_replay(org, setup_id) == seen)
    running.close()

    missed = server.fake.publish(CONTACTS, contact_event([C2], key="tx-2"))
    again = start(org.listener())
    wait_for(lambda: stored_replay(org, setup_id) == missed, what="the missed event")
    assert pending_ids(org, setup_id) == {C1, C2}
    resumed = subscribed(server)[-1]
    assert (resumed.preset, resumed.replay_id) == ("CUSTOM", seen)
    assert again.stream(org.connection_id, CONTACTS).stats.accepted == 1


def test_the_position_is_written_at_most_every_position_seconds_and_when_the_stream_ends(
    org, server, start
) -> None:
    # A steady trickle of events would otherwise cost a database commit per response.
    setup_id = org.add_setup("Contacts")
    server.fake.keepalive_seconds = 60.0  # no keepalive writes the tip meanwhile
    running = start(org.listener(tuning=replace(FAST, position_seconds=60.0)))
    stream = running.stream(org.connection_id, CONTACTS)
    wait_for(lambda: stream.stats.subscribes, what="subscribed")
    first = server.fake.publish(CONTACTS, contact_event([C1], key="tx-1"))
    wait_for(lambda: stored_replay(org, setup_id) == first, what="the first position")
    last = first
    for n in range(2, 12):
        last = server.fake.publish(
            CONTACTS, contact_event([to_18(f"003SB{n:010d}")], key=f"tx-{n}")
        )
        wait_for(lambda: stream.stats.accepted == n, what=f"event {n} recorded")  # noqa: B023
    assert stream.stats.responses >= 11 and stream.stats.positions_stored == 1
    assert stored_replay(org, setup_id) == first  # every event is in the intake, though
    assert len(pending_ids(org, setup_id)) == 11
    running.close()  # the stream ends: the position it reached is written
    assert stored_replay(org, setup_id) == last
    assert stream.stats.positions_stored == 2


def test_our_own_echoes_and_unreadable_events_move_the_position_but_record_nothing(
    org, server, start
) -> None:
    setup_id = org.add_setup("Contacts")
    running = start(org.listener())
    stream = running.stream(org.connection_id, CONTACTS)
    wait_for(lambda: stream.stats.keepalives)
    server.fake.publish(
        CONTACTS, contact_event([C1], origin="com/salesforce/api/rest/66.0;client=ctct-sync")
    )
    server.fake.publish(CONTACTS, b"\x02\x03 not an avro record")
    last = server.fake.publish(CONTACTS, contact_event([C2]))
    wait_for(lambda: stored_replay(org, setup_id) == last)
    assert pending_ids(org, setup_id) == {C2}
    assert (stream.stats.echoes, stream.stats.undecodable, stream.stats.accepted) == (1, 1, 1)
    assert metrics.redis_counter_values(org.redis, "listener_events")[("undecodable",)] == 1


def test_an_event_whose_schema_the_server_does_not_know_is_skipped(org, server, start) -> None:
    setup_id = org.add_setup("Contacts")
    running = start(org.listener())
    stream = running.stream(org.connection_id, CONTACTS)
    wait_for(lambda: stream.stats.keepalives)
    server.fake.publish(CONTACTS, contact_event([C1]), schema_id="GoneSchemaId")
    last = server.fake.publish(CONTACTS, contact_event([C2]))
    wait_for(lambda: stored_replay(org, setup_id) == last)
    assert pending_ids(org, setup_id) == {C2} and stream.stats.undecodable == 1


def test_redis_down_keeps_the_replay_id_and_the_events_come_again(
    org, server, start, monkeypatch
) -> None:
    setup_id = org.add_setup("Contacts")
    running = start(org.listener())
    stream = running.stream(org.connection_id, CONTACTS)
    before = wait_for(lambda: stored_replay(org, setup_id), what="a keepalive position")

    real_add = intake.add_hints
    positions_when_refused: list[int | None] = []

    def down_once(*args, **kwargs):
        if not positions_when_refused:
            positions_when_refused.append(stored_replay(org, setup_id))
            raise RedisConnectionError("Redis is restarting")
        return real_add(*args, **kwargs)

    monkeypatch.setattr(intake, "add_hints", down_once)
    replay = server.fake.publish(CONTACTS, contact_event([C1]))
    wait_for(lambda: stored_replay(org, setup_id) == replay, what="the event recorded later")
    assert stream.stats.not_recorded == 1 and pending_ids(org, setup_id) == {C1}
    # Refused: the position had not moved past the event, and the stream resumed from it.
    assert positions_when_refused[0] is not None and positions_when_refused[0] < replay
    resumed = subscribed(server)[-1]
    assert resumed.preset == "CUSTOM" and resumed.replay_id is not None
    assert before <= resumed.replay_id < replay


def test_a_stream_the_server_closes_is_subscribed_again_from_the_stored_id(
    org, server, start
) -> None:
    setup_id = org.add_setup("Contacts")
    server.fake.close_after = 1
    running = start(org.listener())
    stream = running.stream(org.connection_id, CONTACTS)
    wait_for(lambda: stream.stats.keepalives)
    first = server.fake.publish(CONTACTS, contact_event([C1]))
    wait_for(lambda: len(subscribed(server)) == 2, what="a second Subscribe")
    second = server.fake.publish(CONTACTS, contact_event([C2], key="tx-2"))
    wait_for(lambda: stored_replay(org, setup_id) == second)
    assert pending_ids(org, setup_id) == {C1, C2}
    assert (subscribed(server)[1].preset, subscribed(server)[1].replay_id) == ("CUSTOM", first)


def test_a_silent_stream_is_given_up_and_subscribed_again(org, server, start) -> None:
    org.add_setup("Contacts")
    server.fake.keepalive_seconds = 30.0  # a connection that died without a word
    running = start(org.listener(tuning=replace(FAST, silence_seconds=0.3)))
    stream = running.stream(org.connection_id, CONTACTS)
    wait_for(lambda: stream.stats.subscribes >= 2, what="a second Subscribe")
    assert "CANCELLED" in (stream.stats.last_error or "")
    server.fake.keepalive_seconds = 0.1


def test_an_expired_session_is_refreshed_and_the_stream_goes_on(org, server, start) -> None:
    setup_id = org.add_setup("Contacts")
    server.fake.valid_tokens = {"token-2"}  # Salesforce ended token-1's session
    running = start(org.listener())
    stream = running.stream(org.connection_id, CONTACTS)
    wait_for(lambda: stream.stats.keepalives, what="a stream after the refresh")
    replay = server.fake.publish(CONTACTS, contact_event([C1]))
    wait_for(lambda: stored_replay(org, setup_id) == replay)
    assert org.access_token() == "token-2"  # persisted before use, for every process
    assert org.oauth.calls == 1  # both channels' streams, one refresh
    assert subscribed(server)[-1].metadata["accesstoken"] == "token-2"


def test_a_revoked_grant_marks_the_connection_and_the_listener_leaves_it(
    org, server, start
) -> None:
    org.add_setup("Contacts")
    server.fake.valid_tokens = {"token-9"}
    org.oauth.revoked = True
    running = start(org.listener())
    wait_for(lambda: org.status() == "needs_reauth", what="needs_reauth")
    lease = Lease(org.redis, org.connection_id, seconds=1)
    wait_for(lambda: not running.listener.workers and lease.holder() is None, what="left alone")


def test_a_refusal_right_after_a_refresh_needs_re_consent(org, server, start) -> None:
    org.add_setup("Contacts")
    server.fake.valid_tokens = {"never"}  # refreshing gives token-2, refused as well
    start(org.listener())
    wait_for(lambda: org.status() == "needs_reauth", what="needs_reauth")
    assert org.oauth.calls == 1


def test_an_expired_replay_id_starts_at_the_tip_and_catches_the_setups_up(
    org, server, start
) -> None:
    setup_id = org.add_setup("Contacts")
    old = server.fake.publish(CONTACTS, contact_event([C1]))
    plan.save_position(org.store, [setup_id], CONTACTS, fake_pubsub.replay_bytes(old))
    plan.save_position(org.store, [setup_id], ACCOUNTS, fake_pubsub.replay_bytes(old))
    position = plan.load_position(org.store, [setup_id], CONTACTS)
    assert position is not None
    stored_at = position.stored_at
    server.fake.retained_from = old + 1  # purged: older than the retention
    running = start(org.listener())
    stream = running.stream(org.connection_id, CONTACTS)

    wait_for(lambda: stream.stats.catch_ups == 1 and stream.stats.keepalives)
    # The setup's object: a SystemModstamp catch-up since the id was stored, through the intake.
    marks = intake.take_catchups(org.redis, setup_id)
    assert marks == {"Contact": int(stored_at.timestamp() * 1000)}
    assert queue.pending_job_id(f"flush-{setup_id}", connection=org.redis) is not None
    # Another object's channel (Accounts for contacts): the setup's catch-up job.
    accounts = running.stream(org.connection_id, ACCOUNTS)
    wait_for(lambda: accounts.stats.catch_ups == 1)
    assert queue.pending_job_id(f"catch-up-{setup_id}", connection=org.redis) is not None
    refused, latest = subscribed(server)[:2]
    assert (refused.preset, latest.preset) == ("CUSTOM", "LATEST")

    replay = server.fake.publish(CONTACTS, contact_event([C2]))
    wait_for(lambda: stored_replay(org, setup_id) == replay)
    assert pending_ids(org, setup_id) == {C2}
    assert stream.stats.catch_ups == 1  # the new position is valid: no second catch-up


def test_resource_exhausted_backs_off_then_subscribes_again(org, server, start) -> None:
    setup_id = org.add_setup("Contacts")
    server.fake.fail_next(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "The maximum number of concurrent clients across all topics has been exceeded.",
        "sfdc.platform.eventbus.grpc.concurrent.client.limit.exceeded",
    )
    running = start(org.listener())
    streams = [running.stream(org.connection_id, channel) for channel in (CONTACTS, ACCOUNTS)]
    wait_for(lambda: all(s.stats.keepalives for s in streams), what="both streams flowing")
    # One of the two met the refusal, waited, and subscribed again.
    refused = [s for s in streams if "RESOURCE_EXHAUSTED" in (s.stats.last_error or "")]
    assert len(refused) == 1 and refused[0].stats.subscribes == 2
    replay = server.fake.publish(CONTACTS, contact_event([C1]))
    wait_for(lambda: stored_replay(org, setup_id) == replay)


def test_flow_control_never_has_more_than_a_batch_pending(org, server, start) -> None:
    setup_id = org.add_setup("Contacts")
    tuning = replace(FAST, batch=10, top_up_below=5)
    server.fake.max_batch = 3
    running = start(org.listener(tuning=tuning))
    stream = running.stream(org.connection_id, CONTACTS)
    wait_for(lambda: stream.stats.keepalives)
    ids = [to_18(f"003SB{n:010d}") for n in range(10, 35)]
    last = 0
    for n, record_id in enumerate(ids):
        last = server.fake.publish(CONTACTS, contact_event([record_id], key=f"tx-{n}"))
    wait_for(lambda: stored_replay(org, setup_id) == last, what="all 25 events")
    assert pending_ids(org, setup_id) == set(ids)
    asked = subscribed(server)[0].num_requested
    assert asked[0] == 10 and len(asked) > 1 and server.fake.max_pending_seen <= 10


def test_tls_with_the_configured_ca_bundle(org, start, tmp_path, db) -> None:
    files = ensure_certificates(tmp_path / "tls")
    credentials = grpc.ssl_server_credentials([(files.key.read_bytes(), files.cert.read_bytes())])
    fake = fake_pubsub.FakePubSub(keepalive_seconds=0.1)
    fake.add_topic(CONTACTS, SCHEMA_IDS["Contact"], CONTACT_SCHEMA)
    fake.add_topic(ACCOUNTS, SCHEMA_IDS["Account"], ACCOUNT_SCHEMA)
    secure = fake_pubsub.start(fake, credentials=credentials)
    try:
        org.settings = org.settings.replace(
            salesforce_pubsub_url=f"localhost:{secure.port}",
            salesforce_ca_bundle=str(files.ca_cert),
        )
        setup_id = org.add_setup("Contacts")
        running = start(org.listener())
        stream = running.stream(org.connection_id, CONTACTS)
        wait_for(lambda: stream.stats.keepalives, what="a keepalive over TLS")
        replay = fake.publish(CONTACTS, contact_event([C1]))
        wait_for(lambda: stored_replay(org, setup_id) == replay)
        running.close()
    finally:
        secure.close()


# -- one listener per connection -----------------------------------------------------------------


def test_a_second_listener_waits_while_the_first_holds_the_lease(org, server, start) -> None:
    org.add_setup("Contacts")
    first = start(org.listener(owner="first"))
    first.stream(org.connection_id, CONTACTS)
    second = start(org.listener(owner="second"))
    for _ in range(5):  # several of the second's steps and renewals of the first
        threading.Event().wait(FAST.renew_seconds)
        assert not second.listener.workers
    assert len(subscribed(server)) == 1
    assert org.redis.get(lease_key(org.connection_id)) == b"first"


def test_a_dead_holder_is_taken_over_when_its_lease_runs_out(org, server, start) -> None:
    setup_id = org.add_setup("Contacts")
    dead = org.listener(owner="dead")
    dead.step()  # takes the lease and starts streaming, then "dies": no more renewals
    assert dead.workers
    for worker in dead.workers.values():
        worker.stop()
    survivor = start(org.listener(owner="survivor"))
    wait_for(lambda: survivor.listener.workers, timeout=FAST.lease_seconds + 5, what="takeover")
    assert org.redis.get(lease_key(org.connection_id)) == b"survivor"
    stream = survivor.stream(org.connection_id, CONTACTS)
    wait_for(lambda: stream.stats.keepalives)
    replay = server.fake.publish(CONTACTS, contact_event([C1]))
    wait_for(lambda: stored_replay(org, setup_id) == replay)


def test_a_clean_stop_hands_over_at_once(org, server, start) -> None:
    org.add_setup("Contacts")
    first = start(org.listener(owner="first", tuning=replace(FAST, lease_seconds=60.0)))
    first.stream(org.connection_id, CONTACTS)
    second = start(org.listener(owner="second"))
    first.close()  # releases its lease: no waiting for the 60 s to run out
    wait_for(lambda: second.listener.workers, timeout=3, what="the hand-over")


def test_a_lost_lease_stops_the_streams(org, server, start) -> None:
    org.add_setup("Contacts")
    running = start(org.listener(owner="first"))
    running.stream(org.connection_id, CONTACTS)
    org.redis.set(lease_key(org.connection_id), "someone-else")  # expired and taken meanwhile
    wait_for(lambda: not running.listener.workers, what="the streams stopped")


def test_setups_joining_the_door_change_the_channels(org, server, start) -> None:
    org.add_setup("Contacts")
    running = start(org.listener())
    running.stream(org.connection_id, CONTACTS)
    server.fake.add_topic(LEADS, SCHEMA_IDS["Contact"], CONTACT_SCHEMA)
    lead_setup = org.add_setup("Leads", object_type="Lead")

    def lead_stream():
        worker = running.listener.workers.get(org.connection_id)
        return worker.streams.get(LEADS) if worker is not None else None

    stream = wait_for(lead_stream, what="the Lead channel")
    assert stream.setup_ids == (lead_setup,)
    assert set(running.listener.workers[org.connection_id].streams) == {
        CONTACTS,
        ACCOUNTS,
        LEADS,
    }


def test_sigterm_stops_the_listener_and_releases_the_lease(org, server) -> None:
    org.add_setup("Contacts")
    previous = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(0.8, lambda: os.kill(os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        run.serve(org.settings, org.store, org.redis, tuning=FAST, token_source=org.tokens)
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    assert subscribed(server)  # it was consuming
    assert org.redis.get(lease_key(org.connection_id)) is None


@pytest.mark.integration
def test_on_a_real_redis(org, server, start, real_redis) -> None:
    org.redis = real_redis
    setup_id = org.add_setup("Contacts")
    running = start(org.listener())
    stream = running.stream(org.connection_id, CONTACTS)
    wait_for(lambda: stream.stats.keepalives)
    replay = server.fake.publish(CONTACTS, contact_event([C1, C3]))
    wait_for(lambda: stored_replay(org, setup_id) == replay)
    assert pending_ids(org, setup_id) == {C1, C3}
