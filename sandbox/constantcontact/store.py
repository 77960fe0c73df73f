"""The account's data: contacts, lists, memberships and custom fields in an in-memory SQLite db.

Contacts keep the columns filters and uniqueness need (lower-cased email, permission, created /
updated / email-updated / opt-out / deleted timestamps in epoch milliseconds) and everything else as
compact JSON; list memberships are an integer pair table. One lock serialises every access, so the
store is safe to share between the threads a WSGI server uses.

Writes that break a Constant Contact rule raise `errors.CCError` with the status and body the real
API answers with. Rendering to API shapes lives here too, so the routes stay thin.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.common import Clock
from sandbox.constantcontact import errors

SCHEMA = """
CREATE TABLE IF NOT EXISTS contacts (
    id INTEGER PRIMARY KEY,
    contact_id TEXT NOT NULL UNIQUE,
    email TEXT UNIQUE,
    permission TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    email_updated_at INTEGER NOT NULL,
    opt_out_at INTEGER,
    deleted_at INTEGER,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS contacts_updated ON contacts(updated_at);
CREATE INDEX IF NOT EXISTS contacts_created ON contacts(created_at);
CREATE INDEX IF NOT EXISTS contacts_opt_out ON contacts(opt_out_at) WHERE opt_out_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS contacts_deleted ON contacts(deleted_at) WHERE deleted_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS lists (
    id INTEGER PRIMARY KEY,
    list_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    favorite INTEGER NOT NULL DEFAULT 0,
    description TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS lists_live_name ON lists(lower(name)) WHERE deleted_at IS NULL;
CREATE TABLE IF NOT EXISTS memberships (
    list INTEGER NOT NULL,
    contact INTEGER NOT NULL,
    PRIMARY KEY (list, contact)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS memberships_contact ON memberships(contact);
CREATE TABLE IF NOT EXISTS custom_fields (
    id INTEGER PRIMARY KEY,
    custom_field_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    data TEXT NOT NULL
);
"""

PERMISSIONS = (
    "explicit",
    "implicit",
    "not_set",
    "pending_confirmation",
    "temp_hold",
    "unsubscribed",
)
ACTIVE_PERMISSIONS = ("explicit", "implicit")
CONTACT_STATUSES = (
    "all",
    "active",
    "deleted",
    "not_set",
    "pending_confirmation",
    "temp_hold",
    "unsubscribed",
)
INCLUDES = (
    "custom_fields",
    "list_memberships",
    "phone_numbers",
    "street_addresses",
    "taggings",
    "notes",
)
SOURCES = ("Account", "Contact")
PHONE_KINDS = ("home", "work", "mobile", "other")
ADDRESS_KINDS = ("home", "work", "other")
TOP_FIELDS: dict[str, int] = {
    "first_name": 50,
    "last_name": 50,
    "job_title": 50,
    "company_name": 50,
    "anniversary": 10,
}
MAX_LISTS = 1000
MAX_CUSTOM_FIELDS = 100
MAX_LISTS_PER_CONTACT = 50
EMAIL_RE = re.compile(
    r"^[^@\s,;<>()\[\]\\\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$"
)
UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
CHUNK = 900  # stays under SQLite's bound-parameter limit


def iso(ms: int | None) -> str | None:
    """Epoch milliseconds → `2026-11-26T10:30:00.123Z` (fixed width, so it sorts as text)."""
    if ms is None:
        return None
    when = datetime.fromtimestamp(ms / 1000, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def iso_date(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def parse_time(value: str, name: str) -> int:
    """ISO-8601 query value → epoch ms; a date alone means its midnight UTC; garbage → 400."""
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise errors.bad_request(f"{name} must be an ISO-8601 date-time.") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def normalize_email(value: Any) -> str:
    return str(value).strip().lower()


def valid_email(address: str) -> bool:
    return 0 < len(address) <= 80 and EMAIL_RE.match(address) is not None


def is_uuid(value: Any) -> bool:
    return isinstance(value, str) and UUID_RE.match(value) is not None


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def marks(n: int) -> str:
    return ",".join("?" * n)


@dataclass
class ContactQuery:
    """The filters of `GET /contacts`; carried whole inside a paging cursor."""

    statuses: list[str] = field(default_factory=list)
    email: str | None = None
    lists: list[str] = field(default_factory=list)
    ranges: dict[str, int] = field(default_factory=dict)  # e.g. {"updated_after": ms}

    def as_dict(self) -> dict[str, Any]:
        return {"s": self.statuses, "e": self.email, "l": self.lists, "r": self.ranges}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ContactQuery:
        return cls(
            statuses=list(raw.get("s") or []),
            email=raw.get("e"),
            lists=list(raw.get("l") or []),
            ranges={str(k): int(v) for k, v in (raw.get("r") or {}).items()},
        )


RANGE_COLUMNS = {
    "updated_after": ("updated_at", ">"),
    "updated_before": ("updated_at", "<"),
    "created_after": ("created_at", ">"),
    "created_before": ("created_at", "<"),
    "optout_after": ("opt_out_at", ">"),
    "optout_before": ("opt_out_at", "<"),
}


@dataclass
class ImportResult:
    """What a JSON import did, in the counts `ActivityImport.status` reports."""

    items_total_count: int = 0
    person_count: int = 0
    error_count: int = 0
    correctable_count: int = 0
    cannot_add_to_list_count: int = 0
    errors: list[str] = field(default_factory=list)

    def status(self) -> dict[str, int]:
        return {
            "items_total_count": self.items_total_count,
            "person_count": self.person_count,
            "error_count": self.error_count,
            "correctable_count": self.correctable_count,
            "cannot_add_to_list_count": self.cannot_add_to_list_count,
        }


class Store:
    """All records of one sandbox account. Thread-safe (one lock around the SQLite connection)."""

    def __init__(self, clock: Clock, snapshot: str | None = None) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        if snapshot:
            try:
                source = sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)
            except sqlite3.OperationalError:
                source = None  # no snapshot yet: start empty, `POST /_sandbox/snapshot` writes one
            if source is not None:
                source.backup(self.db)
                source.close()
        self.db.executescript(SCHEMA)

    # -- plumbing ---------------------------------------------------------------------------

    def now(self) -> int:
        return int(self.clock.now().timestamp() * 1000)

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self.db.execute("BEGIN")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            yield self.db

    def reset(self) -> None:
        with self.tx() as db:
            for table in ("memberships", "contacts", "lists", "custom_fields"):
                db.execute(f"DELETE FROM {table}")

    def snapshot(self, path: str) -> None:
        with self.lock:
            target = sqlite3.connect(path)
            try:
                self.db.backup(target)
            finally:
                target.close()

    def counts(self) -> dict[str, Any]:
        with self.read() as db:
            by_permission = dict(
                db.execute(
                    "SELECT permission, COUNT(*) FROM contacts WHERE deleted_at IS NULL"
                    " GROUP BY permission"
                ).fetchall()
            )
            deleted = db.execute(
                "SELECT COUNT(*) FROM contacts WHERE deleted_at IS NOT NULL"
            ).fetchone()[0]
            lists = db.execute("SELECT COUNT(*) FROM lists WHERE deleted_at IS NULL").fetchone()[0]
            members = db.execute("SELECT COUNT(*) FROM memberships").fetchone()[0]
            fields = db.execute("SELECT COUNT(*) FROM custom_fields").fetchone()[0]
        return {
            "contacts": sum(by_permission.values()),
            "contacts_by_permission": by_permission,
            "contacts_deleted": deleted,
            "lists": lists,
            "memberships": members,
            "custom_fields": fields,
        }

    # -- contacts: reading ------------------------------------------------------------------

    def contact_row(self, contact_id: str) -> sqlite3.Row | None:
        if not is_uuid(contact_id):
            return None
        with self.read() as db:
            row: sqlite3.Row | None = db.execute(
                "SELECT * FROM contacts WHERE contact_id = ?", (contact_id.lower(),)
            ).fetchone()
            return row

    def require_contact(self, contact_id: str) -> sqlite3.Row:
        if not is_uuid(contact_id):
            raise errors.not_found("contact_id is in an invalid format.")
        row = self.contact_row(contact_id)
        if row is None:
            raise errors.not_found(f"Contact {contact_id} not found.")
        return row

    def contact_by_email(self, email: str) -> sqlite3.Row | None:
        with self.read() as db:
            row: sqlite3.Row | None = db.execute(
                "SELECT * FROM contacts WHERE email = ?", (normalize_email(email),)
            ).fetchone()
            return row

    def list_ids_of(self, contact_rowids: Sequence[int]) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {cid: [] for cid in contact_rowids}
        with self.read() as db:
            for part in chunks(list(contact_rowids)):
                for contact, list_id in db.execute(
                    "SELECT m.contact, l.list_id FROM memberships m JOIN lists l ON l.id = m.list"
                    f" WHERE m.contact IN ({marks(len(part))}) ORDER BY l.id",
                    tuple(part),
                ):
                    found[contact].append(list_id)
        return found

    def _where(self, q: ContactQuery) -> tuple[list[str], list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        statuses = set(q.statuses)
        if not statuses:
            clauses.append("deleted_at IS NULL")
        elif "all" not in statuses:
            ors: list[str] = []
            if "deleted" in statuses:
                ors.append("deleted_at IS NOT NULL")
            perms = [s for s in statuses if s in PERMISSIONS]
            if "active" in statuses:
                perms.extend(ACTIVE_PERMISSIONS)
            if perms:
                ors.append(f"(deleted_at IS NULL AND permission IN ({marks(len(perms))}))")
                params.extend(perms)
            clauses.append("(" + " OR ".join(ors) + ")")
        if q.email is not None:
            clauses.append("email = ?")
            params.append(q.email)
        if q.lists:
            clauses.append(
                "id IN (SELECT m.contact FROM memberships m JOIN lists l ON l.id = m.list"
                f" WHERE l.list_id IN ({marks(len(q.lists))}))"
            )
            params.extend(q.lists)
        for name, value in q.ranges.items():
            column, op = RANGE_COLUMNS[name]
            clauses.append(f"{column} {op} ?")
            params.append(value)
        return clauses, params

    def query_contacts(
        self, q: ContactQuery, after: int, limit: int, with_count: bool
    ) -> tuple[list[sqlite3.Row], bool, int | None]:
        """One page of contacts matching `q` after rowid `after`, whether more follow, the total."""
        clauses, params = self._where(q)
        where = " AND ".join(clauses) or "1"
        with self.read() as db:
            rows = db.execute(
                f"SELECT * FROM contacts WHERE {where} AND id > ? ORDER BY id LIMIT ?",
                (*params, after, limit + 1),
            ).fetchall()
            total = None
            if with_count:
                total = db.execute(
                    f"SELECT COUNT(*) FROM contacts WHERE {where}", params
                ).fetchone()[0]
        return rows[:limit], len(rows) > limit, total

    def iter_contacts(self, q: ContactQuery, batch: int = 2000) -> Iterator[list[sqlite3.Row]]:
        after = 0
        while True:
            rows, more, _ = self.query_contacts(q, after, batch, False)
            if rows:
                yield rows
                after = rows[-1]["id"]
            if not more:
                return

    def render_contact(
        self, row: sqlite3.Row, include: Iterable[str], lists: list[str] | None = None
    ) -> dict[str, Any]:
        """`ContactResource` as Constant Contact returns it; unset properties omitted, not null."""
        data = json.loads(row["data"])
        mail = data.get("email", {})
        email: dict[str, Any] = {
            "address": row["email"],
            "permission_to_send": row["permission"],
            "created_at": iso(mail.get("created_at", row["created_at"])),
            "updated_at": iso(row["email_updated_at"]),
        }
        for key in ("opt_in_source", "opt_out_source", "opt_out_reason"):
            if mail.get(key) is not None:
                email[key] = mail[key]
        if mail.get("opt_in_source") is not None:
            email["opt_in_date"] = iso(mail.get("opt_in_date", row["created_at"]))
        email["confirm_status"] = mail.get("confirm_status", "off")
        if row["opt_out_at"] is not None:
            email["opt_out_date"] = iso(row["opt_out_at"])
        out: dict[str, Any] = {"contact_id": row["contact_id"], "email_address": email}
        for key in (*TOP_FIELDS, "birthday_month", "birthday_day"):
            if data.get(key) is not None:
                out[key] = data[key]
        out["create_source"] = data.get("create_source", "Account")
        if data.get("update_source"):
            out["update_source"] = data["update_source"]
        out["created_at"] = iso(row["created_at"])
        out["updated_at"] = iso(row["updated_at"])
        if row["deleted_at"] is not None:
            out["deleted_at"] = iso_date(row["deleted_at"])
        wanted = set(include)
        if "custom_fields" in wanted:
            out["custom_fields"] = [
                {"custom_field_id": k, "value": v} for k, v in data.get("custom_fields", {}).items()
            ]
        if "phone_numbers" in wanted:
            out["phone_numbers"] = [self._render_dated(p) for p in data.get("phone_numbers", [])]
        if "street_addresses" in wanted:
            out["street_addresses"] = [
                self._render_dated(a) for a in data.get("street_addresses", [])
            ]
        if "list_memberships" in wanted:
            out["list_memberships"] = (
                lists if lists is not None else self.list_ids_of([row["id"]])[row["id"]]
            )
        if "taggings" in wanted:
            out["taggings"] = list(data.get("taggings", []))
        if "notes" in wanted:
            out["notes"] = [self._render_dated(n) for n in data.get("notes", [])]
        return out

    @staticmethod
    def _render_dated(item: dict[str, Any]) -> dict[str, Any]:
        return {
            k: (iso(v) if k in ("created_at", "updated_at") else v)
            for k, v in item.items()
            if v is not None
        }

    def render_many(
        self, rows: Sequence[sqlite3.Row], include: Iterable[str]
    ) -> list[dict[str, Any]]:
        wanted = set(include)
        lists = self.list_ids_of([r["id"] for r in rows]) if "list_memberships" in wanted else {}
        return [self.render_contact(r, wanted, lists.get(r["id"])) for r in rows]

    # -- contacts: writing ------------------------------------------------------------------

    def _check_unique_email(self, db: sqlite3.Connection, email: str, own_id: int | None) -> None:
        other = db.execute("SELECT id FROM contacts WHERE email = ?", (email,)).fetchone()
        if other is not None and other["id"] != own_id:
            raise errors.conflict("Validation failed: EmailAddress is not unique")

    def _list_rowids(
        self, db: sqlite3.Connection, list_ids: Iterable[Any], *, status: int = 400
    ) -> list[int]:
        wanted = list(dict.fromkeys(list_ids))
        for list_id in wanted:
            if not is_uuid(list_id):
                raise errors.CCError(
                    status,
                    errors.VALIDATION if status == 400 else errors.NOT_FOUND,
                    f"List id {list_id!s} is in an invalid format.",
                )
        found: dict[str, int] = {}
        for part in chunks(wanted):
            for row in db.execute(
                f"SELECT id, list_id FROM lists WHERE list_id IN ({marks(len(part))})"
                " AND deleted_at IS NULL",
                tuple(p.lower() for p in part),
            ):
                found[row["list_id"]] = row["id"]
        missing = [x for x in wanted if x.lower() not in found]
        if missing:
            key = errors.VALIDATION if status == 400 else errors.NOT_FOUND
            raise errors.CCError(status, key, f"List {missing[0]} does not exist.")
        return [found[x.lower()] for x in wanted]

    def _custom_field_ids(self, db: sqlite3.Connection) -> dict[str, str]:
        return {
            r["custom_field_id"]: r["name"]
            for r in db.execute("SELECT custom_field_id, name FROM custom_fields")
        }

    def _apply_body(
        self,
        db: sqlite3.Connection,
        data: dict[str, Any],
        body: dict[str, Any],
        *,
        replace_top: bool,
        source: str,
        now: int,
    ) -> list[int] | None:
        """Copy a POST/PUT body into `data`; returns the list rowids when the body names lists."""
        for key, limit in TOP_FIELDS.items():
            if key in body:
                value = body[key]
                if value is not None and (not isinstance(value, str) or len(value) > limit):
                    raise errors.bad_request(
                        f"{key} must be a string of at most {limit} characters."
                    )
                data[key] = value or None
            elif replace_top:
                data.pop(key, None)
        for key, top in (("birthday_month", 12), ("birthday_day", 31)):
            if key in body:
                value = body[key]
                if value is not None and (not isinstance(value, int) or not 1 <= value <= top):
                    raise errors.bad_request(f"{key} must be between 1 and {top}.")
                data[key] = value
            elif replace_top:
                data.pop(key, None)
        if "custom_fields" in body:
            data["custom_fields"] = self._custom_values(db, body["custom_fields"], {})
        if "phone_numbers" in body:
            data["phone_numbers"] = self._phones(body["phone_numbers"], source, now)
        if "street_addresses" in body:
            data["street_addresses"] = self._addresses(body["street_addresses"], source, now)
        if "notes" in body:
            notes = body["notes"] or []
            if not isinstance(notes, list) or len(notes) > 150:
                raise errors.bad_request("notes must be an array of at most 150 notes.")
            data["notes"] = [
                {
                    "note_id": n.get("note_id") or new_id(),
                    "created_at": now,
                    "content": str(n.get("content", ""))[:2000],
                }
                for n in notes
                if isinstance(n, dict)
            ]
        if "list_memberships" in body:
            ids = body["list_memberships"] or []
            if not isinstance(ids, list) or len(ids) > MAX_LISTS_PER_CONTACT:
                raise errors.bad_request("list_memberships must hold at most 50 list ids.")
            return self._list_rowids(db, ids)
        return None

    def _custom_values(
        self, db: sqlite3.Connection, items: Any, current: dict[str, str]
    ) -> dict[str, str]:
        if not isinstance(items, list) or len(items) > 25:
            raise errors.bad_request("custom_fields must be an array of at most 25 fields.")
        known = self._custom_field_ids(db)
        values = dict(current)
        for item in items:
            if not isinstance(item, dict) or not is_uuid(item.get("custom_field_id")):
                raise errors.bad_request("custom_field_id is in an invalid format.")
            field_id = item["custom_field_id"].lower()
            if field_id not in known:
                raise errors.bad_request(f"Custom field {field_id} does not exist.")
            value = item.get("value")
            if value is None or value == "":
                values.pop(field_id, None)
            elif len(str(value)) > 255:
                raise errors.bad_request("A custom field value is at most 255 characters.")
            else:
                values[field_id] = str(value)
        if len(values) > 25:
            raise errors.bad_request("A contact holds at most 25 custom fields.")
        return values

    @staticmethod
    def _phones(items: Any, source: str, now: int) -> list[dict[str, Any]]:
        if not isinstance(items, list) or len(items) > 3:
            raise errors.bad_request("phone_numbers must be an array of at most 3 numbers.")
        out = []
        for item in items:
            kind = (item or {}).get("kind") or "other"
            number = str((item or {}).get("phone_number") or "")
            if kind not in PHONE_KINDS:
                raise errors.bad_request(f"Phone number kind {kind!s} is not valid.")
            if not number or len(number) > 25:
                raise errors.bad_request("phone_number must be 1 to 25 characters.")
            out.append(Store._phone(number, kind, source, now))
        return out

    @staticmethod
    def _phone(number: str, kind: str, source: str, now: int) -> dict[str, Any]:
        return {
            "phone_number_id": new_id(),
            "phone_number": number,
            "kind": kind,
            "created_at": now,
            "updated_at": now,
            "create_source": source,
            "update_source": source,
        }

    @staticmethod
    def _addresses(items: Any, source: str, now: int) -> list[dict[str, Any]]:
        if not isinstance(items, list) or len(items) > 3:
            raise errors.bad_request("street_addresses must be an array of at most 3 addresses.")
        out = []
        for item in items:
            item = item or {}
            kind = item.get("kind")
            if kind not in ADDRESS_KINDS:
                raise errors.bad_request("street_addresses kind must be home, work or other.")
            out.append(Store._address(item, kind, now))
        return out

    @staticmethod
    def _address(item: dict[str, Any], kind: str, now: int) -> dict[str, Any]:
        address: dict[str, Any] = {"street_address_id": new_id(), "kind": kind}
        for key, limit in (
            ("street", 255),
            ("city", 50),
            ("state", 50),
            ("postal_code", 50),
            ("country", 50),
        ):
            value = item.get(key)
            if value:
                if len(str(value)) > limit:
                    raise errors.bad_request(f"{key} must be at most {limit} characters.")
                address[key] = str(value)
        address["created_at"] = now
        address["updated_at"] = now
        return address

    @staticmethod
    def _email_part(body: dict[str, Any], required: bool) -> dict[str, Any] | None:
        part = body.get("email_address")
        if part is None:
            if required:
                raise errors.bad_request("email_address is required.")
            return None
        if not isinstance(part, dict) or not part.get("address"):
            raise errors.bad_request("email_address.address is required.")
        permission = part.get("permission_to_send")
        if permission is not None and permission not in PERMISSIONS:
            raise errors.bad_request(f"permission_to_send {permission!s} is not valid.")
        if not valid_email(normalize_email(part["address"])):
            raise errors.bad_request("Email address is invalid.")
        return part

    def _set_lists(self, db: sqlite3.Connection, contact: int, list_rowids: list[int]) -> None:
        db.execute("DELETE FROM memberships WHERE contact = ?", (contact,))
        db.executemany(
            "INSERT OR IGNORE INTO memberships(list, contact) VALUES (?, ?)",
            [(lid, contact) for lid in list_rowids],
        )

    def _next_id(self, db: sqlite3.Connection) -> int:
        return int(db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM contacts").fetchone()[0])

    def create_contact(self, body: dict[str, Any]) -> sqlite3.Row:
        """POST /contacts: a new contact, or 409 for any email the account ever held."""
        source = body.get("create_source")
        if source not in SOURCES:
            raise errors.bad_request("create_source is required and must be Account or Contact.")
        if not any(
            body.get(k) for k in ("email_address", "first_name", "last_name", "sms_channel")
        ):
            raise errors.bad_request(
                "At least one of first_name, last_name, email_address or sms_channel is required."
            )
        part = self._email_part(body, required=True)
        assert part is not None
        email = normalize_email(part["address"])
        now = self.now()
        with self.tx() as db:
            self._check_unique_email(db, email, None)
            data: dict[str, Any] = {"create_source": source}
            list_rowids = self._apply_body(db, data, body, replace_top=True, source=source, now=now)
            permission = part.get("permission_to_send") or "implicit"
            mail: dict[str, Any] = {"created_at": now, "confirm_status": "off"}
            opt_out_at = None
            if permission == "unsubscribed":
                mail.update(opt_out_source=source, opt_out_reason=part.get("opt_out_reason"))
                opt_out_at = now
                list_rowids = []
            elif permission in ACTIVE_PERMISSIONS:
                mail.update(opt_in_source=source, opt_in_date=now)
            data["email"] = mail
            rowid = self._next_id(db)
            db.execute(
                "INSERT INTO contacts(id, contact_id, email, permission, created_at, updated_at,"
                " email_updated_at, opt_out_at, deleted_at, data) VALUES (?,?,?,?,?,?,?,?,NULL,?)",
                (
                    rowid,
                    new_id(),
                    email,
                    permission,
                    now,
                    now,
                    now,
                    opt_out_at,
                    _dump(data),
                ),
            )
            if list_rowids:
                self._set_lists(db, rowid, list_rowids)
            row: sqlite3.Row = db.execute(
                "SELECT * FROM contacts WHERE id = ?", (rowid,)
            ).fetchone()
        return row

    def put_contact(self, contact_id: str, body: dict[str, Any]) -> sqlite3.Row:
        """PUT /contacts/{id}: replace top-level fields, keep omitted sub-resources, revive."""
        source = body.get("update_source")
        if source not in SOURCES:
            raise errors.bad_request("update_source is required and must be Account or Contact.")
        part = self._email_part(body, required=False)
        now = self.now()
        with self.tx() as db:
            row = self.require_contact(contact_id)
            data = json.loads(row["data"])
            data["update_source"] = source
            list_rowids = self._apply_body(db, data, body, replace_top=True, source=source, now=now)
            email, permission = row["email"], row["permission"]
            email_updated, opt_out_at = row["email_updated_at"], row["opt_out_at"]
            mail = data.setdefault("email", {})
            if part is not None:
                new_email = normalize_email(part["address"])
                if new_email != email:
                    self._check_unique_email(db, new_email, row["id"])
                    email, email_updated = new_email, now
                wanted = part.get("permission_to_send")
                if wanted and wanted != permission:
                    if wanted == "unsubscribed":
                        mail.update(
                            opt_out_source=source, opt_out_reason=part.get("opt_out_reason")
                        )
                        opt_out_at = now
                    elif permission == "unsubscribed" and mail.get("opt_out_source") == "Contact":
                        # Only the person can undo their own opt-out (resubscribe mail, sign-up).
                        raise errors.bad_request(
                            "Contact unsubscribed themselves; permission_to_send cannot be changed."
                        )
                    else:
                        for key in ("opt_out_source", "opt_out_reason"):
                            mail.pop(key, None)
                        opt_out_at = None
                        if wanted in ACTIVE_PERMISSIONS:
                            mail.update(opt_in_source=source, opt_in_date=now)
                    permission, email_updated = wanted, now
            db.execute(
                "UPDATE contacts SET email = ?, permission = ?, updated_at = ?,"
                " email_updated_at = ?, opt_out_at = ?, deleted_at = NULL, data = ? WHERE id = ?",
                (email, permission, now, email_updated, opt_out_at, _dump(data), row["id"]),
            )
            if permission == "unsubscribed":
                db.execute("DELETE FROM memberships WHERE contact = ?", (row["id"],))
            elif list_rowids is not None:
                self._set_lists(db, row["id"], list_rowids)
            fresh: sqlite3.Row = db.execute(
                "SELECT * FROM contacts WHERE id = ?", (row["id"],)
            ).fetchone()
        return fresh

    def delete_contacts(self, rowids: Sequence[int]) -> int:
        """Soft delete: deleted_at set, list memberships stripped, permission untouched."""
        now = self.now()
        done = 0
        with self.tx() as db:
            for part in chunks(list(rowids)):
                cur = db.execute(
                    "UPDATE contacts SET deleted_at = ?, updated_at = ?"
                    f" WHERE id IN ({marks(len(part))}) AND deleted_at IS NULL",
                    (now, now, *part),
                )
                done += cur.rowcount
                db.execute(
                    f"DELETE FROM memberships WHERE contact IN ({marks(len(part))})", tuple(part)
                )
        return done

    def sign_up(self, body: dict[str, Any]) -> tuple[str, str]:
        """POST /contacts/sign_up_form: create or partially update by email, and (re)subscribe."""
        address = body.get("email_address")
        if not isinstance(address, str) or not address.strip():
            raise errors.bad_request("email_address is required.")
        email = normalize_email(address)
        if not valid_email(email):
            raise errors.bad_request("Email address is invalid.")
        lists = body.get("list_memberships")
        if not isinstance(lists, list) or not 1 <= len(lists) <= MAX_LISTS_PER_CONTACT:
            raise errors.bad_request("list_memberships must hold 1 to 50 list ids.")
        now = self.now()
        with self.tx() as db:
            list_rowids = self._list_rowids(db, lists)
            row = db.execute("SELECT * FROM contacts WHERE email = ?", (email,)).fetchone()
            data: dict[str, Any] = json.loads(row["data"]) if row else {"create_source": "Contact"}
            for key, limit in TOP_FIELDS.items():
                if body.get(key):
                    if len(str(body[key])) > limit:
                        raise errors.bad_request(f"{key} must be at most {limit} characters.")
                    data[key] = str(body[key])
            for key in ("birthday_month", "birthday_day"):
                if body.get(key) is not None:
                    data[key] = body[key]
            if body.get("custom_fields"):
                data["custom_fields"] = self._custom_values(
                    db, body["custom_fields"], data.get("custom_fields", {})
                )
            if body.get("phone_number"):
                phones = [p for p in data.get("phone_numbers", []) if p.get("kind") != "other"]
                data["phone_numbers"] = [
                    *phones[:2],
                    self._phone(str(body["phone_number"])[:25], "other", "Contact", now),
                ]
            if body.get("street_address"):
                item = body["street_address"]
                kind = item.get("kind") if isinstance(item, dict) else None
                if kind not in ADDRESS_KINDS:
                    raise errors.bad_request("street_address kind must be home, work or other.")
                kept = [a for a in data.get("street_addresses", []) if a.get("kind") != kind]
                data["street_addresses"] = [*kept[:2], self._address(item, kind, now)]
            data["update_source"] = "Contact"
            mail = data.setdefault("email", {"created_at": now})
            mail.update(opt_in_source="Contact", opt_in_date=now, confirm_status="off")
            mail.pop("opt_out_source", None)
            mail.pop("opt_out_reason", None)
            if row is None:
                rowid = self._next_id(db)
                contact_id = new_id()
                db.execute(
                    "INSERT INTO contacts(id, contact_id, email, permission, created_at,"
                    " updated_at, email_updated_at, opt_out_at, deleted_at, data)"
                    " VALUES (?,?,?,'explicit',?,?,?,NULL,NULL,?)",
                    (rowid, contact_id, email, now, now, now, _dump(data)),
                )
                action = "created"
            else:
                rowid, contact_id = row["id"], row["contact_id"]
                db.execute(
                    "UPDATE contacts SET permission = 'explicit', updated_at = ?,"
                    " email_updated_at = ?, opt_out_at = NULL, deleted_at = NULL, data = ?"
                    " WHERE id = ?",
                    (now, now, _dump(data), rowid),
                )
                action = "updated"
            db.executemany(
                "INSERT OR IGNORE INTO memberships(list, contact) VALUES (?, ?)",
                [(lid, rowid) for lid in list_rowids],
            )
            held = db.execute(
                "SELECT COUNT(*) FROM memberships WHERE contact = ?", (rowid,)
            ).fetchone()[0]
            if held > MAX_LISTS_PER_CONTACT:
                raise errors.bad_request("A contact can be a member of at most 50 lists.")
        return contact_id, action

    def unsubscribe_by_person(self, email: str, reason: str | None = None) -> sqlite3.Row:
        """The person clicks "unsubscribe": the contact-level updated_at deliberately stays."""
        now = self.now()
        with self.tx() as db:
            row = db.execute(
                "SELECT * FROM contacts WHERE email = ?", (normalize_email(email),)
            ).fetchone()
            if row is None:
                raise errors.not_found("No contact has this email address.")
            data = json.loads(row["data"])
            mail = data.setdefault("email", {})
            mail["opt_out_source"] = "Contact"
            if reason:
                mail["opt_out_reason"] = reason[:255]
            db.execute(
                "UPDATE contacts SET permission = 'unsubscribed', opt_out_at = ?,"
                " email_updated_at = ?, data = ? WHERE id = ?",
                (now, now, _dump(data), row["id"]),
            )
            db.execute("DELETE FROM memberships WHERE contact = ?", (row["id"],))
            fresh: sqlite3.Row = db.execute(
                "SELECT * FROM contacts WHERE id = ?", (row["id"],)
            ).fetchone()
        return fresh

    # -- bulk -------------------------------------------------------------------------------

    def rowids_for_contact_ids(self, contact_ids: Sequence[str]) -> tuple[list[int], list[str]]:
        """Known contacts' rowids (deleted included) and the ids that match no contact."""
        found: dict[str, int] = {}
        wanted = [c.lower() for c in contact_ids if is_uuid(c)]
        with self.read() as db:
            for part in chunks(wanted):
                for row in db.execute(
                    f"SELECT id, contact_id FROM contacts WHERE contact_id IN ({marks(len(part))})",
                    tuple(part),
                ):
                    found[row["contact_id"]] = row["id"]
        missing = [c for c in contact_ids if c.lower() not in found]
        return [found[c.lower()] for c in contact_ids if c.lower() in found], missing

    def member_rowids(self, list_rowids: Sequence[int]) -> list[int]:
        with self.read() as db:
            return [
                r[0]
                for r in db.execute(
                    "SELECT DISTINCT contact FROM memberships"
                    f" WHERE list IN ({marks(len(list_rowids))})"
                    " ORDER BY contact",
                    tuple(list_rowids),
                )
            ]

    def active_rowids(self) -> list[int]:
        with self.read() as db:
            return [
                r[0]
                for r in db.execute(
                    "SELECT id FROM contacts"
                    " WHERE deleted_at IS NULL AND permission != 'unsubscribed'"
                    " ORDER BY id"
                )
            ]

    def resolve_lists(self, list_ids: Sequence[str], *, status: int = 400) -> list[int]:
        with self.read() as db:
            return self._list_rowids(db, list_ids, status=status)

    def add_members(self, contacts: Sequence[int], list_rowids: Sequence[int]) -> tuple[int, int]:
        """Add contacts to lists, skipping unsubscribed and deleted ones: (added, skipped)."""
        now = self.now()
        eligible: list[int] = []
        with self.tx() as db:
            for part in chunks(list(contacts)):
                eligible.extend(
                    r[0]
                    for r in db.execute(
                        f"SELECT id FROM contacts WHERE id IN ({marks(len(part))})"
                        " AND deleted_at IS NULL AND permission != 'unsubscribed'",
                        tuple(part),
                    )
                )
            db.executemany(
                "INSERT OR IGNORE INTO memberships(list, contact) VALUES (?, ?)",
                [(lid, cid) for cid in eligible for lid in list_rowids],
            )
            for part in chunks(eligible):
                db.execute(
                    f"UPDATE contacts SET updated_at = ? WHERE id IN ({marks(len(part))})",
                    (now, *part),
                )
        return len(eligible), len(contacts) - len(eligible)

    def remove_members(self, contacts: Sequence[int], list_rowids: Sequence[int]) -> int:
        now = self.now()
        with self.tx() as db:
            db.executemany(
                "DELETE FROM memberships WHERE list = ? AND contact = ?",
                [(lid, cid) for cid in contacts for lid in list_rowids],
            )
            for part in chunks(list(contacts)):
                db.execute(
                    f"UPDATE contacts SET updated_at = ? WHERE id IN ({marks(len(part))})",
                    (now, *part),
                )
        return len(contacts)

    def import_contacts(self, rows: Sequence[Any], list_ids: Sequence[str]) -> ImportResult:
        """The work of `contacts_json_import`, in one transaction (fast path: executemany)."""
        result = ImportResult(items_total_count=len(rows))
        now = self.now()
        with self.tx() as db:
            list_rowids = self._list_rowids(db, list_ids)
            field_names = {
                r["name"]: r["custom_field_id"]
                for r in db.execute("SELECT name, custom_field_id FROM custom_fields")
            }
            parsed: dict[str, dict[str, Any]] = {}
            for index, raw in enumerate(rows):
                parsed_row = _parse_import_row(index, raw, field_names, result)
                if parsed_row is None:
                    continue
                email = parsed_row.pop("_email")
                if email in parsed:
                    _merge_import(parsed[email], parsed_row)
                else:
                    parsed[email] = parsed_row
            emails = list(parsed)
            existing: dict[str, sqlite3.Row] = {}
            for part in chunks(emails):
                for row in db.execute(
                    "SELECT id, email, permission, deleted_at, data FROM contacts"
                    f" WHERE email IN ({marks(len(part))})",
                    tuple(part),
                ):
                    existing[row["email"]] = row
            inserts: list[tuple[Any, ...]] = []
            updates: list[tuple[Any, ...]] = []
            members: list[int] = []
            next_id = self._next_id(db)
            for email, values in parsed.items():
                row = existing.get(email)
                if row is None:
                    # Defaults (create source Account, dates = created_at, confirm off) are left
                    # out of the JSON: at a million contacts every byte is a megabyte.
                    data: dict[str, Any] = {}
                    _apply_import(data, values, now)
                    data["email"] = {"opt_in_source": "Account"}
                    inserts.append((next_id, new_id(), email, now, now, now, _dump(data)))
                    members.append(next_id)
                    next_id += 1
                else:
                    data = json.loads(row["data"])
                    data["update_source"] = "Account"
                    _apply_import(data, values, now)
                    updates.append((now, _dump(data), row["id"]))
                    if row["permission"] == "unsubscribed":
                        result.cannot_add_to_list_count += 1
                    else:
                        members.append(row["id"])
                result.person_count += 1
            db.executemany(
                "INSERT INTO contacts(id, contact_id, email, permission, created_at, updated_at,"
                " email_updated_at, opt_out_at, deleted_at, data)"
                " VALUES (?,?,?,'implicit',?,?,?,NULL,NULL,?)",
                inserts,
            )
            # Reviving a deleted contact is part of an import's update (as in Constant Contact).
            db.executemany(
                "UPDATE contacts SET updated_at = ?, deleted_at = NULL, data = ? WHERE id = ?",
                updates,
            )
            db.executemany(
                "INSERT OR IGNORE INTO memberships(list, contact) VALUES (?, ?)",
                [(lid, cid) for cid in members for lid in list_rowids],
            )
        return result

    def seed(
        self,
        count: int,
        list_names: Sequence[str],
        unsubscribed_ratio: float,
        seed: int,
        domain: str = "example.com",
    ) -> dict[str, Any]:
        """Fast path for demos and benchmarks: `count` contacts on the named lists (made if new)."""
        rng = random.Random(seed)
        now = self.now()
        firsts = (
            "Ada",
            "Grace",
            "Alan",
            "Edsger",
            "Barbara",
            "Donald",
            "Frances",
            "Ken",
            "Radia",
            "Tim",
        )
        lasts = (
            "Lovelace",
            "Hopper",
            "Turing",
            "Dijkstra",
            "Liskov",
            "Knuth",
            "Allen",
            "Thompson",
            "Perlman",
            "Berners-Lee",
        )
        with self.tx() as db:
            list_rowids = [self._ensure_list(db, name, now) for name in list_names]
            start = self._next_id(db)
            offset = int(db.execute("SELECT COUNT(*) FROM contacts").fetchone()[0])
            batch: list[tuple[Any, ...]] = []
            members: list[tuple[int, int]] = []
            unsubscribed = 0
            for i in range(count):
                rowid = start + i
                n = offset + i
                first, last = rng.choice(firsts), rng.choice(lasts)
                is_unsub = rng.random() < unsubscribed_ratio
                mail: dict[str, Any] = {"opt_in_source": "Account"}
                if is_unsub:
                    mail["opt_out_source"] = "Contact"
                    unsubscribed += 1
                else:
                    members.extend((lid, rowid) for lid in list_rowids)
                data = {
                    "first_name": first,
                    "last_name": last,
                    "email": mail,
                }
                batch.append(
                    (
                        rowid,
                        str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                        f"{first}.{last}.{n}@{domain}".lower(),
                        "unsubscribed" if is_unsub else "implicit",
                        now,
                        now,
                        now,
                        now if is_unsub else None,
                        _dump(data),
                    )
                )
                if len(batch) >= 10000:
                    self._seed_flush(db, batch, members)
            self._seed_flush(db, batch, members)
        return {"contacts": count, "unsubscribed": unsubscribed, "lists": list(list_names)}

    @staticmethod
    def _seed_flush(
        db: sqlite3.Connection, batch: list[tuple[Any, ...]], members: list[tuple[int, int]]
    ) -> None:
        db.executemany(
            "INSERT INTO contacts(id, contact_id, email, permission, created_at, updated_at,"
            " email_updated_at, opt_out_at, deleted_at, data) VALUES (?,?,?,?,?,?,?,?,NULL,?)",
            batch,
        )
        db.executemany("INSERT OR IGNORE INTO memberships(list, contact) VALUES (?, ?)", members)
        batch.clear()
        members.clear()

    # -- lists ------------------------------------------------------------------------------

    def _ensure_list(self, db: sqlite3.Connection, name: str, now: int) -> int:
        row = db.execute(
            "SELECT id FROM lists WHERE lower(name) = lower(?) AND deleted_at IS NULL", (name,)
        ).fetchone()
        if row is not None:
            return int(row[0])
        cur = db.execute(
            "INSERT INTO lists(list_id, name, created_at, updated_at) VALUES (?, ?, ?, ?)",
            (new_id(), name, now, now),
        )
        return int(cur.lastrowid or 0)

    @staticmethod
    def _list_input(body: dict[str, Any]) -> tuple[str, bool, str | None]:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise errors.bad_request("name is required.")
        if len(name) > 255:
            raise errors.bad_request("name must be at most 255 characters.")
        favorite = body.get("favorite", False)
        if not isinstance(favorite, bool):
            raise errors.bad_request("favorite must be a boolean.")
        description = body.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > 255):
            raise errors.bad_request("description must be at most 255 characters.")
        return name.strip(), favorite, description

    def create_list(self, body: dict[str, Any]) -> sqlite3.Row:
        name, favorite, description = self._list_input(body)
        now = self.now()
        with self.tx() as db:
            live = db.execute("SELECT COUNT(*) FROM lists WHERE deleted_at IS NULL").fetchone()[0]
            if live >= MAX_LISTS:
                raise errors.bad_request("An account holds at most 1000 lists.")
            if db.execute(
                "SELECT 1 FROM lists WHERE lower(name) = lower(?) AND deleted_at IS NULL", (name,)
            ).fetchone():
                raise errors.conflict(f"A list named {name} already exists.")
            cur = db.execute(
                "INSERT INTO lists(list_id, name, favorite, description, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (new_id(), name, int(favorite), description, now, now),
            )
            row: sqlite3.Row = db.execute(
                "SELECT * FROM lists WHERE id = ?", (cur.lastrowid,)
            ).fetchone()
        return row

    def list_row(self, list_id: str, *, include_deleted: bool = True) -> sqlite3.Row:
        if not is_uuid(list_id):
            raise errors.not_found("list_id is in an invalid format.")
        with self.read() as db:
            row = db.execute("SELECT * FROM lists WHERE list_id = ?", (list_id.lower(),)).fetchone()
        if row is None or (row["deleted_at"] is not None and not include_deleted):
            raise errors.not_found(f"List {list_id} not found.")
        return row  # type: ignore[no-any-return]

    def put_list(self, list_id: str, body: dict[str, Any]) -> sqlite3.Row:
        name, favorite, description = self._list_input(body)
        now = self.now()
        with self.tx() as db:
            row = self.list_row(list_id, include_deleted=False)
            clash = db.execute(
                "SELECT 1 FROM lists WHERE lower(name) = lower(?) AND deleted_at IS NULL"
                " AND id != ?",
                (name, row["id"]),
            ).fetchone()
            if clash:
                # PUT /contact_lists declares no 409; a name clash is a validation error there.
                raise errors.bad_request(f"A list named {name} already exists.")
            db.execute(
                "UPDATE lists SET name = ?, favorite = ?, description = ?, updated_at = ?"
                " WHERE id = ?",
                (name, int(favorite), description, now, row["id"]),
            )
            fresh: sqlite3.Row = db.execute(
                "SELECT * FROM lists WHERE id = ?", (row["id"],)
            ).fetchone()
        return fresh

    def delete_list(self, list_rowid: int) -> int:
        """The work of a list delete activity: list marked deleted, its memberships dropped."""
        now = self.now()
        with self.tx() as db:
            members = db.execute(
                "SELECT COUNT(*) FROM memberships WHERE list = ?", (list_rowid,)
            ).fetchone()[0]
            db.execute("DELETE FROM memberships WHERE list = ?", (list_rowid,))
            db.execute(
                "UPDATE lists SET deleted_at = ?, updated_at = ?"
                " WHERE id = ? AND deleted_at IS NULL",
                (now, now, list_rowid),
            )
        return int(members)

    def query_lists(
        self, status: str | None, name: str | None, after: int, limit: int
    ) -> tuple[list[sqlite3.Row], bool, int]:
        clauses, params = [], []
        if status in (None, "active"):
            clauses.append("deleted_at IS NULL")
        elif status == "deleted":
            clauses.append("deleted_at IS NOT NULL")
        if name is not None:
            clauses.append("name = ?")
            params.append(name)
        where = " AND ".join(clauses) or "1"
        with self.read() as db:
            rows = db.execute(
                f"SELECT * FROM lists WHERE {where} AND id > ? ORDER BY id LIMIT ?",
                (*params, after, limit + 1),
            ).fetchall()
            total = db.execute(f"SELECT COUNT(*) FROM lists WHERE {where}", params).fetchone()[0]
        return rows[:limit], len(rows) > limit, int(total)

    def membership_count(self, list_rowid: int, which: str) -> int:
        with self.read() as db:
            if which == "active":
                sql = (
                    "SELECT COUNT(*) FROM memberships m JOIN contacts c ON c.id = m.contact"
                    " WHERE m.list = ? AND c.permission IN ('explicit', 'implicit')"
                )
            else:
                sql = "SELECT COUNT(*) FROM memberships WHERE list = ?"
            return int(db.execute(sql, (list_rowid,)).fetchone()[0])

    @staticmethod
    def render_list(row: sqlite3.Row, membership_count: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "list_id": row["list_id"],
            "name": row["name"],
            "favorite": bool(row["favorite"]),
        }
        if row["description"]:
            out["description"] = row["description"]
        out["created_at"] = iso(row["created_at"])
        out["updated_at"] = iso(row["updated_at"])
        if row["deleted_at"] is not None:
            out["deleted_at"] = iso(row["deleted_at"])
        if membership_count is not None:
            out["membership_count"] = membership_count
        return out

    def list_names(self) -> dict[str, str]:
        with self.read() as db:
            return {r["list_id"]: r["name"] for r in db.execute("SELECT list_id, name FROM lists")}

    # -- custom fields ----------------------------------------------------------------------

    @staticmethod
    def _field_label(body: dict[str, Any]) -> str:
        label = body.get("label")
        if not isinstance(label, str) or not label.strip():
            raise errors.bad_request("label is required.")
        if len(label) > 50:
            raise errors.bad_request("label must be at most 50 characters.")
        return label.strip()

    @staticmethod
    def _choices(
        items: Any, field_id: str, now: int, old: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        if items is None:
            return []
        if not isinstance(items, list) or len(items) > 100:
            raise errors.bad_request("choices must be an array of at most 100 choices.")
        by_id = {c["choice_id"]: c for c in old}
        next_id = max(by_id, default=0) + 1
        out = []
        for order, item in enumerate(items, start=1):
            label = (item or {}).get("choice_label")
            if not isinstance(label, str) or not label or len(label) > 255:
                raise errors.bad_request("choice_label must be 1 to 255 characters.")
            choice_id = (item or {}).get("choice_id")
            if choice_id not in by_id:
                choice_id, next_id = next_id, next_id + 1
            out.append(
                {
                    "custom_field_id": field_id,
                    "choice_id": choice_id,
                    "choice_label": label,
                    "display_order": item.get("display_order") or order,
                    "created_at": by_id.get(choice_id, {}).get("created_at", now),
                    "updated_at": now,
                }
            )
        return out

    def create_custom_field(self, body: dict[str, Any]) -> dict[str, Any]:
        label = self._field_label(body)
        kind = body.get("type") or "string"
        if not isinstance(kind, str) or len(kind) > 20:
            raise errors.bad_request("type must be at most 20 characters.")
        name = re.sub(r"\s+", "_", label)
        now = self.now()
        field_id = new_id()
        with self.tx() as db:
            if db.execute("SELECT COUNT(*) FROM custom_fields").fetchone()[0] >= MAX_CUSTOM_FIELDS:
                raise errors.bad_request("An account holds at most 100 custom fields.")
            if db.execute(
                "SELECT 1 FROM custom_fields WHERE lower(name) = lower(?)", (name,)
            ).fetchone():
                raise errors.conflict(f"A custom field named {name} already exists.")
            data: dict[str, Any] = {
                "custom_field_id": field_id,
                "label": label,
                "name": name,
                "type": kind,
                "version": body.get("version") or 2,
                "created_at": now,
                "updated_at": now,
            }
            if isinstance(body.get("metadata"), dict):
                data["metadata"] = body["metadata"]
            data["choices"] = self._choices(body.get("choices"), field_id, now, [])
            db.execute(
                "INSERT INTO custom_fields(custom_field_id, name, data) VALUES (?, ?, ?)",
                (field_id, name, _dump(data)),
            )
        return data

    def custom_field(self, field_id: str) -> dict[str, Any]:
        if not is_uuid(field_id):
            raise errors.not_found("custom_field_id is in an invalid format.")
        with self.read() as db:
            row = db.execute(
                "SELECT data FROM custom_fields WHERE custom_field_id = ?", (field_id.lower(),)
            ).fetchone()
        if row is None:
            raise errors.not_found(f"Custom field {field_id} not found.")
        return json.loads(row["data"])  # type: ignore[no-any-return]

    def put_custom_field(self, field_id: str, body: dict[str, Any]) -> dict[str, Any]:
        data = self.custom_field(field_id)
        now = self.now()
        if "label" in body:
            data["label"] = self._field_label(body)
        data["choices"] = self._choices(
            body.get("choices"), data["custom_field_id"], now, data.get("choices", [])
        )
        data["updated_at"] = now
        with self.tx() as db:
            db.execute(
                "UPDATE custom_fields SET data = ? WHERE custom_field_id = ?",
                (_dump(data), data["custom_field_id"]),
            )
        return data

    def delete_custom_field(self, field_id: str) -> None:
        data = self.custom_field(field_id)
        with self.tx() as db:
            db.execute(
                "DELETE FROM custom_fields WHERE custom_field_id = ?", (data["custom_field_id"],)
            )
            db.execute(
                "UPDATE contacts SET data = json_remove(data, ?)"
                " WHERE json_extract(data, ?) IS NOT NULL",
                (f'$.custom_fields."{data["custom_field_id"]}"',) * 2,
            )

    def custom_fields(self) -> list[dict[str, Any]]:
        with self.read() as db:
            return [
                json.loads(r["data"])
                for r in db.execute("SELECT data FROM custom_fields ORDER BY id")
            ]

    @staticmethod
    def render_custom_field(data: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in data.items() if k not in ("choices", "created_at", "updated_at")}
        out["choices"] = [
            {k: (iso(v) if k in ("created_at", "updated_at") else v) for k, v in c.items()}
            for c in data.get("choices", [])
        ]
        out["created_at"] = iso(data["created_at"])
        out["updated_at"] = iso(data["updated_at"])
        return out


_ENCODER = json.JSONEncoder(separators=(",", ":"))
_RANDOM = random.Random()  # seeded from os.urandom; ids need uniqueness, not secrecy


def _dump(data: dict[str, Any]) -> str:
    return _ENCODER.encode(data)


def new_id() -> str:
    """A random (version 4) UUID string, several times cheaper than new_id()."""
    bits = _RANDOM.getrandbits(128) & ~(0xF << 76) & ~(0x3 << 62)
    h = f"{bits | (0x4 << 76) | (0x2 << 62):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


PHONE_KEYS = {
    "phone": "other",
    "home_phone": "home",
    "work_phone": "work",
    "mobile_phone": "mobile",
    "other_phone": "other",
}
ADDRESS_PREFIXES = {"": "home", "home_": "home", "work_": "work", "other_": "other"}
ADDRESS_PARTS = {
    "street": "street",
    "street2": "street2",
    "city": "city",
    "state": "state",
    "zip": "postal_code",
    "country": "country",
}
# import key -> (address kind, StreetAddress part, explicit prefix?); "home country" is the
# spec's own spelling, accepted beside home_country.
ADDRESS_KEYS: dict[str, tuple[str, str, bool]] = {
    f"{prefix}{part}": (kind, target, bool(prefix))
    for prefix, kind in ADDRESS_PREFIXES.items()
    for part, target in ADDRESS_PARTS.items()
}
ADDRESS_KEYS["home country"] = ("home", "country", True)
IGNORED_KEYS = frozenset({"email", "sms_number", "sms_consent_date"})


def _parse_import_row(
    index: int, raw: Any, field_names: dict[str, str], result: ImportResult
) -> dict[str, Any] | None:
    """One `import_data` item → the values to apply, or None after recording its row error."""
    if not isinstance(raw, dict):
        result.error_count += 1
        result.errors.append(f"import_data[{index}]: not an object.")
        return None
    email = normalize_email(raw.get("email") or "")
    if not email:
        result.correctable_count += 1
        result.errors.append(f"import_data[{index}]: email is required.")
        return None
    if not valid_email(email):
        result.correctable_count += 1
        result.errors.append(f"import_data[{index}]: email address is invalid.")
        return None
    values: dict[str, Any] = {"_email": email}
    phones: dict[str, str] = {}
    addresses: dict[str, dict[str, str]] = {}
    customs: dict[str, str] = {}
    for key, value in raw.items():
        if value is None or value == "" or key in IGNORED_KEYS:
            continue
        limit = TOP_FIELDS.get(key)
        if limit is not None:
            values[key] = str(value)[:limit]
        elif key[:3] == "cf:":
            field_id = field_names.get(key[3:])
            if field_id is None:
                result.error_count += 1
                result.errors.append(
                    f"import_data[{index}]: custom field {key[3:]} does not exist."
                )
                return None
            customs[field_id] = str(value)[:255]
        elif key in PHONE_KEYS:
            kind = PHONE_KEYS[key]
            if key != "phone" or kind not in phones:
                phones[kind] = str(value)[:25]
        elif key in ("birthday_month", "birthday_day"):
            try:
                values[key] = int(value)
            except (TypeError, ValueError):
                result.correctable_count += 1
                result.errors.append(f"import_data[{index}]: {key} is not a number.")
                return None
        elif key in ADDRESS_KEYS:
            kind, part, explicit = ADDRESS_KEYS[key]
            slot = addresses.setdefault(kind, {})
            # An explicit home_* value beats the unprefixed default (which also means home).
            if explicit or part not in slot:
                slot[part] = str(value)
    if len(customs) > 25:
        result.error_count += 1
        result.errors.append(f"import_data[{index}]: more than 25 custom fields.")
        return None
    if phones:
        values["phones"] = phones
    if addresses:
        values["addresses"] = addresses
    if customs:
        values["customs"] = customs
    return values


def _merge_import(into: dict[str, Any], more: dict[str, Any]) -> None:
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            into[key].update(value)
        else:
            into[key] = value


def _apply_import(data: dict[str, Any], values: dict[str, Any], now: int) -> None:
    """Only supplied properties change; the permission to send is never touched by an import."""
    for key, value in values.items():
        if key in ("phones", "addresses", "customs"):
            continue
        data[key] = value
    if "customs" in values:
        data["custom_fields"] = {**data.get("custom_fields", {}), **values["customs"]}
    if "phones" in values:
        phones = {p["kind"]: p for p in data.get("phone_numbers", [])}
        for kind, number in values["phones"].items():
            phones[kind] = Store._phone(number, kind, "Account", now)
        data["phone_numbers"] = list(phones.values())[:3]
    if "addresses" in values:
        current = {a["kind"]: a for a in data.get("street_addresses", [])}
        for kind, supplied in values["addresses"].items():
            # Only the supplied parts change; the rest of an existing address of that kind stays.
            parts = {k: v for k, v in current.get(kind, {}).items() if k in ADDRESS_PARTS.values()}
            parts.update(supplied)
            if "street2" in parts:
                parts["street"] = " ".join(
                    p for p in (parts.get("street"), parts.pop("street2")) if p
                )
            current[kind] = Store._address(parts, kind, now)
        data["street_addresses"] = list(current.values())[:3]
