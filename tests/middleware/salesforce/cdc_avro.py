"""Change events as Salesforce's Pub/Sub API sends them: Avro bytes with a CDC topic schema.

The schemas follow the shape Salesforce publishes for `/data/<Object>ChangeEvent` (a
`ChangeEventHeader` record first; every record field nullable; compound Name and Address fields
as nested records, the second Address a reference by name); the tests write events with fastavro
and hand the listener bytes, as the real server would.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import Any

import fastavro

NS = "com.sforce.eventbus"
CHANGE_TYPES = [
    "CREATE",
    "UPDATE",
    "DELETE",
    "UNDELETE",
    "GAP_CREATE",
    "GAP_UPDATE",
    "GAP_DELETE",
    "GAP_UNDELETE",
    "GAP_OVERFLOW",
    "SNAPSHOT",
]
HEADER_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "ChangeEventHeader",
    "namespace": NS,
    "fields": [
        {"name": "entityName", "type": "string"},
        {"name": "recordIds", "type": {"type": "array", "items": "string"}},
        {
            "name": "changeType",
            "type": {
                "type": "enum",
                "name": "ChangeType",
                "namespace": NS,
                "symbols": CHANGE_TYPES,
            },
        },
        {"name": "changeOrigin", "type": "string"},
        {"name": "transactionKey", "type": "string"},
        {"name": "sequenceNumber", "type": "int"},
        {"name": "commitTimestamp", "type": "long"},
        {"name": "commitNumber", "type": "long"},
        {"name": "commitUser", "type": "string"},
        {"name": "nulledFields", "type": {"type": "array", "items": "string"}},
        {"name": "diffFields", "type": {"type": "array", "items": "string"}},
        {"name": "changedFields", "type": {"type": "array", "items": "string"}},
    ],
}


def _nullable(type_: Any) -> list[Any]:
    return ["null", type_]


def _field(name: str, type_: Any = "string") -> dict[str, Any]:
    return {"name": name, "type": _nullable(type_), "default": None}


ADDRESS = {
    "type": "record",
    "name": "Address",
    "namespace": NS,
    "fields": [
        _field(n)
        for n in ("Street", "City", "State", "PostalCode", "Country", "StateCode", "CountryCode")
    ]
    + [_field("Latitude", "double"), _field("Longitude", "double"), _field("GeocodeAccuracy")],
}
PERSON_NAME = {
    "type": "record",
    "name": "Switchable_PersonName",
    "namespace": NS,
    "fields": [
        _field(n)
        for n in ("Salutation", "FirstName", "LastName", "MiddleName", "InformalName", "Suffix")
    ],
}

# Positions matter: the header bitmaps count fields in this order (0 is the header).
CONTACT_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "ContactChangeEvent",
    "namespace": NS,
    "fields": [
        {"name": "ChangeEventHeader", "type": HEADER_SCHEMA, "doc": "Data:ChangeEventHeader"},
        _field("AccountId"),  # 1
        _field("Name", PERSON_NAME),  # 2
        _field("OtherAddress", ADDRESS),  # 3
        _field("MailingAddress", f"{NS}.Address"),  # 4: the named type again, by reference
        _field("Phone"),  # 5
        _field("Email"),  # 6
        _field("HasOptedOutOfEmail", "boolean"),  # 7
        _field("OwnerId"),  # 8
        _field("CreatedDate", "long"),  # 9
        _field("CreatedById"),  # 10
        _field("LastModifiedDate", "long"),  # 11
        _field("LastModifiedById"),  # 12
        _field("Title"),  # 13
        _field("Loyalty_Tier__c"),  # 14
    ],
}
ACCOUNT_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "AccountChangeEvent",
    "namespace": NS,
    "fields": [
        {"name": "ChangeEventHeader", "type": HEADER_SCHEMA},
        _field("Name"),
        _field("BillingAddress", ADDRESS),
        _field("LastModifiedDate", "long"),
    ],
}
SCHEMA_IDS = {"Contact": "ContactSchemaId1", "Account": "AccountSchemaId1"}
SCHEMAS = {"ContactSchemaId1": CONTACT_SCHEMA, "AccountSchemaId1": ACCOUNT_SCHEMA}


def schema_json(schema_id: str) -> str:
    return json.dumps(SCHEMAS[schema_id])


def bitmap(positions: Iterable[int], parent: int | None = None) -> str:
    """A header bitmap entry with the given bits set (`"0x.."`, or `"<parent>-0x.."`)."""
    value = sum(1 << p for p in set(positions))
    text = f"0x{value:X}"
    return text if parent is None else f"{parent}-{text}"


def header(
    entity: str,
    record_ids: list[str],
    change_type: str = "UPDATE",
    *,
    origin: str = "",
    changed: list[str] | None = None,
    nulled: list[str] | None = None,
    key: str = "tx-1",
    sequence: int = 1,
    timestamp: int = 1_764_151_200_000,
) -> dict[str, Any]:
    return {
        "entityName": entity,
        "recordIds": record_ids,
        "changeType": change_type,
        "changeOrigin": origin,
        "transactionKey": key,
        "sequenceNumber": sequence,
        "commitTimestamp": timestamp,
        "commitNumber": 1,
        "commitUser": "005SB0000000001AAA",
        "nulledFields": nulled or [],
        "diffFields": [],
        "changedFields": changed or [],
    }


def encode(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    """The Avro bytes Pub/Sub would carry for ``record`` (missing fields written as null)."""
    full = {f["name"]: record.get(f["name"]) for f in schema["fields"]}
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), full)
    return out.getvalue()


def contact_event(record_ids: list[str], change_type: str = "UPDATE", **kwargs: Any) -> bytes:
    fields = kwargs.pop("fields", {})
    return encode(
        CONTACT_SCHEMA,
        {"ChangeEventHeader": header("Contact", record_ids, change_type, **kwargs), **fields},
    )
