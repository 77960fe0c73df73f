"""Salesforce Pub/Sub API change events: Avro payloads decoded, header bitmaps named, hints out.

A Pub/Sub `ConsumerEvent` carries its record change as Avro bytes written with the topic's
schema (fetched once per schema id with `GetSchema`, `SchemaCache`). Decoded, it is the same
`{"ChangeEventHeader": {...}, <fields>}` payload the CometD JSON form gives, but for two things
this module undoes so the JSON door's code path (`events.hint_from_cdc`) reads both alike:

- `changedFields`, `nulledFields` and `diffFields` are hex bitmaps over the schema's field
  positions (`['0x650004E0', '4-0x10']`): in the first element bit i (least significant first)
  stands for top-level field i; an element `"<pos>-0x.."` is a bitmap over the components of the
  compound field (Name, an Address) at position `<pos>`. They become names, compound components
  written `MailingAddress.Street` as the JSON form writes them.
- the replay id is opaque bytes; Salesforce's own clients read it as a big-endian long, the
  number the CometD form shows, so `replay_number` makes the same event key through either door
  (an event that reached us both ways is a duplicate).

Salesforce does not validate Avro on publish: a payload that does not decode, decodes with bytes
left over, or has no valid header is `UndecodableEvent`, which the listener logs with its replay
id and skips. A bitmap that does not fit the schema only costs the hint its field names (the
record ids still count).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import fastavro

from middleware.salesforce.events import ChangeHint, InvalidEvents, hint_from_cdc

HEADER = "ChangeEventHeader"
BITMAP_FIELDS = ("changedFields", "nulledFields", "diffFields")
_ENTRY = re.compile(r"(?:(\d+)-)?0x([0-9A-Fa-f]+)")


class UndecodableEvent(ValueError):
    """The event cannot be read with its schema (or is not a change event): skip it."""


@dataclass(frozen=True)
class EventSchema:
    """A topic schema as the listener needs it: fastavro's parsed form, and the field positions
    the header bitmaps refer to (top-level names; the components of each compound field)."""

    schema_id: str
    parsed: Any
    fields: tuple[str, ...]
    parts: Mapping[int, tuple[str, ...]]

    @classmethod
    def from_json(cls, schema_id: str, schema_json: str) -> EventSchema:
        """Parse `SchemaInfo.schema_json`; `UndecodableEvent` for a schema we cannot use."""
        try:
            raw = json.loads(schema_json)
            parsed = fastavro.parse_schema(raw)
        except (ValueError, TypeError, KeyError, fastavro.schema.SchemaParseException) as exc:
            raise UndecodableEvent(f"schema {schema_id} does not parse: {exc}") from None
        if not isinstance(raw, dict) or raw.get("type") != "record":
            raise UndecodableEvent(f"schema {schema_id} is not an Avro record")
        named = dict(_named_records(raw, raw.get("namespace")))
        fields: list[str] = []
        parts: dict[int, tuple[str, ...]] = {}
        for position, field in enumerate(raw.get("fields") or []):
            fields.append(str(field["name"]))
            record = _record_of(field.get("type"), named)
            if record is not None and field["name"] != HEADER:
                parts[position] = tuple(str(f["name"]) for f in record.get("fields") or [])
        return cls(schema_id=schema_id, parsed=parsed, fields=tuple(fields), parts=parts)


def _named_records(node: Any, namespace: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every named record in a schema, by full and by short name (references use either)."""
    if isinstance(node, list):
        for item in node:
            yield from _named_records(item, namespace)
        return
    if not isinstance(node, dict):
        return
    space = node.get("namespace", namespace)
    if node.get("type") == "record" and "name" in node:
        name = str(node["name"])
        yield name, node
        if space and "." not in name:
            yield f"{space}.{name}", node
        for field in node.get("fields") or []:
            yield from _named_records(field.get("type"), space)
    elif node.get("type") in ("array", "map"):
        yield from _named_records(node.get("items") or node.get("values"), space)


def _record_of(type_: Any, named: Mapping[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The record a field holds (compound fields are `["null", {record}]` or a named reference)."""
    if isinstance(type_, list):
        for branch in type_:
            found = _record_of(branch, named)
            if found is not None:
                return found
        return None
    if isinstance(type_, str):
        return named.get(type_)
    if isinstance(type_, dict) and type_.get("type") == "record":
        return type_
    return None


def _bits(hex_digits: str) -> Iterator[int]:
    """Positions of the set bits, least significant first."""
    value = int(hex_digits, 16)
    position = 0
    while value:
        if value & 1:
            yield position
        value >>= 1
        position += 1


def bitmap_names(schema: EventSchema, entries: Sequence[str]) -> list[str]:
    """Field names for a header bitmap list; `ValueError` when it does not fit the schema.

    A compound field named by a component bitmap is listed by its components only
    (`Name.FirstName`), as the JSON form lists them; without one, by its own name.
    """
    top: list[int] = []
    nested: dict[int, list[str]] = {}
    for entry in entries:
        match = _ENTRY.fullmatch(str(entry).strip())
        if match is None:
            raise ValueError(f"not a field bitmap: {entry!r}")
        parent, digits = match.groups()
        if parent is None:
            top.extend(_bits(digits))
            continue
        position = int(parent)
        components = schema.parts.get(position)
        if components is None:
            raise ValueError(f"bitmap {entry!r}: field {position} is not a compound field")
        names = nested.setdefault(position, [])
        for bit in _bits(digits):
            if bit >= len(components):
                raise ValueError(f"bitmap {entry!r}: no component {bit}")
            names.append(f"{schema.fields[position]}.{components[bit]}")
    for position in top:
        if position >= len(schema.fields):
            raise ValueError(f"bitmap names field {position}; the schema has {len(schema.fields)}")
    out: list[str] = []
    for position in sorted(set(top) | set(nested)):
        out.extend(nested.get(position) or [schema.fields[position]])
    return out


def decode_payload(schema: EventSchema, payload: bytes) -> dict[str, Any]:
    """The Avro payload as a dict; `UndecodableEvent` if it does not read exactly."""
    stream = io.BytesIO(payload)
    try:
        record = fastavro.schemaless_reader(stream, schema.parsed, None)
    except Exception as exc:
        # Unvalidated bytes can fail inside fastavro in many ways (EOFError, UnicodeDecodeError,
        # IndexError for a bad union branch, struct errors...): each one means "cannot read".
        raise UndecodableEvent(
            f"payload does not decode with schema {schema.schema_id}: {type(exc).__name__}"
        ) from None
    if stream.tell() != len(payload):
        raise UndecodableEvent(
            f"payload has {len(payload) - stream.tell()} byte(s) left after the record: "
            f"not written with schema {schema.schema_id}"
        )
    if not isinstance(record, dict):
        raise UndecodableEvent(f"payload is not a record of schema {schema.schema_id}")
    return record


def named_payload(schema: EventSchema, record: Mapping[str, Any]) -> dict[str, Any]:
    """The decoded record with its header's bitmaps turned into field names (the JSON form).

    A bitmap that does not fit the schema is left as it is: the JSON path then knows the
    changed fields are not named (`ChangeHint.changed_fields` None) and keeps the record ids.
    """
    header = record.get(HEADER)
    if not isinstance(header, Mapping):
        return dict(record)
    named = dict(header)
    for name in BITMAP_FIELDS:
        entries = header.get(name)
        if not entries:
            continue
        with contextlib.suppress(ValueError):  # left as bitmaps: the names stay unknown
            named[name] = bitmap_names(schema, entries)
    return {**record, HEADER: named}


def replay_number(replay_id: bytes) -> int | None:
    """A Pub/Sub replay id as the number the CometD form shows (big-endian), or None if empty."""
    return int.from_bytes(replay_id, "big") if replay_id else None


def event_hint(
    schema: EventSchema,
    payload: bytes,
    *,
    channel: str,
    replay_id: bytes,
    call_client: str,
) -> ChangeHint:
    """One Pub/Sub change event as a hint, by the JSON door's code path; `UndecodableEvent`."""
    record = named_payload(schema, decode_payload(schema, payload))
    try:
        return hint_from_cdc(
            record, call_client=call_client, channel=channel, replay_id=replay_number(replay_id)
        )
    except InvalidEvents as exc:
        raise UndecodableEvent(f"not a usable change event: {exc}") from None


class SchemaCache:
    """Parsed schemas by schema id, each fetched (`GetSchema`) and parsed once per process.

    A topic's schema id changes when its object's fields change; events written before and after
    carry their own ids, so both stay readable. ``fetch`` errors (the RPC failing) propagate: an
    event is only skipped when its schema was read and it still does not decode.
    """

    def __init__(self, fetch: Callable[[str], str]) -> None:
        self.fetch = fetch
        self._lock = threading.Lock()
        self._schemas: dict[str, EventSchema] = {}

    def get(self, schema_id: str) -> EventSchema:
        with self._lock:
            cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        schema = EventSchema.from_json(schema_id, self.fetch(schema_id))
        with self._lock:
            return self._schemas.setdefault(schema_id, schema)

    def __len__(self) -> int:
        with self._lock:
            return len(self._schemas)
