"""`/v3/emails` and `/v3/reports/email_reports/.../tracking/...`: sent campaigns and their reports.

The sandbox holds campaigns that control routes make (see `control.py`), sent or, on request, still
drafts: a campaign has a `primary_email` activity, the `permalink` activity Constant Contact creates
beside it, and at most one `resend` activity (to non-openers; one per campaign, as the spec says).
Each time an activity goes out is one row of `email_sends` (its send history); every recipient
event is one row of `email_tracking`, keyed by the activity and the contact's rowid. Reports list
them most recent first and page by a `_links.next.href` cursor.

The send simulator (`Emails._simulate`) draws recipient events at per-recipient rates between two
moments, never past the sandbox clock: opens (some more than once), clicks on the activity's links
(each after an open, as a tracker records the open first), bounces with the spec's codes, forwards
and opt-outs (which unsubscribe the contact account-wide, as the person's own link does). A seed
makes it repeatable.

The tables live in the account's SQLite db (`store.Store`), so snapshots and the store's lock
cover them too.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, jsonify, request

from sandbox.constantcontact import errors
from sandbox.constantcontact.account import current_sandbox
from sandbox.constantcontact.contacts import csv_arg, decode_cursor, encode_cursor, limit_arg
from sandbox.constantcontact.store import (
    ACTIVE_PERMISSIONS,
    Store,
    chunks,
    is_uuid,
    iso,
    iso_date,
    marks,
    new_id,
    parse_time,
)

bp = Blueprint("cc_emails", __name__, url_prefix="/v3")

SCHEMA = """
CREATE TABLE IF NOT EXISTS email_campaigns (
    id INTEGER PRIMARY KEY,
    campaign_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    type TEXT NOT NULL DEFAULT 'NEWSLETTER',
    type_code INTEGER NOT NULL DEFAULT 10,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS email_campaigns_name ON email_campaigns(lower(name));
CREATE INDEX IF NOT EXISTS email_campaigns_updated ON email_campaigns(updated_at);
CREATE TABLE IF NOT EXISTS email_activities (
    id INTEGER PRIMARY KEY,
    campaign_activity_id TEXT NOT NULL UNIQUE,
    campaign INTEGER NOT NULL,
    role TEXT NOT NULL,
    sent_at INTEGER,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS email_activities_campaign ON email_activities(campaign);
CREATE TABLE IF NOT EXISTS email_sends (
    id INTEGER PRIMARY KEY,
    activity INTEGER NOT NULL,
    run_at INTEGER NOT NULL,
    count INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS email_sends_activity ON email_sends(activity, id);
CREATE TABLE IF NOT EXISTS email_tracking (
    id INTEGER PRIMARY KEY,
    activity INTEGER NOT NULL,
    contact INTEGER NOT NULL,
    kind TEXT NOT NULL,
    at INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS email_tracking_report ON email_tracking(activity, kind, at, id);
CREATE INDEX IF NOT EXISTS email_tracking_contact ON email_tracking(activity, contact, kind);
"""
TABLES = ("email_tracking", "email_sends", "email_activities", "email_campaigns")

# report path segment -> (event kind recorded, tracking_activity_type reported)
REPORTS: dict[str, tuple[str, str]] = {
    "sends": ("send", "em_sends"),
    "opens": ("open", "em_opens"),
    "unique_opens": ("open", "em_opens"),
    "clicks": ("click", "em_clicks"),
    "bounces": ("bounce", "em_bounces"),
    "optouts": ("optout", "em_optouts"),
    "forwards": ("forward", "em_forwards"),
}
EVENT_KINDS = ("open", "click", "bounce", "optout", "forward")
# The spec's bounce codes (BouncesTrackingActivity.bounce_code): B non-existent address,
# D undeliverable, F mailbox full, S suspended, V vacation/autoreply (the message WAS delivered),
# X other, Z blocked by the ISP. The weights are the simulator's default mix.
BOUNCE_CODES = ("B", "D", "F", "S", "V", "X", "Z")
BOUNCE_MIX = {"B": 0.30, "D": 0.10, "F": 0.10, "S": 0.05, "V": 0.15, "X": 0.10, "Z": 0.20}
BOUNCE_DELAY = 3600 * 1000  # a bounce comes back within the hour after the send
DEVICE_TYPES = ("computer", "mobile", "tablet", "other")
ACTIVITY_INCLUDES = (
    "physical_address_in_footer",
    "permalink_url",
    "html_content",
    "document_properties",
)
# type_code -> type, from the spec's list under EmailCampaign.type_code. The spec spells out only
# NEWSLETTER (10); the others are its labels in the same upper-snake form (live answers show
# CUSTOM_CODE_EMAIL for 26). It lists no code for automated emails (those are automations, under
# /automations/workflows): a campaign of a kind it does not list is made with both `type` and
# `type_code` given, and rendered as given.
CAMPAIGN_TYPES: dict[int, str] = {
    1: "DEFAULT",
    2: "BULK_EMAIL",
    10: "NEWSLETTER",
    11: "ANNOUNCEMENT",
    12: "PRODUCT_SERVICE_NEWS",
    14: "BUSINESS_LETTER",
    15: "CARD",
    16: "PRESS_RELEASE",
    17: "FLYER",
    18: "FEEDBACK_REQUEST",
    19: "RATINGS_AND_REVIEWS",
    20: "EVENT_ANNOUNCEMENT",
    21: "SIMPLE_COUPON",
    22: "SALE_PROMOTION",
    23: "PRODUCT_PROMOTION",
    24: "MEMBERSHIP_DRIVE",
    25: "FUNDRAISER",
    26: "CUSTOM_CODE_EMAIL",
    57: "AB_TEST",
}
NEWSLETTER = 10
AB_TEST = 57
TYPE_NAME_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,49}$")
# ABTestData: test_size 5..50 (percent), winner_wait_duration one of these (hours).
AB_WAIT_HOURS = (6, 12, 24, 48)
FORMAT_TYPE = 5  # a custom code email: the only modern format that carries html_content
PHYSICAL_ADDRESS = {
    "address_line1": "1 Sandbox Way",
    "city": "Waltham",
    "country_code": "US",
    "country_name": "United States",
    "organization_name": "Sandbox Organization",
    "postal_code": "02451",
    "state_code": "MA",
    "state_name": "Massachusetts",
}
MAX_EVENTS = 10000
# EmailSendHistory.reason_code: 0 sent; 12 no eligible contact (COMPLETED with a count of 0);
# 1 to 11 the ways a send attempt ERRORED.
SENT, NO_ELIGIBLE, ERROR_CODES = 0, 12, range(1, 12)
MAX_LINK = 1005  # reason_code 8: a link URL longer than this stops the send
# What the simulator draws per recipient: open, click and forward are shares of the recipients
# (clickers and forwarders are openers too), reopen the share of openers who open again, bounce
# and optout shares of the recipients.
RATE_KEYS = ("open", "click", "bounce", "optout", "forward", "reopen")
DEFAULT_RATES = {
    "open": 0.0,
    "click": 0.0,
    "bounce": 0.0,
    "optout": 0.0,
    "forward": 0.0,
    "reopen": 0.3,
}
DEFAULT_SPREAD = 86400 * 1000
# Per-recipient odds a seeded campaign draws from (typical small-business newsletter figures).
SEED_RATES = {
    "open": 0.30,
    "click": 0.10,
    "bounce": 0.02,
    "optout": 0.003,
    "forward": 0.005,
    "reopen": 0.4,
}
SEED_SUBJECTS = (
    "Our spring collection is here",
    "You're invited: open house this Saturday",
    "News from the team",
    "Last chance: 20% off ends tonight",
    "Thank you for a great year",
    "Tips to get the most from your membership",
)
SEED_DEVICES = (("computer", 0.45), ("mobile", 0.45), ("tablet", 0.07), ("other", 0.03))
# A campaign's sent_at is its primary email's: none while it is a draft.
SENT_AT = (
    "(SELECT a.sent_at FROM email_activities a WHERE a.campaign = c.id"
    " AND a.role = 'primary_email') AS sent_at"
)
HREF_RE = re.compile(r"""href\s*=\s*["'](https?://[^"'\s]+)["']""", re.IGNORECASE)


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


def _time(value: Any, name: str, now: int) -> int:
    """A past moment (default now): what was sent or done cannot lie ahead of the clock."""
    if value is None:
        return now
    if not isinstance(value, str):
        raise errors.bad_request(f"{name} must be an ISO-8601 date-time.")
    when = parse_time(value, name)
    if when > now:
        raise errors.bad_request(f"{name} is in the future.")
    return when


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise errors.bad_request(f"{name} must be a number.")
    return float(value)


def _campaign_type(body: dict[str, Any]) -> tuple[str, int]:
    """(type, type_code): NEWSLETTER unless asked; a kind the spec does not list needs both."""
    code, name = body.get("type_code"), body.get("type")
    if code is None and name is None:
        return CAMPAIGN_TYPES[NEWSLETTER], NEWSLETTER
    if code is not None and (isinstance(code, bool) or not isinstance(code, int) or code < 0):
        raise errors.bad_request("type_code must be a non-negative integer.")
    if name is not None and (not isinstance(name, str) or not TYPE_NAME_RE.match(name)):
        raise errors.bad_request("type must be an upper-case name such as NEWSLETTER.")
    if code is None:
        codes = {v: k for k, v in CAMPAIGN_TYPES.items()}
        if name not in codes:
            raise errors.bad_request(f"type {name} has no type_code in the spec: give type_code.")
        return str(name), codes[str(name)]
    if name is None:
        if code not in CAMPAIGN_TYPES:
            raise errors.bad_request(f"type_code {code} is not in the spec's list: give type too.")
        return CAMPAIGN_TYPES[code], code
    return str(name), code


def _ab_test(body: dict[str, Any], type_code: int, subject: str) -> dict[str, Any] | None:
    """An A/B test campaign's ABTestData (subject lines only, as the spec says), else None."""
    raw = body.get("ab_test")
    if raw is None:
        if type_code != AB_TEST:
            return None
        raw = {}
    if type_code != AB_TEST:
        raise errors.bad_request(f"ab_test goes with type_code {AB_TEST} (A/B Test).")
    if not isinstance(raw, dict):
        raise errors.bad_request("ab_test must be an object.")
    out = {
        "alternative_subject": raw.get("alternative_subject", f"{subject} (B)"),
        "test_size": raw.get("test_size", 30),
        "winner_wait_duration": raw.get("winner_wait_duration", 24),
    }
    if not isinstance(out["alternative_subject"], str) or not out["alternative_subject"].strip():
        raise errors.bad_request("ab_test.alternative_subject must be a non-empty string.")
    size = out["test_size"]
    if isinstance(size, bool) or not isinstance(size, int) or not 5 <= size <= 50:
        raise errors.bad_request("ab_test.test_size must be 5 to 50 (percent).")
    if out["winner_wait_duration"] not in AB_WAIT_HOURS:
        raise errors.bad_request(f"ab_test.winner_wait_duration must be one of {AB_WAIT_HOURS}.")
    return out


def _odds(raw: Any) -> dict[str, float]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise errors.bad_request("rates must be an object.")
    odds = dict(DEFAULT_RATES)
    for key, value in raw.items():
        if key not in RATE_KEYS:
            raise errors.bad_request(f"rates takes {', '.join(RATE_KEYS)}.")
        rate = _number(value, f"rates.{key}")
        if not 0.0 <= rate <= 1.0:
            raise errors.bad_request(f"rates.{key} must be within 0..1.")
        odds[key] = rate
    return odds


def _links(raw: Any) -> tuple[str, ...]:
    links = [] if raw is None else raw
    if not isinstance(links, list) or not all(
        isinstance(x, str) and x.startswith(("http://", "https://")) and len(x) <= MAX_LINK
        for x in links
    ):
        raise errors.bad_request(f"links must be http(s) URLs of at most {MAX_LINK} characters.")
    return tuple(dict.fromkeys(links))


def _bounce_mix(raw: Any) -> dict[str, float]:
    """Weights by bounce code: the default mix, a list of codes (equally likely) or weights."""
    mix = BOUNCE_MIX if raw is None else raw
    if isinstance(mix, list):
        mix = dict.fromkeys(mix, 1.0)
    if not isinstance(mix, dict) or not mix or any(k not in BOUNCE_CODES for k in mix):
        raise errors.bad_request(
            f"bounce_codes must be a list of, or weights by, {', '.join(BOUNCE_CODES)}."
        )
    weights = {str(k): _number(v, f"bounce_codes.{k}") for k, v in mix.items()}
    if any(w < 0 for w in weights.values()) or not sum(weights.values()) > 0:
        raise errors.bad_request("bounce_codes weights must be >= 0, not all 0.")
    return weights


@dataclass(frozen=True)
class Plan:
    """What a simulated send draws: per-recipient odds, the links clicked, the bounce-code mix."""

    odds: dict[str, float]
    links: tuple[str, ...]
    bounce_mix: dict[str, float]
    spread: int  # ms after the send that events may take (capped by the clock)
    seed: int

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Plan:
        """The simulation a control body asks for: `rates`, `links`, `bounce_codes`,
        `spread_seconds` (default a day) and `seed` (default 42)."""
        spread = body.get("spread_seconds")
        spread_ms = (
            DEFAULT_SPREAD if spread is None else int(_number(spread, "spread_seconds") * 1000)
        )
        if spread_ms < 0:
            raise errors.bad_request("spread_seconds must be >= 0.")
        seed = body.get("seed", 42)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise errors.bad_request("seed must be an integer.")
        return cls(
            odds=_odds(body.get("rates")),
            links=_links(body.get("links")),
            bounce_mix=_bounce_mix(body.get("bounce_codes")),
            spread=spread_ms,
            seed=seed,
        )

    @property
    def draws(self) -> bool:
        return any(self.odds[k] > 0 for k in RATE_KEYS if k != "reopen")


class _Draw:
    """One simulation's dice and the tracking rows they make, recipient by recipient.

    A bounce comes back within the hour; only a V (autoreply) bounce still lets the person read.
    A reader opens at a moment in the window and may open again later; clickers and forwarders
    are readers (a tracker records the open first) and act after that open. An opt-out (active
    contacts only) follows the read, if any. Times never pass the window's end.
    """

    def __init__(
        self, activity: int, plan: Plan, rng: random.Random, url_ids: dict[str, str]
    ) -> None:
        odds = plan.odds
        self.activity = activity
        self.rng = rng
        self.url_ids = url_ids
        self.links = list(url_ids)
        self.p_bounce, self.p_optout = odds["bounce"], odds["optout"]
        self.p_click, self.p_forward, self.p_reopen = odds["click"], odds["forward"], odds["reopen"]
        # Clickers and forwarders open too: the rest open at the odds that make `open` overall.
        engaged = 1 - (1 - self.p_click) * (1 - self.p_forward)
        self.p_rest = max(0.0, (odds["open"] - engaged) / (1 - engaged)) if engaged < 1 else 0.0
        self.codes, self.code_weights = list(plan.bounce_mix), list(plan.bounce_mix.values())
        self.devices = [d for d, _ in SEED_DEVICES]
        self.device_weights = [w for _, w in SEED_DEVICES]
        self.rows: list[tuple[int, int, str, int, str]] = []
        self.optouts: list[tuple[int, int]] = []
        self.recorded = dict.fromkeys(EVENT_KINDS, 0)
        self.people = dict.fromkeys(EVENT_KINDS, 0)

    def counts(self) -> dict[str, dict[str, int]]:
        """Events recorded by kind, and how many recipients had each kind."""
        return {"recorded": self.recorded, "contacts": self.people}

    def _add(self, contact: int, kind: str, at: int, data: str) -> None:
        self.rows.append((self.activity, contact, kind, at, data))
        self.recorded[kind] += 1

    def _between(self, first: int, last: int) -> int:
        return first + int(self.rng.random() * (last - first + 1))

    def recipient(
        self, contact: int, email: str, first: int, end: int, active: bool, may_bounce: bool
    ) -> None:
        """Draw one recipient's events between `first` and `end`."""
        rand = self.rng.random
        mail = json.dumps(email)
        if may_bounce and rand() < self.p_bounce:
            code = self.rng.choices(self.codes, self.code_weights)[0]
            at = self._between(first, min(end, first + BOUNCE_DELAY))
            self._add(contact, "bounce", at, f'{{"email":{mail},"bounce_code":"{code}"}}')
            self.people["bounce"] += 1
            if code != "V":
                return
        clicks, forwards = rand() < self.p_click, rand() < self.p_forward
        read = first
        if clicks or forwards or rand() < self.p_rest:
            read = self._read(contact, email, mail, first, end, clicks, forwards)
        if active and rand() < self.p_optout:
            at = self._between(read, end)
            self._add(contact, "optout", at, f'{{"email":{mail}}}')
            self.optouts.append((contact, at))
            self.people["optout"] += 1

    def _read(
        self,
        contact: int,
        email: str,
        mail: str,
        first: int,
        end: int,
        clicks: bool,
        forwards: bool,
    ) -> int:
        """The opens, click and forward of a reader; answers the moment of the first open."""
        device = self.rng.choices(self.devices, self.device_weights)[0]
        seen = f'{{"email":{mail},"device_type":"{device}"}}'
        opened = self._between(first, end)
        self._add(contact, "open", opened, seen)
        self.people["open"] += 1
        if self.rng.random() < self.p_reopen:
            for _ in range(self.rng.choice((1, 1, 2))):
                self._add(contact, "open", self._between(opened, end), seen)
        if clicks:
            url = self.rng.choice(self.links)
            data = {"email": email, "device_type": device, "url_id": self.url_ids[url]}
            data["link_url"] = url
            self._add(contact, "click", self._between(opened, end), _dump(data))
            self.people["click"] += 1
        if forwards:
            self._add(contact, "forward", self._between(opened, end), f'{{"email":{mail}}}')
            self.people["forward"] += 1
        return opened


def _wants_simulation(body: dict[str, Any]) -> bool:
    return body.get("rates") is not None


class Emails:
    """The account's email campaigns, their activities, send history and per-recipient tracking."""

    def __init__(self, store: Store) -> None:
        self.store = store
        with store.lock:
            store.db.executescript(SCHEMA)
        with store.tx() as db:
            self._upgrade(db)

    @staticmethod
    def _upgrade(db: sqlite3.Connection) -> None:
        """Bring a snapshot written before campaign types and send history up to date."""
        columns = {r["name"] for r in db.execute("PRAGMA table_info(email_campaigns)")}
        if "type" not in columns:
            db.execute(
                "ALTER TABLE email_campaigns ADD COLUMN type TEXT NOT NULL DEFAULT 'NEWSLETTER'"
            )
        if "type_code" not in columns:
            db.execute(
                "ALTER TABLE email_campaigns ADD COLUMN type_code INTEGER NOT NULL DEFAULT 10"
            )
        db.execute(
            "INSERT INTO email_sends(activity, run_at, count, data)"
            " SELECT a.id, a.sent_at, (SELECT COUNT(*) FROM email_tracking t"
            " WHERE t.activity = a.id AND t.kind = 'send'),"
            " json_object('contact_list_ids', json_extract(a.data, '$.contact_list_ids'),"
            " 'send_status', 'COMPLETED', 'reason_code', 0)"
            " FROM email_activities a WHERE a.sent_at IS NOT NULL"
            " AND NOT EXISTS (SELECT 1 FROM email_sends s WHERE s.activity = a.id)"
        )

    def reset(self) -> None:
        with self.store.tx() as db:
            for table in TABLES:
                db.execute(f"DELETE FROM {table}")

    def counts(self) -> dict[str, Any]:
        with self.store.read() as db:
            campaigns = db.execute("SELECT COUNT(*) FROM email_campaigns").fetchone()[0]
            activities = db.execute("SELECT COUNT(*) FROM email_activities").fetchone()[0]
            sends = db.execute("SELECT COUNT(*) FROM email_sends").fetchone()[0]
            tracking = dict(
                db.execute("SELECT kind, COUNT(*) FROM email_tracking GROUP BY kind").fetchall()
            )
        return {
            "campaigns": campaigns,
            "activities": activities,
            "send_history": sends,
            "tracking": tracking,
        }

    # -- making campaigns (control routes) --------------------------------------------------

    def _audience(
        self, db: sqlite3.Connection, body: dict[str, Any]
    ) -> tuple[list[str], list[int]]:
        """The list ids (given as ids or names) and the contacts (rowids) a send addresses."""
        given: dict[str, list[str]] = {}
        for key in ("list_ids", "list_names", "contact_ids"):
            value = body.get(key) or []
            if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                raise errors.bad_request(f"{key} must be an array of strings.")
            given[key] = value
        if not any(given.values()):
            raise errors.bad_request("Give list_ids, list_names or contact_ids to send to.")
        wanted = [x.lower() for x in given["list_ids"]]
        known = {
            r["list_id"]
            for part in chunks(wanted)
            for r in db.execute(
                f"SELECT list_id FROM lists WHERE deleted_at IS NULL"
                f" AND list_id IN ({marks(len(part))})",
                tuple(part),
            )
        }
        missing = [x for x in given["list_ids"] if x.lower() not in known]
        if missing:
            raise errors.bad_request(f"Contact list {missing[0]} does not exist.")
        for name in given["list_names"]:
            row = db.execute(
                "SELECT list_id FROM lists WHERE deleted_at IS NULL AND lower(name) = lower(?)",
                (name,),
            ).fetchone()
            if row is None:
                raise errors.bad_request(f"No contact list is named {name}.")
            wanted.append(row["list_id"])
        found: dict[str, int] = {}
        lowered = [x.lower() for x in given["contact_ids"]]
        for part in chunks(lowered):
            for r in db.execute(
                f"SELECT id, contact_id FROM contacts WHERE contact_id IN ({marks(len(part))})",
                tuple(part),
            ):
                found[r["contact_id"]] = r["id"]
        unknown = [x for x in given["contact_ids"] if x.lower() not in found]
        if unknown:
            raise errors.bad_request(f"Contact {unknown[0]} does not exist.")
        return list(dict.fromkeys(wanted)), sorted(set(found.values()))

    @staticmethod
    def _active(db: sqlite3.Connection, list_ids: list[str], contacts: list[int]) -> list[int]:
        """Rowids of the audience a send reaches now: undeleted contacts with an email, active."""
        active = marks(len(ACTIVE_PERMISSIONS))
        rowids: set[int] = set()
        for part in chunks(list_ids):
            rowids.update(
                r[0]
                for r in db.execute(
                    "SELECT DISTINCT c.id FROM contacts c JOIN memberships m ON m.contact = c.id"
                    f" JOIN lists l ON l.id = m.list WHERE l.list_id IN ({marks(len(part))})"
                    f" AND c.deleted_at IS NULL AND c.email IS NOT NULL"
                    f" AND c.permission IN ({active})",
                    (*part, *ACTIVE_PERMISSIONS),
                )
            )
        for part in chunks(contacts):
            rowids.update(
                r[0]
                for r in db.execute(
                    f"SELECT id FROM contacts WHERE id IN ({marks(len(part))})"
                    f" AND deleted_at IS NULL AND email IS NOT NULL AND permission IN ({active})",
                    (*part, *ACTIVE_PERMISSIONS),
                )
            )
        return sorted(rowids)

    @staticmethod
    def _send(
        db: sqlite3.Connection,
        activity: int,
        rowids: list[int],
        at: int,
        list_ids: list[str],
        reason: int | None = None,
    ) -> None:
        """One send of an activity: a send event per recipient and a send-history entry.

        `reason` (1 to 11) records an attempt that ERRORED instead: nothing goes out.
        """
        if reason is None:
            for part in chunks(rowids):
                db.execute(
                    "INSERT INTO email_tracking(activity, contact, kind, at, data)"
                    " SELECT ?, id, 'send', ?, json_object('email', email) FROM contacts"
                    f" WHERE id IN ({marks(len(part))})",
                    (activity, at, *part),
                )
        count = len(rowids) if reason is None else 0
        history = {
            "contact_list_ids": list_ids,
            "send_status": "COMPLETED" if reason is None else "ERRORED",
            "reason_code": reason if reason is not None else (SENT if count else NO_ELIGIBLE),
        }
        db.execute(
            "INSERT INTO email_sends(activity, run_at, count, data) VALUES (?, ?, ?, ?)",
            (activity, at, count, _dump(history)),
        )

    def _insert_activity(
        self,
        db: sqlite3.Connection,
        campaign: int,
        role: str,
        sent_at: int | None,
        data: dict[str, Any],
    ) -> tuple[int, str]:
        activity_id = new_id()
        cur = db.execute(
            "INSERT INTO email_activities(campaign_activity_id, campaign, role, sent_at, data)"
            " VALUES (?, ?, ?, ?, ?)",
            (activity_id, campaign, role, sent_at, _dump(data)),
        )
        return int(cur.lastrowid or 0), activity_id

    @staticmethod
    def _content(body: dict[str, Any]) -> dict[str, Any]:
        subject = body.get("subject")
        if not isinstance(subject, str) or not subject.strip():
            raise errors.bad_request("subject is required.")
        from_email = str(body.get("from_email") or "sender@example.com")
        content = {
            "subject": subject,
            "from_name": str(body.get("from_name") or "Sandbox Sender"),
            "from_email": from_email,
            "reply_to_email": str(body.get("reply_to_email") or from_email),
            "html_content": str(
                body.get("html_content")
                or f"<html><body><p>{subject}</p>[[trackingImage]]</body></html>"
            ),
        }
        if isinstance(body.get("preheader"), str):
            content["preheader"] = body["preheader"]
        return content

    def create(self, body: dict[str, Any], rng: random.Random | None = None) -> dict[str, Any]:
        """A campaign sent at `sent_at` (default now) to the active contacts of its audience.

        With `draft: true` it is only created (send it with `send`). With `rates` the simulator
        then draws the recipients' events between `sent_at` and `spread_seconds` later (capped by
        the clock), using `rng` if given, else one seeded with the body's `seed`.
        """
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 80:
            raise errors.bad_request("name must be 1 to 80 characters.")
        content = self._content(body)
        kind, type_code = _campaign_type(body)
        ab_test = _ab_test(body, type_code, content["subject"])
        draft = body.get("draft", False)
        if not isinstance(draft, bool):
            raise errors.bad_request("draft must be true or false.")
        if draft and (body.get("sent_at") is not None or _wants_simulation(body)):
            raise errors.bad_request("A draft is not sent: it takes no sent_at nor rates.")
        plan = Plan.from_body(body) if _wants_simulation(body) else None
        now = self.store.now()
        sent_at = None if draft else _time(body.get("sent_at"), "sent_at", now)
        with self.store.tx() as db:
            if db.execute(
                "SELECT 1 FROM email_campaigns WHERE lower(name) = lower(?)", (name,)
            ).fetchone():
                raise errors.conflict(f"An email campaign named {name} already exists.")
            list_ids, contacts = self._audience(db, body)
            rowids = [] if draft else self._active(db, list_ids, contacts)
            if not draft and not rowids:
                raise errors.bad_request("No active contact to send to.")
            campaign_id = new_id()
            stamp = now if sent_at is None else sent_at
            cur = db.execute(
                "INSERT INTO email_campaigns(campaign_id, name, type, type_code, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (campaign_id, name, kind, type_code, stamp, stamp),
            )
            campaign = int(cur.lastrowid or 0)
            data: dict[str, Any] = {**content, "contact_list_ids": list_ids}
            primary_data = dict(data)
            if contacts:
                primary_data["contacts"] = contacts  # the audience beyond lists, for later sends
            if ab_test:
                primary_data["ab_test"] = ab_test
            primary, primary_id = self._insert_activity(
                db, campaign, "primary_email", sent_at, primary_data
            )
            _, permalink_id = self._insert_activity(db, campaign, "permalink", None, data)
            out: dict[str, Any] = {
                "campaign_id": campaign_id,
                "campaign_activity_id": primary_id,
                "permalink_activity_id": permalink_id,
                "type": kind,
                "type_code": type_code,
                "current_status": "Draft" if draft else "Done",
                "sends": len(rowids),
            }
            if sent_at is not None:
                self._send(db, primary, rowids, sent_at, list_ids)
                if plan is not None:
                    out |= self._simulate(
                        db,
                        self._activity_by_rowid(db, primary),
                        sent_at,
                        min(sent_at + plan.spread, now),
                        plan,
                        rng or random.Random(plan.seed),
                    )
        return out

    def send(self, activity_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Send a primary email (again): a draft's first send, or a later one to the contacts of
        its audience it has not reached yet, as Constant Contact does when an activity is sent
        once more. `reason_code` (1 to 11) records an attempt that ERRORED instead."""
        reason = body.get("reason_code")
        if reason is not None and (isinstance(reason, bool) or reason not in ERROR_CODES):
            raise errors.bad_request("reason_code must be one of the error codes 1 to 11.")
        plan = Plan.from_body(body) if _wants_simulation(body) else None
        if plan is not None and reason is not None:
            raise errors.bad_request("An attempt that errored sends nothing to draw events for.")
        now = self.store.now()
        at = _time(body.get("sent_at"), "sent_at", now)
        with self.store.tx() as db:
            activity = self._activity_row(db, activity_id)
            if activity["role"] != "primary_email":
                raise errors.bad_request("Only a primary_email activity is sent this way.")
            last = db.execute(
                "SELECT MAX(run_at) FROM email_sends WHERE activity = ?", (activity["id"],)
            ).fetchone()[0]
            if last is not None and at <= last:
                raise errors.bad_request("sent_at must follow the activity's previous send.")
            data = json.loads(activity["data"])
            list_ids = list(data.get("contact_list_ids", []))
            rowids: list[int] = []
            if reason is None:
                reached = {
                    r[0]
                    for r in db.execute(
                        "SELECT contact FROM email_tracking WHERE activity = ? AND kind = 'send'",
                        (activity["id"],),
                    )
                }
                audience = self._active(db, list_ids, list(data.get("contacts", [])))
                rowids = [r for r in audience if r not in reached]
            self._send(db, activity["id"], rowids, at, list_ids, reason)
            if activity["sent_at"] is None and reason is None:
                db.execute(
                    "UPDATE email_activities SET sent_at = ? WHERE id = ?", (at, activity["id"])
                )
            db.execute(
                "UPDATE email_campaigns SET updated_at = MAX(updated_at, ?) WHERE id = ?",
                (at, activity["campaign"]),
            )
            send_id = db.execute(
                "SELECT COUNT(*) FROM email_sends WHERE activity = ?", (activity["id"],)
            ).fetchone()[0]
            out: dict[str, Any] = {
                "campaign_activity_id": activity["campaign_activity_id"],
                "send_id": send_id,
                "sends": len(rowids),
            }
            if plan is not None:
                out |= self._simulate(
                    db,
                    self._activity_by_rowid(db, activity["id"]),
                    at,
                    min(at + plan.spread, now),
                    plan,
                    random.Random(plan.seed),
                    since=at,
                )
        return out

    def simulate(self, activity_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """More recipient events on a sent activity, drawn at `rates` between `from` (default:
        its latest event) and `to` (default: now): what happened since a report was last read."""
        if not isinstance(body.get("rates"), dict) or not body["rates"]:
            raise errors.bad_request("Give the rates to draw new events at.")
        plan = Plan.from_body(body)
        now = self.store.now()
        end = _time(body.get("to"), "to", now)
        with self.store.tx() as db:
            activity = self._activity_row(db, activity_id)
            if activity["sent_at"] is None:
                raise errors.bad_request("This campaign activity was not sent.")
            if body.get("from") is not None:
                start = _time(body["from"], "from", now)
            else:
                start = db.execute(
                    "SELECT MAX(at) FROM email_tracking WHERE activity = ?", (activity["id"],)
                ).fetchone()[0]
                start = activity["sent_at"] if start is None else start
            if start > end:
                raise errors.bad_request("from must not follow to.")
            drawn = self._simulate(db, activity, start, end, plan, random.Random(plan.seed))
        return {
            "campaign_activity_id": activity["campaign_activity_id"],
            "from": iso(start),
            "to": iso(end),
            **drawn,
        }

    def seed(
        self,
        count: int,
        list_ids: list[str] | None,
        rates: dict[str, float],
        interval: int,
        seed_value: int,
    ) -> dict[str, Any]:
        """`count` campaigns sent `interval` ms apart up to now, with events drawn at `rates`.

        Each campaign goes to the active contacts of `list_ids` (default: every list) at its own
        send time, so an optout drawn for one campaign keeps the contact out of the next ones.
        Events happen within the interval after the send (see `_simulate`).
        """
        rng = random.Random(seed_value)
        if list_ids is None:
            with self.store.read() as db:
                list_ids = [
                    r[0] for r in db.execute("SELECT list_id FROM lists WHERE deleted_at IS NULL")
                ]
        if not list_ids:
            raise errors.bad_request("There is no list to send to.")
        now = self.store.now()
        with self.store.read() as db:
            first = db.execute("SELECT COUNT(*) FROM email_campaigns").fetchone()[0] + 1
        made: list[dict[str, Any]] = []
        totals = dict.fromkeys(("send", *EVENT_KINDS), 0)
        for k in range(count):
            sent_at = now - (count - k) * interval
            body = {
                "name": f"Sandbox campaign {first + k}",
                "subject": SEED_SUBJECTS[(first + k) % len(SEED_SUBJECTS)],
                "list_ids": list_ids,
                "sent_at": iso(sent_at),
                "rates": {**SEED_RATES, **rates},
                "spread_seconds": interval / 1000,
                "links": [f"https://example.com/c{first + k}/link{j}" for j in range(1, 4)],
            }
            try:
                sent = self.create(body, rng)
            except errors.CCError as exc:
                if exc.status == 400 and "No active contact" in exc.message:
                    break  # everyone has opted out or bounced away: nothing left to send to
                raise
            totals["send"] += sent["sends"]
            for kind, n in sent["recorded"].items():
                totals[kind] += n
            made.append(sent)
        return {"campaigns": made, "totals": totals}

    def _links_of(self, db: sqlite3.Connection, activity: sqlite3.Row, plan: Plan) -> list[str]:
        """The links clicks land on: the plan's, else those clicked before, else the html's."""
        if plan.links:
            return list(plan.links)
        data = json.loads(activity["data"])
        found = data.get("links") or HREF_RE.findall(data.get("html_content", ""))
        return list(dict.fromkeys(found)) or [
            f"https://example.com/sandbox/link{j}" for j in (1, 2, 3)
        ]

    def _simulate(
        self,
        db: sqlite3.Connection,
        activity: sqlite3.Row,
        start: int,
        end: int,
        plan: Plan,
        rng: random.Random,
        since: int | None = None,
    ) -> dict[str, dict[str, int]]:
        """Draw recipient events at the plan's odds between `start` and `end` (ms, inclusive).

        Every recipient of the activity (or, with `since`, those sent to from then on) draws
        once, in contact order, so a seed repeats the result (see `_Draw` for what they do).
        A recipient whose earlier bounce was hard gets nothing more; only one with no event yet
        can bounce. The rows go in with one executemany; optouts then unsubscribe.
        """
        url_ids: dict[str, str] = {}
        if plan.odds["click"] > 0:
            links = self._links_of(db, activity, plan)
            url_ids = {url: self._url_id(db, activity, url) for url in links}
        draw = _Draw(activity["id"], plan, rng, url_ids)
        if not plan.draws or start > end:
            return draw.counts()
        touched: dict[int, bool] = {  # contact -> hard-bounced
            r[0]: bool(r[1])
            for r in db.execute(
                "SELECT contact,"
                " MAX(kind = 'bounce' AND json_extract(data, '$.bounce_code') != 'V')"
                " FROM email_tracking WHERE activity = ? AND kind != 'send' GROUP BY contact",
                (activity["id"],),
            )
        }
        recipients = db.execute(
            "SELECT t.contact, json_extract(t.data, '$.email'), t.at,"
            f" c.deleted_at IS NULL AND c.permission IN ({marks(len(ACTIVE_PERMISSIONS))})"
            " FROM email_tracking t JOIN contacts c ON c.id = t.contact"
            " WHERE t.activity = ? AND t.kind = 'send' AND t.at >= ? ORDER BY t.contact",
            (*ACTIVE_PERMISSIONS, activity["id"], since if since is not None else 0),
        )
        for contact, email, sent, active in recipients.fetchall():
            first = max(start, sent)
            if first <= end and not touched.get(contact):
                draw.recipient(contact, email, first, end, bool(active), contact not in touched)
        db.executemany(
            "INSERT INTO email_tracking(activity, contact, kind, at, data) VALUES (?, ?, ?, ?, ?)",
            draw.rows,
        )
        for contact, at in draw.optouts:
            self._unsubscribe(db, contact, at, None)
        return draw.counts()

    @staticmethod
    def _activity_by_rowid(db: sqlite3.Connection, rowid: int) -> sqlite3.Row:
        row: sqlite3.Row = db.execute(
            "SELECT * FROM email_activities WHERE id = ?", (rowid,)
        ).fetchone()
        return row

    def _activity_row(self, db: sqlite3.Connection, activity_id: str) -> sqlite3.Row:
        row: sqlite3.Row | None = None
        if is_uuid(activity_id):
            row = db.execute(
                "SELECT * FROM email_activities WHERE campaign_activity_id = ?",
                (activity_id.lower(),),
            ).fetchone()
        if row is None:
            raise errors.not_found(f"Campaign activity {activity_id} not found.")
        return row

    def _campaign_row(self, db: sqlite3.Connection, campaign_id: str) -> sqlite3.Row:
        row: sqlite3.Row | None = None
        if is_uuid(campaign_id):
            row = db.execute(
                "SELECT * FROM email_campaigns WHERE campaign_id = ?", (campaign_id.lower(),)
            ).fetchone()
        if row is None:
            raise errors.not_found(f"Email campaign {campaign_id} not found.")
        return row

    def resend(self, campaign_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """The resend to non-openers: active recipients of the primary email who never opened it.

        With `rates` the simulator draws the resend's events too (see `create`).
        """
        plan = Plan.from_body(body) if _wants_simulation(body) else None
        now = self.store.now()
        with self.store.tx() as db:
            campaign = self._campaign_row(db, campaign_id)
            roles = {
                r["role"]: r
                for r in db.execute(
                    "SELECT * FROM email_activities WHERE campaign = ?", (campaign["id"],)
                )
            }
            if "resend" in roles:
                raise errors.conflict("This email campaign already has a resend activity.")
            primary = roles["primary_email"]
            if primary["sent_at"] is None:
                raise errors.bad_request("A draft has no non-openers to resend to.")
            sent_at = _time(body.get("sent_at"), "sent_at", now)
            if sent_at <= primary["sent_at"]:
                raise errors.bad_request("A resend goes out after the primary email was sent.")
            data = json.loads(primary["data"])
            data.pop("ab_test", None)
            data.pop("links", None)
            if isinstance(body.get("subject"), str) and body["subject"].strip():
                data["subject"] = body["subject"]
            rowids = [
                r[0]
                for r in db.execute(
                    "SELECT c.id FROM email_tracking t JOIN contacts c ON c.id = t.contact"
                    " WHERE t.activity = ? AND t.kind = 'send' AND c.deleted_at IS NULL"
                    f" AND c.permission IN ({marks(len(ACTIVE_PERMISSIONS))})"
                    " AND NOT EXISTS (SELECT 1 FROM email_tracking o WHERE o.activity = t.activity"
                    " AND o.contact = t.contact AND o.kind = 'open') ORDER BY c.id",
                    (primary["id"], *ACTIVE_PERMISSIONS),
                )
            ]
            resend, resend_id = self._insert_activity(db, campaign["id"], "resend", sent_at, data)
            self._send(db, resend, rowids, sent_at, list(data.get("contact_list_ids", [])))
            db.execute(
                "UPDATE email_campaigns SET updated_at = ? WHERE id = ?",
                (max(sent_at, campaign["updated_at"]), campaign["id"]),
            )
            out: dict[str, Any] = {
                "campaign_id": campaign["campaign_id"],
                "campaign_activity_id": resend_id,
                "sends": len(rowids),
            }
            if plan is not None:
                out |= self._simulate(
                    db,
                    self._activity_by_rowid(db, resend),
                    sent_at,
                    min(sent_at + plan.spread, now),
                    plan,
                    random.Random(plan.seed),
                )
        return out

    def record_events(self, activity_id: str, items: Any) -> dict[str, Any]:
        """Recipient events on a sent activity; an optout also unsubscribes the contact."""
        if not isinstance(items, list) or not items or len(items) > MAX_EVENTS:
            raise errors.bad_request(f"Give an array of 1 to {MAX_EVENTS} events.")
        now = self.store.now()
        optouts: list[tuple[int, int, str | None]] = []
        with self.store.tx() as db:
            activity = self._activity_row(db, activity_id)
            if activity["sent_at"] is None:
                raise errors.bad_request("This campaign activity was not sent.")
            counts = dict.fromkeys(EVENT_KINDS, 0)
            for index, item in enumerate(items):
                kind, contact, at, data = self._event(db, activity, index, item, now)
                db.execute(
                    "INSERT INTO email_tracking(activity, contact, kind, at, data)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (activity["id"], contact, kind, at, _dump(data)),
                )
                counts[kind] += 1
                if kind == "optout":
                    optouts.append((contact, at, data.get("opt_out_reason")))
            for contact, at, reason in optouts:
                self._unsubscribe(db, contact, at, reason)
        return {"campaign_activity_id": activity["campaign_activity_id"], "recorded": counts}

    def _event(
        self, db: sqlite3.Connection, activity: sqlite3.Row, index: int, item: Any, now: int
    ) -> tuple[str, int, int, dict[str, Any]]:
        where = f"events[{index}]"
        if not isinstance(item, dict):
            raise errors.bad_request(f"{where} is not an object.")
        kind = item.get("type")
        if kind not in EVENT_KINDS:
            raise errors.bad_request(f"{where}.type must be one of {', '.join(EVENT_KINDS)}.")
        if item.get("contact_id"):
            row = db.execute(
                "SELECT id FROM contacts WHERE contact_id = ?", (str(item["contact_id"]).lower(),)
            ).fetchone()
        else:
            row = db.execute(
                "SELECT id FROM contacts WHERE email = ?",
                (str(item.get("email") or "").strip().lower(),),
            ).fetchone()
        send = None
        if row is not None:
            send = db.execute(
                "SELECT at, data FROM email_tracking WHERE activity = ? AND contact = ?"
                " AND kind = 'send'",
                (activity["id"], row["id"]),
            ).fetchone()
        if send is None:
            raise errors.bad_request(f"{where}: this contact was not sent the activity.")
        at = _time(item.get("at"), f"{where}.at", now)
        if at < send["at"]:
            raise errors.bad_request(f"{where}.at precedes the send.")
        data: dict[str, Any] = {"email": json.loads(send["data"])["email"]}
        if kind in ("open", "click"):
            device = item.get("device_type", "computer")
            if device not in DEVICE_TYPES:
                raise errors.bad_request(f"{where}.device_type must be one of {DEVICE_TYPES}.")
            data["device_type"] = device
        if kind == "click":
            url = item.get("url")
            if not isinstance(url, str) or not url:
                raise errors.bad_request(f"{where}.url is required for a click.")
            data["link_url"] = url
            data["url_id"] = self._url_id(db, activity, url)
        if kind == "bounce":
            code = item.get("bounce_code", "B")
            if code not in BOUNCE_CODES:
                raise errors.bad_request(f"{where}.bounce_code must be one of {BOUNCE_CODES}.")
            data["bounce_code"] = code
        if kind == "optout" and isinstance(item.get("reason"), str) and item["reason"]:
            data["opt_out_reason"] = item["reason"][:255]
        return str(kind), int(row["id"]), at, data

    def _url_id(self, db: sqlite3.Connection, activity: sqlite3.Row, url: str) -> str:
        """Each distinct link of an activity gets a stable numeric url_id (a string in reports)."""
        data = json.loads(
            db.execute(
                "SELECT data FROM email_activities WHERE id = ?", (activity["id"],)
            ).fetchone()["data"]
        )
        links: list[str] = data.setdefault("links", [])
        if url not in links:
            links.append(url)
            db.execute(
                "UPDATE email_activities SET data = ? WHERE id = ?", (_dump(data), activity["id"])
            )
        return str(1000000 + links.index(url) + 1)

    def _unsubscribe(
        self, db: sqlite3.Connection, contact: int, at: int, reason: str | None
    ) -> None:
        """As the person's own unsubscribe link does (`Store.unsubscribe_by_person`), at `at`."""
        row = db.execute("SELECT * FROM contacts WHERE id = ?", (contact,)).fetchone()
        if row["permission"] == "unsubscribed":
            return
        data = json.loads(row["data"])
        mail = data.setdefault("email", {})
        mail["opt_out_source"] = "Contact"
        if reason:
            mail["opt_out_reason"] = reason
        db.execute(
            "UPDATE contacts SET permission = 'unsubscribed', opt_out_at = ?,"
            " email_updated_at = ?, data = ? WHERE id = ?",
            (at, at, _dump(data), contact),
        )
        db.execute("DELETE FROM memberships WHERE contact = ?", (contact,))

    # -- reading (API routes) ---------------------------------------------------------------

    def campaigns_page(
        self, after: int, limit: int, before_ms: int | None, after_ms: int | None
    ) -> tuple[list[dict[str, Any]], bool]:
        clauses, params = ["c.id > ?"], [after]
        if before_ms is not None:
            clauses.append("c.updated_at < ?")
            params.append(before_ms)
        if after_ms is not None:
            clauses.append("c.updated_at > ?")
            params.append(after_ms)
        with self.store.read() as db:
            rows = db.execute(
                f"SELECT c.*, {SENT_AT} FROM email_campaigns c WHERE {' AND '.join(clauses)}"
                " ORDER BY c.id LIMIT ?",
                (*params, limit + 1),
            ).fetchall()
        return [self._render_campaign(r) | {"_id": r["id"]} for r in rows[:limit]], (
            len(rows) > limit
        )

    @staticmethod
    def _render_campaign(row: sqlite3.Row) -> dict[str, Any]:
        return {
            "campaign_id": row["campaign_id"],
            "name": row["name"],
            "current_status": "Draft" if row["sent_at"] is None else "Done",
            "type": row["type"],
            "type_code": row["type_code"],
            "created_at": iso(row["created_at"]),
            "updated_at": iso(row["updated_at"]),
        }

    def campaign(self, campaign_id: str) -> dict[str, Any]:
        with self.store.read() as db:
            found = self._campaign_row(db, campaign_id)
            row = db.execute(
                f"SELECT c.*, {SENT_AT} FROM email_campaigns c WHERE c.id = ?", (found["id"],)
            ).fetchone()
            activities = db.execute(
                "SELECT campaign_activity_id, role FROM email_activities WHERE campaign = ?"
                " ORDER BY id",
                (row["id"],),
            ).fetchall()
        out = self._render_campaign(row)
        out["campaign_activities"] = [
            {"campaign_activity_id": a["campaign_activity_id"], "role": a["role"]}
            for a in activities
        ]
        return out

    def activity(self, activity_id: str, include: list[str]) -> dict[str, Any]:
        with self.store.read() as db:
            row = self._activity_row(db, activity_id)
            campaign = db.execute(
                f"SELECT c.campaign_id, {SENT_AT} FROM email_campaigns c WHERE c.id = ?",
                (row["campaign"],),
            ).fetchone()
        data = json.loads(row["data"])
        out: dict[str, Any] = {
            "campaign_activity_id": row["campaign_activity_id"],
            "campaign_id": campaign["campaign_id"],
            "role": row["role"],
            "contact_list_ids": data.get("contact_list_ids", []),
            "current_status": "DRAFT" if campaign["sent_at"] is None else "DONE",
            "format_type": FORMAT_TYPE,
            "from_email": data["from_email"],
            "from_name": data["from_name"],
            "reply_to_email": data["reply_to_email"],
            "subject": data["subject"],
        }
        if data.get("preheader"):
            out["preheader"] = data["preheader"]
        if "html_content" in include:
            out["html_content"] = data["html_content"]
        if "permalink_url" in include:
            out["permalink_url"] = f"https://conta.cc/sbx{row['id']:05d}"
        if "physical_address_in_footer" in include:
            out["physical_address_in_footer"] = dict(PHYSICAL_ADDRESS)
        return out

    def send_history(self, activity_id: str) -> list[dict[str, Any]]:
        """EmailSendHistory: an entry per time the activity went out, oldest first (send_id 1..)."""
        with self.store.read() as db:
            row = self._activity_row(db, activity_id)
            if row["role"] not in ("primary_email", "resend"):
                raise errors.bad_request(
                    "Send history exists for primary_email and resend activities only."
                )
            sends = db.execute(
                "SELECT * FROM email_sends WHERE activity = ? ORDER BY id", (row["id"],)
            ).fetchall()
        out = []
        for n, send in enumerate(sends, start=1):
            data = json.loads(send["data"])
            out.append(
                {
                    "send_id": n,
                    "contact_list_ids": data["contact_list_ids"],
                    "segment_ids": [],
                    "count": send["count"],
                    "run_date": iso(send["run_at"]),
                    "send_status": data["send_status"],
                    "reason_code": data["reason_code"],
                }
            )
        return out

    def ab_test(self, activity_id: str) -> dict[str, Any]:
        """ABTestData of an A/B test campaign's primary email; 404 for any other activity."""
        with self.store.read() as db:
            row = self._activity_row(db, activity_id)
        data = json.loads(row["data"])
        if row["role"] != "primary_email" or not data.get("ab_test"):
            raise errors.not_found(f"Campaign activity {activity_id} has no A/B test.")
        return dict(data["ab_test"])

    def tracking_page(
        self, activity_id: str, report: str, state: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """One report page, most recent first, and the cursor state of the next page (or None)."""
        kind, activity_type = REPORTS[report]
        limit = int(state["n"])
        with self.store.read() as db:
            activity = self._activity_row(db, activity_id)
            clauses = ["t.activity = ?", "t.kind = ?"]
            params: list[Any] = [activity["id"], kind]
            if report == "unique_opens":  # each contact's last open only
                clauses.append(
                    "NOT EXISTS (SELECT 1 FROM email_tracking u WHERE u.activity = t.activity"
                    " AND u.contact = t.contact AND u.kind = 'open'"
                    " AND (u.at > t.at OR (u.at = t.at AND u.id > t.id)))"
                )
            if state.get("u") is not None:
                clauses.append("json_extract(t.data, '$.url_id') = ?")
                params.append(str(state["u"]))
            if state.get("b"):
                clauses.append(
                    f"json_extract(t.data, '$.bounce_code') IN ({marks(len(state['b']))})"
                )
                params.extend(state["b"])
            if state.get("t") is not None:
                clauses.append("(t.at < ? OR (t.at = ? AND t.id < ?))")
                params.extend([state["t"], state["t"], state["i"]])
            rows = db.execute(
                "SELECT t.*, c.contact_id, c.email AS current_email, c.deleted_at,"
                " json_extract(c.data, '$.first_name') AS first_name,"
                " json_extract(c.data, '$.last_name') AS last_name"
                " FROM email_tracking t JOIN contacts c ON c.id = t.contact"
                f" WHERE {' AND '.join(clauses)} ORDER BY t.at DESC, t.id DESC LIMIT ?",
                (*params, limit + 1),
            ).fetchall()
        items = [
            self._render_tracking(r, activity["campaign_activity_id"], activity_type, report)
            for r in rows[:limit]
        ]
        nxt = None
        if len(rows) > limit:
            last = rows[limit - 1]
            nxt = {**state, "t": last["at"], "i": last["id"]}
        return items, nxt

    @staticmethod
    def _render_tracking(
        row: sqlite3.Row, activity_id: str, activity_type: str, report: str
    ) -> dict[str, Any]:
        data = json.loads(row["data"])
        out: dict[str, Any] = {
            "contact_id": row["contact_id"],
            "campaign_activity_id": activity_id,
            "tracking_activity_type": activity_type,
            "email_address": data["email"],
        }
        for key in ("first_name", "last_name"):
            if row[key]:
                out[key] = row[key]
        if report in ("opens", "unique_opens", "clicks"):
            out["device_type"] = data.get("device_type", "computer")
        if report == "clicks":
            out["url_id"] = data["url_id"]
            out["link_url"] = data["link_url"]
        if report == "bounces":
            out["bounce_code"] = data["bounce_code"]
            if row["current_email"]:
                out["current_email_address"] = row["current_email"]
        if report == "optouts" and data.get("opt_out_reason"):
            out["opt_out_reason"] = data["opt_out_reason"]
        out["created_time"] = iso(row["at"])
        if row["deleted_at"] is not None:
            out["deleted_at"] = iso_date(row["deleted_at"])
        return out


def _emails() -> Emails:
    return current_sandbox().emails  # type: ignore[no-any-return]


@bp.get("/emails")
def get_emails() -> Response:
    cursor = request.args.get("cursor")
    if cursor:
        state = decode_cursor(cursor)
    else:
        before = request.args.get("before_date")
        after = request.args.get("after_date")
        state = {
            "a": 0,
            "n": limit_arg(50, 500),
            "b": parse_time(before, "before_date") if before else None,
            "f": parse_time(after, "after_date") if after else None,
        }
    page, more = _emails().campaigns_page(int(state["a"]), int(state["n"]), state["b"], state["f"])
    body: dict[str, Any] = {"campaigns": [{k: v for k, v in c.items() if k != "_id"} for c in page]}
    if more:
        nxt = encode_cursor({**state, "a": page[-1]["_id"]})
        body["_links"] = {"next": {"href": f"/v3/emails?cursor={nxt}"}}
    return jsonify(body)


@bp.get("/emails/<campaign_id>")
def get_email(campaign_id: str) -> Response:
    return jsonify(_emails().campaign(campaign_id))


@bp.get("/emails/activities/<campaign_activity_id>")
def get_email_activity(campaign_activity_id: str) -> Response:
    include = csv_arg("include", ACTIVITY_INCLUDES)
    return jsonify(_emails().activity(campaign_activity_id, include))


@bp.get("/emails/activities/<campaign_activity_id>/send_history")
def get_send_history(campaign_activity_id: str) -> Response:
    return jsonify(_emails().send_history(campaign_activity_id))


@bp.get("/emails/activities/<campaign_activity_id>/abtest")
def get_ab_test(campaign_activity_id: str) -> Response:
    return jsonify(_emails().ab_test(campaign_activity_id))


@bp.get("/reports/email_reports/<campaign_activity_id>/tracking/<report>")
def get_tracking(campaign_activity_id: str, report: str) -> Response:
    if report not in REPORTS:
        raise errors.not_found(f"No {report} report exists.")
    cursor = request.args.get("cursor")
    if cursor:
        state = decode_cursor(cursor)
        if state.get("r") != report or state.get("a") != campaign_activity_id.lower():
            raise errors.bad_request("The cursor belongs to another report.")
    else:
        state = {"r": report, "a": campaign_activity_id.lower(), "n": limit_arg(500, 500)}
        if report == "clicks" and request.args.get("url_id") is not None:
            try:
                state["u"] = int(request.args["url_id"])
            except ValueError:
                raise errors.bad_request("url_id must be an integer.") from None
        if report == "bounces":
            codes = request.args.getlist("bounce_code")
            bad = [c for c in codes if c not in BOUNCE_CODES]
            if bad:
                raise errors.bad_request(f"bounce_code value {bad[0]} is not valid.")
            state["b"] = codes
    items, nxt = _emails().tracking_page(campaign_activity_id, report, state)
    body: dict[str, Any] = {"tracking_activities": items, "_links": {}}
    if nxt is not None:
        href = (
            f"/v3/reports/email_reports/{campaign_activity_id}/tracking/{report}"
            f"?cursor={encode_cursor(nxt)}"
        )
        body["_links"] = {"next": {"href": href}}
    return jsonify(body)
