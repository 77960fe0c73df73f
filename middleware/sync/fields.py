"""The Constant Contact field vocabulary a setup may name (shared by schemas and the mapping)."""

from __future__ import annotations

import re

# Top-level scalar properties of a V3 contact; a PUT nulls any of these it omits. The one list
# of them: the mapping, the planner's CC contacts, the executor and the CC client import it.
CC_SCALAR_FIELDS = (
    "first_name",
    "last_name",
    "job_title",
    "company_name",
    "birthday_month",
    "birthday_day",
    "anniversary",
)
# The ones CC holds as integers.
CC_INT_FIELDS = ("birthday_month", "birthday_day")
# Phone import keys and the V3 ``phone_numbers[].kind`` each stands for.
CC_PHONE_FIELDS = {
    "work_phone": "work",
    "mobile_phone": "mobile",
    "home_phone": "home",
    "other_phone": "other",
}
# Import keys of the primary (kind ``home``) street address and their V3 property names.
CC_ADDRESS_FIELDS = {
    "street": "street",
    "city": "city",
    "state": "state",
    "zip": "postal_code",
    "country": "country",
}
ADDRESS_KIND = "home"

CC_CONTACT_FIELDS = frozenset((*CC_SCALAR_FIELDS, *CC_PHONE_FIELDS, *CC_ADDRESS_FIELDS))

# CC's maximum lengths (api-notes §3.3); longer Salesforce values are cut to fit.
CC_MAX_LENGTHS = {
    "first_name": 50,
    "last_name": 50,
    "job_title": 50,
    "company_name": 50,
    "anniversary": 10,
    "work_phone": 25,
    "mobile_phone": 25,
    "home_phone": 25,
    "other_phone": 25,
    "street": 255,
    "city": 50,
    "state": 50,
    "zip": 50,
    "country": 50,
}
CUSTOM_FIELD_MAX_LENGTH = 255
CUSTOM_PREFIX = "cf:"

# A CC custom field ``name`` is its label with blanks turned into underscores (≤ 50 chars).
_CUSTOM_NAME = re.compile(r"^[^\s]{1,50}$")


def is_custom_field(cc_field: str) -> bool:
    return cc_field.startswith(CUSTOM_PREFIX)


def is_valid_custom_field(cc_field: str) -> bool:
    """``cf:<name>`` with a non-empty, blank-free name of at most 50 characters."""
    return is_custom_field(cc_field) and bool(_CUSTOM_NAME.match(cc_field[len(CUSTOM_PREFIX) :]))


def is_valid_cc_field(cc_field: str) -> bool:
    return cc_field in CC_CONTACT_FIELDS or is_valid_custom_field(cc_field)
