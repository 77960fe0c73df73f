"""Field mapping: a Salesforce record → the CC values a setup writes, and their two shapes.

The *values* of a record are one flat ``dict[str, str]`` keyed by JSON-import names (``email``,
``first_name``, ``job_title``, ``company_name``, ``work_phone``, ``mobile_phone``, ``home_phone``,
``street``, ``city``, ``state``, ``zip``, ``country``, ``cf:<name>``...). Every key the setup maps
is present, blank values as ``""``, so a value cleared in Salesforce changes the fingerprint. The
same values become a JSON-import row (:func:`import_row`) or a V3 PUT body (:func:`put_body`).

Pre-mapped fields (seed Step 3; DESIGN §5a "Mapped phones"):

============  ===================  ==============  =======================
CC key        Contact              Lead            Person Account
============  ===================  ==============  =======================
email         Email                Email           PersonEmail
first_name    FirstName            FirstName       FirstName
last_name     LastName             LastName        LastName
job_title     Title                Title           PersonTitle
company_name  Account.Name         Company         (none)
work_phone    Phone                Phone           Phone
mobile_phone  MobilePhone          MobilePhone     PersonMobilePhone
home_phone    HomePhone            (none)          PersonHomePhone
street...     MailingStreet...     Street...       PersonMailingStreet...
============  ===================  ==============  =======================

``company_name`` only with ``sync_company``, the address only with ``sync_address``. The address
is written as CC's primary address, kind ``home``: the import's unprefixed ``street``/``city``/...
keys are documented as that kind, and a Salesforce mailing address is where the person gets mail.
``field_map`` entries with direction ``sf_to_cc`` or ``both`` come last and override a pre-mapped
key they name (the seed: "you can override the standard fields"); they apply even when
``sync_company``/``sync_address`` is off, because the user asked for them by name.
``other_email_fields`` fill their ``cf:`` fields with the trimmed address, never the contact's
address. Values longer than CC allows are cut to CC's limit rather than failing the record.

Namespace rule (``namespace_prefix``): a custom Salesforce name the setup gives *without* a
namespace (a path segment ending in ``__c``, ``__r``, ``__pc`` or ``__pr`` whose stem has no
``__``, e.g. ``Foo__c``) is read as ``<ns>__Foo__c``; names that already carry a namespace
(``npe01__HomeEmail__c``) and standard fields are left alone. Salesforce's
``defaultNamespace`` call option would do the same but is ignored by Bulk API 2.0.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from middleware.sync.emails import normalise_email
from middleware.sync.fields import (
    ADDRESS_KIND,
    CC_ADDRESS_FIELDS,
    CC_INT_FIELDS,
    CC_MAX_LENGTHS,
    CC_PHONE_FIELDS,
    CC_SCALAR_FIELDS,
    CUSTOM_FIELD_MAX_LENGTH,
    CUSTOM_PREFIX,
)
from middleware.sync.options import SetupOptions

_CUSTOM_SUFFIXES = ("__c", "__r", "__pc", "__pr")
_INT_KEYS = frozenset(CC_INT_FIELDS)


@dataclass(frozen=True, slots=True)
class ObjectFields:
    """Where one Salesforce object type keeps the pre-mapped values."""

    email: str
    opted_out: str
    first_name: str
    last_name: str
    title: str
    company: str | None
    phones: Mapping[str, str]
    address: Mapping[str, str]
    extra: tuple[str, ...] = ()


OBJECT_FIELDS: dict[str, ObjectFields] = {
    "Contact": ObjectFields(
        email="Email",
        opted_out="HasOptedOutOfEmail",
        first_name="FirstName",
        last_name="LastName",
        title="Title",
        company="Account.Name",
        phones={"work_phone": "Phone", "mobile_phone": "MobilePhone", "home_phone": "HomePhone"},
        address={
            "street": "MailingStreet",
            "city": "MailingCity",
            "state": "MailingState",
            "zip": "MailingPostalCode",
            "country": "MailingCountry",
        },
    ),
    "Lead": ObjectFields(
        email="Email",
        opted_out="HasOptedOutOfEmail",
        first_name="FirstName",
        last_name="LastName",
        title="Title",
        company="Company",
        phones={"work_phone": "Phone", "mobile_phone": "MobilePhone"},
        address={
            "street": "Street",
            "city": "City",
            "state": "State",
            "zip": "PostalCode",
            "country": "Country",
        },
        extra=("IsConverted", "ConvertedContactId", "ConvertedAccountId", "ConvertedDate"),
    ),
    "Account": ObjectFields(
        email="PersonEmail",
        opted_out="PersonHasOptedOutOfEmail",
        first_name="FirstName",
        last_name="LastName",
        title="PersonTitle",
        company=None,
        phones={
            "work_phone": "Phone",
            "mobile_phone": "PersonMobilePhone",
            "home_phone": "PersonHomePhone",
        },
        address={
            "street": "PersonMailingStreet",
            "city": "PersonMailingCity",
            "state": "PersonMailingState",
            "zip": "PersonMailingPostalCode",
            "country": "PersonMailingCountry",
        },
        extra=("IsPersonAccount",),
    ),
}

SYSTEM_FIELDS = ("Id", "IsDeleted", "CreatedDate", "SystemModstamp")


def object_fields(setup: SetupOptions) -> ObjectFields:
    return OBJECT_FIELDS[setup.object_type]


def apply_namespace(sf_field: str, prefix: str | None) -> str:
    """``Foo__c`` → ``<prefix>__Foo__c`` (each path segment); see the module docstring."""
    if not prefix:
        return sf_field
    parts = []
    for part in sf_field.split("."):
        suffix = next((s for s in _CUSTOM_SUFFIXES if part.endswith(s)), None)
        if suffix and "__" not in part[: -len(suffix)]:
            part = f"{prefix}__{part}"
        parts.append(part)
    return ".".join(parts)


def get_field(record: Mapping[str, Any], path: str) -> Any:
    """A (possibly dotted, relationship) field of a SOQL record; ``None`` when absent."""
    if "." not in path:
        return record.get(path)
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def as_text(value: Any) -> str:
    """The text CC stores for a Salesforce value (booleans as ``true``/``false``)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def record_email(setup: SetupOptions, record: Mapping[str, Any]) -> str:
    return normalise_email(record.get(object_fields(setup).email))


def record_opted_out(setup: SetupOptions, record: Mapping[str, Any]) -> bool:
    return bool(record.get(object_fields(setup).opted_out))


def mapping_plan(setup: SetupOptions) -> tuple[tuple[str, tuple[str, ...], int | None], ...]:
    """The setup's mapping compiled once: ``(cc key, Salesforce field path, CC length limit)``."""
    spec = object_fields(setup)
    ns = setup.namespace_prefix
    pairs: list[tuple[str, str]] = [
        ("first_name", spec.first_name),
        ("last_name", spec.last_name),
        ("job_title", spec.title),
    ]
    if spec.company and setup.sync_company:
        pairs.append(("company_name", spec.company))
    pairs.extend(spec.phones.items())
    if setup.sync_address:
        pairs.extend(spec.address.items())
    for entry in setup.fields_to_cc:
        pairs.append((entry.cc_field, apply_namespace(entry.sf_field, ns)))
    for other in setup.other_email_fields:
        pairs.append((other.cc_field, apply_namespace(other.sf_field, ns)))
    compiled: dict[str, tuple[str, tuple[str, ...], int | None]] = {}
    for key, path in pairs:
        # A later entry for the same key wins: field_map overrides the pre-mapped default.
        compiled.pop(key, None)
        compiled[key] = (key, tuple(path.split(".")), _limit(key))
    return tuple(compiled.values())


def _limit(key: str) -> int | None:
    return CUSTOM_FIELD_MAX_LENGTH if key.startswith(CUSTOM_PREFIX) else CC_MAX_LENGTHS.get(key)


def map_record(
    setup: SetupOptions,
    record: Mapping[str, Any],
    compiled: tuple[tuple[str, tuple[str, ...], int | None], ...] | None = None,
) -> dict[str, str]:
    """The CC values this setup writes for ``record`` (flat import keys; see module docstring).

    Pass ``compiled`` (from :func:`mapping_plan`) when mapping many records of one setup.
    """
    values: dict[str, str] = {"email": normalise_email(record.get(object_fields(setup).email))}
    for key, path, limit in compiled if compiled is not None else mapping_plan(setup):
        if len(path) == 1:
            raw = record.get(path[0])
        else:
            raw = get_field(record, ".".join(path))
        text = raw.strip() if type(raw) is str else as_text(raw)
        values[key] = text[:limit] if limit is not None else text
    return values


def fingerprint(values: Mapping[str, Any]) -> str:
    """A stable hash of mapped values: independent of key order, sensitive to every value."""
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def soql_fields(setup: SetupOptions) -> list[str]:
    """Every Salesforce field the SF→CC job must SELECT for this setup, namespaced, no repeats."""
    spec = object_fields(setup)
    ns = setup.namespace_prefix
    names: list[str] = [*SYSTEM_FIELDS, spec.email, spec.opted_out, *spec.extra]
    names += [spec.first_name, spec.last_name, spec.title]
    if spec.company and setup.sync_company:
        names.append(spec.company)
    names += spec.phones.values()
    if setup.sync_address:
        names += spec.address.values()
    custom: list[str] = [e.sf_field for e in setup.fields_to_cc]
    custom += [e.sf_field for e in setup.other_email_fields]
    custom += [e.field for e in setup.checkbox_lists]
    names += [apply_namespace(name, ns) for name in custom]
    if (
        setup.campaign_lists is not None
        and setup.campaign_lists.from_campaigns
        and setup.object_type == "Account"
    ):
        names.append("PersonContactId")  # a Person Account's CampaignMembers name its contact
    return list(dict.fromkeys(names))


def custom_field_names(values: Iterable[str]) -> list[str]:
    """The CC custom field names (without ``cf:``) among value keys."""
    return [k[len(CUSTOM_PREFIX) :] for k in values if k.startswith(CUSTOM_PREFIX)]


def import_row(values: Mapping[str, str]) -> dict[str, Any]:
    """A ``contacts_json_import`` row. Blank phone and address parts are left out (an empty
    phone or street is not a value CC can store); blank names, titles and custom fields are sent
    as ``""`` so a value cleared in Salesforce is cleared in CC too."""
    row: dict[str, Any] = {}
    for key, value in values.items():
        if key in _INT_KEYS:
            if value.isdigit():
                row[key] = int(value)
        elif value or not (key in CC_PHONE_FIELDS or key in CC_ADDRESS_FIELDS):
            row[key] = value
    return row


def import_row_size(values: Mapping[str, str]) -> int:
    """Bytes the row adds to an import request body (its JSON plus a separator)."""
    return len(json.dumps(import_row(values), ensure_ascii=False).encode("utf-8")) + 2


def put_body(
    values: Mapping[str, str],
    *,
    custom_field_ids: Mapping[str, str],
    current_fields: Mapping[str, Any] | None = None,
    permission_to_send: str | None = None,
    list_ids: Iterable[str] | None = None,
) -> dict[str, Any]:
    """A V3 ``ContactPutRequest`` for the values.

    A PUT replaces every top-level property it omits with null, so top-level fields this setup
    does not map are copied from ``current_fields`` (what CC holds). Phones and the address are
    sent only when mapped (omitted sub-resources are kept by CC). ``permission_to_send`` is sent
    only when given: leaving it out keeps CC's consent state, including an unsubscribe's source.
    Custom fields CC does not have (no id) are left out; the planner warns about them.
    """
    email_address: dict[str, Any] = {"address": values["email"]}
    if permission_to_send:
        email_address["permission_to_send"] = permission_to_send
    body: dict[str, Any] = {"email_address": email_address, "update_source": "Account"}
    current = current_fields or {}
    for key in CC_SCALAR_FIELDS:
        if key in values:
            value: Any = values[key]
            if key in _INT_KEYS:
                value = int(value) if value.isdigit() else None
            # Nothing in the V3 contract is nullable: a blank value is cleared by leaving the
            # property out, which PUT's full-replace semantics turn into "no value".
            if value not in ("", None):
                body[key] = value
        elif current.get(key) is not None:
            body[key] = current[key]
    phones = [
        {"phone_number": values[key], "kind": kind}
        for key, kind in CC_PHONE_FIELDS.items()
        if values.get(key)
    ]
    if any(key in values for key in CC_PHONE_FIELDS):
        body["phone_numbers"] = phones
    if any(key in values for key in CC_ADDRESS_FIELDS):
        address = {prop: values[key] for key, prop in CC_ADDRESS_FIELDS.items() if values.get(key)}
        body["street_addresses"] = [{"kind": ADDRESS_KIND, **address}] if address else []
    custom = [
        {"custom_field_id": custom_field_ids[name], "value": values[CUSTOM_PREFIX + name]}
        for name in sorted(custom_field_names(values))
        if name in custom_field_ids
    ]
    if custom:
        body["custom_fields"] = custom
    if list_ids is not None:
        body["list_memberships"] = list(list_ids)
    return body
