"""Salesforce change events in, `ChangeHint`s out: which records of which object changed, and how.

Events are hints, not truth: a hint names records for the sync job to re-read, so the order,
duplicates and partial UPDATE bodies do not matter. This module only validates and normalises.

Accepted JSON bodies (`parse_events`):

- one CDC payload: `{"ChangeEventHeader": {...}, <fields>}`;
- one CometD envelope: `{"data": {"schema", "payload": {...}, "event": {"replayId"}}, "channel"}`,
  or its newer flat form `{"schema", "payload", "event", "channel"}`;
- a Platform Event envelope on `/event/<Name>__e`, or a bare Platform Event payload, when the
  setup names the event and the payload field holding the record id(s);
- a batch: a JSON array of any of the above, or `{"events": [...]}`.

The Pub/Sub listener decodes its Avro events into the same CDC payload form and calls
`hint_from_cdc`, so both doors read headers, wildcards, gaps and echoes by one code path.

How to read a hint:

- `is_own_echo`: the change was made by our own API calls (`changeOrigin` carries
  `client=<our call client>`); drop it, we already know.
- `change_type` `GAP_CREATE/UPDATE/DELETE/UNDELETE`: no field values came; re-read `record_ids`.
- `catch_up` (`GAP_OVERFLOW`, or wildcard ids like `001*`): no usable ids; catch this entity up by
  SystemModstamp (`SalesforceClient.modified_since`).
- `event_key`: a stable dedupe key from a real event id (channel + replayId, else transaction key +
  sequence number + entity, else the Platform Event's EventUuid), or None when the event carries
  none. Such events are never deduplicated: a digest of the body would drop a later real change
  with the same body, and recording an id twice costs one idempotent re-read.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from marshmallow import ValidationError, missing

from middleware.salesforce import ids
from schemas.json_input import BadJson, load_json
from schemas.salesforce_events import (
    ChangeEventPayloadSchema,
    CometDEnvelopeSchema,
    FlatCometDEnvelopeSchema,
    PlatformEventConfigSchema,
    flatten_errors,
    platform_event_payload_schema,
)

log = logging.getLogger(__name__)

GAP_TYPES = frozenset({"GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE"})
OVERFLOW = "GAP_OVERFLOW"
PLATFORM_EVENT_CHANGE = "PLATFORM_EVENT"

_ORIGIN_CLIENT = re.compile(r"(?:^|;)\s*client=([^;,]*)")
# Pub/Sub sends changedFields as hex bitmaps ("0x650004E0", "4-0x10"): a JSON body that still
# carries them has no names to give (the listener decodes them against the schema first).
_BITMAP = re.compile(r"(\d+-)?0x[0-9A-Fa-f]+")


# Schemas are stateless once built, and building one costs more than loading an event with it:
# the webhook's hot path reuses these.
_COMETD = CometDEnvelopeSchema()
_FLAT_COMETD = FlatCometDEnvelopeSchema()
# The payload schema's one loaded field: `_cdc` deserializes the header with it directly.
_HEADER = ChangeEventPayloadSchema().fields["ChangeEventHeader"]


class InvalidEvents(ValueError):
    """The body is not an event we accept; `errors` maps each offending field path to messages."""

    def __init__(self, errors: Mapping[str, list[str]]) -> None:
        self.errors: dict[str, list[str]] = dict(errors)
        super().__init__(
            "; ".join(f"{path}: {' '.join(msgs)}" for path, msgs in self.errors.items())
        )

    @property
    def field(self) -> str:
        """The first offending field path, for a one-line answer."""
        return next(iter(self.errors), "(body)")


@dataclass(frozen=True)
class PlatformEventConfig:
    """A setup's Platform Event: its API name and the payload field with the record id(s)."""

    name: str
    id_field: str
    entity: str | None = None

    @classmethod
    def load(cls, raw: Mapping[str, Any] | PlatformEventConfig) -> PlatformEventConfig:
        """Validate a setup's `{"name": "Contact_Sync__e", "id_field": "Record_Id__c"}`."""
        if isinstance(raw, PlatformEventConfig):
            return raw
        try:
            data = PlatformEventConfigSchema().load(raw)
        except ValidationError as exc:
            raise InvalidEvents(flatten_errors(exc.messages, "platform_event")) from None
        return cls(name=data["name"], id_field=data["id_field"], entity=data["entity"])


@dataclass(frozen=True)
class ChangeHint:
    """One event, normalised: which records of which object changed, and whether it was us."""

    entity: str
    record_ids: tuple[str, ...]
    change_type: str
    is_own_echo: bool
    event_key: str | None  # None: no real event id, so never deduplicated
    transaction_key: str | None
    commit_timestamp: datetime | None
    changed_fields: tuple[str, ...] | None  # None: not known (Pub/Sub bitmaps, platform events)
    sequence_number: int | None = None
    channel: str | None = None
    replay_id: int | None = None
    source: str = "cdc"  # "cdc" | "platform_event" | "outbound" (salesforce/outbound.py)

    @property
    def is_gap(self) -> bool:
        return self.change_type in GAP_TYPES

    @property
    def catch_up(self) -> bool:
        """No usable ids: catch the entity up by SystemModstamp instead of re-reading ids."""
        return self.change_type == OVERFLOW

    @property
    def is_delete(self) -> bool:
        return self.change_type in ("DELETE", "GAP_DELETE")

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (RQ job arguments are JSON)."""
        out = asdict(self)
        out["record_ids"] = list(self.record_ids)
        out["changed_fields"] = None if self.changed_fields is None else list(self.changed_fields)
        out["commit_timestamp"] = (
            None if self.commit_timestamp is None else self.commit_timestamp.isoformat()
        )
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChangeHint:
        values = dict(data)
        values["record_ids"] = tuple(values.get("record_ids") or ())
        changed = values.get("changed_fields")
        values["changed_fields"] = None if changed is None else tuple(changed)
        stamp = values.get("commit_timestamp")
        values["commit_timestamp"] = None if stamp is None else datetime.fromisoformat(stamp)
        return cls(**values)


def origin_client(change_origin: str | None) -> str | None:
    """The `client=` value in a `changeOrigin` (`com/salesforce/api/rest/66.0;client=ctct-sync`)."""
    if not change_origin:
        return None
    match = _ORIGIN_CLIENT.search(change_origin)
    if match is None:
        return None
    # Salesforce's own tools append a slash ("client=SfdcInternalAPI/").
    return match.group(1).strip().rstrip("/") or None


def parse_events(
    body: Any,
    *,
    call_client: str,
    platform_event: Mapping[str, Any] | PlatformEventConfig | None = None,
) -> list[ChangeHint]:
    """Validate a webhook body (parsed JSON, or raw bytes/str) and return its hints in order.

    Raises `InvalidEvents` naming every offending field path; nothing is returned for a body
    with any invalid event, so the sender's retry carries the whole batch again.
    """
    pe_config = PlatformEventConfig.load(platform_event) if platform_event is not None else None
    if isinstance(body, (bytes, str)):
        try:
            body = load_json(body)
        except BadJson as exc:
            raise InvalidEvents({"(body)": [f"not valid JSON: {exc}"]}) from None

    if isinstance(body, list):
        items = [(f"[{index}]", item) for index, item in enumerate(body)]
    elif isinstance(body, Mapping) and "events" in body:
        events = body["events"]
        if not isinstance(events, list):
            raise InvalidEvents({"events": ["must be a list of events"]})
        items = [(f"events[{index}]", item) for index, item in enumerate(events)]
    elif isinstance(body, Mapping):
        items = [("", body)]
    else:
        raise InvalidEvents({"(body)": ["expected a JSON object or array of events"]})
    if not items:
        raise InvalidEvents({"(body)": ["no events in the body"]})

    hints: list[ChangeHint] = []
    errors: dict[str, list[str]] = {}
    for prefix, item in items:
        try:
            hints.extend(_parse_one(item, prefix, call_client, pe_config))
        except InvalidEvents as exc:
            for path, msgs in exc.errors.items():
                errors.setdefault(path, []).extend(msgs)
    if errors:
        raise InvalidEvents(errors)
    return hints


def _join(prefix: str, path: str) -> str:
    if not prefix:
        return path
    return f"{prefix}{path}" if path.startswith("[") else f"{prefix}.{path}"


def _load(schema: Any, data: Any, prefix: str) -> dict[str, Any]:
    try:
        return schema.load(data)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise InvalidEvents(flatten_errors(exc.messages, prefix)) from None


def _load_header(payload: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """`ChangeEventPayloadSchema().load(payload)["ChangeEventHeader"]`, by that schema's own
    field: the same checks, messages and paths without the outer schema's load (the payload is
    already known to be a JSON object, the only other thing the schema checks)."""
    try:
        return _HEADER.deserialize(  # type: ignore[no-any-return]
            payload.get("ChangeEventHeader", missing), "ChangeEventHeader", payload
        )
    except ValidationError as exc:
        raise InvalidEvents(flatten_errors({"ChangeEventHeader": exc.messages}, prefix)) from None


def _parse_one(
    item: Any, prefix: str, call_client: str, pe: PlatformEventConfig | None
) -> list[ChangeHint]:
    if not isinstance(item, Mapping):
        raise InvalidEvents({prefix or "(body)": ["an event must be a JSON object"]})

    if "data" in item or "channel" in item:
        if "data" in item:
            envelope = _load(_COMETD, item, prefix)
            data, payload_path = envelope["data"], _join(prefix, "data.payload")
        else:
            data = _load(_FLAT_COMETD, item, prefix)
            envelope, payload_path = {"channel": data["channel"]}, _join(prefix, "payload")
        channel: str = envelope["channel"]
        replay_id = data["event"]["replayId"] if data.get("event") else None
        if channel.startswith("/event/"):
            name = channel.split("/", 2)[2]
            if pe is None or name != pe.name:
                expected = f"; this setup expects /event/{pe.name}" if pe else ""
                raise InvalidEvents(
                    {
                        _join(prefix, "channel"): [
                            f"platform event {name} is not configured for this setup{expected}"
                        ]
                    }
                )
            return _platform(data["payload"], payload_path, pe, channel, replay_id)
        return [_cdc(data["payload"], payload_path, call_client, channel, replay_id)]

    if "ChangeEventHeader" in item:
        return [_cdc(item, prefix, call_client, None, None)]
    if pe is not None and pe.id_field in item:
        return _platform(item, prefix, pe, None, None)
    expected = "ChangeEventHeader, or a CometD envelope (data, channel)"
    if pe is not None:
        expected += f", or the platform event field {pe.id_field}"
    raise InvalidEvents({prefix or "(body)": [f"not a change event: expected {expected}"]})


def hint_from_cdc(
    payload: Mapping[str, Any],
    *,
    call_client: str,
    channel: str | None = None,
    replay_id: int | None = None,
) -> ChangeHint:
    """One CDC payload `{"ChangeEventHeader": {...}, <fields>}` as a hint, whichever door it came
    through: the JSON webhook's, or a Pub/Sub event decoded from Avro whose header bitmaps were
    turned into field names (`middleware.salesforce.pubsub`). Raises `InvalidEvents`."""
    return _cdc(payload, "", call_client, channel, replay_id)


def _changed_fields(header: Mapping[str, Any]) -> tuple[str, ...] | None:
    changed = header.get("changedFields") or []
    if any(_BITMAP.fullmatch(name) for name in changed):
        return None
    return tuple(changed)


def _cdc(
    payload: Mapping[str, Any],
    prefix: str,
    call_client: str,
    channel: str | None,
    replay_id: int | None,
) -> ChangeHint:
    header = _load_header(payload, prefix)
    entity: str = header["entityName"]
    change_type: str = header["changeType"]
    record_ids: list[str] = header["recordIds"]

    if any(ids.is_wildcard(rid) for rid in record_ids):
        # Salesforce could not list the records (some field type conversions); only a catch-up
        # by SystemModstamp finds them.
        log.warning(
            "%s %s event with wildcard record ids: catching the entity up instead",
            entity,
            change_type,
        )
        change_type, record_ids = OVERFLOW, []
    elif change_type != OVERFLOW and not record_ids:
        raise InvalidEvents(
            {_join(prefix, "ChangeEventHeader.recordIds"): [f"required for {change_type} events"]}
        )

    origin = origin_client(header.get("changeOrigin"))
    transaction_key = header.get("transactionKey")
    sequence = header.get("sequenceNumber")
    event_key: str | None = None  # no real id: accepted every time, never deduplicated
    if channel is not None and replay_id is not None:
        event_key = f"{channel}#{replay_id}"
    elif transaction_key and sequence is not None:
        event_key = f"{entity}:{transaction_key}:{sequence}"
    stamp = header.get("commitTimestamp")
    return ChangeHint(
        entity=entity,
        record_ids=tuple(dict.fromkeys(record_ids)),
        change_type=change_type,
        is_own_echo=origin is not None and origin == call_client,
        event_key=event_key,
        transaction_key=transaction_key,
        commit_timestamp=None if stamp is None else datetime.fromtimestamp(stamp / 1000, UTC),
        changed_fields=_changed_fields(header),
        sequence_number=sequence,
        channel=channel,
        replay_id=replay_id,
        source="cdc",
    )


def _platform(
    payload: Mapping[str, Any],
    prefix: str,
    pe: PlatformEventConfig,
    channel: str | None,
    replay_id: int | None,
) -> list[ChangeHint]:
    loaded = _load(platform_event_payload_schema(pe.id_field), payload, prefix)
    by_entity: dict[str, list[str]] = {}
    for rid in loaded[pe.id_field]:
        entity = pe.entity or ids.entity_for(rid)
        if entity is None:
            raise InvalidEvents(
                {
                    _join(prefix, pe.id_field): [
                        f"cannot tell which object id {rid} belongs to; name the entity in "
                        "the setup's platform event configuration"
                    ]
                }
            )
        by_entity.setdefault(entity, [])
        if rid not in by_entity[entity]:
            by_entity[entity].append(rid)

    base_key: str | None = None  # no real id: accepted every time, never deduplicated
    if channel is not None and replay_id is not None:
        base_key = f"{channel}#{replay_id}"
    elif loaded.get("EventUuid"):
        base_key = f"{pe.name}:{loaded['EventUuid']}"
    created = loaded.get("CreatedDate")
    if created is not None and created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    several = len(by_entity) > 1
    return [
        ChangeHint(
            entity=entity,
            record_ids=tuple(record_ids),
            change_type=PLATFORM_EVENT_CHANGE,
            is_own_echo=False,
            event_key=f"{base_key}:{entity}" if several and base_key else base_key,
            transaction_key=None,
            commit_timestamp=created,
            changed_fields=None,
            channel=channel,
            replay_id=replay_id,
            source="platform_event",
        )
        for entity, record_ids in by_entity.items()
    ]
