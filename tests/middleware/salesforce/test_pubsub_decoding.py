"""Pub/Sub change events: Avro decoded with the topic schema, bitmaps named, hints as JSON's."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from middleware.salesforce import pubsub
from middleware.salesforce.events import OVERFLOW, hint_from_cdc, parse_events
from middleware.salesforce.ids import to_18
from tests.middleware.salesforce.cdc_avro import (
    CONTACT_SCHEMA,
    bitmap,
    contact_event,
    encode,
    header,
)

CONTACT_1 = to_18("003SB0000000001")
CONTACT_2 = to_18("003SB0000000002")
CHANNEL = "/data/ContactChangeEvent"
REPLAY = (1234).to_bytes(8, "big")


@pytest.fixture(scope="module")
def schema() -> pubsub.EventSchema:
    return pubsub.EventSchema.from_json("S1", json.dumps(CONTACT_SCHEMA))


def hint_of(schema: pubsub.EventSchema, payload: bytes, replay: bytes = REPLAY):
    return pubsub.event_hint(
        schema, payload, channel=CHANNEL, replay_id=replay, call_client="ctct-sync"
    )


def test_the_schema_knows_field_positions_and_compound_parts(schema) -> None:
    assert schema.fields[:3] == ("ChangeEventHeader", "AccountId", "Name")
    assert schema.parts[2][:3] == ("Salutation", "FirstName", "LastName")
    # MailingAddress refers to the Address record by name: its parts are still found.
    assert schema.parts[4] == schema.parts[3]
    assert schema.parts[4][0] == "Street"
    assert 0 not in schema.parts  # the header is not a compound field


@pytest.mark.parametrize(
    ("entries", "names"),
    [
        ([], []),
        ([bitmap([6, 11])], ["Email", "LastModifiedDate"]),
        (["0x840"], ["Email", "LastModifiedDate"]),  # the same, as Salesforce writes it
        (["0x0840"], ["Email", "LastModifiedDate"]),  # leading zeros change nothing
        ([bitmap([14])], ["Loyalty_Tier__c"]),
        # A compound field's components, named as the JSON form names them; the parent's own bit
        # gives way to its components.
        (
            [bitmap([2, 11]), bitmap([1, 2], parent=2)],
            ["Name.FirstName", "Name.LastName", "LastModifiedDate"],
        ),
        (
            [bitmap([11]), bitmap([0, 1], parent=4)],
            ["MailingAddress.Street", "MailingAddress.City", "LastModifiedDate"],
        ),
        # A compound named without a component bitmap keeps its own name.
        ([bitmap([3])], ["OtherAddress"]),
    ],
)
def test_bitmaps_become_field_names(schema, entries, names) -> None:
    assert pubsub.bitmap_names(schema, entries) == names


@pytest.mark.parametrize(
    "entries",
    [
        [bitmap([15])],  # past the last field
        [bitmap([0], parent=6)],  # Email is not a compound field
        [bitmap([12], parent=2)],  # Name has six components
        ["Email"],  # a name, not a bitmap
        ["0x"],
    ],
)
def test_a_bitmap_that_does_not_fit_the_schema_is_refused(schema, entries) -> None:
    with pytest.raises(ValueError):
        pubsub.bitmap_names(schema, entries)


def test_an_update_decodes_to_the_json_form(schema) -> None:
    payload = contact_event(
        [CONTACT_1],
        changed=[bitmap([2, 6, 11]), bitmap([1], parent=2)],
        nulled=[bitmap([5])],
        fields={"Email": "new@example.org", "Name": {"FirstName": "Ada"}},
    )
    record = pubsub.named_payload(schema, pubsub.decode_payload(schema, payload))
    head = record["ChangeEventHeader"]
    assert head["changedFields"] == ["Name.FirstName", "Email", "LastModifiedDate"]
    assert head["nulledFields"] == ["Phone"]
    assert record["Email"] == "new@example.org"
    assert record["Name"]["FirstName"] == "Ada" and record["Name"]["LastName"] is None


def test_an_update_hint_is_the_one_the_json_door_makes(schema) -> None:
    changed = [bitmap([6, 11])]
    hint = hint_of(schema, contact_event([CONTACT_1], changed=changed))
    json_payload = {
        "ChangeEventHeader": header("Contact", [CONTACT_1], changed=["Email", "LastModifiedDate"]),
        "Email": "a@example.org",
    }
    from_json = parse_events(
        {
            "data": {"schema": "S1", "payload": json_payload, "event": {"replayId": 1234}},
            "channel": CHANNEL,
        },
        call_client="ctct-sync",
    )
    assert [hint] == from_json
    assert hint.event_key == f"{CHANNEL}#1234"  # the CometD replay number: one key, both doors
    assert hint.changed_fields == ("Email", "LastModifiedDate")
    assert hint.commit_timestamp == datetime(2025, 11, 26, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("change", "is_gap", "is_delete"),
    [
        ("CREATE", False, False),
        ("DELETE", False, True),
        ("UNDELETE", False, False),
        ("GAP_CREATE", True, False),
        ("GAP_UPDATE", True, False),
        ("GAP_DELETE", True, True),
    ],
)
def test_change_types(schema, change, is_gap, is_delete) -> None:
    hint = hint_of(schema, contact_event([CONTACT_1, CONTACT_2], change))
    assert hint.change_type == change and hint.record_ids == (CONTACT_1, CONTACT_2)
    assert (hint.is_gap, hint.is_delete, hint.catch_up) == (is_gap, is_delete, False)


def test_an_overflow_asks_for_a_catch_up_of_the_entity(schema) -> None:
    hint = hint_of(schema, contact_event([], OVERFLOW))
    assert hint.catch_up and hint.record_ids == () and hint.entity == "Contact"


def test_wildcard_ids_are_an_overflow(schema) -> None:
    hint = hint_of(schema, contact_event(["003*"]))
    assert hint.catch_up and hint.record_ids == ()


@pytest.mark.parametrize(
    ("origin", "echo"),
    [
        ("com/salesforce/api/rest/66.0;client=ctct-sync", True),
        ("com/salesforce/api/soap/60.0;client=SfdcInternalAPI/", False),
        ("", False),
    ],
)
def test_our_own_writes_are_echoes(schema, origin, echo) -> None:
    assert hint_of(schema, contact_event([CONTACT_1], origin=origin)).is_own_echo is echo


def test_a_bitmap_that_does_not_fit_leaves_the_fields_unknown_but_keeps_the_ids(schema) -> None:
    hint = hint_of(schema, contact_event([CONTACT_1], changed=[bitmap([40])]))
    assert hint.record_ids == (CONTACT_1,) and hint.changed_fields is None


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xff\xff\xff",
        b"not avro at all, just some text that is long enough",
        contact_event([CONTACT_1]) + b"\x00",  # bytes left over: another schema wrote it
        contact_event([CONTACT_1])[:-3],  # cut short
    ],
)
def test_an_undecodable_payload_is_refused(schema, payload) -> None:
    with pytest.raises(pubsub.UndecodableEvent):
        hint_of(schema, payload)


def test_a_decoded_event_without_valid_ids_is_refused(schema) -> None:
    with pytest.raises(pubsub.UndecodableEvent, match="recordIds"):
        hint_of(schema, contact_event(["not-an-id"]))


def test_a_record_without_a_header_is_refused() -> None:
    plain = {"type": "record", "name": "X", "fields": [{"name": "Email", "type": "string"}]}
    schema = pubsub.EventSchema.from_json("X", json.dumps(plain))
    with pytest.raises(pubsub.UndecodableEvent, match="ChangeEventHeader"):
        hint_of(schema, encode(plain, {"Email": "a@example.org"}))


@pytest.mark.parametrize("text", ["{", '"string"', '{"type": "record"}'])
def test_a_schema_that_does_not_parse_is_refused(text) -> None:
    with pytest.raises(pubsub.UndecodableEvent):
        pubsub.EventSchema.from_json("bad", text)


def test_replay_ids_read_as_big_endian_numbers() -> None:
    assert pubsub.replay_number((1234).to_bytes(8, "big")) == 1234
    assert pubsub.replay_number(b"") is None


def test_the_schema_cache_fetches_each_id_once() -> None:
    fetched: list[str] = []

    def fetch(schema_id: str) -> str:
        fetched.append(schema_id)
        return json.dumps(CONTACT_SCHEMA)

    cache = pubsub.SchemaCache(fetch)
    first = cache.get("S1")
    assert cache.get("S1") is first and cache.get("S2") is not first
    assert fetched == ["S1", "S2"] and len(cache) == 2


def test_the_json_entry_point_reads_the_same_payload() -> None:
    hint = hint_from_cdc(
        {"ChangeEventHeader": header("Contact", [CONTACT_1])},
        call_client="ctct-sync",
        channel=CHANNEL,
        replay_id=7,
    )
    assert hint.event_key == f"{CHANNEL}#7" and hint.replay_id == 7
