"""Outbound Messages: SOAP notifications of the org's created and edited records, with retries.

What a Flow's (or workflow rule's) Outbound Message action does in Salesforce: every create or
edit of the object queues one notification (its own id, the record's Id and the selected
fields), notifications are sent in SOAP 1.1 messages of up to 100, and a message is delivered
only when the endpoint answers Salesforce's `Ack`; anything else is retried with exponential
back-off (30 s, 1 min, 2 min ... capped at 2 h) until it is 24 h old, then dropped. The fields
carry the record's values when the message is sent, not when it was queued. Deletes send
nothing. On demand (per action) the sender also delivers a message twice (`duplicate_rate`) and
out of order (`reorder`), as Salesforce may.

The store's change listener (`OrgStore.subscribe`, the same feed events.py renders) queues the
notifications. Config keys read from the sandbox (all optional):
    OUTBOUND_DELIVERY ("thread")    "thread": a background sender; "sync": sent inside the write,
                                    and retries when `step()` runs (tests move the sandbox clock)
    OUTBOUND_SINK                   callable(url, body, headers) -> (status, body) used instead of
                                    HTTP (the e2e tests hand messages to a Flask test client)
    OUTBOUND_HTTP                   a `requests.Session` to POST with (e.g. an in-process mount)
    OUTBOUND_TIMEOUT (10)           seconds per POST
    OUTBOUND_SEED                   seeds the duplicate and reorder draws
    OUTBOUND_LINGER (0.02)          seconds the thread waits for more notifications to batch
    OUTBOUND_MAX_LOG (1000)         delivered and dropped messages kept for `GET /_sandbox/outbound`

Actions are set at run time: `POST /_sandbox/outbound` (or `configure`), several at once, one
per name (the object's name by default); `POST /_sandbox/reset` removes them with the queue.
"""

from __future__ import annotations

import logging
import random
import secrets
import string
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from xml.etree.ElementTree import ParseError
from xml.sax.saxutils import escape, quoteattr

import requests
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from flask import Blueprint, Response, jsonify, request

from sandbox.salesforce.oauth import instance_url
from sandbox.salesforce.org import current_sandbox
from sandbox.salesforce.rest import to_18

log = logging.getLogger(__name__)

bp = Blueprint("sf_outbound", __name__, url_prefix="/_sandbox/outbound")

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
SOBJECT_NS = "urn:sobject.enterprise.soap.sforce.com"
MAX_PER_MESSAGE = 100
# Changes that fire an outbound action ("created, and every time it's edited"); deletes and
# undeletes do not.
FIRING = ("CREATE", "UPDATE")
ACTION_KEYS = frozenset(
    {"name", "url", "object", "fields", "active", "retry", "duplicate_rate", "reorder"}
)
# Compound fields cannot be selected; their parts can.
NOT_SELECTABLE = ("address", "location")

Sink = Callable[[str, bytes, dict[str, str]], tuple[int, bytes]]

_ALNUM = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    """A random 18-character id with a key prefix: unique across sandbox runs too, so a
    receiver's dedupe marks from an earlier run never swallow a new notification."""
    return to_18(prefix + "".join(secrets.choice(_ALNUM) for _ in range(15 - len(prefix))))


def soap_datetime(value: Any) -> Any:
    """`2026-11-26T10:30:00.000+0000` (the store's form) -> `...00.000Z` (xsd:dateTime)."""
    if isinstance(value, str) and len(value) >= 24 and value.endswith("+0000") and value[10] == "T":
        return value[:-5] + "Z"
    return value


def _xml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape(str(soap_datetime(value)))


def is_ack(status: int, body: bytes) -> bool:
    """Whether an answer is Salesforce's required acknowledgement: a 200 whose SOAP body holds
    `notificationsResponse` with `Ack` true."""
    if status != 200:
        return False
    try:
        root = fromstring(body, forbid_dtd=True)
    except (ParseError, DefusedXmlException):
        return False
    ack = root.find(
        f"{{{SOAP_ENV}}}Body/{{{OUTBOUND_NS}}}notificationsResponse/{{{OUTBOUND_NS}}}Ack"
    )
    return root.tag == f"{{{SOAP_ENV}}}Envelope" and ack is not None and ack.text == "true"


def redacted(url: str) -> str:
    """The URL with query values hidden: the endpoint carries the receiver's secret."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = urlencode([(k, "***") for k, _ in pairs], safe="*")
    return urlunsplit(parts._replace(query=query))


@dataclass(frozen=True)
class RetryPolicy:
    """Salesforce's schedule: exponential from the first delay, capped, dropped at give-up."""

    first_delay_seconds: float = 30.0
    max_delay_seconds: float = 7200.0
    give_up_seconds: float = 86400.0

    def delay(self, failures: int) -> float:
        """Seconds before the next attempt after `failures` failed ones (1, 2, ...)."""
        return min(self.first_delay_seconds * 2 ** (failures - 1), self.max_delay_seconds)


@dataclass(frozen=True)
class OutboundAction:
    """One Outbound Message action: which object fires it, where it posts, what it carries."""

    name: str
    url: str
    object: str
    fields: tuple[str, ...]  # Id first
    active: bool
    retry: RetryPolicy
    duplicate_rate: float
    reorder: bool
    action_id: str
    instance_url: str

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": redacted(self.url),
            "object": self.object,
            "fields": list(self.fields),
            "active": self.active,
            "retry": {
                "first_delay_seconds": self.retry.first_delay_seconds,
                "max_delay_seconds": self.retry.max_delay_seconds,
                "give_up_seconds": self.retry.give_up_seconds,
            },
            "duplicate_rate": self.duplicate_rate,
            "reorder": self.reorder,
            "action_id": self.action_id,
        }


@dataclass
class Notification:
    """One queued notification: the record it names, and its values as last read."""

    id: str
    record_id: str
    values: dict[str, Any]
    queued_at: datetime


@dataclass
class Message:
    """Up to 100 notifications of one action, delivered (and retried) together."""

    id: str
    action: OutboundAction  # as it was when the message was made: removing it stops no message
    notifications: list[Notification]
    created_at: datetime
    next_attempt_at: datetime
    status: str = "pending"  # pending | delivered | dropped
    attempts: int = 0
    duplicates_sent: int = 0
    last_status: int | None = None
    last_error: str | None = None
    finished_at: datetime | None = None
    in_flight: bool = False
    attempt_log: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action.name,
            "notification_ids": [n.id for n in self.notifications],
            "record_ids": [n.record_id for n in self.notifications],
            "status": self.status,
            "attempts": self.attempts,
            "duplicates_sent": self.duplicates_sent,
            "created_at": self.created_at.isoformat(),
            "next_attempt_at": self.next_attempt_at.isoformat()
            if self.status == "pending"
            else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "attempt_log": list(self.attempt_log),
        }


class InvalidAction(ValueError):
    """An action configuration the sandbox refuses (the control route answers 400)."""


class OutboundSender:
    """The org's outbound actions, their queue of notifications and its delivery."""

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        cfg = sandbox.config
        self.mode = str(cfg.get("OUTBOUND_DELIVERY") or "thread")
        if self.mode not in ("thread", "sync"):
            raise ValueError(f"OUTBOUND_DELIVERY must be 'thread' or 'sync', not {self.mode!r}")
        self.sink: Sink | None = cfg.get("OUTBOUND_SINK")
        self.http: requests.Session | None = cfg.get("OUTBOUND_HTTP")
        self.timeout = float(cfg.get("OUTBOUND_TIMEOUT", 10))
        self.linger = float(cfg.get("OUTBOUND_LINGER", 0.02))
        self.random = random.Random(cfg.get("OUTBOUND_SEED"))
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._stepping = threading.Lock()  # one delivery pass at a time (see `step`)
        self._again = False
        self.actions: dict[str, OutboundAction] = {}
        self._unsent: dict[str, list[Notification]] = {}
        self._pending: list[Message] = []
        self._finished: deque[Message] = deque(maxlen=int(cfg.get("OUTBOUND_MAX_LOG", 1000)))
        self._counts = {"delivered": 0, "dropped": 0, "attempts": 0, "duplicates_sent": 0}
        self._sender: threading.Thread | None = None
        self._closed = False

    # -- configuration -------------------------------------------------------------------------

    def configure(self, spec: dict[str, Any], base_url: str) -> OutboundAction:
        """Add (or replace, by name) an action from its JSON form; `InvalidAction` says why not."""
        action = self._action(spec, base_url)
        with self._lock:
            self.actions[action.name] = action
        return action

    def remove(self, name: str | None = None) -> list[str]:
        """Remove one action (or all); its messages already queued still go out."""
        with self._lock:
            names = [name] if name is not None else list(self.actions)
            removed = [n for n in names if self.actions.pop(n, None) is not None]
            for n in removed:
                self._unsent.pop(n, None)
        return removed

    def _action(self, spec: dict[str, Any], base_url: str) -> OutboundAction:
        unknown = sorted(set(spec) - ACTION_KEYS)
        if unknown:
            raise InvalidAction(
                f"unknown key(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(sorted(ACTION_KEYS))}"
            )
        url = spec.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidAction("'url' must be an http(s) URL")
        obj = self.sandbox.store.schema.sobject(str(spec.get("object") or "Contact"))
        if obj is None:
            raise InvalidAction(f"'object': no object {spec.get('object')!r} in this org")
        fields = ["Id"]
        given = spec.get("fields") or []
        if not isinstance(given, list) or not all(isinstance(f, str) for f in given):
            raise InvalidAction("'fields' must be a list of field names")
        by_lower = {name.lower(): fd for name, fd in obj.fields.items()}
        for name in given:
            fd = by_lower.get(name.lower())
            if fd is None:
                raise InvalidAction(f"'fields': {obj.name} has no field {name!r}")
            if fd.type in NOT_SELECTABLE:
                raise InvalidAction(f"'fields': {fd.name} is a compound field; select its parts")
            if fd.name not in fields:
                fields.append(fd.name)
        retry = self._retry(spec.get("retry") or {})
        try:
            duplicate_rate = float(spec.get("duplicate_rate", 0.0))
        except (TypeError, ValueError):
            raise InvalidAction("'duplicate_rate' must be a number") from None
        if not 0.0 <= duplicate_rate <= 1.0:
            raise InvalidAction("'duplicate_rate' must be between 0 and 1")
        for flag in ("active", "reorder"):
            if flag in spec and not isinstance(spec[flag], bool):
                raise InvalidAction(f"{flag!r} must be true or false")
        name = spec.get("name") or obj.name
        if not isinstance(name, str):
            raise InvalidAction("'name' must be a string")
        previous = self.actions.get(name)
        return OutboundAction(
            name=name,
            url=url,
            object=obj.name,
            fields=tuple(fields),
            active=bool(spec.get("active", True)),
            retry=retry,
            duplicate_rate=duplicate_rate,
            reorder=bool(spec.get("reorder", False)),
            # A replaced action keeps its id, as editing one in Setup does.
            action_id=previous.action_id if previous is not None else new_id("04k"),
            instance_url=base_url.rstrip("/"),
        )

    @staticmethod
    def _retry(spec: Any) -> RetryPolicy:
        if not isinstance(spec, dict):
            raise InvalidAction("'retry' must be an object")
        keys = ("first_delay_seconds", "max_delay_seconds", "give_up_seconds")
        unknown = sorted(set(spec) - set(keys))
        if unknown:
            raise InvalidAction(f"'retry': unknown key(s) {', '.join(map(repr, unknown))}")
        defaults = RetryPolicy()
        try:
            values = {k: float(spec.get(k, getattr(defaults, k))) for k in keys}
        except (TypeError, ValueError):
            raise InvalidAction("'retry' values must be numbers of seconds") from None
        if min(values.values()) <= 0:
            raise InvalidAction("'retry' values must be positive")
        if values["first_delay_seconds"] > values["max_delay_seconds"]:
            raise InvalidAction("'retry': first_delay_seconds is more than max_delay_seconds")
        return RetryPolicy(**values)

    def reset(self) -> None:
        """No actions, an empty queue (the org as it starts)."""
        with self._lock:
            self.actions.clear()
            self._unsent.clear()
            self._pending.clear()
            self._finished.clear()
            self._counts = dict.fromkeys(self._counts, 0)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the background sender (queued messages stay queued)."""
        with self._lock:
            self._closed = True
            sender = self._sender
            self._sender = None
            self._wake.notify_all()
        if sender is not None:
            sender.join(timeout)

    # -- intake --------------------------------------------------------------------------------

    def on_changes(self, changes: list[Any]) -> None:
        """Store listener: queue a notification per created or edited record an action watches."""
        now = self.sandbox.clock.now()
        queued = 0
        with self._lock:
            actions = [a for a in self.actions.values() if a.active]
        for change in changes:
            if change.change_type not in FIRING:
                continue
            for action in actions:
                if action.object != change.entity:
                    continue
                values = self._read(action, change.record_id) or {"Id": change.record_id}
                note = Notification(new_id("04l"), change.record_id, values, now)
                with self._lock:
                    self._unsent.setdefault(action.name, []).append(note)
                queued += 1
        if not queued:
            return
        if self.mode == "sync":
            self.step()
            return
        with self._lock:
            if self._closed:
                return
            self._ensure_sender()
            self._wake.notify_all()

    def _read(self, action: OutboundAction, record_id: str) -> dict[str, Any] | None:
        """The record's current values of the action's fields (None once it is gone)."""
        try:
            row = self.sandbox.store.get(action.object, record_id, list(action.fields))
        except Exception:  # a record the store cannot read is sent with what was kept
            log.debug("could not read %s %s for an outbound message", action.object, record_id)
            return None
        return dict(row) if row is not None else None

    # -- delivery ------------------------------------------------------------------------------

    def step(self) -> dict[str, int]:
        """One delivery pass at the sandbox clock's now: batch what is queued, drop what is past
        its give-up time, attempt every message that is due. Returns what the pass did.

        Only one pass runs at a time; a pass asked for while another runs is left to that one,
        which goes round again (a receiver that writes back to this org must not deadlock).
        """
        done = {"attempted": 0, "delivered": 0, "failed": 0, "dropped": 0, "duplicates_sent": 0}
        if not self._stepping.acquire(blocking=False):
            with self._lock:
                self._again = True
            return done
        try:
            for _ in range(100):
                with self._lock:
                    self._again = False
                due, dropped = self._take_due()
                done["dropped"] += dropped
                for message in due:
                    outcome = self._attempt(message)
                    done["attempted"] += 1
                    done[outcome] += 1
                    if outcome == "delivered" and self._duplicate(message):
                        done["duplicates_sent"] += 1
                with self._lock:
                    if not self._again:
                        break
        finally:
            self._stepping.release()
        return done

    def _take_due(self) -> tuple[list[Message], int]:
        now = self.sandbox.clock.now()
        with self._lock:
            for name, notes in list(self._unsent.items()):
                action = self.actions.get(name)
                if action is None or not notes:
                    continue
                if action.reorder:
                    self.random.shuffle(notes)
                for start in range(0, len(notes), MAX_PER_MESSAGE):
                    chunk = notes[start : start + MAX_PER_MESSAGE]
                    self._pending.append(
                        Message(
                            id=f"om_{secrets.token_hex(8)}",
                            action=action,
                            notifications=chunk,
                            # Its 24 hours run from the oldest notification's queueing.
                            created_at=min(n.queued_at for n in chunk),
                            next_attempt_at=now,
                        )
                    )
                self._unsent[name] = []
            dropped = 0
            for message in list(self._pending):
                give_up = timedelta(seconds=message.action.retry.give_up_seconds)
                if message.in_flight or now - message.created_at < give_up:
                    continue
                message.status = "dropped"
                message.finished_at = now
                self._finish(message)
                dropped += 1
                log.warning(
                    "outbound message %s dropped after %d attempts", message.id, message.attempts
                )
            due = [m for m in self._pending if not m.in_flight and m.next_attempt_at <= now]
            due.sort(key=lambda m: m.next_attempt_at)
            if any(m.action.reorder for m in due):
                self.random.shuffle(due)
            for message in due:
                message.in_flight = True
        return due, dropped

    def _finish(self, message: Message) -> None:
        """Move a message out of the queue (lock held)."""
        self._pending.remove(message)
        self._finished.append(message)
        self._counts[message.status] += 1

    def _attempt(self, message: Message) -> str:
        """POST one message; on anything but an Ack, schedule its retry. 'delivered'/'failed'."""
        for note in message.notifications:
            # The values when it is sent, not when it was queued (Salesforce documents so).
            note.values = self._read(message.action, note.record_id) or note.values
        status, error = self._post(message)
        now = self.sandbox.clock.now()
        with self._lock:
            message.in_flight = False
            message.attempts += 1
            self._counts["attempts"] += 1
            message.last_status = status
            message.last_error = error
            message.attempt_log.append(
                {"at": now.isoformat(), "http_status": status, "error": error}
            )
            if error is None:
                message.status = "delivered"
                message.finished_at = now
                self._finish(message)
                return "delivered"
            delay = message.action.retry.delay(message.attempts)
            message.next_attempt_at = now + timedelta(seconds=delay)
        log.info(
            "outbound message %s attempt %d failed (%s); next at %s",
            message.id,
            message.attempts,
            error,
            message.next_attempt_at.isoformat(),
        )
        return "failed"

    def _duplicate(self, message: Message) -> bool:
        """Send a delivered message once more at the action's duplicate rate."""
        with self._lock:
            if self.random.random() >= message.action.duplicate_rate:
                return False
        self._post(message)
        with self._lock:
            message.duplicates_sent += 1
            self._counts["duplicates_sent"] += 1
        return True

    def _post(self, message: Message) -> tuple[int | None, str | None]:
        """(HTTP status, why it is not an Ack or None when it is)."""
        action = message.action
        body = self.render(action, message.notifications)
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
        try:
            if self.sink is not None:
                status, answer = self.sink(action.url, body, headers)
            else:
                http = self.http or requests.Session()
                resp = http.post(action.url, data=body, headers=headers, timeout=self.timeout)
                status, answer = resp.status_code, resp.content
        except Exception as exc:  # the receiver is down or the sink raised: a failed attempt
            return None, type(exc).__name__
        if is_ack(status, answer):
            return status, None
        return status, answer[:500].decode("utf-8", "replace") or "no Ack in the answer"

    def render(self, action: OutboundAction, notifications: list[Notification]) -> bytes:
        """The SOAP message as Salesforce sends it (null fields left out)."""
        org_id = str(self.sandbox.config["ORG_ID"])
        version = str(self.sandbox.config["API_VERSIONS"][-1])
        items = []
        for note in notifications:
            fields = [f"<sf:Id>{escape(note.record_id)}</sf:Id>"]
            for name in action.fields:
                value = note.values.get(name)
                if name == "Id" or value is None or isinstance(value, dict):
                    continue
                fields.append(f"<sf:{name}>{_xml_value(value)}</sf:{name}>")
            items.append(
                f"<Notification><Id>{note.id}</Id>"
                f"<sObject xsi:type={quoteattr('sf:' + action.object)} "
                f'xmlns:sf="{SOBJECT_NS}">{"".join(fields)}</sObject></Notification>'
            )
        base = escape(action.instance_url)
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" '
            'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            "<soapenv:Body>"
            f'<notifications xmlns="{OUTBOUND_NS}">'
            f"<OrganizationId>{escape(org_id)}</OrganizationId>"
            f"<ActionId>{action.action_id}</ActionId>"
            '<SessionId xsi:nil="true"/>'
            f"<EnterpriseUrl>{base}/services/Soap/c/{version}/{org_id[:15]}</EnterpriseUrl>"
            f"<PartnerUrl>{base}/services/Soap/u/{version}/{org_id[:15]}</PartnerUrl>"
            f"{''.join(items)}"
            "</notifications></soapenv:Body></soapenv:Envelope>"
        ).encode()

    def _ensure_sender(self) -> None:
        if self._sender is None or not self._sender.is_alive():
            self._sender = threading.Thread(
                target=self._send_loop, name="sf-sandbox-outbound", daemon=True
            )
            self._sender.start()

    def _send_loop(self) -> None:
        """Sleep until a notification is queued or a retry falls due, then run a pass. The
        sandbox clock can jump, so a wait for a retry is never longer than a second."""
        while True:
            with self._lock:
                if self._closed:
                    return
                wait = self._seconds_to_due()
                if wait is None or wait > 0:
                    self._wake.wait(None if wait is None else min(wait, 1.0))
                if self._closed:
                    return
            if self.linger:
                time.sleep(self.linger)  # let a burst of writes fill a message
            self.step()

    def _seconds_to_due(self) -> float | None:
        """Seconds until something is due (0: now); None when nothing is queued (lock held)."""
        if any(self._unsent.get(name) for name in self.actions):
            return 0.0
        waiting = [m.next_attempt_at for m in self._pending if not m.in_flight]
        if not waiting:
            return None
        return max(0.0, (min(waiting) - self.sandbox.clock.now()).total_seconds())

    def flush(self, timeout: float = 5.0) -> bool:
        """Run passes until nothing is due now (retries waiting for their time do not count).
        True when that happened within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self.step()
            with self._lock:
                busy = any(m.in_flight for m in self._pending)
                due = self._seconds_to_due()
            if not busy and (due is None or due > 0):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    # -- read-back -----------------------------------------------------------------------------

    def state(self, limit: int = 100) -> dict[str, Any]:
        with self._lock:
            unsent = sum(len(self._unsent.get(name, [])) for name in self.actions)
            messages = [*self._finished, *self._pending][-limit:] if limit > 0 else []
            return {
                "actions": [a.describe() for a in self.actions.values()],
                "queue": {
                    "unsent": unsent,
                    "pending": len(self._pending),
                    "pending_notifications": unsent
                    + sum(len(m.notifications) for m in self._pending),
                    **self._counts,
                },
                "messages": [m.describe() for m in messages],
            }


# -- control routes ----------------------------------------------------------------------------


def _error(message: str, status: int = 400) -> tuple[Response, int]:
    return jsonify(error=message), status


@bp.get("")
def show() -> Response:
    """Actions, queue counts, and the latest messages (`?limit=`, default 100)."""
    limit = request.args.get("limit", "100")
    sender: OutboundSender = current_sandbox().outbound
    return jsonify(sender.state(int(limit) if limit.isdigit() else 100))


@bp.post("")
def add_action() -> Response | tuple[Response, int]:
    """Add or replace an action: `{url, object?, fields?, name?, active?, retry?: {...},
    duplicate_rate?, reorder?}`."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _error('send a JSON object: {"url", "object"?, "fields"?, ...}')
    sender: OutboundSender = current_sandbox().outbound
    try:
        action = sender.configure(body, instance_url())
    except InvalidAction as exc:
        return _error(str(exc))
    return jsonify(action.describe()), 201


@bp.delete("")
def remove_all() -> Response:
    return jsonify(removed=current_sandbox().outbound.remove())


@bp.delete("/<name>")
def remove_one(name: str) -> Response | tuple[Response, int]:
    removed = current_sandbox().outbound.remove(name)
    if not removed:
        return _error(f"no outbound action named {name!r}", 404)
    return jsonify(removed=removed)


@bp.post("/step")
def step() -> Response:
    """One delivery pass now (move the clock first with `POST /_sandbox/clock` for retries)."""
    sender: OutboundSender = current_sandbox().outbound
    return jsonify(sender.step())


@bp.post("/flush")
def flush() -> Response:
    sender: OutboundSender = current_sandbox().outbound
    timeout = min(float(request.args.get("timeout", 5)), 60.0)
    return jsonify(idle=sender.flush(timeout))
