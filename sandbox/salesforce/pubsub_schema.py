"""Change events as the Pub/Sub API delivers them: Avro schemas, Avro records and field bitmaps.

The CometD envelopes `events.EventHub` renders stay the one source of change events; this module
only re-shapes them the way Salesforce does for Pub/Sub clients:

- one Avro record schema per entity (`<Entity>ChangeEvent`, namespace `com.sforce.eventbus`):
  `ChangeEventHeader` first, then every field of the object that a change event carries, each a
  nullable union, in the object's field order; a compound field (Name, MailingAddress, Address,
  BillingAddress...) is a nested nullable record standing where its first part stands, its parts
  named without the prefix (`MailingAddress.City`). A person-account org's Account `Name` is a
  union of null, a string (business account) and the person-name record, as Salesforce's
  "switchable" name is;
- every field present in every event: unchanged fields of an UPDATE and all fields of a DELETE
  or gap event are null; dates and date-times are epoch milliseconds (a date at UTC midnight);
- `changedFields`, `nulledFields` and `diffFields` as hex bitmaps over Avro field positions
  (position 0 is the header): the first element covers the non-compound fields
  (`"0x650004E0"`, bit i = field i, least significant first), and each compound field with
  changed parts adds `"<position>-0x.."` over the nested record's fields.

A schema id is a fingerprint of the schema's JSON (22 url-safe base64 characters, like
Salesforce's), so a changed org schema never reuses an id.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import fastavro

from sandbox.salesforce.events import GAP_TYPES, NEVER_IN_EVENTS, channel_for
from sandbox.salesforce.store import announces_changes

NAMESPACE = "com.sforce.eventbus"
ALL_CHANGES_TOPIC = "/data/ChangeEvents"
CHANGE_TYPES = ("CREATE", "UPDATE", "DELETE", "UNDELETE", *GAP_TYPES, "SNAPSHOT")
# The parts of a person's name, in the order Salesforce's name record lists them.
NAME_PARTS = ("Salutation", "FirstName", "LastName", "MiddleName", "Suffix")
PERSON_NAMED = frozenset({"Contact", "Lead", "User"})
NAME_RECORD = "Switchable_PersonName"

_AVRO_TYPES = {
    "boolean": "boolean",
    "int": "int",
    "double": "double",
    "currency": "double",
    "percent": "double",
    "date": "long",
    "datetime": "long",
}

HEADER_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "ChangeEventHeader",
    "namespace": NAMESPACE,
    "fields": [
        {"name": "entityName", "type": "string"},
        {"name": "recordIds", "type": {"type": "array", "items": "string"}},
        {
            "name": "changeType",
            "type": {
                "type": "enum",
                "name": "ChangeType",
                "namespace": NAMESPACE,
                "symbols": list(CHANGE_TYPES),
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


def hex_bitmap(bits: Iterable[int]) -> str:
    """`{0, 5, 6}` -> `"0x61"`: whole bytes, upper case, as Salesforce writes them."""
    value = 0
    for bit in bits:
        value |= 1 << bit
    size = max(1, (value.bit_length() + 7) // 8)
    return "0x" + value.to_bytes(size, "big").hex().upper()


def fingerprint(schema_json: str) -> str:
    digest = hashlib.sha256(schema_json.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:22]


def epoch_millis(value: Any, date_only: bool = False) -> int | None:
    """A store or CometD date/date-time value as epoch milliseconds (a date at UTC midnight)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, datetime):
        when = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, date):
        when = datetime(value.year, value.month, value.day, tzinfo=UTC)
    else:
        text = str(value)
        if date_only:
            when = datetime.fromisoformat(text[:10]).replace(tzinfo=UTC)
        else:
            when = datetime.fromisoformat(text)
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
    if date_only:
        when = datetime(when.year, when.month, when.day, tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _scalar(kind: str, value: Any) -> Any:
    """One value in its Avro form; a value the field cannot hold becomes null."""
    if value is None:
        return None
    try:
        if kind == "boolean":
            return value.lower() == "true" if isinstance(value, str) else bool(value)
        if kind == "int":
            return int(value)
        if kind in ("double", "currency", "percent"):
            return float(value)
        if kind in ("date", "datetime"):
            return epoch_millis(value, date_only=kind == "date")
    except (TypeError, ValueError):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class Part:
    """A scalar field (top level, or a part of a compound field) and its sandbox type."""

    name: str
    kind: str


@dataclass(frozen=True)
class TopField:
    """One top-level field of an event schema: a scalar, or a compound of parts."""

    name: str
    kind: str = ""  # the scalar's type; "" for a compound
    parts: tuple[Part, ...] = ()
    switchable: bool = False  # null | string | the name record (person-account Account.Name)

    def convert(self, raw: Any) -> Any:
        if not self.parts:
            return _scalar(self.kind, raw)
        if isinstance(raw, dict):
            return {p.name: _scalar(p.kind, raw.get(p.name)) for p in self.parts}
        if self.switchable and isinstance(raw, str):
            return raw
        return None


@dataclass
class EventSchema:
    """The Pub/Sub shape of one entity's change events."""

    entity: str
    topic: str
    schema: dict[str, Any]
    schema_json: str
    schema_id: str
    fields: tuple[TopField, ...]
    positions: dict[str, int] = field(default_factory=dict)
    nested: dict[str, dict[str, int]] = field(default_factory=dict)
    parsed: Any = None

    def bitmaps(self, names: Iterable[str]) -> list[str]:
        """CometD field names (`Email`, `Name.LastName`) as Pub/Sub's bitmap strings."""
        top: set[int] = set()
        nested: dict[int, set[int]] = {}
        for name in names:
            head, _, part = name.partition(".")
            position = self.positions.get(head)
            if position is None:
                continue
            if not part:
                top.add(position)
                continue
            index = self.nested.get(head, {}).get(part)
            if index is not None:
                nested.setdefault(position, set()).add(index)
        out = [hex_bitmap(top)] if top else []
        out += [f"{pos}-{hex_bitmap(bits)}" for pos, bits in sorted(nested.items())]
        return out

    def record(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A CometD change-event payload as the Avro record Pub/Sub sends."""
        header = payload["ChangeEventHeader"]
        record: dict[str, Any] = {
            "ChangeEventHeader": {
                "entityName": str(header.get("entityName") or self.entity),
                "recordIds": [str(i) for i in header.get("recordIds") or []],
                "changeType": str(header["changeType"]),
                "changeOrigin": str(header.get("changeOrigin") or ""),
                "transactionKey": str(header.get("transactionKey") or ""),
                "sequenceNumber": int(header.get("sequenceNumber") or 0),
                "commitTimestamp": int(header.get("commitTimestamp") or 0),
                "commitNumber": int(header.get("commitNumber") or 0),
                "commitUser": str(header.get("commitUser") or ""),
                "nulledFields": self.bitmaps(header.get("nulledFields") or []),
                "diffFields": self.bitmaps(header.get("diffFields") or []),
                "changedFields": self.bitmaps(header.get("changedFields") or []),
            }
        }
        for top in self.fields:
            record[top.name] = top.convert(payload.get(top.name))
        return record

    def encode(self, record: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, self.parsed, record)
        return out.getvalue()


def _nullable(avro_type: Any) -> dict[str, Any]:
    return {"type": ["null", avro_type], "default": None}


def _part_names(compound: str, components: Iterable[str]) -> list[str]:
    prefix = compound[: -len("Address")] if compound.endswith("Address") else compound
    return [c[len(prefix) :] if c.startswith(prefix) else c for c in components]


def _layout(obj: Any) -> list[TopField]:
    """The object's change-event fields, in its field order, compounds where their parts stand."""
    stored = {fd.name: fd for fd in obj.fields.values() if fd.stored}
    person_named = obj.name in PERSON_NAMED or (
        obj.name == "Account" and "FirstName" in stored and "LastName" in stored
    )
    name_parts = tuple(Part(p, stored[p].type) for p in NAME_PARTS if person_named and p in stored)
    addresses = {
        fd.name: tuple(
            Part(part, stored[c].type)
            for part, c in zip(_part_names(fd.name, fd.components), fd.components, strict=True)
            if c in stored
        )
        for fd in obj.fields.values()
        if fd.type == "address"
    }
    out: list[TopField] = []
    seen: set[str] = set()

    def add(top: TopField) -> None:
        if top.name not in seen:
            seen.add(top.name)
            out.append(top)

    for fd in obj.fields.values():
        if fd.name in NEVER_IN_EVENTS or fd.type == "address":
            continue
        if fd.compound in addresses:
            add(TopField(fd.compound, parts=addresses[fd.compound]))
        elif name_parts and (fd.name == "Name" or fd.name in {p.name for p in name_parts}):
            if obj.name == "Account":
                if fd.name == "Name":  # parts of the switchable name follow it; skip them
                    add(TopField("Name", parts=name_parts, switchable=True))
            else:
                add(TopField("Name", parts=name_parts))
        elif fd.stored:
            add(TopField(fd.name, kind=fd.type))
    return out


def build(obj: Any) -> EventSchema:
    """The Avro schema (and what converting to it needs) of one sObject's change events."""
    tops = _layout(obj)
    named: dict[tuple[Part, ...], str] = {}  # Avro defines a named type once, then refers to it
    avro_fields: list[dict[str, Any]] = [{"name": "ChangeEventHeader", "type": HEADER_SCHEMA}]
    positions = {"ChangeEventHeader": 0}
    nested: dict[str, dict[str, int]] = {}
    for top in tops:
        positions[top.name] = len(avro_fields)
        if not top.parts:
            avro_type: Any = _AVRO_TYPES.get(top.kind, "string")
            avro_fields.append({"name": top.name, **_nullable(avro_type)})
            continue
        nested[top.name] = {p.name: i for i, p in enumerate(top.parts)}
        if top.parts in named:
            record: Any = named[top.parts]
        else:
            base = NAME_RECORD if top.name == "Name" else "Address"
            taken = set(named.values())
            name = base if base not in taken else f"{base}_{len(taken) + 1}"
            named[top.parts] = f"{NAMESPACE}.{name}"
            record = {
                "type": "record",
                "name": name,
                "namespace": NAMESPACE,
                "fields": [
                    {"name": p.name, **_nullable(_AVRO_TYPES.get(p.kind, "string"))}
                    for p in top.parts
                ],
            }
        branches = ["null", "string", record] if top.switchable else ["null", record]
        avro_fields.append({"name": top.name, "type": branches, "default": None})
    name = obj.name[:-3] + "__ChangeEvent" if obj.name.endswith("__c") else obj.name + "ChangeEvent"
    schema = {"type": "record", "name": name, "namespace": NAMESPACE, "fields": avro_fields}
    schema_json = json.dumps(schema, separators=(",", ":"))
    return EventSchema(
        entity=obj.name,
        topic=channel_for(obj.name),
        schema=schema,
        schema_json=schema_json,
        schema_id=fingerprint(schema_json),
        fields=tuple(tops),
        positions=positions,
        nested=nested,
        parsed=fastavro.parse_schema(schema),
    )


class SchemaCatalog:
    """The event schema of every object the org selects for CDC, built on first use."""

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        self._lock = threading.Lock()
        self._by_entity: dict[str, EventSchema] | None = None

    def _all(self) -> dict[str, EventSchema]:
        with self._lock:
            if self._by_entity is None:
                org = getattr(self.sandbox.store, "schema", None)
                objects = list(org.objects.values()) if org is not None else []
                self._by_entity = {
                    obj.name: build(obj) for obj in objects if announces_changes(obj.name)
                }
            return self._by_entity

    def entity(self, name: str) -> EventSchema | None:
        return self._all().get(name)

    def by_id(self, schema_id: str) -> EventSchema | None:
        return next((s for s in self._all().values() if s.schema_id == schema_id), None)

    def by_topic(self, topic: str) -> EventSchema | None:
        return next((s for s in self._all().values() if s.topic == topic), None)

    def topics(self) -> list[str]:
        return [ALL_CHANGES_TOPIC, *(s.topic for s in self._all().values())]
