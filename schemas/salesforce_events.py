"""Schemas for the Salesforce change events we take as JSON: CDC, CometD envelopes, Platform Events.

Vendor payloads: unknown keys are excluded (Salesforce adds fields across API versions, and CDC
bodies carry every record field). What we validate is what a hint needs: the header, the ids
(15/18 characters, checksum), the replay id and the channel. Record field values in a CDC body
are not loaded; the sync job re-reads the record (events are hints, not truth).

`middleware.salesforce.events.parse_events` dispatches between these schemas and turns the
results into `ChangeHint`s; `flatten_errors` turns marshmallow's nested messages into field paths
(`events[3].data.payload.ChangeEventHeader.recordIds[0]`) for the webhook's 400 answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, missing, validate

from middleware.salesforce import ids

CHANGE_TYPES = (
    "CREATE",
    "UPDATE",
    "DELETE",
    "UNDELETE",
    "GAP_CREATE",
    "GAP_UPDATE",
    "GAP_DELETE",
    "GAP_UNDELETE",
    "GAP_OVERFLOW",
)

# Milliseconds of 9999-12-31T23:59:59.999Z: a datetime can hold no later commit time (a larger
# value overflowed datetime.fromtimestamp and answered 500).
MAX_COMMIT_TIMESTAMP = 253_402_300_799_999

CHANNEL_RE = re.compile(r"/(data|event)/[A-Za-z][A-Za-z0-9_]*")
PLATFORM_EVENT_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*__e")
FIELD_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


class SalesforceIdField(fields.Field):
    """A record id, loaded as its 18-character form; `allow_wildcard` lets `001*` through as is."""

    def __init__(self, *, allow_wildcard: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.allow_wildcard = allow_wildcard

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise ValidationError("Not a valid string.")
        value = value.strip()
        if self.allow_wildcard and ids.is_wildcard(value):
            return value
        try:
            return ids.to_18(value)
        except ids.InvalidId as exc:
            raise ValidationError(f"{exc}: {value[:40]!r}") from None


class StringListField(fields.List):
    """`fields.List(fields.String())`, with a JSON array of strings (the usual body) loaded in
    one pass: each item that is already a `str` is what the inner field would return, so only
    other items go through it (the same messages, under the same indexes). A long
    `changedFields` cost two field calls per name on the webhook's hot path."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(fields.String(), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[Any]:
        if not isinstance(value, list):
            return super()._deserialize(value, attr, data, **kwargs)
        out: list[Any] = []
        errors: dict[int, Any] = {}
        for index, item in enumerate(value):
            if type(item) is str:
                out.append(item)
                continue
            try:
                out.append(self.inner.deserialize(item, **kwargs))
            except ValidationError as error:
                if error.valid_data is not None:
                    out.append(error.valid_data)
                errors[index] = error.messages
        if errors:
            raise ValidationError(errors, valid_data=out)  # type: ignore[arg-type]
        return out


class ChangeEventHeaderSchema(Schema):
    """`ChangeEventHeader` of a CDC event (CometD JSON form; Pub/Sub bitmaps are not decoded)."""

    class Meta:
        unknown = EXCLUDE

    entityName = fields.String(required=True, validate=validate.Regexp(FIELD_NAME_RE))
    recordIds = fields.List(SalesforceIdField(allow_wildcard=True), load_default=list)
    changeType = fields.String(required=True, validate=validate.OneOf(CHANGE_TYPES))
    changeOrigin = fields.String(load_default="", allow_none=True)
    transactionKey = fields.String(load_default=None, allow_none=True)
    sequenceNumber = fields.Integer(load_default=None, allow_none=True)
    commitTimestamp = fields.Integer(
        load_default=None,
        allow_none=True,
        validate=validate.Range(
            min=0,
            max=MAX_COMMIT_TIMESTAMP,
            error="Must be milliseconds since 1970 up to the year 9999.",
        ),
    )
    changedFields = StringListField(load_default=list, allow_none=True)
    # commitNumber, commitUser, nulledFields and diffFields are accepted but not loaded: the job
    # re-reads the record, so they would only cost the webhook's hot path time.


class ChangeEventPayloadSchema(Schema):
    """A CDC event payload: the header plus record fields (which we do not load)."""

    class Meta:
        unknown = EXCLUDE

    ChangeEventHeader = fields.Nested(ChangeEventHeaderSchema, required=True)


class ReplayField(fields.Field):
    """The `event` member of a CometD message, `{"replayId": <integer>}`, loaded as that dict.

    What `fields.Nested` of a one-field schema (`{"replayId": Integer(required, strict=False)}`,
    unknown keys excluded) loads, with the same messages and paths, without a nested schema's
    load per event on the webhook's hot path.
    """

    replay_id = fields.Integer(required=True, strict=False)

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise ValidationError({"_schema": ["Invalid input type."]}, valid_data={})
        try:
            return {"replayId": self.replay_id.deserialize(value.get("replayId", missing))}
        except ValidationError as exc:
            raise ValidationError({"replayId": exc.messages}, valid_data={}) from None


class EventDataSchema(Schema):
    """The `data` member of a CometD message; the payload is validated by its channel's schema."""

    class Meta:
        unknown = EXCLUDE

    schema = fields.String(load_default=None, allow_none=True)
    payload = fields.Dict(required=True)
    event = ReplayField(load_default=None, allow_none=True)


class CometDEnvelopeSchema(Schema):
    """`{"data": {"schema", "payload", "event": {"replayId"}}, "channel": "/data/..."}`."""

    class Meta:
        unknown = EXCLUDE

    data = fields.Nested(EventDataSchema, required=True)
    channel = fields.String(required=True, validate=validate.Regexp(CHANNEL_RE))


class FlatCometDEnvelopeSchema(EventDataSchema):
    """The newer CometD form without the `data` wrapper: `{schema, payload, event, channel}`."""

    channel = fields.String(required=True, validate=validate.Regexp(CHANNEL_RE))


class PlatformEventConfigSchema(Schema):
    """A setup's Platform Event intake: `{"name": "Contact_Sync__e", "id_field": "Record_Id__c"}`.

    `entity` (optional) names the object the ids belong to when their key prefix is not one we
    know (custom objects); otherwise it is read from each id.
    """

    name = fields.String(required=True, validate=validate.Regexp(PLATFORM_EVENT_NAME_RE))
    id_field = fields.String(required=True, validate=validate.Regexp(FIELD_NAME_RE))
    entity = fields.String(
        load_default=None, allow_none=True, validate=validate.Regexp(FIELD_NAME_RE)
    )


class _IdListField(fields.Field):
    """One id, a comma-separated string of ids, or a JSON list of ids; loaded as 18-char ids."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[str]:
        if isinstance(value, str):
            raw = [part.strip() for part in value.split(",") if part.strip()]
        elif isinstance(value, list):
            raw = value
        else:
            raise ValidationError("Expected an id, comma-separated ids, or a list of ids.")
        if not raw:
            raise ValidationError("No record id given.")
        out: list[str] = []
        problems: dict[int, list[str]] = {}
        for index, item in enumerate(raw):
            if not isinstance(item, str):
                problems[index] = ["Not a valid string."]
                continue
            try:
                out.append(ids.to_18(item.strip()))
            except ids.InvalidId as exc:
                problems[index] = [f"{exc}: {item.strip()[:40]!r}"]
        if problems:
            raise ValidationError(problems)  # type: ignore[arg-type]
        return out


_platform_schema_cache: dict[str, type[Schema]] = {}


def platform_event_payload_schema(id_field: str) -> Schema:
    """The schema of a Platform Event payload whose record id(s) live in `id_field`."""
    cls = _platform_schema_cache.get(id_field)
    if cls is None:
        cls = Schema.from_dict(
            {
                id_field: _IdListField(required=True),
                "EventUuid": fields.String(load_default=None, allow_none=True),
                "CreatedDate": fields.DateTime(load_default=None, allow_none=True),
                "CreatedById": fields.String(load_default=None, allow_none=True),
            },
            name=f"PlatformEventPayload_{id_field}",
        )
        _platform_schema_cache[id_field] = cls
    return cls(unknown=EXCLUDE)


def flatten_errors(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """`{"data": {"payload": {"x": ["bad"]}}, ...}` -> `{"data.payload.x": ["bad"]}`.

    List positions become `[i]`; schema-level messages (`_schema`) belong to the prefix itself.
    """
    out: dict[str, list[str]] = {}
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            if key == "_schema":
                path = prefix or "(body)"
            elif isinstance(key, int):
                path = f"{prefix}[{key}]"
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            for sub_path, msgs in flatten_errors(value, path).items():
                out.setdefault(sub_path, []).extend(msgs)
    elif isinstance(messages, list):
        out[prefix or "(body)"] = [str(m) for m in messages]
    else:
        out[prefix or "(body)"] = [str(messages)]
    return out
