"""`/v3/emails` and `/v3/reports/email_reports/.../tracking/...`: sent campaigns and their reports.

The sandbox holds only campaigns that were sent (control routes make them, see `control.py`):
a campaign has a `primary_email` activity (the one sent), the `permalink` activity Constant Contact
creates beside it, and at most one `resend` activity (to non-openers; one per campaign, as the
spec says). Every recipient event is one row of `email_tracking`, keyed by the activity and the
contact's rowid; reports list them most recent first and page by a `_links.next.href` cursor.

The tables live in the account's SQLite db (`store.Store`), so snapshots and the store's lock
cover them too.
"""

from __future__ import annotations

import json
import random
import sqlite3
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
TABLES = ("email_tracking", "email_activities", "email_campaigns")

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
BOUNCE_CODES = ("B", "D", "F", "S", "V", "X", "Z")
DEVICE_TYPES = ("computer", "mobile", "tablet", "other")
ACTIVITY_INCLUDES = (
    "physical_address_in_footer",
    "permalink_url",
    "html_content",
    "document_properties",
)
CAMPAIGN_TYPE = ("NEWSLETTER", 10)
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
# Per-recipient odds a seeded campaign draws from (typical small-business newsletter figures).
SEED_RATES = {"open": 0.30, "click": 0.10, "bounce": 0.02, "optout": 0.003, "forward": 0.005}
SEED_SUBJECTS = (
    "Our spring collection is here",
    "You're invited: open house this Saturday",
    "News from the team",
    "Last chance: 20% off ends tonight",
    "Thank you for a great year",
    "Tips to get the most from your membership",
)
SEED_DEVICES = (("computer", 0.45), ("mobile", 0.45), ("tablet", 0.07), ("other", 0.03))


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


class Emails:
    """The account's sent email campaigns, their activities and per-recipient tracking."""

    def __init__(self, store: Store) -> None:
        self.store = store
        with store.lock:
            store.db.executescript(SCHEMA)

    def reset(self) -> None:
        with self.store.tx() as db:
            for table in TABLES:
                db.execute(f"DELETE FROM {table}")

    def counts(self) -> dict[str, Any]:
        with self.store.read() as db:
            campaigns = db.execute("SELECT COUNT(*) FROM email_campaigns").fetchone()[0]
            activities = db.execute("SELECT COUNT(*) FROM email_activities").fetchone()[0]
            tracking = dict(
                db.execute("SELECT kind, COUNT(*) FROM email_tracking GROUP BY kind").fetchall()
            )
        return {"campaigns": campaigns, "activities": activities, "tracking": tracking}

    # -- making campaigns (control routes) --------------------------------------------------

    def _recipients(
        self, db: sqlite3.Connection, body: dict[str, Any]
    ) -> tuple[list[int], list[str]]:
        """Rowids of the active contacts the send reaches, and the list ids it was addressed to."""
        list_ids = body.get("list_ids") or []
        contact_ids = body.get("contact_ids") or []
        if not isinstance(list_ids, list) or not all(isinstance(x, str) for x in list_ids):
            raise errors.bad_request("list_ids must be an array of list ids.")
        if not isinstance(contact_ids, list) or not all(isinstance(x, str) for x in contact_ids):
            raise errors.bad_request("contact_ids must be an array of contact ids.")
        if not list_ids and not contact_ids:
            raise errors.bad_request("Give list_ids or contact_ids to send to.")
        wanted = [x.lower() for x in list_ids]
        known = {
            r["list_id"]
            for part in chunks(wanted)
            for r in db.execute(
                f"SELECT list_id FROM lists WHERE deleted_at IS NULL"
                f" AND list_id IN ({marks(len(part))})",
                tuple(part),
            )
        }
        missing = [x for x in list_ids if x.lower() not in known]
        if missing:
            raise errors.bad_request(f"Contact list {missing[0]} does not exist.")
        active = marks(len(ACTIVE_PERMISSIONS))
        rowids: set[int] = set()
        for part in chunks(wanted):
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
        lowered = [x.lower() for x in contact_ids]
        found: set[str] = set()
        for part in chunks(lowered):
            for r in db.execute(
                "SELECT id, contact_id, permission, deleted_at, email FROM contacts"
                f" WHERE contact_id IN ({marks(len(part))})",
                tuple(part),
            ):
                found.add(r["contact_id"])
                if (
                    r["deleted_at"] is None
                    and r["email"] is not None
                    and r["permission"] in ACTIVE_PERMISSIONS
                ):
                    rowids.add(r["id"])
        unknown = [x for x in contact_ids if x.lower() not in found]
        if unknown:
            raise errors.bad_request(f"Contact {unknown[0]} does not exist.")
        return sorted(rowids), list(known & set(wanted))

    def _send(self, db: sqlite3.Connection, activity: int, rowids: list[int], at: int) -> None:
        for part in chunks(rowids):
            db.execute(
                "INSERT INTO email_tracking(activity, contact, kind, at, data)"
                " SELECT ?, id, 'send', ?, json_object('email', email) FROM contacts"
                f" WHERE id IN ({marks(len(part))})",
                (activity, at, *part),
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

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """A campaign sent at `sent_at` (default now) to the active contacts of the lists/ids."""
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 80:
            raise errors.bad_request("name must be 1 to 80 characters.")
        subject = body.get("subject")
        if not isinstance(subject, str) or not subject.strip():
            raise errors.bad_request("subject is required.")
        now = self.store.now()
        sent_at = _time(body.get("sent_at"), "sent_at", now)
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
        with self.store.tx() as db:
            if db.execute(
                "SELECT 1 FROM email_campaigns WHERE lower(name) = lower(?)", (name,)
            ).fetchone():
                raise errors.conflict(f"An email campaign named {name} already exists.")
            rowids, list_ids = self._recipients(db, body)
            if not rowids:
                raise errors.bad_request("No active contact to send to.")
            campaign_id = new_id()
            cur = db.execute(
                "INSERT INTO email_campaigns(campaign_id, name, created_at, updated_at)"
                " VALUES (?, ?, ?, ?)",
                (campaign_id, name, min(now, sent_at), sent_at),
            )
            campaign = int(cur.lastrowid or 0)
            data = {**content, "contact_list_ids": list_ids}
            primary, primary_id = self._insert_activity(
                db, campaign, "primary_email", sent_at, data
            )
            _, permalink_id = self._insert_activity(db, campaign, "permalink", None, data)
            self._send(db, primary, rowids, sent_at)
        return {
            "campaign_id": campaign_id,
            "campaign_activity_id": primary_id,
            "permalink_activity_id": permalink_id,
            "sends": len(rowids),
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
        Opens (1 to 3), clicks (an opener's, on one of three links), forwards and the optout
        happen within the interval after the send; a bounced recipient does nothing else.
        """
        rng = random.Random(seed_value)
        odds = {**SEED_RATES, **rates}
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
            subject = SEED_SUBJECTS[(first + k) % len(SEED_SUBJECTS)]
            body = {"name": f"Sandbox campaign {first + k}", "subject": subject}
            try:
                sent = self.create({**body, "list_ids": list_ids, "sent_at": iso(sent_at)})
            except errors.CCError as exc:
                if exc.status == 400 and "No active contact" in exc.message:
                    break  # everyone has opted out or bounced away: nothing left to send to
                raise
            totals["send"] += sent["sends"]
            window = max(1, min(interval, now - sent_at))
            links = [f"https://example.com/c{first + k}/link{j}" for j in range(1, 4)]
            drawn = self._draw(sent["campaign_activity_id"], sent_at, window, odds, links, rng)
            for kind, n in drawn.items():
                totals[kind] += n
            made.append(sent)
        return {"campaigns": made, "totals": totals}

    def _draw(
        self,
        activity_id: str,
        sent_at: int,
        window: int,
        odds: dict[str, float],
        links: list[str],
        rng: random.Random,
    ) -> dict[str, int]:
        counts = dict.fromkeys(EVENT_KINDS, 0)
        devices = [d for d, _ in SEED_DEVICES]
        weights = [w for _, w in SEED_DEVICES]
        with self.store.tx() as db:
            activity = self._activity_row(db, activity_id)
            sends = db.execute(
                "SELECT contact, data FROM email_tracking WHERE activity = ? AND kind = 'send'",
                (activity["id"],),
            ).fetchall()
            rows: list[tuple[int, int, str, int, str]] = []
            optouts: list[tuple[int, int]] = []

            def add(contact: int, email: str, kind: str, extra: dict[str, Any]) -> int:
                at = sent_at + rng.randrange(window)
                data = {"email": email, **extra}
                rows.append((activity["id"], contact, kind, at, _dump(data)))
                counts[kind] += 1
                return at

            url_ids = {url: self._url_id(db, activity, url) for url in links}
            for send in sends:
                contact, email = send["contact"], json.loads(send["data"])["email"]
                if rng.random() < odds["bounce"]:
                    add(contact, email, "bounce", {"bounce_code": rng.choice(BOUNCE_CODES)})
                    continue
                if rng.random() < odds["open"]:
                    device = rng.choices(devices, weights)[0]
                    for _ in range(rng.choice((1, 1, 1, 2, 3))):
                        add(contact, email, "open", {"device_type": device})
                    if rng.random() < odds["click"] / max(odds["open"], 1e-9):
                        url = rng.choice(links)
                        extra = {"device_type": device, "url_id": url_ids[url], "link_url": url}
                        add(contact, email, "click", extra)
                    if rng.random() < odds["forward"] / max(odds["open"], 1e-9):
                        add(contact, email, "forward", {})
                if rng.random() < odds["optout"]:
                    optouts.append((contact, add(contact, email, "optout", {})))
            db.executemany(
                "INSERT INTO email_tracking(activity, contact, kind, at, data)"
                " VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            for contact, at in optouts:
                self._unsubscribe(db, contact, at, None)
        return counts

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
        """The resend to non-openers: active recipients of the primary email who never opened it."""
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
            sent_at = _time(body.get("sent_at"), "sent_at", now)
            if sent_at <= primary["sent_at"]:
                raise errors.bad_request("A resend goes out after the primary email was sent.")
            data = json.loads(primary["data"])
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
            self._send(db, resend, rowids, sent_at)
            db.execute(
                "UPDATE email_campaigns SET updated_at = ? WHERE id = ?",
                (max(sent_at, campaign["updated_at"]), campaign["id"]),
            )
        return {
            "campaign_id": campaign["campaign_id"],
            "campaign_activity_id": resend_id,
            "sends": len(rowids),
        }

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
        clauses, params = ["id > ?"], [after]
        if before_ms is not None:
            clauses.append("updated_at < ?")
            params.append(before_ms)
        if after_ms is not None:
            clauses.append("updated_at > ?")
            params.append(after_ms)
        with self.store.read() as db:
            rows = db.execute(
                f"SELECT * FROM email_campaigns WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ?",
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
            "current_status": "Done",
            "type": CAMPAIGN_TYPE[0],
            "type_code": CAMPAIGN_TYPE[1],
            "created_at": iso(row["created_at"]),
            "updated_at": iso(row["updated_at"]),
        }

    def campaign(self, campaign_id: str) -> dict[str, Any]:
        with self.store.read() as db:
            row = self._campaign_row(db, campaign_id)
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
                "SELECT campaign_id FROM email_campaigns WHERE id = ?", (row["campaign"],)
            ).fetchone()
        data = json.loads(row["data"])
        out: dict[str, Any] = {
            "campaign_activity_id": row["campaign_activity_id"],
            "campaign_id": campaign["campaign_id"],
            "role": row["role"],
            "contact_list_ids": data.get("contact_list_ids", []),
            "current_status": "DONE",
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
