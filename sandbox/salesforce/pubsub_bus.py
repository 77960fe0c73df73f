"""The org's event bus as the Pub/Sub API serves it: retained events, subscriptions, faults.

`EventHub` hands every change event it renders to `PubSubBus.on_envelopes`; the bus re-shapes it
for Pub/Sub (`pubsub_schema`: Avro payload, bitmap header fields), gives it a replay id and keeps
it for the retention window (72 hours by the sandbox clock, at most PUBSUB_MAX_KEPT events).
The gRPC server (`pubsub.py`) is only transport: each Subscribe stream is a `Subscription` here,
and `next_step` decides, as Salesforce does, what the stream sends next — a batch of events, no
more than the client has requested and never more than 100 outstanding; an empty keepalive
carrying the latest replay id when events are requested but none come for PUBSUB_KEEPALIVE_SECONDS
(Salesforce: within 270 s); or the end of a stream whose client left nothing requested for
PUBSUB_IDLE_CLOSE_SECONDS (Salesforce: 60 s).

Replay ids are opaque to clients: 8 bytes, a big-endian counter that grows in uneven steps (never
compute one). A CUSTOM replay id is honoured only if it is an event still retained or the latest
position; anything else fails like Salesforce's expired or corrupted replay id.

Config keys (all optional): PUBSUB_KEEPALIVE_SECONDS (270), PUBSUB_IDLE_CLOSE_SECONDS (60),
PUBSUB_RETENTION_HOURS (EVENT_RETENTION_HOURS, else 72), PUBSUB_MAX_KEPT (50000).
Control routes under /_sandbox/pubsub/ read the bus back and inject faults.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, Response, jsonify, request

from sandbox.salesforce.org import current_sandbox
from sandbox.salesforce.pubsub_schema import ALL_CHANGES_TOPIC, SchemaCatalog

log = logging.getLogger(__name__)

bp = Blueprint("sf_pubsub", __name__, url_prefix="/_sandbox/pubsub")

MAX_PENDING = 100  # events a Subscribe call may have requested and not yet received
REPLAY_BYTES = 8


def encode_replay(position: int) -> bytes:
    return position.to_bytes(REPLAY_BYTES, "big")


def decode_replay(raw: bytes) -> int | None:
    return int.from_bytes(raw, "big") if len(raw) == REPLAY_BYTES else None


class PubSubError(Exception):
    """A gRPC failure as Salesforce reports it: status, `error-code` trailer, message."""

    def __init__(self, status: str, message: str, error_code: str = "") -> None:
        super().__init__(message)
        self.status = status  # a grpc.StatusCode name, e.g. "INVALID_ARGUMENT"
        self.message = message
        self.error_code = error_code

    def as_dict(self) -> dict[str, str]:
        return {"status": self.status, "error_code": self.error_code, "message": self.message}


_CODE = "sfdc.platform.eventbus.grpc"
REPLAY_MESSAGE = (
    "The Replay ID validation failed. Ensure that the replay_id field value in FetchRequest is "
    "valid and refers to an event that is within the retention window."
)


def auth_error() -> PubSubError:
    return PubSubError(
        "UNAUTHENTICATED",
        "An authentication exception occurred. Provide valid authentication via metadata headers.",
        f"{_CODE}.service.auth.error",
    )


def replay_error(missing: bool = False) -> PubSubError:
    kind = "validation.failed" if missing else "corrupted"
    return PubSubError(
        "INVALID_ARGUMENT", REPLAY_MESSAGE, f"{_CODE}.subscription.fetch.replayid.{kind}"
    )


def requested_error() -> PubSubError:
    return PubSubError(
        "INVALID_ARGUMENT",
        "The number of requested events in FetchRequest (num_requested) must be greater than 0.",
        f"{_CODE}.subscription.fetch.requested.events.invalid",
    )


def stream_reset() -> PubSubError:
    """What a client sees when Salesforce resets the stream (HTTP/2 RST_STREAM)."""
    return PubSubError("UNAVAILABLE", "RST_STREAM closed stream. HTTP/2 error code: NO_ERROR")


def topic_error(topic: str) -> PubSubError:
    return PubSubError("NOT_FOUND", f"The topic {topic!r} doesn't exist or isn't accessible.")


# What `POST /_sandbox/pubsub/faults {"status"}` makes the next Subscribe calls fail with.
FAULT_PRESETS: dict[str, PubSubError] = {
    "UNAUTHENTICATED": auth_error(),
    "INVALID_ARGUMENT": replay_error(),
    "RESOURCE_EXHAUSTED": PubSubError(
        "RESOURCE_EXHAUSTED",
        "The maximum number of concurrent clients across all topics has been exceeded. This "
        "limit applies to publisher and subscriber clients.",
        f"{_CODE}.concurrent.client.limit.exceeded",
    ),
    "UNAVAILABLE": PubSubError(
        "UNAVAILABLE", "The Pub/Sub API service is unavailable.", f"{_CODE}.service.unavailable"
    ),
}
FAULT_STATUSES = (
    *FAULT_PRESETS,
    "INTERNAL",
    "PERMISSION_DENIED",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "FAILED_PRECONDITION",
    "ABORTED",
    "UNKNOWN",
)


@dataclass
class BusEvent:
    """One retained event: its Avro payload and what a ConsumerEvent needs around it."""

    replay: int
    topic: str  # the entity's channel, e.g. /data/ContactChangeEvent
    entity: str
    schema_id: str
    event_id: str
    payload: bytes
    kept_at: datetime
    change_type: str
    record_ids: list[str]

    def describe(self) -> dict[str, Any]:
        return {
            "replay_id": encode_replay(self.replay).hex(),
            "topic": self.topic,
            "entity": self.entity,
            "schema_id": self.schema_id,
            "event_id": self.event_id,
            "change_type": self.change_type,
            "record_ids": self.record_ids,
            "kept_at": self.kept_at.isoformat(),
            "payload_bytes": len(self.payload),
        }


@dataclass
class Subscription:
    """One open Subscribe stream: where it is in the bus and what the client has requested."""

    rpc_id: str
    topic: str
    cursor: int  # every event at or before this position is behind the stream
    pending: int  # requested and not yet delivered (at most MAX_PENDING)
    peer: str
    started_at: datetime
    last_sent: float  # monotonic time of the last FetchResponse (or the start)
    idle_since: float | None = None  # when pending last fell to 0
    requested: int = 0
    delivered: int = 0
    keepalives: int = 0
    error: PubSubError | None = None
    ended: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "rpc_id": self.rpc_id,
            "topic": self.topic,
            "peer": self.peer,
            "started_at": self.started_at.isoformat(),
            "pending": self.pending,
            "requested": self.requested,
            "delivered": self.delivered,
            "keepalives": self.keepalives,
            "position": encode_replay(self.cursor).hex(),
        }


@dataclass
class Step:
    """What a Subscribe stream sends next: events, or an empty keepalive."""

    events: list[BusEvent]
    latest: int
    pending: int
    keepalive: bool = False


@dataclass
class _Fault:
    error: PubSubError
    count: int = 1
    hits: int = field(default=0)

    def as_dict(self) -> dict[str, Any]:
        return {**self.error.as_dict(), "count": self.count, "hits": self.hits}


class PubSubBus:
    """The org's Pub/Sub event bus. Thread-safe: gRPC threads, routes and the store share it."""

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        self.schemas = SchemaCatalog(sandbox)
        cfg = sandbox.config
        self.max_kept = int(cfg.get("PUBSUB_MAX_KEPT", 50000))
        self._cond = threading.Condition(threading.RLock())
        self._events: list[BusEvent] = []  # retained, by replay id; [self._head:] are live
        self._replays: list[int] = []  # the same events' replay ids, for bisect
        self._head = 0
        self._latest = 0  # the newest position handed out
        self._pruned_upto = 0  # the newest position dropped by retention or a reset
        self._steps = itertools.cycle((3, 1, 2, 1, 5))  # replay ids are not contiguous
        self._subs: dict[str, Subscription] = {}
        self._faults: deque[_Fault] = deque()
        self.endpoints: list[str] = []  # host:port of each gRPC server serving this bus
        self._apply_config()

    def _apply_config(self) -> None:
        cfg = self.sandbox.config
        self.keepalive_seconds = float(cfg.get("PUBSUB_KEEPALIVE_SECONDS", 270))
        self.idle_close_seconds = float(cfg.get("PUBSUB_IDLE_CLOSE_SECONDS", 60))
        hours = cfg.get("PUBSUB_RETENTION_HOURS", cfg.get("EVENT_RETENTION_HOURS", 72))
        self.retention = timedelta(hours=float(hours))

    # -- intake --------------------------------------------------------------------------------

    def on_envelopes(self, envelopes: list[dict[str, Any]]) -> None:
        """EventHub listener: every change event becomes a Pub/Sub event (Avro, bitmaps)."""
        ready: list[tuple[str, str, str, bytes, str, list[str]]] = []
        for env in envelopes:
            if not str(env.get("channel", "")).startswith("/data/"):
                continue  # Platform Events have no schema here
            payload = env["data"]["payload"]
            header = payload["ChangeEventHeader"]
            schema = self.schemas.entity(str(header["entityName"]))
            if schema is None:
                continue
            try:
                blob = schema.encode(schema.record(payload))
            except Exception:  # one odd value must not cost the bus the rest of the batch
                log.exception("could not encode a %s change event for Pub/Sub", schema.entity)
                continue
            ready.append(
                (
                    schema.topic,
                    schema.entity,
                    schema.schema_id,
                    blob,
                    str(header["changeType"]),
                    [str(i) for i in header.get("recordIds") or []],
                )
            )
        if ready:
            self._append(ready)

    def _append(self, items: list[tuple[str, str, str, bytes, str, list[str]]]) -> list[BusEvent]:
        now = self.sandbox.clock.now()
        added: list[BusEvent] = []
        with self._cond:
            for topic, entity, schema_id, blob, change_type, record_ids in items:
                self._latest += next(self._steps)
                event = BusEvent(
                    replay=self._latest,
                    topic=topic,
                    entity=entity,
                    schema_id=schema_id,
                    event_id=str(uuid.uuid4()),
                    payload=blob,
                    kept_at=now,
                    change_type=change_type,
                    record_ids=record_ids,
                )
                self._events.append(event)
                self._replays.append(event.replay)
                added.append(event)
            self._prune(now)
            self._cond.notify_all()
        return added

    def publish_undecodable(self, entity: str) -> BusEvent:
        """An event whose payload no Avro reader can decode (Salesforce never checks on publish).

        It starts like a real event of `entity` and then names a changeType past the schema's
        enum, so a decoder fails on it whatever its leniency.
        """
        schema = self.schemas.entity(entity)
        if schema is None:
            raise KeyError(entity)
        name = entity.encode()
        blob = _zigzag(len(name)) + name + b"\x00" + _zigzag(99) + b"\x00\x00"
        [event] = self._append([(schema.topic, entity, schema.schema_id, blob, "UNDECODABLE", [])])
        return event

    # -- retention -----------------------------------------------------------------------------

    def _prune(self, now: datetime) -> int:
        cutoff = now - self.retention
        start = self._head
        while self._head < len(self._events) and (
            self._events[self._head].kept_at < cutoff
            or len(self._events) - self._head > self.max_kept
        ):
            self._pruned_upto = self._events[self._head].replay
            self._head += 1
        if self._head > 1024 and self._head * 2 > len(self._events):
            del self._events[: self._head]
            del self._replays[: self._head]
            self._head = 0
        return self._head - start

    def age(self, hours: float) -> int:
        """Make every retained event `hours` older (the clock stays); returns how many expired."""
        with self._cond:
            for event in self._events[self._head :]:
                event.kept_at -= timedelta(hours=hours)
            return self._prune(self.sandbox.clock.now())

    def _valid_position(self, position: int) -> bool:
        if position == self._latest:
            return True  # the tip stays a valid position even after its event has expired
        if position == 0:
            return self._pruned_upto == 0
        if position <= self._pruned_upto:
            return False
        i = bisect.bisect_left(self._replays, position, lo=self._head)
        return i < len(self._replays) and self._replays[i] == position

    # -- subscriptions -------------------------------------------------------------------------

    def topic_known(self, topic: str) -> bool:
        return topic == ALL_CHANGES_TOPIC or self.schemas.by_topic(topic) is not None

    def take_fault(self) -> PubSubError | None:
        with self._cond:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.hits += 1
            fault.count -= 1
            if fault.count <= 0:
                self._faults.popleft()
            return fault.error

    def subscribe(
        self,
        topic: str,
        preset: str,
        replay_id: bytes,
        num_requested: int,
        rpc_id: str,
        peer: str = "",
    ) -> Subscription:
        """Open a stream from its first FetchRequest (the only one whose replay option counts)."""
        if not self.topic_known(topic):
            raise topic_error(topic)
        if num_requested <= 0:
            raise requested_error()
        with self._cond:
            self._prune(self.sandbox.clock.now())
            if preset == "EARLIEST":
                cursor = self._pruned_upto
            elif preset == "CUSTOM":
                if not replay_id:
                    raise replay_error(missing=True)
                position = decode_replay(replay_id)
                if position is None or not self._valid_position(position):
                    raise replay_error()
                cursor = position
            else:
                cursor = self._latest
            sub = Subscription(
                rpc_id=rpc_id,
                topic=topic,
                cursor=cursor,
                pending=min(num_requested, MAX_PENDING),
                peer=peer,
                started_at=self.sandbox.clock.now(),
                last_sent=time.monotonic(),
                requested=num_requested,
            )
            self._subs[rpc_id] = sub
            self._cond.notify_all()
        return sub

    def fetch(self, sub: Subscription, topic: str, num_requested: int) -> None:
        """A later FetchRequest: more capacity (capped at MAX_PENDING outstanding)."""
        with self._cond:
            if topic and topic != sub.topic:
                sub.error = PubSubError(
                    "INVALID_ARGUMENT",
                    f"The topic {topic!r} in FetchRequest doesn't match the subscription's topic "
                    f"{sub.topic!r}.",
                )
            elif num_requested <= 0:
                sub.error = requested_error()
            else:
                sub.requested += num_requested
                sub.pending = min(sub.pending + num_requested, MAX_PENDING)
            self._cond.notify_all()

    def end(self, sub: Subscription) -> None:
        """The stream is over (client gone, error sent, server stopping)."""
        with self._cond:
            sub.ended = True
            self._subs.pop(sub.rpc_id, None)
            self._cond.notify_all()

    def disconnect_all(self) -> int:
        """Reset every open stream now, as Salesforce's RST_STREAM does."""
        with self._cond:
            subs = [s for s in self._subs.values() if not s.ended and s.error is None]
            for sub in subs:
                sub.error = stream_reset()
            self._cond.notify_all()
            return len(subs)

    def _collect(self, sub: Subscription, limit: int) -> list[BusEvent]:
        start = bisect.bisect_right(self._replays, sub.cursor, lo=self._head)
        batch: list[BusEvent] = []
        for event in itertools.islice(self._events, start, None):
            if sub.topic == ALL_CHANGES_TOPIC or event.topic == sub.topic:
                batch.append(event)
                if len(batch) >= limit:
                    sub.cursor = event.replay
                    return batch
            sub.cursor = event.replay  # events of other topics are behind this stream too
        return batch

    def next_step(self, sub: Subscription, poll: float = 0.5) -> Step | None:
        """Block until the stream has something to send; None once it has ended.

        Raises PubSubError when the stream must fail (a fault, a bad FetchRequest, an idle
        client); the caller ends the call with that status.
        """
        with self._cond:
            while True:
                if sub.ended:
                    return None
                if sub.error is not None:
                    raise sub.error
                now = time.monotonic()
                if sub.pending > 0:
                    self._prune(self.sandbox.clock.now())
                    batch = self._collect(sub, sub.pending)
                    if batch:
                        sub.pending -= len(batch)
                        sub.delivered += len(batch)
                        sub.last_sent = now
                        if sub.pending == 0:
                            sub.idle_since = now
                        return Step(batch, latest=batch[-1].replay, pending=sub.pending)
                    if now - sub.last_sent >= self.keepalive_seconds:
                        sub.cursor = max(sub.cursor, self._latest)
                        sub.last_sent = now
                        sub.keepalives += 1
                        return Step([], latest=self._latest, pending=sub.pending, keepalive=True)
                    deadline = sub.last_sent + self.keepalive_seconds
                else:
                    idle = sub.idle_since if sub.idle_since is not None else sub.last_sent
                    if now - idle >= self.idle_close_seconds:
                        sub.error = stream_reset()
                        log.info("pubsub stream %s closed: nothing requested", sub.rpc_id)
                        raise sub.error
                    deadline = idle + self.idle_close_seconds
                self._cond.wait(timeout=max(0.001, min(deadline - now, poll)))

    # -- auth ----------------------------------------------------------------------------------

    def authenticate(self, metadata: dict[str, str]) -> None:
        """Salesforce session auth: `accesstoken`, `instanceurl`, `tenantid` (the org id)."""
        token = metadata.get("accesstoken", "")
        tenant = metadata.get("tenantid", "")
        org = str(self.sandbox.config["ORG_ID"])
        if (
            self.sandbox.auth.check(token) is None
            or not metadata.get("instanceurl")
            or len(tenant) not in (15, 18)
            or tenant[:15] != org[:15]
        ):
            raise auth_error()

    # -- control -------------------------------------------------------------------------------

    def add_fault(self, error: PubSubError, count: int = 1) -> dict[str, Any]:
        fault = _Fault(error, count)
        with self._cond:
            self._faults.append(fault)
        return fault.as_dict()

    def faults(self) -> list[dict[str, Any]]:
        with self._cond:
            return [f.as_dict() for f in self._faults]

    def clear_faults(self) -> None:
        with self._cond:
            self._faults.clear()

    def configure(
        self,
        keepalive_seconds: float | None = None,
        idle_close_seconds: float | None = None,
        retention_hours: float | None = None,
    ) -> dict[str, Any]:
        with self._cond:
            if keepalive_seconds is not None:
                self.keepalive_seconds = float(keepalive_seconds)
            if idle_close_seconds is not None:
                self.idle_close_seconds = float(idle_close_seconds)
            if retention_hours is not None:
                self.retention = timedelta(hours=float(retention_hours))
                self._prune(self.sandbox.clock.now())
            self._cond.notify_all()  # waiting streams recompute their deadlines
            return self.settings()

    def settings(self) -> dict[str, Any]:
        return {
            "keepalive_seconds": self.keepalive_seconds,
            "idle_close_seconds": self.idle_close_seconds,
            "retention_hours": self.retention.total_seconds() / 3600,
            "max_kept": self.max_kept,
            "max_pending": MAX_PENDING,
        }

    def retained(self, limit: int = 100) -> list[BusEvent]:
        with self._cond:
            self._prune(self.sandbox.clock.now())
            live = self._events[self._head :]
        return live[-limit:] if limit > 0 else []

    def state(self) -> dict[str, Any]:
        with self._cond:
            self._prune(self.sandbox.clock.now())
            live = self._events[self._head :]
            return {
                "endpoints": list(self.endpoints),
                "subscribers": [s.describe() for s in self._subs.values()],
                "events_retained": len(live),
                "latest_replay_id": encode_replay(self._latest).hex(),
                "earliest_replay_id": encode_replay(live[0].replay).hex() if live else None,
                "faults": [f.as_dict() for f in self._faults],
                "topics": self.schemas.topics(),
                **self.settings(),
            }

    def reset(self) -> None:
        """Forget retained events (their replay ids become invalid), faults and settings."""
        with self._cond:
            self._events.clear()
            self._replays.clear()
            self._head = 0
            self._pruned_upto = self._latest
            self._faults.clear()
            self._apply_config()
            self._cond.notify_all()


def _zigzag(n: int) -> bytes:
    """An Avro long: zig-zag, then base-128 varint."""
    value = (n << 1) ^ (n >> 63)
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# -- control routes ----------------------------------------------------------------------------


def _error(message: str, status: int = 400) -> tuple[Response, int]:
    return jsonify(error=message), status


def _bus() -> PubSubBus:
    return current_sandbox().pubsub  # type: ignore[no-any-return]


@bp.get("/state")
def get_state() -> Response:
    """Subscribers, retained events, the latest replay id (hex of its 8 bytes), settings."""
    return jsonify(_bus().state())


@bp.get("/events")
def list_events() -> Response | tuple[Response, int]:
    """The newest retained events (`?limit=`, 100 by default), oldest first, without payloads."""
    try:
        limit = max(0, min(int(request.args.get("limit", 100)), 10000))
    except ValueError:
        return _error("'limit' must be an integer")
    return jsonify(events=[e.describe() for e in _bus().retained(limit)])


@bp.post("/disconnect")
def disconnect() -> Response:
    """End every open Subscribe stream now with UNAVAILABLE (Salesforce's RST_STREAM)."""
    return jsonify(closed=_bus().disconnect_all())


@bp.get("/faults")
def get_faults() -> Response:
    return jsonify(faults=_bus().faults())


@bp.post("/faults")
def add_fault() -> tuple[Response, int]:
    """The next `count` Subscribe calls fail: `{status, count?, message?, error_code?}`."""
    body = request.get_json(silent=True) or {}
    status = str(body.get("status", "")).upper()
    if status not in FAULT_STATUSES:
        return _error(f"'status' must be one of {', '.join(FAULT_STATUSES)}")
    try:
        count = int(body.get("count", 1))
    except (TypeError, ValueError):
        return _error("'count' must be an integer")
    if count < 1:
        return _error("'count' must be at least 1")
    preset = FAULT_PRESETS.get(status)
    error = PubSubError(
        status,
        str(body.get("message") or (preset.message if preset else f"Injected {status}.")),
        str(body.get("error_code") or (preset.error_code if preset else "")),
    )
    return jsonify(_bus().add_fault(error, count)), 201


@bp.delete("/faults")
def clear_faults() -> tuple[str, int]:
    _bus().clear_faults()
    return "", 204


@bp.post("/undecodable")
def undecodable() -> Response | tuple[Response, int]:
    """Publish an event with an undecodable payload: `{entity}` (Contact by default)."""
    body = request.get_json(silent=True) or {}
    entity = str(body.get("entity") or "Contact")
    try:
        event = _bus().publish_undecodable(entity)
    except KeyError:
        return _error(f"no change events for {entity!r}")
    return jsonify(event.describe())


@bp.get("/settings")
def get_settings() -> Response:
    return jsonify(_bus().settings())


@bp.route("/settings", methods=["PUT", "POST"])
def put_settings() -> Response | tuple[Response, int]:
    """`{keepalive_seconds?, idle_close_seconds?, retention_hours?}`; streams apply them now."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _error("send a JSON object")
    known = {"keepalive_seconds", "idle_close_seconds", "retention_hours"}
    unknown = sorted(set(body) - known)
    if unknown:
        return _error(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    values: dict[str, float] = {}
    for key in known & set(body):
        try:
            values[key] = float(body[key])
        except (TypeError, ValueError):
            return _error(f"'{key}' must be a number")
        if values[key] <= 0:
            return _error(f"'{key}' must be greater than 0")
    return jsonify(_bus().configure(**values))


@bp.post("/retention/advance")
def advance_retention() -> Response | tuple[Response, int]:
    """Age retained events by `{hours}` without moving the clock (tokens keep working)."""
    body = request.get_json(silent=True) or {}
    try:
        hours = float(body.get("hours", 0))
    except (TypeError, ValueError):
        return _error("'hours' must be a number")
    if hours <= 0:
        return _error("'hours' must be greater than 0")
    bus = _bus()
    expired = bus.age(hours)
    return jsonify(expired=expired, events_retained=bus.state()["events_retained"])
