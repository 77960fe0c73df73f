"""Salesforce id validation and the case-safe 18-character form."""

from __future__ import annotations

import pytest

from middleware.salesforce import ids


@pytest.mark.parametrize(
    ("id15", "id18"),
    [
        # Checksums worked by hand from the case of each 5-character chunk.
        ("001000000000000", "001000000000000AAA"),
        ("00DSB0000000001", "00DSB00000000012AA"),
        ("A0000B0000C0000", "A0000B0000C0000BBB"),
        ("AAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAA555"),
    ],
)
def test_checksum(id15, id18) -> None:
    assert ids.to_18(id15) == id18
    assert ids.to_18(id18) == id18
    assert ids.to_18(id18[:15] + id18[15:].lower()) == id18


@pytest.mark.parametrize("bad", ["", "003", "003*", "0035e00000AbCd!", "001000000000000AAB", 5])
def test_invalid_ids_are_rejected(bad) -> None:
    assert not ids.is_valid(bad)


def test_wildcards_and_prefixes() -> None:
    assert ids.is_wildcard("001*") and not ids.is_wildcard("0010*")
    assert ids.entity_for("00Q000000000000") == "Lead"
    assert ids.entity_for("a01000000000000") is None
