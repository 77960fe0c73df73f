"""Salesforce record ids: validation, the case-safe 18-character form, and key prefixes.

A 15-character id is case-sensitive; the 18-character form appends three checksum characters that
encode which of the first 15 are upper case, so it survives case-insensitive systems. We always
carry ids in the 18-character form so a record has one spelling in Redis sets and the store.
"""

from __future__ import annotations

import re

_ALNUM = re.compile(r"[A-Za-z0-9]+")
_WILDCARD = re.compile(r"[A-Za-z0-9]{3}\*")
_CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"

# Key prefixes (the first three characters) of the objects this product syncs. Prefixes are
# fixed for standard objects across orgs; custom objects get per-org prefixes, not listed here.
KEY_PREFIXES: dict[str, str] = {
    "001": "Account",
    "003": "Contact",
    "00Q": "Lead",
    "701": "Campaign",
    "00v": "CampaignMember",
    "00T": "Task",
    "005": "User",
}


class InvalidId(ValueError):
    """The string is not a Salesforce record id."""


def checksum(id15: str) -> str:
    """The three-character suffix that makes a 15-character id case-safe."""
    suffix = []
    for start in (0, 5, 10):
        bits = 0
        for offset, char in enumerate(id15[start : start + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << offset
        suffix.append(_CHECKSUM_ALPHABET[bits])
    return "".join(suffix)


def to_18(record_id: str) -> str:
    """Validate `record_id` and return its 18-character form; raise InvalidId with the reason."""
    if not isinstance(record_id, str):
        raise InvalidId("a Salesforce id must be a string")
    if len(record_id) not in (15, 18) or not _ALNUM.fullmatch(record_id):
        raise InvalidId(
            f"not a Salesforce id (expected 15 or 18 letters and digits, got {len(record_id)} "
            "characters)"
        )
    base = record_id[:15]
    expected = checksum(base)
    if len(record_id) == 18 and record_id[15:].upper() != expected:
        raise InvalidId("not a Salesforce id (the 18-character checksum does not match)")
    return base + expected


def is_valid(record_id: str) -> bool:
    try:
        to_18(record_id)
    except InvalidId:
        return False
    return True


def is_wildcard(record_id: str) -> bool:
    """True for the `001*` form Salesforce sends after some field type conversions."""
    return isinstance(record_id, str) and bool(_WILDCARD.fullmatch(record_id))


def entity_for(record_id: str) -> str | None:
    """The standard object an id belongs to, from its key prefix, if we know it."""
    return KEY_PREFIXES.get(record_id[:3])
