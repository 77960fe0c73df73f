"""Change-event bodies in each accepted form → ChangeHints; malformed bodies name the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from marshmallow import EXCLUDE, Schema, ValidationError, fields, missing

from middleware.salesforce.events import ChangeHint, InvalidEvents, parse_events
from middleware.salesforce.ids import to_18
from schemas.salesforce_events import ReplayField, StringListField

CONTACT_1 = to_18("0035e00000AbCdE")
CONTACT_2 = to_18("0035e00000XyZwV")
LEAD = to_18("00Q5e00000LeAdZ")
ACCOUNT = to_18("0015e00000AcCnT")
TX = "00006bec-ce66-0611-9018-30a98446c9f2"
PE = {"name": "Contact_Sync__e", "id_field": "Record_Id__c"}


def header(entity="Contact", ids=(CONTACT_1,), change="UPDATE", origin="", seq=1, **extra):
    return {
        "entityName": entity,
        "recordIds": list(ids),
        "changeType": change,
        "changeOrigin": origin,
        "transactionKey": TX,
        "sequenceNumber": seq,
        "commitTimestamp": 1714156685000,
        "commitNumber": 1100670838951,
        "commitUser": "0055f000005mc66AAA",
        "changedFields": extra.pop("changed", []),
        "nulledFields": [],
        "diffFields": [],
        **extra,
    }


def payload(**kw):
    return {"ChangeEventHeader": header(**kw), "Email": "someone@example.org", "Extra__c": 1}


def envelope(body, replay=42, channel="/data/ContactChangeEvent"):
    return {
        "data": {"schema": "abc", "payload": body, "event": {"replayId": replay}},
        "channel": channel,
    }


def one(body, **kw) -> ChangeHint:
    hints = parse_events(body, call_client="ctct-sync", **kw)
    assert len(hints) == 1
    return hints[0]


@pytest.mark.parametrize(
    ("change", "ids", "is_gap", "catch_up", "is_delete"),
    [
        ("CREATE", (CONTACT_1,), False, False, False),
        ("UPDATE", (CONTACT_1,), False, False, False),
        ("DELETE", (CONTACT_1,), False, False, True),
        ("UNDELETE", (CONTACT_1,), False, False, False),
        ("GAP_CREATE", (CONTACT_1,), True, False, False),
        ("GAP_UPDATE", (CONTACT_1, CONTACT_2), True, False, False),
        ("GAP_DELETE", (CONTACT_1,), True, False, True),
        ("GAP_UNDELETE", (CONTACT_1,), True, False, False),
        ("GAP_OVERFLOW", (), False, True, False),
    ],
)
def test_change_types(change, ids, is_gap, catch_up, is_delete) -> None:
    hint = one(envelope(payload(change=change, ids=ids)))
    assert hint.change_type == change
    assert hint.record_ids == ids
    assert (hint.is_gap, hint.catch_up, hint.is_delete) == (is_gap, catch_up, is_delete)
    assert hint.entity == "Contact"
    assert hint.event_key == "/data/ContactChangeEvent#42"
    assert hint.commit_timestamp == datetime.fromtimestamp(1714156685, UTC)


def test_bare_payload_keys_on_transaction_and_sequence() -> None:
    hint = one(payload(changed=["Email", "LastModifiedDate"]))
    assert hint.event_key == f"Contact:{TX}:1"
    assert hint.replay_id is None and hint.channel is None
    assert hint.changed_fields == ("Email", "LastModifiedDate")


def test_flat_cometd_form_without_data_wrapper() -> None:
    body = {
        "schema": "s",
        "payload": payload(),
        "event": {"replayId": 7},
        "channel": "/data/ContactChangeEvent",
    }
    hint = one(body)
    assert hint.event_key == "/data/ContactChangeEvent#7"


def test_multi_id_event_keeps_every_id_once_in_18_char_form() -> None:
    fifteen = "0035e00000AbCdE"
    hint = one(payload(ids=[fifteen, CONTACT_2, CONTACT_1]))
    assert hint.record_ids == (CONTACT_1, CONTACT_2)


def test_lead_conversion_is_one_transaction_of_several_hints() -> None:
    batch = [
        envelope(
            payload(entity="Account", ids=[ACCOUNT], change="CREATE", seq=1),
            100,
            "/data/AccountChangeEvent",
        ),
        envelope(payload(entity="Contact", ids=[CONTACT_1], change="CREATE", seq=2), 101),
        envelope(
            payload(
                entity="Lead",
                ids=[LEAD],
                change="UPDATE",
                seq=3,
                changed=["Status", "IsConverted", "ConvertedContactId"],
            ),
            102,
            "/data/LeadChangeEvent",
        ),
    ]
    hints = parse_events(json.dumps(batch), call_client="ctct-sync")
    assert [(h.entity, h.change_type, h.sequence_number) for h in hints] == [
        ("Account", "CREATE", 1),
        ("Contact", "CREATE", 2),
        ("Lead", "UPDATE", 3),
    ]
    assert {h.transaction_key for h in hints} == {TX}
    assert len({h.event_key for h in hints}) == 3
    assert "IsConverted" in (hints[2].changed_fields or ())


@pytest.mark.parametrize(
    ("origin", "echo"),
    [
        ("com/salesforce/api/rest/66.0;client=ctct-sync", True),
        ("com/salesforce/api/bulkapi/66.0;client=ctct-sync/", True),
        ("com/salesforce/api/soap/60.0;client=SfdcInternalAPI/", False),
        ("com/salesforce/api/rest/66.0;client=ctct-sync-other", False),
        ("", False),
        (None, False),
    ],
)
def test_echo_detection(origin, echo) -> None:
    assert one(payload(origin=origin)).is_own_echo is echo


def test_wildcard_ids_become_a_catch_up_for_the_entity() -> None:
    hint = one(payload(change="UPDATE", ids=["003*"]))
    assert hint.catch_up and hint.record_ids == ()
    assert hint.entity == "Contact"


def test_batch_forms_events_key_and_array() -> None:
    events = [payload(ids=[CONTACT_1]), envelope(payload(ids=[CONTACT_2]))]
    a = parse_events({"events": events}, call_client="ctct-sync")
    b = parse_events(events, call_client="ctct-sync")
    assert a == b
    assert [h.record_ids for h in a] == [(CONTACT_1,), (CONTACT_2,)]


def test_pubsub_bitmaps_leave_changed_fields_unknown() -> None:
    assert one(payload(changed=["0x650004E0", "4-0x10"])).changed_fields is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (CONTACT_1, (("Contact", (CONTACT_1,)),)),
        (f"{CONTACT_1}, {CONTACT_2}", (("Contact", (CONTACT_1, CONTACT_2)),)),
        ([CONTACT_1, LEAD], (("Contact", (CONTACT_1,)), ("Lead", (LEAD,)))),
    ],
)
def test_platform_event_one_and_several_ids(value, expected) -> None:
    body = {
        "data": {
            "schema": "s",
            "payload": {
                "CreatedDate": "2026-11-26T10:30:00.000Z",
                "EventUuid": "e-1",
                "Record_Id__c": value,
            },
            "event": {"replayId": 9},
        },
        "channel": "/event/Contact_Sync__e",
    }
    hints = parse_events(body, call_client="ctct-sync", platform_event=PE)
    assert tuple((h.entity, h.record_ids) for h in hints) == expected
    assert all(h.source == "platform_event" and not h.is_own_echo for h in hints)
    assert hints[0].commit_timestamp == datetime(2026, 11, 26, 10, 30, tzinfo=UTC)
    keys = [h.event_key for h in hints]
    assert len(set(keys)) == len(keys) and all(
        k.startswith("/event/Contact_Sync__e#9") for k in keys
    )


def test_bare_platform_event_payload_keys_on_event_uuid() -> None:
    hint = one({"EventUuid": "u-1", "Record_Id__c": CONTACT_1}, platform_event=PE)
    assert hint.event_key == "Contact_Sync__e:u-1"


def test_platform_event_with_custom_object_needs_configured_entity() -> None:
    custom = to_18("a015e00000CuStM")
    with pytest.raises(InvalidEvents) as exc:
        one({"Record_Id__c": custom}, platform_event=PE)
    assert exc.value.field == "Record_Id__c"
    hint = one({"Record_Id__c": custom}, platform_event={**PE, "entity": "Member__c"})
    assert hint.entity == "Member__c"


def test_hint_round_trips_through_json() -> None:
    hint = one(envelope(payload(changed=["Email"])))
    assert ChangeHint.from_dict(json.loads(json.dumps(hint.as_dict()))) == hint


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ("{not json", "(body)"),
        ("42", "(body)"),
        ([], "(body)"),
        ({"events": {}}, "events"),
        ([17], "[0]"),
        ({"Email": "x@example.org"}, "(body)"),
        (
            {"ChangeEventHeader": {"recordIds": [CONTACT_1], "changeType": "UPDATE"}},
            "ChangeEventHeader.entityName",
        ),
        (payload(change="MERGE"), "ChangeEventHeader.changeType"),
        (payload(ids=["003-not-an-id"]), "ChangeEventHeader.recordIds[0]"),
        (payload(ids=[CONTACT_1[:15] + "ZZZ"]), "ChangeEventHeader.recordIds[0]"),
        (payload(change="UPDATE", ids=[]), "ChangeEventHeader.recordIds"),
        (envelope(payload(), channel="data/Contact"), "channel"),
        ({"data": {"payload": "x"}, "channel": "/data/ContactChangeEvent"}, "data.payload"),
        (envelope(payload(ids=[CONTACT_1, "bad"])), "data.payload.ChangeEventHeader.recordIds[1]"),
        ({"events": [payload(), payload(change="NOPE")]}, "events[1].ChangeEventHeader.changeType"),
        (
            {"data": {"payload": {"Record_Id__c": CONTACT_1}}, "channel": "/event/Other__e"},
            "channel",
        ),
        ({"Record_Id__c": "003x"}, "Record_Id__c[0]"),
        ({"Record_Id__c": f"{CONTACT_1},nope"}, "Record_Id__c[1]"),
        ({"Record_Id__c": ""}, "Record_Id__c"),
    ],
)
def test_malformed_bodies_name_the_field(body, path) -> None:
    with pytest.raises(InvalidEvents) as exc:
        parse_events(body, call_client="ctct-sync", platform_event=PE)
    assert path in exc.value.errors, exc.value.errors
    assert exc.value.errors[path]
    assert path in str(exc.value)


def test_every_bad_event_of_a_batch_is_named() -> None:
    with pytest.raises(InvalidEvents) as exc:
        parse_events([payload(change="X"), payload(), payload(ids=["bad"])], call_client="c")
    assert set(exc.value.errors) == {
        "[0].ChangeEventHeader.changeType",
        "[2].ChangeEventHeader.recordIds[0]",
    }


def test_bad_platform_event_config_is_named() -> None:
    with pytest.raises(InvalidEvents) as exc:
        parse_events(
            payload(), call_client="c", platform_event={"name": "NoSuffix", "id_field": "X__c"}
        )
    assert exc.value.field == "platform_event.name"


def test_events_without_a_real_id_have_no_dedupe_key() -> None:
    """No replayId, transaction key or EventUuid: no key (a body digest dropped real changes)."""
    bare = payload(transactionKey=None, seq=None)
    assert one(bare).event_key is None
    assert one({"Record_Id__c": CONTACT_1}, platform_event=PE).event_key is None
    several = one({"Record_Id__c": [CONTACT_1]}, platform_event=PE)
    assert several.event_key is None
    hints = parse_events(
        {"Record_Id__c": [CONTACT_1, LEAD]}, call_client="ctct-sync", platform_event=PE
    )
    assert [h.event_key for h in hints] == [None, None]
    assert ChangeHint.from_dict(json.loads(json.dumps(one(bare).as_dict()))).event_key is None


@pytest.mark.parametrize("stamp", [10**30, 2**63, 253_402_300_800_000, -5])
def test_an_impossible_commit_timestamp_names_the_field(stamp) -> None:
    with pytest.raises(InvalidEvents) as exc:
        one(envelope(payload(commitTimestamp=stamp)))
    assert exc.value.field == "data.payload.ChangeEventHeader.commitTimestamp"


def test_the_last_millisecond_of_year_9999_is_a_commit_time() -> None:
    hint = one(payload(commitTimestamp=253_402_300_799_999))
    assert hint.commit_timestamp is not None and hint.commit_timestamp.year == 9999


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"ChangeEventHeader": NaN}', "NaN, which is not a JSON number"),
        (b"\xff\xfe\x00", "not"),
    ],
)
def test_bodies_python_would_choke_on_are_invalid_events(body, why) -> None:
    with pytest.raises(InvalidEvents) as exc:
        parse_events(body, call_client="ctct-sync")
    assert why in str(exc.value)


# The hot path's own fields load exactly what the marshmallow fields they stand for load.
_ODD_VALUES = [None, 5, 5.5, "5", "x", True, b"raw", [], {}, (), {"replayId": 3},
               {"replayId": "3", "extra": 1}, {"replayId": None}, {"replayId": "z"}, {"x": 1},
               ["a", "b"], ["a", None, 3, {"a": 1}, ["b"], b"\xff", b"ok"], ("a", 1)]  # fmt: skip


def _outcome(field: fields.Field, value: object) -> object:
    try:
        return ("ok", field.deserialize(value))
    except ValidationError as exc:
        return ("error", exc.messages, exc.valid_data)


class _Replay(Schema):
    class Meta:
        unknown = EXCLUDE

    replayId = fields.Integer(required=True, strict=False)


@pytest.mark.parametrize("value", [*_ODD_VALUES, missing])
def test_the_string_list_field_loads_as_a_list_of_strings(value: object) -> None:
    kwargs = {"load_default": list, "allow_none": True}
    expected = _outcome(fields.List(fields.String(), **kwargs), value)  # type: ignore[arg-type]
    assert _outcome(StringListField(**kwargs), value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [*_ODD_VALUES, missing])
def test_the_replay_field_loads_as_the_nested_schema(value: object) -> None:
    kwargs = {"load_default": None, "allow_none": True}
    expected = _outcome(fields.Nested(_Replay, **kwargs), value)  # type: ignore[arg-type]
    assert _outcome(ReplayField(**kwargs), value) == expected  # type: ignore[arg-type]
