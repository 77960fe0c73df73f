"""Outbound Message parsing: one hint per notification, keyed by the notification id; org ids."""

from __future__ import annotations

import pytest

from middleware.salesforce.ids import to_18
from middleware.salesforce.outbound import InvalidMessage, parse, same_org
from tests.middleware.salesforce.outbound_samples import message, notification


def test_each_notification_is_a_hint_keyed_by_its_id() -> None:
    account = to_18("001SB0000000001")
    parsed = parse(message(notification(1), notification(2, record_id=account, sobject="Account")))
    assert parsed.organization_id == "00DSB00000000012AA"
    assert parsed.action_id == "04kSB0000000001AAA"
    first, second = parsed.hints()
    assert (first.entity, first.record_ids) == ("Contact", (to_18("003SB0000000001"),))
    assert first.event_key == "om:04lSB0000000000001"
    assert (first.change_type, first.is_own_echo, first.source) == ("UPDATE", False, "outbound")
    assert first.changed_fields is None and first.commit_timestamp is None
    assert (second.entity, second.record_ids) == ("Account", (account,))


def test_a_15_character_record_id_becomes_the_18_character_form() -> None:
    (hint,) = parse(message(notification(1, record_id="003SB0000000001"))).hints()
    assert hint.record_ids == (to_18("003SB0000000001"),)


@pytest.mark.parametrize(
    ("given", "ours", "same"),
    [
        ("00DSB0000000001", "00DSB00000000012AA", True),
        ("00DSB00000000012AA", "00DSB0000000001", True),
        ("00DSB00000000012AA", "00DSB00000000012AA", True),
        ("00dsb0000000001", "00DSB0000000001", False),  # the 15-character id is case-sensitive
        ("00DSB0000000002", "00DSB0000000001", False),
        ("00DSB000000000", "00DSB0000000001", False),
        ("", "00DSB0000000001", False),
        ("00DSB0000000001", None, False),
    ],
)
def test_org_ids_compare_in_both_forms(given: str, ours: str | None, same: bool) -> None:
    assert same_org(given, ours) is same


def test_a_dtd_is_forbidden_not_just_malformed() -> None:
    with pytest.raises(InvalidMessage) as info:
        parse(b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>')
    assert info.value.forbidden
    with pytest.raises(InvalidMessage) as info:
        parse(b"<x>")
    assert not info.value.forbidden
