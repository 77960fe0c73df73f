"""Change Data Capture events: CometD JSON renderings of store changes, replay, delivery.

The store hands every committed transaction to `EventHub.on_changes`. Each change becomes one
CometD-shaped envelope (`{"data": {"schema", "payload", "event": {"replayId"}}, "channel"}`), kept
for replay (72 h by the sandbox clock, bounded count) and, when a delivery URL or sink is
configured, POSTed in batches the way a Flow HTTP callout or Apex callout would: fire and forget,
no retry unless configured, optionally signed like Standard Webhooks.

Config keys read from the sandbox (all optional):
    EVENT_URL, EVENT_HEADERS        where to POST batches, and static headers to add
    EVENT_HMAC_SECRET               sign deliveries (webhook-id / -timestamp / -signature headers)
    EVENT_BATCH_SIZE (200)          most envelopes per POST
    EVENT_DELIVERY ("thread")       "thread": a background sender; "sync": deliver inside the write
    EVENT_SINK                      callable(list[envelope]) used instead of HTTP (any mode)
    EVENT_HTTP                      a `requests.Session` to POST with (e.g. an in-process mount)
    EVENT_TIMEOUT (10)              seconds per POST
    EVENT_RETRIES (0)               extra attempts on 5xx / connection errors (Flow callouts: none)
    EVENT_RETRY_DELAY (1.0)         seconds between those attempts (slept with config `sleep`)
    EVENT_LINGER (0.01)             seconds the sender waits to fill a batch before it POSTs
    EVENT_RETENTION_HOURS (72), EVENT_MAX_KEPT (50000), EVENT_MAX_DELIVERY_LOG (1000)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import requests
from flask import Blueprint, Response, jsonify, request

from sandbox.salesforce.org import current_sandbox
from sandbox.salesforce.store import SalesforceError

log = logging.getLogger(__name__)

bp = Blueprint("sf_events", __name__, url_prefix="/_sandbox/events")

Envelope = dict[str, Any]
Sink = Callable[[list[Envelope]], Any]

GAP_TYPES = ("GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW")

# Fields Salesforce never puts in a change event: system bookkeeping, and values that are derived
# from other fields (the flat `Name` of a person and the flat address compounds are rebuilt below
# as nested objects). Formula fields are excluded too when the store can tell us which they are.
NEVER_IN_EVENTS = frozenset(
    {"Id", "IsDeleted", "SystemModstamp", "attributes", "PhotoUrl", "LastViewedDate"}
)
_ADDRESS_PARTS = (
    "Street",
    "City",
    "State",
    "PostalCode",
    "Country",
    "StateCode",
    "CountryCode",
    "Latitude",
    "Longitude",
    "GeocodeAccuracy",
)
# The parts shown (as null) in a CREATE even when the record has no value, as Salesforce does.
_ADDRESS_SHOWN = (
    "Street",
    "City",
    "State",
    "PostalCode",
    "Country",
    "Latitude",
    "Longitude",
    "GeocodeAccuracy",
)
_NAME_PARTS = ("Salutation", "FirstName", "LastName", "MiddleName", "Suffix")
_NAME_SHOWN = ("Salutation", "FirstName", "LastName")

# entity -> list of (compound field name, flat field prefix)
_ADDRESSES: dict[str, tuple[tuple[str, str], ...]] = {
    "Contact": (("MailingAddress", "Mailing"), ("OtherAddress", "Other")),
    "Lead": (("Address", ""),),
    "Account": (
        ("BillingAddress", "Billing"),
        ("ShippingAddress", "Shipping"),
        ("PersonMailingAddress", "PersonMailing"),
        ("PersonOtherAddress", "PersonOther"),
    ),
}
_PERSON_NAMED = frozenset({"Contact", "Lead", "User"})

# A person account's Account-side fields and what its person contact calls them.
_PERSON_TO_CONTACT = {
    "PersonEmail": "Email",
    "PersonTitle": "Title",
    "PersonMobilePhone": "MobilePhone",
    "PersonHomePhone": "HomePhone",
    "PersonOtherPhone": "OtherPhone",
    "PersonHasOptedOutOfEmail": "HasOptedOutOfEmail",
    "PersonDoNotCall": "DoNotCall",
    "PersonBirthdate": "Birthdate",
    "PersonLeadSource": "LeadSource",
    "PersonDepartment": "Department",
    "Phone": "Phone",
    "OwnerId": "OwnerId",
    "CreatedDate": "CreatedDate",
    "CreatedById": "CreatedById",
    "LastModifiedDate": "LastModifiedDate",
    "LastModifiedById": "LastModifiedById",
    "Salutation": "Salutation",
    "FirstName": "FirstName",
    "LastName": "LastName",
    "MiddleName": "MiddleName",
    "Suffix": "Suffix",
}


def cdc_datetime(value: Any) -> Any:
    """`2026-11-26T10:30:00.000+0000` (the store's form) -> `...00.000Z` (CometD's)."""
    if isinstance(value, str) and len(value) >= 24 and value.endswith("+0000") and value[10] == "T":
        return value[:-5] + "Z"
    return value


def schema_id(name: str) -> str:
    """A stable, opaque-looking schema id per event type, shaped like Salesforce's 22-char ids."""
    digest = hashlib.sha256(f"sandbox-schema:{name}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:22]


def channel_for(entity: str) -> str:
    if entity.endswith("__c"):
        return f"/data/{entity[:-3]}__ChangeEvent"
    return f"/data/{entity}ChangeEvent"


def _signing_key(secret: str) -> bytes:
    # Standard Webhooks secrets are `whsec_<base64 key>`; any other string is used as raw bytes.
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[len("whsec_") :])
        except ValueError:
            pass
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks `webhook-signature` value: `v1,<base64 HMAC-SHA256(id.ts.body)>`."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    mac = hmac.new(_signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def _compound_parts(entity: str) -> dict[str, tuple[str, str]]:
    """Flat field -> (compound, part) for this entity's name and address compounds."""
    parts: dict[str, tuple[str, str]] = {}
    for compound, prefix in _ADDRESSES.get(entity, ()):
        for part in _ADDRESS_PARTS:
            parts[f"{prefix}{part}"] = (compound, part)
    return parts


class DeliveryTarget:
    """Where envelopes go (from config, or set at run time by the control API)."""

    def __init__(
        self,
        url: str | None = None,
        headers: dict[str, str] | None = None,
        batch_size: int = 200,
        hmac_secret: str | None = None,
        sink: Sink | None = None,
    ) -> None:
        self.url = url
        self.headers = dict(headers or {})
        self.batch_size = max(1, int(batch_size))
        self.hmac_secret = hmac_secret or None
        self.sink = sink

    @property
    def enabled(self) -> bool:
        return bool(self.url) or self.sink is not None

    def describe(self) -> dict[str, Any]:
        # Header values may be secrets: show the names only.
        return {
            "enabled": self.enabled,
            "url": self.url,
            "headers": sorted(self.headers),
            "batch_size": self.batch_size,
            "signed": self.hmac_secret is not None,
            "sink": self.sink is not None,
        }


class EventHub:
    """Turns store changes into CDC envelopes; keeps them for replay; delivers them in batches."""

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        cfg = sandbox.config
        self.mode = str(cfg.get("EVENT_DELIVERY") or "thread")
        if self.mode not in ("thread", "sync"):
            raise ValueError(f"EVENT_DELIVERY must be 'thread' or 'sync', not {self.mode!r}")
        self.retention = timedelta(hours=float(cfg.get("EVENT_RETENTION_HOURS", 72)))
        self.max_kept = int(cfg.get("EVENT_MAX_KEPT", 50000))
        self.timeout = float(cfg.get("EVENT_TIMEOUT", 10))
        self.retries = int(cfg.get("EVENT_RETRIES", 0))
        self.retry_delay = float(cfg.get("EVENT_RETRY_DELAY", 1.0))
        self.linger = float(cfg.get("EVENT_LINGER", 0.01))
        self.sleep: Callable[[float], None] = cfg.get("sleep") or time.sleep
        self.http: requests.Session | None = cfg.get("EVENT_HTTP")
        self._lock = threading.RLock()
        self._kept: deque[tuple[datetime, Envelope]] = deque()
        self._pruned_upto = 0  # highest replay id dropped by retention: older ones are invalid
        self._replay = 0
        self._replay_steps = itertools.cycle((1, 2, 1, 3))  # replay ids are not contiguous
        self._commit_number = 1_100_670_000_000
        self._deliveries: deque[dict[str, Any]] = deque(
            maxlen=int(cfg.get("EVENT_MAX_DELIVERY_LOG", 1000))
        )
        self._queue: queue.Queue[Envelope | None] = queue.Queue()
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        self._sender: threading.Thread | None = None
        self._closed = False
        self._person_contacts: dict[str, str] = {}
        self._formula_cache: dict[str, frozenset[str]] = {}
        self._listeners: list[Sink] = []
        self.target = self._configured_target()

    # -- configuration -------------------------------------------------------------------------

    def _configured_target(self) -> DeliveryTarget:
        cfg = self.sandbox.config
        return DeliveryTarget(
            url=cfg.get("EVENT_URL"),
            headers=cfg.get("EVENT_HEADERS") or {},
            batch_size=int(cfg.get("EVENT_BATCH_SIZE", 200)),
            hmac_secret=cfg.get("EVENT_HMAC_SECRET"),
            sink=cfg.get("EVENT_SINK"),
        )

    def configure_delivery(
        self,
        url: str | None,
        headers: dict[str, str] | None = None,
        batch_size: int = 200,
        hmac_secret: str | None = None,
        sink: Sink | None = None,
    ) -> DeliveryTarget:
        """Point delivery somewhere else (or nowhere, with url=None and sink=None)."""
        with self._lock:
            self.target = DeliveryTarget(url, headers, batch_size, hmac_secret, sink)
            return self.target

    def add_listener(self, listener: Sink) -> None:
        """Hand every published batch of envelopes to `listener` too (the Pub/Sub event bus).

        Called in publish order, whatever the delivery target, before delivery; a listener that
        raises is logged and skipped, never stops the others or delivery.
        """
        with self._lock:
            self._listeners.append(listener)

    def reset(self) -> None:
        """Forget kept events and the delivery log; delivery goes back to the configured target."""
        self.flush(timeout=5)
        with self._lock:
            self._kept.clear()
            self._deliveries.clear()
            self._pruned_upto = self._replay
            self.target = self._configured_target()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the background sender after it has sent what is queued."""
        self.flush(timeout)
        with self._lock:
            self._closed = True
            sender = self._sender
            self._sender = None
        if sender is not None:
            self._queue.put(None)
            sender.join(timeout)

    # -- rendering -----------------------------------------------------------------------------

    def _next_replay(self) -> int:
        self._replay += next(self._replay_steps)
        return self._replay

    def _formula_fields(self, entity: str) -> frozenset[str]:
        """Fields computed at read time (formulas): Salesforce leaves them out of change events."""
        cached = self._formula_cache.get(entity)
        if cached is not None:
            return cached
        found: frozenset[str] = frozenset()
        schema = getattr(self.sandbox.store, "schema", None)
        obj = schema.sobject(entity) if schema is not None else None
        if obj is not None:
            found = frozenset(
                fd.name
                for fd in obj.fields.values()
                if getattr(fd, "calculated", False) and getattr(fd, "expr", None)
            )
        self._formula_cache[entity] = found
        return found

    def render_payload(
        self,
        entity: str,
        change_type: str,
        values: dict[str, Any],
        changed_fields: Iterable[str] = (),
        nulled_fields: Iterable[str] = (),
    ) -> tuple[dict[str, Any], list[str], list[str]]:
        """Field values as CometD shows them, plus changedFields/nulledFields in compound form."""
        if change_type == "DELETE" or change_type.startswith("GAP_"):
            return {}, [], []
        skip = NEVER_IN_EVENTS | self._formula_fields(entity)
        parts = _compound_parts(entity)
        person_named = entity in _PERSON_NAMED or (
            entity == "Account" and ("FirstName" in values or "LastName" in values)
        )
        body: dict[str, Any] = {}
        compounds: dict[str, dict[str, Any]] = {}
        for name, value in values.items():
            if name in skip:
                continue
            if person_named and name in _NAME_PARTS:
                compounds.setdefault("Name", {})[name] = value
            elif name in parts:
                compound, part = parts[name]
                compounds.setdefault(compound, {})[part] = cdc_datetime(value)
            elif person_named and name == "Name":
                continue  # the flat full name is derived from the Name compound
            elif name in {c for c, _ in _ADDRESSES.get(entity, ())}:
                continue  # a flat compound value from the store; rebuilt from its parts
            else:
                body[name] = cdc_datetime(value)
        if change_type in ("CREATE", "UNDELETE"):
            # A create shows every standard part of a compound it has, null where empty.
            for compound, sub in compounds.items():
                shown = _NAME_SHOWN if compound == "Name" else _ADDRESS_SHOWN
                for part in shown:
                    sub.setdefault(part, None)
        body.update(compounds)

        def compound_name(field: str) -> str:
            if person_named and field in _NAME_PARTS:
                return f"Name.{field}"
            if field in parts:
                compound, part = parts[field]
                return f"{compound}.{part}"
            return field

        # The flat full name and flat address values are derived; their parts name the change.
        derived = {c for c, _ in _ADDRESSES.get(entity, ())}
        if person_named:
            derived.add("Name")
        hidden = skip | derived
        changed = [compound_name(f) for f in changed_fields if f not in hidden]
        nulled = [compound_name(f) for f in nulled_fields if f not in hidden]
        return body, changed, nulled

    def _header(
        self,
        entity: str,
        record_ids: list[str],
        change_type: str,
        origin: str = "",
        transaction_key: str | None = None,
        sequence_number: int = 1,
        commit_timestamp: int | None = None,
        commit_user: str | None = None,
        changed: list[str] | None = None,
        nulled: list[str] | None = None,
    ) -> dict[str, Any]:
        self._commit_number += 1
        if commit_timestamp is None:
            commit_timestamp = int(self.sandbox.clock.now().timestamp() * 1000)
        return {
            "entityName": entity,
            "recordIds": record_ids,
            "changeType": change_type,
            "changeOrigin": origin,
            "transactionKey": transaction_key or _transaction_key(),
            "sequenceNumber": sequence_number,
            "commitTimestamp": commit_timestamp,
            "commitNumber": self._commit_number,
            "commitUser": commit_user or self.sandbox.config.get("USER_ID", ""),
            "changedFields": changed or [],
            "nulledFields": nulled or [],
            "diffFields": [],
        }

    def _envelope(self, channel: str, schema: str, payload: dict[str, Any]) -> Envelope:
        return {
            "data": {
                "schema": schema,
                "payload": payload,
                "event": {"replayId": self._next_replay()},
            },
            "channel": channel,
        }

    def render_change(self, change: Any) -> Envelope:
        """One ChangeRecord as a CometD CDC envelope (replay id assigned now)."""
        return self._render_group(change, [change.record_id])

    def _render_group(self, change: Any, record_ids: list[str]) -> Envelope:
        values = dict(change.values or {})
        changed = list(change.changed_fields or [])
        if change.entity == "Lead" and change.change_type == "UPDATE" and "IsConverted" in values:
            # Salesforce's lead-conversion UPDATE carries the conversion fields and no
            # LastModifiedDate.
            values.pop("LastModifiedDate", None)
            changed = [f for f in changed if f != "LastModifiedDate"]
        body, changed_names, nulled_names = self.render_payload(
            change.entity, change.change_type, values, changed, change.nulled_fields or []
        )
        if change.change_type != "UPDATE":
            changed_names = []
        header = self._header(
            change.entity,
            record_ids,
            change.change_type,
            origin=change.origin or "",
            transaction_key=change.transaction_key,
            sequence_number=change.sequence_number,
            commit_timestamp=change.commit_timestamp,
            commit_user=change.commit_user,
            changed=changed_names,
            nulled=nulled_names,
        )
        payload = {"ChangeEventHeader": header, **body}
        return self._envelope(
            channel_for(change.entity), schema_id(f"{change.entity}ChangeEvent"), payload
        )

    def _person_contact_change(self, change: Any, siblings: list[Any]) -> Any | None:
        """The person-contact side of a person-account change, when the store did not send one."""
        if change.entity != "Account" or change.change_type == "DELETE":
            return None
        values = change.values or {}
        # The store may call listeners while it holds its lock, so never read it back here: a
        # person account's contact id is learnt from its CREATE/UNDELETE event and remembered.
        contact_id = values.get("PersonContactId")
        if contact_id and values.get("IsPersonAccount"):
            self._person_contacts[change.record_id] = contact_id
        contact_id = contact_id or self._person_contacts.get(change.record_id)
        is_person = values.get("IsPersonAccount", change.record_id in self._person_contacts)
        if not is_person or not contact_id:
            return None
        if any(s.entity == "Contact" and s.record_id == contact_id for s in siblings):
            return None

        def to_contact(name: str) -> str | None:
            if name in _PERSON_TO_CONTACT:
                return _PERSON_TO_CONTACT[name]
            if name.startswith("PersonMailing") or name.startswith("PersonOther"):
                return name[len("Person") :]
            if name.endswith("__pc"):
                return name[:-3] + "_c"
            return None

        mapped = {to_contact(k): v for k, v in values.items()}
        mapped.pop(None, None)
        changed = [c for c in (to_contact(f) for f in change.changed_fields or []) if c]
        nulled = [c for c in (to_contact(f) for f in change.nulled_fields or []) if c]
        if change.change_type == "UPDATE" and not [c for c in changed if c != "LastModifiedDate"]:
            return None
        return _Derived(
            entity="Contact",
            record_id=contact_id,
            change_type=change.change_type,
            values={k: v for k, v in mapped.items() if k is not None},
            changed_fields=changed,
            nulled_fields=nulled,
            origin=change.origin,
            transaction_key=change.transaction_key,
            sequence_number=change.sequence_number,
            commit_timestamp=change.commit_timestamp,
            commit_user=change.commit_user,
        )

    # -- intake --------------------------------------------------------------------------------

    def on_changes(self, changes: list[Any]) -> list[Envelope]:
        """Store listener: render one committed transaction's changes, keep and deliver them.

        Identical UPDATEs of several records of one entity in one transaction become one event
        with several recordIds, as Salesforce merges them.
        """
        if not changes:
            return []
        groups: list[tuple[Any, list[str]]] = []
        merge_index: dict[tuple[Any, ...], int] = {}
        expanded: list[Any] = []
        for change in changes:
            expanded.append(change)
            derived = self._person_contact_change(change, changes)
            if derived is not None:
                expanded.append(derived)
        for change in expanded:
            if change.change_type == "UPDATE":
                key = (
                    change.transaction_key,
                    change.entity,
                    change.origin,
                    tuple(sorted(change.changed_fields or [])),
                    tuple(sorted(change.nulled_fields or [])),
                    json.dumps(change.values, sort_keys=True, default=str),
                )
                if key in merge_index:
                    groups[merge_index[key]][1].append(change.record_id)
                    continue
                merge_index[key] = len(groups)
            groups.append((change, [change.record_id]))
        with self._lock:
            envelopes = [self._render_group(change, ids) for change, ids in groups]
        self.publish(envelopes)
        return envelopes

    def publish(self, envelopes: list[Envelope]) -> None:
        """Keep envelopes for replay and hand them to delivery."""
        if not envelopes:
            return
        now = self.sandbox.clock.now()
        with self._lock:
            for env in envelopes:
                self._kept.append((now, env))
            self._prune(now)
            target = self.target
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(envelopes)
            except Exception:  # a listener's bug must not cost the webhook its events
                log.exception("change event listener failed for %d events", len(envelopes))
        if not target.enabled:
            return
        if self.mode == "sync":
            for start in range(0, len(envelopes), target.batch_size):
                self._deliver(target, envelopes[start : start + target.batch_size])
            return
        with self._lock:
            if self._closed:
                return
            self._pending += len(envelopes)
            self._ensure_sender()
        for env in envelopes:
            self._queue.put(env)

    def emit_gap(self, entity: str, change_type: str, ids: list[str]) -> Envelope:
        """A gap or overflow event: header only; GAP_OVERFLOW carries no record ids."""
        if change_type not in GAP_TYPES:
            raise ValueError(f"change_type must be one of {', '.join(GAP_TYPES)}")
        record_ids = [] if change_type == "GAP_OVERFLOW" else list(ids)
        with self._lock:
            header = self._header(entity, record_ids, change_type)
            env = self._envelope(
                channel_for(entity),
                schema_id(f"{entity}ChangeEvent"),
                {"ChangeEventHeader": header},
            )
        self.publish([env])
        return env

    def emit_platform_event(self, name: str, payload: dict[str, Any]) -> Envelope:
        """A Platform Event (`/event/<Name>__e`), as Apex `EventBus.publish` would send it."""
        if not name.endswith("__e"):
            name = f"{name}__e"
        now = self.sandbox.clock.now()
        body = {
            "CreatedDate": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
            "CreatedById": self.sandbox.config.get("USER_ID", ""),
            "EventUuid": str(uuid.uuid4()),
            **payload,
        }
        with self._lock:
            env = self._envelope(f"/event/{name}", schema_id(name), body)
        self.publish([env])
        return env

    # -- replay --------------------------------------------------------------------------------

    def _prune(self, now: datetime) -> None:
        cutoff = now - self.retention
        while self._kept and (self._kept[0][0] < cutoff or len(self._kept) > self.max_kept):
            _, env = self._kept.popleft()
            self._pruned_upto = env["data"]["event"]["replayId"]

    def replay(self, after: int = -2, limit: int = 1000) -> list[Envelope]:
        """Kept events with replayId > after (-2: all kept, -1: none, new ones only).

        Raises ValueError, like Salesforce's 400, for a replay id older than retention.
        """
        with self._lock:
            self._prune(self.sandbox.clock.now())
            if after >= 0 and after < self._pruned_upto:
                raise ValueError(
                    f"The replayId {{{after}}} you provided was invalid. Please provide a valid "
                    "ID, -2 to replay all events, or -1 to replay only new events."
                )
            if after == -1:
                return []
            out = [env for _, env in self._kept if env["data"]["event"]["replayId"] > after]
        return out[: max(0, limit)]

    @property
    def latest_replay_id(self) -> int:
        return self._replay

    # -- delivery ------------------------------------------------------------------------------

    def _ensure_sender(self) -> None:
        if self._sender is None or not self._sender.is_alive():
            self._sender = threading.Thread(
                target=self._send_loop, name="sf-sandbox-events", daemon=True
            )
            self._sender.start()

    def _send_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            with self._lock:
                size = self.target.batch_size
            deadline = time.monotonic() + self.linger
            while len(batch) < size:
                remaining = deadline - time.monotonic()
                try:
                    item = (
                        self._queue.get_nowait()
                        if remaining <= 0
                        else self._queue.get(timeout=remaining)
                    )
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            with self._lock:
                target = self.target
            try:
                if target.enabled:
                    self._deliver(target, batch)
            except Exception:  # the sender must survive anything a receiver does
                log.exception("event delivery crashed; %d events dropped", len(batch))
            finally:
                with self._lock:
                    self._pending -= len(batch)
                    if self._pending <= 0:
                        self._pending = 0
                        self._idle.notify_all()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued envelope is delivered (or dropped). True if idle in time."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def _deliver(self, target: DeliveryTarget, batch: list[Envelope]) -> None:
        if target.sink is not None:
            started = time.monotonic()
            record: dict[str, Any] = {
                "id": f"msg_{uuid.uuid4().hex}",
                "url": None,
                "sink": True,
                "count": len(batch),
                "attempt": 1,
                "at": self.sandbox.clock.now().isoformat(),
                "replay_ids": _replay_span(batch),
            }
            try:
                target.sink(batch)
                record.update(status="delivered", http_status=None, error=None)
            except Exception as exc:  # a sink error is the receiver's; record it like a 500
                record.update(status="failed", http_status=None, error=repr(exc))
                log.warning("event sink raised %s for %d events", type(exc).__name__, len(batch))
            record["duration_ms"] = round((time.monotonic() - started) * 1000, 2)
            with self._lock:
                self._deliveries.append(record)
            return
        body = json.dumps(batch, separators=(",", ":")).encode()
        msg_id = f"msg_{uuid.uuid4().hex}"
        http = self.http or requests.Session()
        for attempt in range(1, self.retries + 2):
            # webhook-id is sent even unsigned: it is the receiver's key to drop a retried batch.
            ts = int(self.sandbox.clock.now().timestamp())
            headers = {
                "Content-Type": "application/json",
                **target.headers,
                "webhook-id": msg_id,
                "webhook-timestamp": str(ts),
            }
            if target.hmac_secret:
                headers["webhook-signature"] = sign(target.hmac_secret, msg_id, ts, body)
            started = time.monotonic()
            record = {
                "id": msg_id,
                "url": target.url,
                "sink": False,
                "count": len(batch),
                "attempt": attempt,
                "at": self.sandbox.clock.now().isoformat(),
                "replay_ids": _replay_span(batch),
            }
            retryable = False
            try:
                resp = http.post(str(target.url), data=body, headers=headers, timeout=self.timeout)
                ok = 200 <= resp.status_code < 300
                retryable = resp.status_code >= 500
                record.update(
                    status="delivered" if ok else "failed",
                    http_status=resp.status_code,
                    error=None if ok else resp.text[:500],
                )
            except requests.RequestException as exc:
                retryable = True
                record.update(status="failed", http_status=None, error=f"{type(exc).__name__}")
            record["duration_ms"] = round((time.monotonic() - started) * 1000, 2)
            with self._lock:
                self._deliveries.append(record)
            if record["status"] == "delivered":
                return
            log.warning(
                "event delivery attempt %d of %d events failed: %s",
                attempt,
                len(batch),
                record["http_status"] or record["error"],
            )
            if not retryable or attempt > self.retries:
                return
            self.sleep(self.retry_delay)

    def deliveries(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent delivery attempts, newest last."""
        with self._lock:
            items = list(self._deliveries)
        return items[-limit:] if limit > 0 else []


class _Derived:
    """A change the hub derives itself (the person-contact side of a person account)."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)
        self.entity: str = kw["entity"]
        self.record_id: str = kw["record_id"]
        self.change_type: str = kw["change_type"]


def _transaction_key() -> str:
    raw = uuid.uuid4().hex
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def _replay_span(batch: list[Envelope]) -> list[int]:
    ids = [env["data"]["event"]["replayId"] for env in batch]
    return [ids[0], ids[-1]] if ids else []


# -- control routes ----------------------------------------------------------------------------


def _error(message: str, status: int = 400) -> tuple[Response, int]:
    return jsonify(error=message), status


@bp.get("")
def list_events() -> Response | tuple[Response, int]:
    hub: EventHub = current_sandbox().events
    try:
        after = int(request.args.get("after", -2))
        limit = min(int(request.args.get("limit", 1000)), 10000)
    except ValueError:
        return _error("'after' and 'limit' must be integers")
    try:
        events = hub.replay(after, limit)
    except ValueError as exc:
        return _error(str(exc))
    channel = request.args.get("channel")
    if channel:
        events = [e for e in events if e["channel"] == channel]
    return jsonify(events=events, latestReplayId=hub.latest_replay_id)


@bp.get("/delivery")
def get_delivery() -> Response:
    hub: EventHub = current_sandbox().events
    return jsonify(hub.target.describe())


DELIVERY_KEYS = frozenset({"url", "headers", "batch_size", "hmac_secret"})


@bp.route("/delivery", methods=["PUT", "POST"])
def set_delivery() -> Response | tuple[Response, int]:
    """Replace the delivery target at run time: `{url, headers?, batch_size?, hmac_secret?}`.

    The org and its kept events stay; `POST /_sandbox/reset` goes back to the configured target.
    """
    hub: EventHub = current_sandbox().events
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _error('send a JSON object: {"url", "headers"?, "batch_size"?, "hmac_secret"?}')
    unknown = sorted(set(body) - DELIVERY_KEYS)
    if unknown:
        return _error(
            f"unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(DELIVERY_KEYS))}"
        )
    url = body.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return _error("'url' must be an http(s) URL")
    headers = body.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        return _error("'headers' must be an object of strings")
    try:
        batch_size = int(body.get("batch_size", 200))
    except (TypeError, ValueError):
        return _error("'batch_size' must be an integer")
    if not 1 <= batch_size <= 2000:
        return _error("'batch_size' must be between 1 and 2000")
    secret = body.get("hmac_secret")
    if secret is not None and not isinstance(secret, str):
        return _error("'hmac_secret' must be a string")
    target = hub.configure_delivery(url, headers, batch_size, secret)
    return jsonify(target.describe())


@bp.delete("/delivery")
def stop_delivery() -> tuple[str, int]:
    current_sandbox().events.configure_delivery(None)
    return "", 204


@bp.get("/deliveries")
def list_deliveries() -> Response:
    hub: EventHub = current_sandbox().events
    limit = request.args.get("limit", "100")
    return jsonify(deliveries=hub.deliveries(int(limit) if limit.isdigit() else 100))


@bp.post("/flush")
def flush_events() -> Response:
    hub: EventHub = current_sandbox().events
    timeout = min(float(request.args.get("timeout", 5)), 60.0)
    return jsonify(idle=hub.flush(timeout))


@bp.post("/gap")
def gap_event() -> Response | tuple[Response, int]:
    hub: EventHub = current_sandbox().events
    body = request.get_json(silent=True) or {}
    entity = body.get("entity")
    change_type = body.get("change_type")
    ids = body.get("ids") or []
    if not isinstance(entity, str) or not entity:
        return _error("'entity' is required")
    if change_type not in GAP_TYPES:
        return _error(f"'change_type' must be one of {', '.join(GAP_TYPES)}")
    if change_type != "GAP_OVERFLOW" and not ids:
        return _error("'ids' is required for gap events other than GAP_OVERFLOW")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return _error("'ids' must be a list of record ids")
    return jsonify(hub.emit_gap(entity, change_type, ids))


@bp.post("/merged")
def merged_update() -> Response | tuple[Response, int]:
    sandbox = current_sandbox()
    body = request.get_json(silent=True) or {}
    entity = body.get("entity")
    ids = body.get("ids") or []
    fields = body.get("fields") or {}
    if not isinstance(entity, str) or not entity:
        return _error("'entity' is required")
    if not isinstance(ids, list) or len(ids) < 2:
        return _error("'ids' must list at least two record ids")
    if not isinstance(fields, dict) or not fields:
        return _error("'fields' must be a non-empty object")
    before = sandbox.events.latest_replay_id
    try:
        with sandbox.store.transaction(origin=str(body.get("origin", ""))):
            for record_id in ids:
                sandbox.store.update(entity, record_id, fields, origin=str(body.get("origin", "")))
    except SalesforceError as exc:
        resp = jsonify(exc.rest_body())
        return resp, exc.status
    events = [
        e for e in sandbox.events.replay(before, 10000) if e["channel"] == channel_for(entity)
    ]
    return jsonify(events=events)


@bp.post("/platform")
def platform_event() -> Response | tuple[Response, int]:
    hub: EventHub = current_sandbox().events
    body = request.get_json(silent=True) or {}
    name = body.get("name")
    payload = body.get("payload") or {}
    if not isinstance(name, str) or not name.replace("__e", "").replace("_", "").isalnum():
        return _error("'name' must be a Platform Event API name such as Contact_Sync__e")
    if not isinstance(payload, dict):
        return _error("'payload' must be an object")
    return jsonify(hub.emit_platform_event(name, payload))
