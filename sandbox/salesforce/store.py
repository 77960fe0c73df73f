"""The org's data: sObject records in SQLite, SOQL over them, and the change records of every write.

INTERFACE CONTRACT (shared by rest.py, bulk.py, events.py, seed.py; keep signatures stable).

Records are plain dicts keyed by canonical field API names (`Id`, `Email`, `MailingStreet`, ...).
Values on the wire and in dicts: strings; booleans as `True/False`; numbers as int/float; dates as
`YYYY-MM-DD`; datetimes as Salesforce prints them, `2026-11-26T10:30:00.000+0000` (UTC);
null as None.

Every rejected write raises `SalesforceError(status, error_code, message, fields)`, the same
errors the real API gives (`REQUIRED_FIELD_MISSING`, `INVALID_FIELD`, `FIELD_INTEGRITY_EXCEPTION`,
`DUPLICATES_DETECTED`, `CANNOT_UPDATE_CONVERTED_LEAD`, `ENTITY_IS_DELETED`, `NOT_FOUND`,
`MALFORMED_ID`, `INVALID_FIELD_FOR_INSERT_UPDATE`, `MALFORMED_QUERY`, ...).

Every committed write also produces `ChangeRecord`s (one per record, grouped by transaction) that
are handed to every listener registered with `OrgStore.subscribe`; events.py turns them into CDC
events. Writes made inside `with store.transaction(origin=...)` share one transaction key.

Details of the contract as implemented:
- ChangeRecord.values / changed_fields / nulled_fields use flat canonical field names
  (`MailingStreet`, not `MailingAddress.Street`); events.py nests them. `IsDeleted`,
  `SystemModstamp` and `Id` are never in `values` (CDC carries neither; the id is `record_id`).
  UPDATE values hold the changed fields (derived ones too: `Name` when FirstName changed, the
  state/country partner field) plus `LastModifiedDate`, except the Lead UPDATE of a conversion,
  which, as in Salesforce, carries no LastModifiedDate.
- Listeners run after COMMIT, in commit order, one transaction at a time, outside the store's
  lock (so they may read or write the store, or post to a server that does). Normally on the
  writing thread before its call returns; when another thread is busy delivering, that thread
  delivers this transaction too, right after its own. A listener's exception is logged and does
  not undo the write.
- A write that fails inside `transaction()` is rolled back to its own savepoint; the rest of the
  transaction stands (the REST layer relies on this for allOrNone=false collections). An exception
  escaping the `with` block rolls back the whole transaction, and no events are sent.
- `query()` returns `QueryResult.rows` as a lazy generator reading through its own SQLite
  connection (shared cache, read-uncommitted), so it never holds the store's lock between rows;
  a stream sees writes committed (or in progress) after it started. Call `.close()` on it (or
  exhaust it) to release that connection early. SOQL semantics are listed in soql.py.
- `get()` with `fields=None` returns every field in describe order, compound addresses nested
  (`{"street", "city", ..., "stateCode", "countryCode"}` or None); `fields` may name parent paths
  (`Account.Name`). Malformed ids raise MALFORMED_ID; an id of another object reads as None.
- Deletes cascade as in Salesforce: an Account takes its Contacts (and a person account its
  person contact), a Contact/Lead/Campaign its CampaignMembers, a record its Tasks and file
  shares, a ContentDocument its versions and shares; undelete restores them. Deleting
  a person contact deletes its account. Recycle Bin entries are purged after 15 sandbox days.
- Lead conversion also points the lead's CampaignMembers at the new contact (UPDATE events in the
  same transaction). Duplicate rule (Contact and Lead, Email ignoring case, live records of the
  same object) is checked on create and on an Email change.

Added beyond the original contract:
- `OrgStore(profiles="standard", custom_fields=None, *, clock=None, user_id=..., duplicate_rule=
  None|"alert"|"block", path=None, record_types=None)`; `path` loads a snapshot file when it
  exists; `record_types` (config RECORD_TYPES, `{"Campaign": ["Webinar", "Event"]}`) gives those
  objects a RecordTypeId (defaulting to the first type) and rows in RecordType (kept by reset).
- `create(..., allow_save=False)` / `update(..., allow_save=False)`: with an "alert" duplicate
  rule, allow_save=True (the Sforce-Duplicate-Rule-Header) saves anyway; "block" always refuses.
- `describe(sobject)`, `describe_global()`, `schema` (a `schema.OrgSchema`).
- `get_many(sobject, ids, fields=None, include_deleted=False) -> list[dict | None]`.
- `find_ids(sobject, field, value) -> list[str]` (upsert by external id; case-insensitive text).
- `sobject_for_id(record_id) -> str | None` (by key prefix).
- `insert_many(sobject, rows, *, events=False, origin="", chunk_size=10000) -> int`.
- `save_snapshot()`: write to the configured SNAPSHOT path (no-op without one).
- `normalize_id(text) -> str | None` (module function): 15/18-char id → 18-char, None if malformed.
- CampaignMemberStatus: every campaign (created, bulk-loaded, or from an older snapshot) gets
  Salesforce's two defaults, "Sent" (IsDefault) and "Responded" (HasResponded); a member's Status
  must be one of its campaign's labels (INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST), defaults to the
  campaign's default label, and sets HasResponded. Labels are unique per campaign, one default
  only. Statuses are deleted/undeleted with their campaign and make no change events.
- List Views (org setup, kept in snapshots): `list_views(sobject=None)`, `add_list_view(sobject,
  label, developer_name, where, columns) -> id`, `delete_list_view(id)`, `clear_list_views()`;
  listviews.py checks, describes and runs them.
- Task (00T): WhoId (Contact/Lead) and WhatId (Account/Campaign, Opportunity ids unchecked) are
  checked like every reference; a task whose WhoId is a lead cannot have a WhatId
  (FIELD_INTEGRITY_EXCEPTION, fields [WhoId, WhatId]). Status/Priority are restricted with
  defaults Not Started/Normal; IsClosed, IsHighPriority and AccountId are computed on read;
  CompletedDateTime is stamped when Status becomes Completed; TaskSubtype is insert-only.
  Tasks are deleted/undeleted with their WhoId Contact/Lead or WhatId Account/Campaign, and lead
  conversion points them at the new contact (and the account, their WhatId being empty).
- Files: `create("ContentVersion", {Title?, PathOnClient, VersionData (base64 text or bytes),
  FirstPublishLocationId?, ContentDocumentId?})` makes the ContentDocument (069) and shares it
  (ContentDocumentLink 06A) with the owner (ShareType I, which cannot be deleted:
  FIELD_INTEGRITY_EXCEPTION) and with FirstPublishLocationId when that is something else
  (ShareType V, Visibility AllUsers); with ContentDocumentId it becomes that document's latest
  version instead. FileExtension, FileType, ContentSize, Checksum, VersionNumber, IsLatest are
  derived; Title defaults to the file name. VersionData is stored as bytes, reads in SOQL/get as
  `/services/data/v<api_version>/sobjects/ContentVersion/<id>/VersionData`, and comes back with
  `get_blob(sobject, record_id, field) -> bytes`. ContentDocument cannot be inserted and
  ContentVersion cannot be deleted (INVALID_TYPE_FOR_OPERATION): deleting the document takes its
  versions and shares. A record's shares go with the record. A duplicate share is
  DUPLICATE_VALUE. ContentDocumentLink has no owner or created/modified fields, as in Salesforce.
- Task and the Files objects make no change events (like CampaignMemberStatus): Salesforce's
  default CDC allocation (5 entities) is taken by Contact, Lead, Account, Campaign, CampaignMember.
- `OrgStore(..., api_version="66.0")` names the version in those VersionData paths (open_store
  passes the newest configured API version; the REST layer rewrites it to the request's).
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import functools
import hashlib
import json
import logging
import operator
import os
import re
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sandbox.salesforce import _geo
from sandbox.salesforce.schema import (
    DEFAULT_MEMBER_STATUSES,
    ID_TYPES,
    PERSON_FIELD_MAP,
    FieldDef,
    OrgSchema,
    SObject,
    build_schema,
)
from sandbox.salesforce.soql import (
    DEFAULT_API_VERSION,
    SoqlError,
    compile_query,
    format_datetime,
    id_suffix,
    normalize_id,
)

log = logging.getLogger(__name__)

DEFAULT_USER_ID = "005SB0000000001AAA"
RECYCLE_BIN_DAYS = 15
UPDATED_WINDOW_DAYS = 30
ID_LIMIT = 600_000
FETCH_CHUNK = 1000

__all__ = [
    "ChangeRecord",
    "OrgStore",
    "QueryResult",
    "SalesforceError",
    "normalize_id",
    "open_store",
]


class SalesforceError(Exception):
    """A Salesforce API error: HTTP status, the `errorCode`/`statusCode` and its message."""

    def __init__(
        self, status: int, error_code: str, message: str, fields: list[str] | None = None
    ) -> None:
        super().__init__(f"{error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message
        self.fields = fields or []

    def rest_body(self) -> list[dict[str, Any]]:
        """The REST error body: `[{"message", "errorCode", "fields"}]`."""
        return [{"message": self.message, "errorCode": self.error_code, "fields": self.fields}]

    def collection_error(self) -> dict[str, Any]:
        """One per-record error of sObject Collections: keyed `statusCode`, not `errorCode`."""
        return {"statusCode": self.error_code, "message": self.message, "fields": self.fields}


@dataclass
class ChangeRecord:
    """What one committed write did to one record; events.py renders it as a CDC event."""

    entity: str  # "Contact"
    record_id: str
    change_type: str  # CREATE, UPDATE, DELETE, UNDELETE
    values: dict[str, Any]  # CREATE/UNDELETE: all non-null fields; UPDATE: changed fields only
    changed_fields: list[str]  # UPDATE: canonical names of changed fields (incl. LastModifiedDate)
    nulled_fields: list[str]  # fields set to null by this write
    origin: str  # changeOrigin, e.g. "com/salesforce/api/rest/64.0;client=ctct-sync"
    transaction_key: str
    sequence_number: int  # 1.. within the transaction
    commit_timestamp: int  # ms since epoch (sandbox clock)
    commit_user: str


@dataclass
class QueryResult:
    """A SOQL result: rows in order (a lazy iterator for big results) and how many there are."""

    total_size: int
    rows: Iterator[dict[str, Any]]
    columns: list[str] = field(
        default_factory=list
    )  # select-list paths, e.g. ["Id", "Account.Name"]


Listener = Callable[[list[ChangeRecord]], None]

NOT_FOUND_MESSAGE = "The requested resource does not exist"
READ_ONLY_TAIL = (
    ". Please check the security settings of this field and verify that it is read/write for "
    "your profile or permission set."
)
STATE_MESSAGE = (
    "There's a problem with this state, even though it may appear correct. Please select a "
    "state from the list of valid states."
)
COUNTRY_MESSAGE = (
    "There's a problem with this country, even though it may appear correct. Please select a "
    "country/territory from the list of valid countries."
)
# Key prefixes of objects the sandbox does not hold, so references to them can still be checked.
FOREIGN_PREFIXES = {"User": "005", "Individual": "0PK", "Opportunity": "006", "RecordType": "012"}
_EMAIL_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_NAMED = ("Contact", "Lead")  # objects whose Name is FirstName + LastName
_SYSTEM = ("CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp")
# Read-only fields a seed may still set, to back-date records or load converted leads.
_SEEDABLE = frozenset(
    {
        *_SYSTEM,
        "IsConverted",
        "ConvertedDate",
        "ConvertedAccountId",
        "ConvertedContactId",
        "LastActivityDate",
    }
)
_LINKS = ("ContentDocumentLink", "LinkedEntityId")  # a record's file shares go with the record
_CASCADES = {
    # parent object -> (child object, reference field) deleted and undeleted with it
    "Account": (("Contact", "AccountId"), ("Task", "WhatId"), _LINKS),
    "Contact": (("CampaignMember", "ContactId"), ("Task", "WhoId"), _LINKS),
    "Lead": (("CampaignMember", "LeadId"), ("Task", "WhoId"), _LINKS),
    "Campaign": (
        ("CampaignMember", "CampaignId"),
        ("CampaignMemberStatus", "CampaignId"),
        ("Task", "WhatId"),
        _LINKS,
    ),
    "Task": (_LINKS,),
    "ContentDocument": (
        ("ContentVersion", "ContentDocumentId"),
        ("ContentDocumentLink", "ContentDocumentId"),
    ),
}
# Objects whose writes Change Data Capture does not announce: setup data, and the objects our org
# does not select for CDC (Task and Files; Salesforce's default allocation of 5 entities is
# already taken by Contact, Lead, Account, Campaign and CampaignMember).
_NO_EVENTS = frozenset(
    {
        "CampaignMemberStatus",
        "RecordType",
        "Task",
        "ContentVersion",
        "ContentDocument",
        "ContentDocumentLink",
    }
)


def announces_changes(sobject: str) -> bool:
    """Whether the org selects this object for Change Data Capture (its writes make events)."""
    return sobject not in _NO_EVENTS


_LEAD_PREFIX = "00Q"
# Loads that must go through create() one row at a time: a file makes its document and shares,
# and a share is checked against the document's other shares.
_SLOW_LOADS = frozenset({"ContentVersion", "ContentDocumentLink"})
# ContentVersion.FileType for the extensions of PathOnClient Salesforce recognises (else UNKNOWN).
_FILE_TYPES = {
    "pdf": "PDF",
    "csv": "CSV",
    "txt": "TEXT",
    "html": "HTML",
    "htm": "HTML",
    "xml": "XML",
    "zip": "ZIP",
    "png": "PNG",
    "jpg": "JPG",
    "jpeg": "JPG",
    "gif": "GIF",
    "doc": "WORD",
    "docx": "WORD_X",
    "xls": "EXCEL",
    "xlsx": "EXCEL_X",
    "ppt": "POWER_POINT",
    "pptx": "POWER_POINT_X",
    "rtf": "RTF",
    "mp4": "MP4",
}


def _err(
    code: str, message: str, fields: list[str] | None = None, status: int = 400
) -> SalesforceError:
    return SalesforceError(status, code, message, fields)


def _parse_datetime(value: str) -> datetime:
    text = value.strip()
    if len(text) >= 5 and text[-5] in "+-" and text[-4:].isdigit() and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]  # +0000 -> +00:00 for fromisoformat
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when


def _is_sf_datetime(value: Any) -> bool:
    return (
        isinstance(value, str) and len(value) == 28 and value.endswith("+0000") and value[10] == "T"
    )


@dataclass
class _Tx:
    key: str
    origin: str
    now: datetime
    records: list[ChangeRecord] = field(default_factory=list)
    touched: set[tuple[str, str]] = field(default_factory=set)


class OrgStore:
    """All records of one sandbox org. Thread-safe (one lock around the SQLite connection)."""

    def __init__(
        self,
        profiles: str | Iterable[str] | None = "standard",
        custom_fields: dict[str, list[dict[str, Any]]] | None = None,
        *,
        clock: Any = None,
        user_id: str = DEFAULT_USER_ID,
        duplicate_rule: Any = None,
        path: str | None = None,
        schema: OrgSchema | None = None,
        record_types: dict[str, list[str]] | None = None,
        api_version: str = DEFAULT_API_VERSION,
    ) -> None:
        self.schema: OrgSchema = schema or build_schema(profiles, custom_fields, record_types)
        self.api_version = api_version  # named in the paths base64 fields read as
        self.clock = clock
        self.user_id = user_id
        if duplicate_rule is True:
            duplicate_rule = "alert"
        self.duplicate_rule: str | None = str(duplicate_rule).lower() if duplicate_rule else None
        self.path = path
        self._lock = threading.RLock()
        self._listeners: list[Listener] = []
        self._tx: _Tx | None = None
        self._savepoint_seq = 0
        self._streams = 0  # query streams that have started and not finished
        self._outbox: collections.deque[_Tx] = collections.deque()
        self._delivering = threading.Lock()  # not re-entrant on purpose: see _drain
        self._uri = f"file:sf-org-{uuid.uuid4().hex}?mode=memory&cache=shared"
        self._conn = sqlite3.connect(
            self._uri, uri=True, check_same_thread=False, isolation_level=None
        )
        self._counters: dict[str, int] = {}
        self._view_seq = 0
        self._all_fields: dict[str, str] = {}
        if path and os.path.exists(path):
            source = sqlite3.connect(path)
            try:
                source.backup(self._conn)
            finally:
                source.close()
            log.info("sandbox org loaded from snapshot")
        self._create_tables()
        for obj in self.schema.objects.values():
            row = self._conn.execute(f'SELECT MAX("Id") FROM {_q(obj.name)}').fetchone()
            self._counters[obj.name] = _b62_decode(row[0][5:15]) if row and row[0] else 0
        self._record_types = record_types or {}
        self._ensure_record_types()
        with self._lock:
            self._conn.execute("BEGIN")
            self._add_member_statuses()  # campaigns of an older snapshot get their two statuses
            self._conn.execute("COMMIT")

    def _ensure_record_types(self) -> None:
        """Configured record types are org setup, not data: made quietly, kept across resets."""
        rt = self.schema.objects["RecordType"]
        with self.transaction("setup") as tx:
            for sobject, names in self._record_types.items():
                for name in names:
                    exists = self._conn.execute(
                        'SELECT 1 FROM "RecordType" WHERE "SobjectType" = ? AND "Name" = ?',
                        (sobject, name),
                    ).fetchone()
                    if exists is None:
                        developer = re.sub(r"\W+", "_", name).strip("_") or "Type"
                        self._create(
                            tx,
                            rt,
                            {"Name": name, "DeveloperName": developer, "SobjectType": sobject},
                            "",
                        )
            tx.records.clear()

    # ------------------------------------------------------------------ schema and storage

    def _create_tables(self) -> None:
        conn = self._conn
        conn.execute(
            "CREATE TABLE IF NOT EXISTS _deleted_log (id TEXT PRIMARY KEY, sobject TEXT NOT NULL,"
            " deleted_date TEXT NOT NULL, cascade_of TEXT, in_bin INTEGER NOT NULL DEFAULT 1)"
        )
        conn.execute(
            "CREATE INDEX IF NOT EXISTS _deleted_log_date ON _deleted_log (sobject, deleted_date)"
        )
        conn.execute("CREATE INDEX IF NOT EXISTS _deleted_log_cascade ON _deleted_log (cascade_of)")
        # List Views are org setup (metadata), not records: kept here so snapshots carry them.
        conn.execute(
            "CREATE TABLE IF NOT EXISTS _list_view (id TEXT PRIMARY KEY, sobject TEXT NOT NULL,"
            " label TEXT NOT NULL, developer_name TEXT NOT NULL, where_clause TEXT,"
            " columns TEXT NOT NULL, seq INTEGER NOT NULL)"
        )
        for obj in self.schema.objects.values():
            cols = [_column_sql(f) for f in obj.stored_fields()]
            conn.execute(f"CREATE TABLE IF NOT EXISTS {_q(obj.name)} ({', '.join(cols)})")
            existing = {r[1] for r in conn.execute(f"PRAGMA table_info({_q(obj.name)})")}
            for fd in obj.stored_fields():
                if fd.name not in existing:  # a snapshot from an org without this field
                    conn.execute(f"ALTER TABLE {_q(obj.name)} ADD COLUMN {_column_sql(fd)}")
            self._create_indexes(obj)

    def _obj(self, sobject: str) -> SObject:
        obj = self.schema.sobject(sobject)
        if obj is None:
            raise _err("NOT_FOUND", NOT_FOUND_MESSAGE, status=404)
        return obj

    def _now(self) -> datetime:
        if self.clock is None:
            return datetime.now(UTC)
        now: datetime = self.clock.now()
        return now if now.tzinfo else now.replace(tzinfo=UTC)

    def _new_id(self, obj: SObject) -> str:
        n = self._counters.get(obj.name, 0) + 1
        self._counters[obj.name] = n
        id15 = obj.key_prefix + "SB" + _b62_encode(n, 10)
        return id15 + id_suffix(id15)

    def _check_id(self, obj: SObject, record_id: str) -> str:
        norm = normalize_id(record_id) if isinstance(record_id, str) else None
        if norm is None:
            raise _err(
                "MALFORMED_ID", f"{obj.label} ID: id value of incorrect type: {record_id}", ["Id"]
            )
        if not norm.startswith(obj.key_prefix):
            raise _err("NOT_FOUND", NOT_FOUND_MESSAGE, status=404)
        return norm

    def sobject_for_id(self, record_id: str) -> str | None:
        """Which sObject an id belongs to, by its key prefix (None for unknown or malformed ids)."""
        norm = normalize_id(record_id)
        obj = self.schema.by_prefix(norm[:3]) if norm else None
        return obj.name if obj else None

    def _row(self, obj: SObject, record_id: str) -> dict[str, Any] | None:
        cur = self._conn.execute(f'SELECT * FROM {_q(obj.name)} WHERE "Id" = ?', (record_id,))
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip((d[0] for d in cur.description), row, strict=True))

    # ------------------------------------------------------------------ transactions and events

    @contextlib.contextmanager
    def transaction(self, origin: str = "") -> Iterator[_Tx]:
        """Context manager grouping writes into one transaction (one transactionKey)."""
        with self._lock:
            if self._tx is not None:  # nested: join the outer transaction
                yield self._tx
                return
            tx = _Tx(str(uuid.uuid4()), origin, self._now())
            self._tx = tx
            self._conn.execute("BEGIN")
            try:
                yield tx
            except BaseException:
                self._tx = None
                self._conn.execute("ROLLBACK")
                raise
            self._tx = None
            self._conn.execute("COMMIT")
            self._commit_records([tx])
        self._drain()

    def _commit_records(self, txs: list[_Tx]) -> None:
        """Queue committed transactions for the listeners, in commit order (lock held)."""
        stamp = int(self._now().timestamp() * 1000)
        for tx in txs:
            if tx.records:
                for rec in tx.records:
                    rec.commit_timestamp = stamp
                self._outbox.append(tx)

    def _drain(self) -> None:
        """Hand queued transactions to the listeners, outside the store's lock.

        One thread delivers at a time, in commit order; a thread that commits while another is
        delivering leaves its transaction to that one rather than waiting for it (a listener that
        posts to a server which writes back to this org must not deadlock).
        """
        while self._outbox:
            if not self._delivering.acquire(blocking=False):
                return
            try:
                while True:
                    with self._lock:
                        if not self._outbox:
                            break
                        tx = self._outbox.popleft()
                    self._deliver(tx)
            finally:
                self._delivering.release()

    @contextlib.contextmanager
    def _write(self, origin: str) -> Iterator[_Tx]:
        """One write: inside the caller's transaction (behind a savepoint) or its own."""
        with self.transaction(origin) as tx:
            self._savepoint_seq += 1
            name = f"w{self._savepoint_seq}"
            mark = len(tx.records)
            self._conn.execute(f"SAVEPOINT {name}")
            try:
                yield tx
            except BaseException:
                self._conn.execute(f"ROLLBACK TO {name}")
                self._conn.execute(f"RELEASE {name}")
                del tx.records[mark:]
                raise
            self._conn.execute(f"RELEASE {name}")

    def _emit(
        self,
        tx: _Tx,
        obj: SObject,
        record_id: str,
        change_type: str,
        values: dict[str, Any],
        changed: list[str] | None = None,
        nulled: list[str] | None = None,
        origin: str = "",
    ) -> None:
        if obj.name in _NO_EVENTS:
            return
        tx.records.append(
            ChangeRecord(
                entity=obj.name,
                record_id=record_id,
                change_type=change_type,
                values=values,
                changed_fields=changed or [],
                nulled_fields=nulled or [],
                origin=origin or tx.origin,
                transaction_key=tx.key,
                sequence_number=len(tx.records) + 1,
                commit_timestamp=0,
                commit_user=self.user_id,
            )
        )

    def _deliver(self, tx: _Tx) -> None:
        for listener in list(self._listeners):
            try:
                listener(list(tx.records))
            except Exception:
                log.exception("change listener failed for transaction %s", tx.key)

    def subscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    # ------------------------------------------------------------------ value conversion

    def _convert(self, obj: SObject, fd: FieldDef, value: Any) -> Any:
        """A wire value as stored in SQLite, or the error Salesforce gives for it."""
        kind = fd.type
        if kind == "boolean" and (value is None or value == ""):
            return 0  # a checkbox is never null: clearing it unchecks it
        if value is None or value == "":
            return None
        if kind == "boolean":
            if isinstance(value, bool):
                return int(value)
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return int(value.lower() == "true")
            raise _parse_error("boolean", value)
        if kind == "base64":
            return _decode_base64(value)
        if kind in ID_TYPES:
            norm = normalize_id(value) if isinstance(value, str) else None
            if norm is None:
                raise _err(
                    "MALFORMED_ID", f"{fd.label}: id value of incorrect type: {value}", [fd.name]
                )
            return norm
        if kind == "int":
            if isinstance(value, bool):
                raise _parse_error("int", value)
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise _parse_error("int", value) from None
            if number != int(number):
                raise _parse_error("int", value)
            return int(number)
        if kind in ("double", "currency", "percent"):
            if isinstance(value, bool):
                raise _parse_error("double", value)
            try:
                return float(value)
            except (TypeError, ValueError):
                raise _parse_error("double", value) from None
        if kind == "date":
            text = str(value)
            try:
                return date.fromisoformat(text[:10]).isoformat() if len(text) in (10,) else _bad()
            except ValueError:
                raise _parse_error("date", value) from None
        if kind == "datetime":
            if _is_sf_datetime(value):
                return value
            try:
                return format_datetime(_parse_datetime(str(value)))
            except ValueError:
                raise _parse_error("datetime", value) from None
        # text kinds
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float):
            text = str(value)
        elif isinstance(value, str):
            text = value
        else:
            raise _parse_error("String", value)
        if fd.length and len(text) > fd.length:
            raise _err(
                "STRING_TOO_LONG",
                f"{fd.label}: data value too large: {text[: fd.length + 20]}"
                f" (max length={fd.length})",
                [fd.name],
            )
        if kind == "email" and not _EMAIL_RE.match(text):
            raise _err(
                "INVALID_EMAIL_ADDRESS", f"{fd.label}: invalid email address: {text}", [fd.name]
            )
        if kind == "picklist" and fd.restricted and text not in fd.picklist:
            if fd.name.endswith(("StateCode", "CountryCode")):
                return text  # checked against the country by the state/country step
            raise _err(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"{fd.label}: bad value for restricted picklist field: {text}",
                [fd.name],
            )
        return text

    def _prepare(
        self, obj: SObject, values: dict[str, Any], *, creating: bool, allowed: Iterable[str] = ()
    ) -> dict[str, Any]:
        """Check names and permissions and convert every value; keys become canonical names."""
        out: dict[str, Any] = {}
        readonly: list[str] = []
        allow = set(allowed)
        for key, value in values.items():
            if key == "attributes":
                continue
            fd = obj.field(key)
            if fd is None:
                raise _err(
                    "INVALID_FIELD",
                    f"No such column '{key}' on sobject of type {obj.name}",
                    [key],
                )
            if fd.name not in allow and not (fd.createable if creating else fd.updateable):
                readonly.append(fd.name)
                continue
            out[fd.name] = value
        if readonly:
            raise _err(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(readonly)}{READ_ONLY_TAIL}",
                readonly,
            )
        return {name: self._convert(obj, obj.fields[name], value) for name, value in out.items()}

    def _check_references(self, obj: SObject, values: dict[str, Any]) -> None:
        for name, value in values.items():
            fd = obj.fields[name]
            if value is None or fd.type != "reference":
                continue
            targets = [self.schema.sobject(t) for t in fd.reference_to]
            held = [t for t in targets if t is not None]
            prefixes = [t.key_prefix for t in held] + [
                FOREIGN_PREFIXES[t] for t in fd.reference_to if t in FOREIGN_PREFIXES
            ]
            if prefixes and value[:3] not in prefixes:
                raise _err(
                    "FIELD_INTEGRITY_EXCEPTION",
                    f"{fd.label}: id value of incorrect type: {value}",
                    [fd.name],
                )
            target = next((t for t in held if value.startswith(t.key_prefix)), None)
            if target is None:
                continue
            if target.name == "RecordType":
                row = self._conn.execute(
                    'SELECT 1 FROM "RecordType" WHERE "Id" = ? AND "SobjectType" = ?'
                    ' AND "IsActive" = 1 AND "IsDeleted" = 0',
                    (value, "CampaignMember" if name == "CampaignMemberRecordTypeId" else obj.name),
                ).fetchone()
                if row is None:
                    raise _err(
                        "INVALID_CROSS_REFERENCE_KEY",
                        f"{fd.label}: this ID value isn't valid for the user: {value}",
                        [fd.name],
                    )
                continue
            row = self._conn.execute(
                f'SELECT "IsDeleted" FROM {_q(target.name)} WHERE "Id" = ?', (value,)
            ).fetchone()
            if row is None:
                raise _err("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [fd.name])
            if row[0]:
                raise _err("ENTITY_IS_DELETED", "entity is deleted", [fd.name])

    # ------------------------------------------------------------------ rules per object

    def _address_groups(self, obj: SObject) -> list[str]:
        return [
            f.name[: -len("CountryCode")]
            for f in obj.fields.values()
            if f.name.endswith("CountryCode") and f.compound
        ]

    def _sync_state_country(
        self, obj: SObject, new: dict[str, Any], old: dict[str, Any] | None
    ) -> None:
        """Keep *StateCode/*CountryCode and the text fields in step; refuse what Salesforce does."""
        for prefix in self._address_groups(obj):
            c_text, c_code = prefix + "Country", prefix + "CountryCode"
            s_text, s_code = prefix + "State", prefix + "StateCode"
            touched = {c_text, c_code, s_text, s_code} & new.keys()
            if not touched:
                continue
            merged = {k: (old or {}).get(k) for k in (c_text, c_code, s_text, s_code)}
            merged.update({k: new[k] for k in touched})
            # Country first: its code wins on create; on update a code and name that disagree fail.
            country = None
            if c_code in new and new[c_code] is not None:
                code = new[c_code]
                if code not in _geo.countries():
                    raise _err("FIELD_INTEGRITY_EXCEPTION", COUNTRY_MESSAGE, [c_code])
                country = code
                if (
                    new.get(c_text) is not None
                    and old is not None
                    and _geo.country_code_for_name(new[c_text]) != code
                ):
                    raise _err("FIELD_INTEGRITY_EXCEPTION", COUNTRY_MESSAGE, [c_code])
            elif c_text in new and new[c_text] is not None:
                country = _geo.country_code_for_name(new[c_text])
                if country is None:
                    raise _err("FIELD_INTEGRITY_EXCEPTION", COUNTRY_MESSAGE, [c_code])
            elif c_text in new or c_code in new:
                country = None  # cleared
            else:
                country = merged[c_code]
            new[c_code] = country
            new[c_text] = _geo.countries()[country] if country else None

            state = None
            state_given = s_code in new or s_text in new
            if s_code in new and new[s_code] is not None:
                state = new[s_code]
                if country is None or state not in _geo.STATES.get(country, {}):
                    raise _err("FIELD_INTEGRITY_EXCEPTION", STATE_MESSAGE, [s_code])
                if (
                    new.get(s_text) is not None
                    and old is not None
                    and _geo.state_code_for_name(country, new[s_text]) != state
                ):
                    raise _err("FIELD_INTEGRITY_EXCEPTION", STATE_MESSAGE, [s_code])
            elif s_text in new and new[s_text] is not None:
                state = _geo.state_code_for_name(country, new[s_text]) if country else None
                if state is None:
                    raise _err("FIELD_INTEGRITY_EXCEPTION", STATE_MESSAGE, [s_code])
            elif state_given:
                state = None
            else:
                state = merged[s_code]
                if state is not None and (
                    country is None or state not in _geo.STATES.get(country, {})
                ):
                    # The country changed under a state that does not belong to it.
                    raise _err("FIELD_INTEGRITY_EXCEPTION", STATE_MESSAGE, [s_code])
            new[s_code] = state
            new[s_text] = _geo.STATES[country][state] if (state and country) else None

    def _derive(self, obj: SObject, new: dict[str, Any], old: dict[str, Any] | None) -> None:
        """Fields Salesforce computes from others: Name, bounce flags, responses, codes."""
        merged = {**(old or {}), **new}
        named = obj.name in _NAMED or (obj.name == "Account" and merged.get("IsPersonAccount"))
        if named and ({"FirstName", "LastName"} & new.keys() or old is None):
            name = " ".join(p for p in (merged.get("FirstName"), merged.get("LastName")) if p)
            new["Name"] = name or None
        if "EmailBouncedReason" in obj.fields:
            if old is not None and "Email" in new and new["Email"] != old.get("Email"):
                # A new address clears the bounce, unless this write sets one itself.
                new.setdefault("EmailBouncedReason", None)
                new.setdefault("EmailBouncedDate", None)
                merged = {**old, **new}
            if "IsEmailBounced" in obj.fields:
                bounced = (
                    merged.get("EmailBouncedReason") is not None
                    or merged.get("EmailBouncedDate") is not None
                )
                new["IsEmailBounced"] = int(bounced)
        if obj.name == "Task" and "Status" in new:
            # Stamped when the task closes, cleared when it reopens.
            closed = new["Status"] == "Completed"
            if closed != ((old or {}).get("Status") == "Completed"):
                new["CompletedDateTime"] = format_datetime(self._tx_now()) if closed else None
        if obj.name == "CampaignMember" and "Status" in new:
            responded = self._member_status(merged.get("CampaignId"), new)
            new["HasResponded"] = int(responded)
            if responded and not (old or {}).get("FirstRespondedDate"):
                new["FirstRespondedDate"] = self._tx_now().date().isoformat()
        if self.schema.state_country:
            self._sync_state_country(obj, new, old)

    def _member_status(self, campaign_id: str | None, new: dict[str, Any]) -> bool:
        """Whether the member's Status (one of its campaign's status labels) counts as responded.

        Refused as Salesforce refuses a label the campaign does not have; the label is stored as
        the campaign spells it. An unknown campaign is left to the reference check.
        """
        if not campaign_id:
            return False
        rows = self._conn.execute(
            'SELECT "Label", "HasResponded" FROM "CampaignMemberStatus" WHERE "CampaignId" = ?'
            ' AND "IsDeleted" = 0',
            (campaign_id,),
        ).fetchall()
        if not rows:
            return new.get("Status") in ("Responded",)
        status = new.get("Status")
        for label, responded in rows:
            if status is not None and label.lower() == str(status).lower():
                new["Status"] = label
                return bool(responded)
        raise _err(
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            f"Status: bad value for restricted picklist field: {status}",
            ["Status"],
        )

    def _default_member_status(self, campaign_id: Any) -> str | None:
        row = self._conn.execute(
            'SELECT "Label" FROM "CampaignMemberStatus" WHERE "CampaignId" = ? AND "IsDefault" = 1'
            ' AND "IsDeleted" = 0 ORDER BY "SortOrder" LIMIT 1',
            (campaign_id,),
        ).fetchone()
        return str(row[0]) if row else None

    def _add_member_statuses(self, now: datetime | None = None) -> int:
        """Give every campaign without statuses Salesforce's two defaults (lock held, in a tx).

        Set-based, so a bulk load of campaigns costs one query and one executemany.
        """
        missing = [
            r[0]
            for r in self._conn.execute(
                'SELECT c."Id" FROM "Campaign" c WHERE NOT EXISTS (SELECT 1 FROM'
                ' "CampaignMemberStatus" s WHERE s."CampaignId" = c."Id") ORDER BY c."Id"'
            )
        ]
        if not missing:
            return 0
        obj = self.schema.objects["CampaignMemberStatus"]
        per = len(DEFAULT_MEMBER_STATUSES)
        ids = _id_block(obj.key_prefix, self._counters.get(obj.name, 0), len(missing) * per)
        self._counters[obj.name] = self._counters.get(obj.name, 0) + len(ids)
        stamp = format_datetime(now or self._now())
        rows = []
        for i, campaign_id in enumerate(missing):
            for j, (label, default, responded, order) in enumerate(DEFAULT_MEMBER_STATUSES):
                rows.append(
                    (ids[i * per + j], campaign_id, label, order, int(default), int(responded))
                )
        self._conn.executemany(
            'INSERT INTO "CampaignMemberStatus" ("Id", "CampaignId", "Label", "SortOrder",'
            ' "IsDefault", "HasResponded", "IsDeleted", "CreatedDate", "LastModifiedDate",'
            ' "SystemModstamp", "CreatedById", "LastModifiedById")'
            f" VALUES (?, ?, ?, ?, ?, ?, 0, {_sql_literal(stamp)}, {_sql_literal(stamp)},"
            f" {_sql_literal(stamp)}, {_sql_literal(self.user_id)}, {_sql_literal(self.user_id)})",
            rows,
        )
        return len(rows)

    def _check_member_status_row(
        self, merged: dict[str, Any], record_id: str | None, creating: bool
    ) -> None:
        """A CampaignMemberStatus: its label unique within its campaign; one default only."""
        campaign_id = merged.get("CampaignId")
        if merged.get("Label") is not None:
            row = self._conn.execute(
                'SELECT 1 FROM "CampaignMemberStatus" WHERE "CampaignId" = ? AND "Label" = ?'
                ' AND "IsDeleted" = 0 AND "Id" IS NOT ?',
                (campaign_id, merged["Label"], record_id),
            ).fetchone()
            if row is not None:
                raise _err("DUPLICATE_VALUE", "duplicate value found: Label", ["Label"])
        if creating and merged.get("SortOrder") is None:
            row = self._conn.execute(
                'SELECT MAX("SortOrder") FROM "CampaignMemberStatus" WHERE "CampaignId" = ?',
                (campaign_id,),
            ).fetchone()
            merged["SortOrder"] = int(row[0] or 0) + 1
        if merged.get("IsDefault"):
            self._conn.execute(
                'UPDATE "CampaignMemberStatus" SET "IsDefault" = 0 WHERE "CampaignId" = ?'
                ' AND "Id" IS NOT ?',
                (campaign_id, record_id),
            )

    def _tx_now(self) -> datetime:
        return self._tx.now if self._tx is not None else self._now()

    def _check_required(self, obj: SObject, merged: dict[str, Any], person: bool = False) -> None:
        missing = []
        for fd in obj.fields.values():
            if not fd.required or merged.get(fd.name) is not None:
                continue
            if obj.name == "Account" and fd.name == "Name" and person:
                continue
            missing.append(fd.name)
        if obj.name == "Account" and person and merged.get("LastName") is None:
            missing.append("LastName")
        if obj.name == "CampaignMember" and not (merged.get("ContactId") or merged.get("LeadId")):
            missing.append("ContactId/LeadId")
        if missing:
            raise _err(
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )

    def _check_duplicates(
        self, obj: SObject, merged: dict[str, Any], record_id: str | None, allow_save: bool
    ) -> None:
        if not self.duplicate_rule or obj.name not in ("Contact", "Lead"):
            return
        if allow_save and self.duplicate_rule == "alert":
            return
        email = merged.get("Email")
        if not email:
            return
        row = self._conn.execute(
            f'SELECT "Id" FROM {_q(obj.name)} WHERE "Email" = ? COLLATE NOCASE AND "IsDeleted" = 0'
            ' AND "Id" IS NOT ? LIMIT 1',
            (email, record_id),
        ).fetchone()
        if row is not None:
            raise _err("DUPLICATES_DETECTED", "Use one of these records?", [])

    def _check_member_unique(self, merged: dict[str, Any], record_id: str | None) -> None:
        for ref in ("ContactId", "LeadId"):
            if merged.get(ref):
                row = self._conn.execute(
                    f'SELECT 1 FROM "CampaignMember" WHERE "CampaignId" = ? AND {_q(ref)} = ?'
                    ' AND "IsDeleted" = 0 AND "Id" IS NOT ?',
                    (merged["CampaignId"], merged[ref], record_id),
                ).fetchone()
                if row is not None:
                    raise _err("DUPLICATE_VALUE", "Already a campaign member.", [])

    # ------------------------------------------------------------------ writes

    def create(
        self,
        sobject: str,
        values: dict[str, Any],
        *,
        origin: str = "",
        allow_save: bool = False,
    ) -> str:
        """Insert one record, returning its new 18-character Id. Validates like Salesforce."""
        obj = self._obj(sobject)
        _require(obj, obj.createable, "inserted")
        with self._write(origin) as tx:
            return self._create(tx, obj, values, origin, allow_save=allow_save)

    def _create(
        self,
        tx: _Tx,
        obj: SObject,
        values: dict[str, Any],
        origin: str,
        *,
        allow_save: bool = False,
        trusted: dict[str, Any] | None = None,
    ) -> str:
        if "Id" in values or "id" in values:
            raise _err(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: Id{READ_ONLY_TAIL}",
                ["Id"],
            )
        new = self._prepare(obj, values, creating=True)
        new.update(trusted or {})
        person = (
            obj.name == "Account"
            and self.schema.person_accounts
            and (
                new.get("LastName") is not None
                or new.get("FirstName") is not None
                or any(k.startswith("Person") for k in new)
            )
        )
        if obj.name == "Account":
            self._check_account_kind(new, person, creating=True)
            if person:
                new["IsPersonAccount"] = 1
        if obj.name == "CampaignMember" and new.get("Status") is None:
            # A member takes its campaign's default status, whatever that campaign calls it.
            new["Status"] = self._default_member_status(new.get("CampaignId")) or "Sent"
        for fd in obj.fields.values():
            if fd.stored and fd.name not in new and fd.default is not None:
                new[fd.name] = int(fd.default) if fd.type == "boolean" else fd.default
        if "RecordTypeId" in obj.fields and new.get("RecordTypeId") is None:
            active = [r for r in self._record_types_of(obj) if r["IsActive"]]
            if active:  # the user's default record type, as Salesforce assigns it
                new["RecordTypeId"] = active[0]["Id"]
        if obj.name == "ContentVersion":
            _describe_file(new)
        self._derive(obj, new, None)
        self._check_required(obj, new, person)
        if obj.name == "CampaignMember":
            self._check_member_unique(new, None)
        elif obj.name == "Task":
            _check_task(new)
        elif obj.name == "ContentDocumentLink":
            self._check_link_unique(new, None)
        self._check_references(obj, {k: v for k, v in new.items() if k not in (trusted or {})})
        self._check_duplicates(obj, new, None, allow_save)
        record_id = self._new_id(obj)
        now = format_datetime(tx.now)
        new.update(Id=record_id, IsDeleted=0, **self._audit(now))
        if "OwnerId" in obj.fields and new.get("OwnerId") is None:
            new["OwnerId"] = self.user_id
        new.update({k: v for k, v in (trusted or {}).items() if k in _SYSTEM and v is not None})
        if obj.name == "npe5__Affiliation__c":
            new["Name"] = f"AFF-{self._counters[obj.name]:06d}"
        if obj.name == "CampaignMemberStatus":
            self._check_member_status_row(new, record_id, creating=True)
        shares = self._publish_version(tx, new) if obj.name == "ContentVersion" else []
        self._insert(obj, new)
        if obj.name == "Campaign":
            self._add_member_statuses(tx.now)
        for entity, share_type in shares:
            self._insert_derived(
                tx,
                self.schema.objects["ContentDocumentLink"],
                {
                    "ContentDocumentId": new["ContentDocumentId"],
                    "LinkedEntityId": entity,
                    "ShareType": share_type,
                    "Visibility": "AllUsers",
                },
            )
        self._emit(tx, obj, record_id, "CREATE", _event_values(obj, new), origin=origin)
        if person:
            created = tx.records[-1]
            contact_id = self._create_person_contact(tx, obj, record_id, new, origin)
            created.values["PersonContactId"] = contact_id
        return record_id

    def _audit(self, now: str) -> dict[str, Any]:
        """The created/modified audit fields a new record gets (dropped by `_insert` on objects
        without them, such as ContentDocumentLink)."""
        return {
            "CreatedDate": now,
            "LastModifiedDate": now,
            "SystemModstamp": now,
            "CreatedById": self.user_id,
            "LastModifiedById": self.user_id,
        }

    def _touch(self, obj: SObject, now: str) -> dict[str, Any]:
        """The fields a change stamps on a record of `obj`, those it has."""
        stamps = {"LastModifiedDate": now, "LastModifiedById": self.user_id, "SystemModstamp": now}
        return {k: v for k, v in stamps.items() if k in obj.fields}

    def _insert_derived(self, tx: _Tx, obj: SObject, values: dict[str, Any]) -> str:
        """Insert a record Salesforce makes as a side effect (a file's document and shares):
        stored form, defaults and audit fields, no permission checks."""
        new = {
            fd.name: int(fd.default) if fd.type == "boolean" else fd.default
            for fd in obj.fields.values()
            if fd.stored and fd.default is not None
        }
        new.update(values)
        record_id = self._new_id(obj)
        new.update(Id=record_id, IsDeleted=0, **self._audit(format_datetime(tx.now)))
        if "OwnerId" in obj.fields and new.get("OwnerId") is None:
            new["OwnerId"] = self.user_id
        self._insert(obj, new)
        self._emit(tx, obj, record_id, "CREATE", _event_values(obj, new))
        return record_id

    def _publish_version(self, tx: _Tx, new: dict[str, Any]) -> list[tuple[str, str]]:
        """File a new ContentVersion (already described by `_describe_file`) under its document.

        A version naming a ContentDocumentId becomes that document's latest version. Otherwise
        Salesforce makes the document, and shares it with its owner (ShareType I, a share that
        cannot be deleted) and, when FirstPublishLocationId names something else, with that
        (ShareType V): those (entity, share type) pairs are returned for the caller to insert
        once the version row exists.
        """
        now = format_datetime(tx.now)
        doc_obj = self.schema.objects["ContentDocument"]
        described = {
            "Title": new["Title"],
            "FileType": new["FileType"],
            "FileExtension": new["FileExtension"],
            "ContentSize": new["ContentSize"],
            "ContentModifiedDate": now,
            "LatestPublishedVersionId": new["Id"],
        }
        if new.get("Description") is not None:
            described["Description"] = new["Description"]
        new["ContentModifiedDate"] = now
        doc_id = new.get("ContentDocumentId")
        if doc_id:
            (count,) = self._conn.execute(
                'SELECT COUNT(*) FROM "ContentVersion" WHERE "ContentDocumentId" = ?', (doc_id,)
            ).fetchone()
            new["VersionNumber"] = str(count + 1)
            self._conn.execute(
                'UPDATE "ContentVersion" SET "IsLatest" = 0 WHERE "ContentDocumentId" = ?',
                (doc_id,),
            )
            sets = {**described, **self._touch(doc_obj, now)}
            self._conn.execute(
                f'UPDATE "ContentDocument" SET {", ".join(f"{_q(k)} = ?" for k in sets)}'
                ' WHERE "Id" = ?',
                [*sets.values(), doc_id],
            )
            return []
        owner = new["OwnerId"]
        location = new.get("FirstPublishLocationId") or owner
        new["FirstPublishLocationId"] = location
        new["VersionNumber"] = "1"
        # Published to a record, or kept in a user's personal library.
        status = "R" if location[:3] == FOREIGN_PREFIXES["User"] else "P"
        new["ContentDocumentId"] = self._insert_derived(
            tx, doc_obj, {**described, "OwnerId": owner, "PublishStatus": status}
        )
        return [(owner, "I")] + ([(location, "V")] if location != owner else [])

    def _check_link_unique(self, merged: dict[str, Any], record_id: str | None) -> None:
        """A document is shared with an entity once."""
        doc, entity = merged.get("ContentDocumentId"), merged.get("LinkedEntityId")
        row = self._conn.execute(
            'SELECT 1 FROM "ContentDocumentLink" WHERE "ContentDocumentId" = ?'
            ' AND "LinkedEntityId" = ? AND "IsDeleted" = 0 AND "Id" IS NOT ?',
            (doc, entity, record_id),
        ).fetchone()
        if row is not None:
            raise _err(
                "DUPLICATE_VALUE",
                f"Document with ID: {doc} is already linked with the entity with ID: {entity}",
                [],
            )

    def _check_account_kind(self, new: dict[str, Any], person: bool, creating: bool) -> None:
        if not self.schema.person_accounts:
            return
        if person and "Name" in new:  # a person account's Name is FirstName + LastName
            raise _err(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: Name{READ_ONLY_TAIL}",
                ["Name"],
            )
        if not person:
            wrong = [k for k in new if k in PERSON_FIELD_MAP or k.endswith("__pc")]
            if wrong:
                raise _err(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {', '.join(wrong)}{READ_ONLY_TAIL}",
                    wrong,
                )

    def _person_contact_values(self, account: dict[str, Any]) -> dict[str, Any]:
        contact = self.schema.objects["Contact"]
        out: dict[str, Any] = {}
        for acc_field, con_field in PERSON_FIELD_MAP.items():
            if acc_field in account and con_field in contact.fields:
                out[con_field] = account[acc_field]
        for key, value in account.items():
            if key.endswith("__pc") and key[:-4] + "__c" in contact.fields:
                out[key[:-4] + "__c"] = value
        return out

    def _create_person_contact(
        self, tx: _Tx, account_obj: SObject, account_id: str, account: dict[str, Any], origin: str
    ) -> str:
        contact_obj = self.schema.objects["Contact"]
        values = self._person_contact_values(account)
        values.update(AccountId=account_id, IsPersonAccount=1)
        for key in ("IsEmailBounced", "Name"):
            values.pop(key, None)
        contact_id = self._insert_linked(tx, contact_obj, values, origin)
        self._conn.execute(
            'UPDATE "Account" SET "PersonContactId" = ? WHERE "Id" = ?', (contact_id, account_id)
        )
        return contact_id

    def _insert_linked(self, tx: _Tx, obj: SObject, values: dict[str, Any], origin: str) -> str:
        """Insert a record the sandbox derives itself (a person contact): no permission checks."""
        new = dict(values)
        for fd in obj.fields.values():
            if fd.stored and fd.name not in new and fd.default is not None:
                new[fd.name] = int(fd.default) if fd.type == "boolean" else fd.default
        new_derived = dict(new)
        self._derive(obj, new_derived, None)
        record_id = self._new_id(obj)
        now = format_datetime(tx.now)
        new_derived.update(
            Id=record_id,
            IsDeleted=0,
            CreatedDate=now,
            LastModifiedDate=now,
            SystemModstamp=now,
            CreatedById=self.user_id,
            LastModifiedById=self.user_id,
            OwnerId=self.user_id,
        )
        self._insert(obj, new_derived)
        self._emit(tx, obj, record_id, "CREATE", _event_values(obj, new_derived), origin=origin)
        return record_id

    def _insert(self, obj: SObject, new: dict[str, Any]) -> None:
        cols = [k for k in new if k in obj.fields and obj.fields[k].stored]
        self._conn.execute(
            f"INSERT INTO {_q(obj.name)} ({', '.join(_q(c) for c in cols)})"
            f" VALUES ({', '.join('?' * len(cols))})",
            [new[c] for c in cols],
        )

    def update(
        self,
        sobject: str,
        record_id: str,
        values: dict[str, Any],
        *,
        origin: str = "",
        allow_save: bool = False,
    ) -> None:
        """Change the given fields of one record (no event if nothing actually changed)."""
        obj = self._obj(sobject)
        rid = self._check_id(obj, record_id)
        with self._write(origin) as tx:
            self._update(tx, obj, rid, values, origin, allow_save=allow_save)

    def _live_row(self, obj: SObject, rid: str) -> dict[str, Any]:
        old = self._row(obj, rid)
        if old is None:
            raise _err("NOT_FOUND", NOT_FOUND_MESSAGE, status=404)
        if old["IsDeleted"]:
            raise _err("ENTITY_IS_DELETED", "entity is deleted", [])
        return old

    def _update(
        self,
        tx: _Tx,
        obj: SObject,
        rid: str,
        values: dict[str, Any],
        origin: str,
        *,
        allow_save: bool = False,
        trusted: dict[str, Any] | None = None,
        mirror: bool = True,
        stamp_event: bool = True,
    ) -> None:
        old = self._live_row(obj, rid)
        if obj.name == "Lead" and old.get("IsConverted") and not trusted:
            raise _err("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
        body = dict(values)
        given_id = body.pop("Id", None) or body.pop("id", None)
        if given_id is not None and normalize_id(str(given_id)) != rid:
            raise _err(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: Id{READ_ONLY_TAIL}",
                ["Id"],
            )
        new = self._prepare(obj, body, creating=False)
        new.update(trusted or {})
        if obj.name == "Account":
            self._check_account_kind(new, bool(old.get("IsPersonAccount")), creating=False)
        self._derive(obj, new, old)
        merged = {**old, **new}
        self._check_required(obj, merged, bool(old.get("IsPersonAccount")))
        if obj.name == "Task":
            _check_task(merged)
        changed = [k for k, v in new.items() if k in old and old[k] != v]
        if not changed:
            return
        if obj.name == "CampaignMemberStatus":
            self._check_member_status_row({**merged, "SortOrder": 0}, rid, creating=False)
        self._check_references(obj, {k: new[k] for k in changed if k not in (trusted or {})})
        if {"Email"} & set(changed):
            self._check_duplicates(obj, merged, rid, allow_save)
        now = format_datetime(tx.now)
        sets = {k: new[k] for k in changed}
        sets.update(self._touch(obj, now))
        self._conn.execute(
            f'UPDATE {_q(obj.name)} SET {", ".join(f"{_q(k)} = ?" for k in sets)} WHERE "Id" = ?',
            [*sets.values(), rid],
        )
        if obj.name == "ContentVersion" and old.get("IsLatest"):
            # The document shows its latest version's title and description.
            shown: dict[str, Any] = {k: new[k] for k in ("Title", "Description") if k in changed}
            if shown:
                doc_obj = self.schema.objects["ContentDocument"]
                shown.update(self._touch(doc_obj, now))
                self._conn.execute(
                    f'UPDATE "ContentDocument" SET {", ".join(f"{_q(k)} = ?" for k in shown)}'
                    ' WHERE "Id" = ?',
                    [*shown.values(), old["ContentDocumentId"]],
                )
        event_fields = [k for k in obj.fields if k in changed]
        ev_values = {k: _out(obj.fields[k], new[k]) for k in event_fields}
        if stamp_event:
            ev_values["LastModifiedDate"] = now
            event_fields.append("LastModifiedDate")
        nulled = [k for k in event_fields if k in new and new[k] is None]
        self._emit(tx, obj, rid, "UPDATE", ev_values, event_fields, nulled, origin=origin)
        if mirror and self.schema.person_accounts:
            self._mirror_person(tx, obj, old, {k: new[k] for k in changed}, origin)

    def _mirror_person(
        self, tx: _Tx, obj: SObject, old: dict[str, Any], changes: dict[str, Any], origin: str
    ) -> None:
        """Keep a person account and its person contact in step, whichever side was written."""
        if obj.name == "Account" and old.get("IsPersonAccount") and old.get("PersonContactId"):
            values = self._person_contact_values(changes)
            if values:
                self._update(
                    tx,
                    self.schema.objects["Contact"],
                    old["PersonContactId"],
                    {},
                    origin,
                    trusted=values,
                    mirror=False,
                )
        elif obj.name == "Contact" and old.get("IsPersonAccount") and old.get("AccountId"):
            reverse = {c: a for a, c in PERSON_FIELD_MAP.items()}
            values = {}
            account = self.schema.objects["Account"]
            for key, value in changes.items():
                target = reverse.get(key) or (key[:-3] + "__pc" if key.endswith("__c") else None)
                if target and target in account.fields:
                    values[target] = value
            if values:
                self._update(
                    tx, account, old["AccountId"], {}, origin, trusted=values, mirror=False
                )

    def delete(self, sobject: str, record_id: str, *, origin: str = "") -> None:
        """Move a record to the Recycle Bin (IsDeleted = true); queryAll still sees it."""
        obj = self._obj(sobject)
        _require(obj, obj.deletable, "deleted")
        rid = self._check_id(obj, record_id)
        with self._write(origin) as tx:
            old = self._live_row(obj, rid)
            if obj.name == "ContentDocumentLink":
                self._check_unshare(old)
            if obj.name == "Contact" and old.get("IsPersonAccount") and old.get("AccountId"):
                # A person contact goes with its account, never alone.
                self._delete(tx, self.schema.objects["Account"], old["AccountId"], origin, None)
                return
            self._delete(tx, obj, rid, origin, None)

    def _check_unshare(self, link: dict[str, Any]) -> None:
        """The owner's own share of a file cannot be removed (the file goes with its document)."""
        row = self._conn.execute(
            'SELECT "OwnerId" FROM "ContentDocument" WHERE "Id" = ?', (link["ContentDocumentId"],)
        ).fetchone()
        if row is not None and row[0] == link["LinkedEntityId"]:
            raise _err("FIELD_INTEGRITY_EXCEPTION", "field integrity exception", [])

    def _mark(self, obj: SObject, rid: str, deleted: int, now: str) -> None:
        sets = {"IsDeleted": deleted, **self._touch(obj, now)}
        self._conn.execute(
            f'UPDATE {_q(obj.name)} SET {", ".join(f"{_q(k)} = ?" for k in sets)} WHERE "Id" = ?',
            [*sets.values(), rid],
        )

    def _delete(self, tx: _Tx, obj: SObject, rid: str, origin: str, cascade_of: str | None) -> None:
        now = format_datetime(tx.now)
        self._mark(obj, rid, 1, now)
        self._conn.execute(
            "INSERT OR REPLACE INTO _deleted_log (id, sobject, deleted_date, cascade_of, in_bin)"
            " VALUES (?, ?, ?, ?, 1)",
            (rid, obj.name, now, cascade_of),
        )
        self._emit(tx, obj, rid, "DELETE", {}, origin=origin)
        for child_name, ref in _CASCADES.get(obj.name, ()):
            child = self.schema.objects[child_name]
            ids = [
                r[0]
                for r in self._conn.execute(
                    f'SELECT "Id" FROM {_q(child_name)} WHERE {_q(ref)} = ? AND "IsDeleted" = 0',
                    (rid,),
                )
            ]
            for child_id in ids:
                self._delete(tx, child, child_id, origin, rid)

    def undelete(self, sobject: str, record_id: str, *, origin: str = "") -> None:
        """Restore a record from the Recycle Bin with its Id."""
        obj = self._obj(sobject)
        _require(obj, obj.undeletable, "undeleted")
        rid = self._check_id(obj, record_id)
        with self._write(origin) as tx:
            self._purge(tx.now)
            row = self._row(obj, rid)
            if row is None:
                raise _err("NOT_FOUND", NOT_FOUND_MESSAGE, status=404)
            if not row["IsDeleted"]:
                raise _err("UNDELETE_FAILED", "Entity is not in the recycle bin", [])
            if obj.name == "Contact" and row.get("IsPersonAccount") and row.get("AccountId"):
                self._undelete(tx, self.schema.objects["Account"], row["AccountId"], origin)
                return
            self._undelete(tx, obj, rid, origin)

    def _undelete(self, tx: _Tx, obj: SObject, rid: str, origin: str) -> None:
        now = format_datetime(tx.now)
        self._mark(obj, rid, 0, now)
        self._conn.execute("DELETE FROM _deleted_log WHERE id = ?", (rid,))
        row = self._row(obj, rid) or {}
        self._emit(tx, obj, rid, "UNDELETE", _event_values(obj, row), origin=origin)
        children = self._conn.execute(
            "SELECT id, sobject FROM _deleted_log WHERE cascade_of = ? AND in_bin = 1", (rid,)
        ).fetchall()
        for child_id, child_name in children:
            self._undelete(tx, self.schema.objects[child_name], child_id, origin)

    def hard_delete(self, sobject: str, record_id: str) -> None:
        """Empty a record from the Recycle Bin: gone for good, and (as in Salesforce) no event."""
        obj = self._obj(sobject)
        _require(obj, obj.deletable, "deleted")
        rid = self._check_id(obj, record_id)
        with self._write("") as tx:
            row = self._row(obj, rid)
            if row is None:
                raise _err("NOT_FOUND", NOT_FOUND_MESSAGE, status=404)
            self._hard_delete(obj, rid, format_datetime(tx.now), bool(row["IsDeleted"]))

    def _hard_delete(self, obj: SObject, rid: str, now: str, was_deleted: bool) -> None:
        self._conn.execute(f'DELETE FROM {_q(obj.name)} WHERE "Id" = ?', (rid,))
        if was_deleted:
            self._conn.execute("UPDATE _deleted_log SET in_bin = 0 WHERE id = ?", (rid,))
        else:
            self._conn.execute(
                "INSERT OR REPLACE INTO _deleted_log"
                " (id, sobject, deleted_date, cascade_of, in_bin) VALUES (?, ?, ?, NULL, 0)",
                (rid, obj.name, now),
            )
        for child_name, ref in _CASCADES.get(obj.name, ()):
            ids = [
                r[0]
                for r in self._conn.execute(
                    f'SELECT "Id", "IsDeleted" FROM {_q(child_name)} WHERE {_q(ref)} = ?', (rid,)
                )
            ]
            for child_id in ids:
                child_row = self._row(self.schema.objects[child_name], child_id)
                self._hard_delete(
                    self.schema.objects[child_name],
                    child_id,
                    now,
                    bool(child_row and child_row["IsDeleted"]),
                )

    def _purge(self, now: datetime) -> None:
        """Empty Recycle Bin entries older than 15 days, as Salesforce does on its own."""
        cutoff = format_datetime(now - timedelta(days=RECYCLE_BIN_DAYS))
        rows = self._conn.execute(
            "SELECT id, sobject FROM _deleted_log WHERE in_bin = 1 AND deleted_date < ?", (cutoff,)
        ).fetchall()
        for rid, sobject in rows:
            self._conn.execute(f'DELETE FROM {_q(sobject)} WHERE "Id" = ?', (rid,))
            self._conn.execute("UPDATE _deleted_log SET in_bin = 0 WHERE id = ?", (rid,))

    def convert_lead(
        self, lead_id: str, *, account_id: str | None = None, origin: str = ""
    ) -> dict[str, str]:
        """Convert a Lead in one transaction: Account (unless given), Contact, then the Lead."""
        lead_obj = self._obj("Lead")
        rid = self._check_id(lead_obj, lead_id)
        with self._write(origin) as tx:
            lead = self._live_row(lead_obj, rid)
            if lead["IsConverted"]:
                raise _err("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
            contact_obj = self.schema.objects["Contact"]
            con_values: dict[str, Any] = {}
            for lead_field, con_field in (
                ("FirstName", "FirstName"),
                ("LastName", "LastName"),
                ("Salutation", "Salutation"),
                ("Title", "Title"),
                ("Email", "Email"),
                ("Phone", "Phone"),
                ("MobilePhone", "MobilePhone"),
                ("Fax", "Fax"),
                ("Street", "MailingStreet"),
                ("City", "MailingCity"),
                ("State", "MailingState"),
                ("PostalCode", "MailingPostalCode"),
                ("Country", "MailingCountry"),
                ("StateCode", "MailingStateCode"),
                ("CountryCode", "MailingCountryCode"),
                ("Latitude", "MailingLatitude"),
                ("Longitude", "MailingLongitude"),
                ("HasOptedOutOfEmail", "HasOptedOutOfEmail"),
                ("HasOptedOutOfFax", "HasOptedOutOfFax"),
                ("DoNotCall", "DoNotCall"),
                ("LeadSource", "LeadSource"),
                ("Description", "Description"),
                ("EmailBouncedReason", "EmailBouncedReason"),
                ("EmailBouncedDate", "EmailBouncedDate"),
                ("IndividualId", "IndividualId"),
            ):
                if lead.get(lead_field) is not None and con_field in contact_obj.fields:
                    con_values[con_field] = lead[lead_field]
            for key, value in lead.items():  # same-named custom fields map across
                if key.endswith("__c") and key in contact_obj.fields and value is not None:
                    con_values[key] = value
            account_obj = self.schema.objects["Account"]
            if account_id:
                acc = self._check_id(account_obj, account_id)
                self._live_row(account_obj, acc)
                contact_id = self._create_trusted(
                    tx, contact_obj, {**con_values, "AccountId": acc}, origin
                )
            elif lead["Company"] is None and self.schema.person_accounts:
                # Without a company, a person-account org converts the lead into a person account.
                reverse = {c: a for a, c in PERSON_FIELD_MAP.items()}
                person_values = {
                    reverse.get(k, k[:-3] + "__pc" if k.endswith("__c") else k): v
                    for k, v in con_values.items()
                }
                person_values = {k: v for k, v in person_values.items() if k in account_obj.fields}
                if lead.get("Phone") is not None:
                    person_values["Phone"] = lead["Phone"]
                acc = self._create_trusted(tx, account_obj, person_values, origin)
                contact_id = self._row(account_obj, acc)["PersonContactId"]  # type: ignore[index]
            else:
                acc_values: dict[str, Any] = {"Name": lead["Company"]}
                for lead_field, acc_field in (
                    ("Street", "BillingStreet"),
                    ("City", "BillingCity"),
                    ("State", "BillingState"),
                    ("PostalCode", "BillingPostalCode"),
                    ("Country", "BillingCountry"),
                    ("StateCode", "BillingStateCode"),
                    ("CountryCode", "BillingCountryCode"),
                    ("Phone", "Phone"),
                    ("Fax", "Fax"),
                    ("Website", "Website"),
                    ("Industry", "Industry"),
                    ("AnnualRevenue", "AnnualRevenue"),
                    ("NumberOfEmployees", "NumberOfEmployees"),
                    ("Rating", "Rating"),
                    ("LeadSource", "AccountSource"),
                ):
                    if lead.get(lead_field) is not None and acc_field in account_obj.fields:
                        acc_values[acc_field] = lead[lead_field]
                acc = self._create_trusted(tx, account_obj, acc_values, origin)
                contact_id = self._create_trusted(
                    tx, contact_obj, {**con_values, "AccountId": acc}, origin
                )
            self._update(
                tx,
                lead_obj,
                rid,
                {},
                origin,
                trusted={
                    "Status": "Closed - Converted",
                    "IsConverted": 1,
                    "ConvertedDate": tx.now.date().isoformat(),
                    "ConvertedAccountId": acc,
                    "ConvertedContactId": contact_id,
                },
                stamp_event=False,
            )
            # The lead's campaign memberships now name the contact too, as in Salesforce.
            member_obj = self.schema.objects["CampaignMember"]
            members = self._conn.execute(
                'SELECT "Id" FROM "CampaignMember" WHERE "LeadId" = ? AND "IsDeleted" = 0'
                ' AND "ContactId" IS NULL',
                (rid,),
            ).fetchall()
            for (member_id,) in members:
                self._update(
                    tx, member_obj, member_id, {}, origin, trusted={"ContactId": contact_id}
                )
            # So do its tasks: they name the contact, and (having had no WhatId, as a lead's
            # tasks cannot) the account.
            task_obj = self.schema.objects["Task"]
            tasks = self._conn.execute(
                'SELECT "Id", "WhatId" FROM "Task" WHERE "WhoId" = ? AND "IsDeleted" = 0', (rid,)
            ).fetchall()
            for task_id, what_id in tasks:
                self._update(
                    tx,
                    task_obj,
                    task_id,
                    {},
                    origin,
                    trusted={"WhoId": contact_id, "WhatId": what_id or acc},
                )
            return {"accountId": acc, "contactId": contact_id, "leadId": rid}

    def _create_trusted(self, tx: _Tx, obj: SObject, values: dict[str, Any], origin: str) -> str:
        """Create from values the sandbox itself chose (conversion): stored form, no FLS checks."""
        writable = {
            k: _out(obj.fields[k], v)
            for k, v in values.items()
            if (obj.fields[k].createable and not k.endswith("Code"))
        }
        trusted = {k: v for k, v in values.items() if k not in writable}
        if self.schema.state_country:
            # Let the code fields drive the names, so the copy stays valid.
            for k in list(writable):
                if k.endswith(("State", "Country")) and k + "Code" in values:
                    writable.pop(k)
            for k, v in trusted.items():
                if k.endswith("Code"):
                    writable[k] = v
            trusted = {k: v for k, v in trusted.items() if not k.endswith("Code")}
        else:
            trusted = {k: v for k, v in trusted.items() if not k.endswith("Code")}
        return self._create(tx, obj, writable, origin, allow_save=True, trusted=trusted)

    # ------------------------------------------------------------------ bulk load

    def insert_many(
        self,
        sobject: str,
        rows: Iterable[dict[str, Any]],
        *,
        events: bool = False,
        origin: str = "",
        chunk_size: int = 10_000,
    ) -> int:
        """The seeding fast path: bulk insert with minimal validation; events only when asked.

        Checked: field names, required fields, value types of booleans and datetimes (converted to
        their stored form), CreatedDate/LastModifiedDate/SystemModstamp may be given to back-date
        records. Not checked: lengths, emails, picklists, references, duplicates. Without events
        the whole load is one transaction; with events each chunk commits and is announced on its
        own (transactions of 200 records, as Salesforce's bulk API batches them).
        """
        obj = self._obj(sobject)
        _require(obj, obj.createable, "inserted")
        if obj.name in _SLOW_LOADS or (obj.name == "Account" and self.schema.person_accounts):
            return self._insert_many_slow(obj, rows, events, origin)
        total = 0
        if events:
            for chunk in _chunks(rows, chunk_size):
                with self.transaction(origin) as tx:
                    inserted = self._insert_chunk(obj, chunk, tx.now)
                    # Announced as 200-record transactions, the way the bulk API commits.
                    groups = []
                    for start in range(0, len(inserted), 200):
                        group = _Tx(str(uuid.uuid4()), origin, tx.now)
                        for new in inserted[start : start + 200]:
                            values = _event_values(obj, new)
                            self._emit(group, obj, new["Id"], "CREATE", values, origin=origin)
                        groups.append(group)
                    if obj.name == "Campaign":
                        self._add_member_statuses(tx.now)
                    self._commit_records(groups)
                total += len(inserted)
            return total
        with self._lock:
            now = self._now()
            self._conn.execute("BEGIN")
            try:
                self._drop_indexes_if_empty(obj)
                for chunk in _chunks(rows, chunk_size):
                    self._insert_chunk(obj, chunk, now, keep=False)
                    total += len(chunk)
                self._create_indexes(obj)
                if obj.name == "Campaign":
                    self._add_member_statuses(now)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return total

    def _drop_indexes_if_empty(self, obj: SObject) -> None:
        # Building an index once over a sorted load is several times faster than keeping it up
        # to date row by row; only worth it (and only safe to skip) when the table starts empty.
        if self._streams:
            return  # an open query stream holds the schema; dropping an index would fail
        if self._conn.execute(f"SELECT 1 FROM {_q(obj.name)} LIMIT 1").fetchone() is not None:
            return
        try:
            for name, _cols in _indexes(obj):
                self._conn.execute(f"DROP INDEX IF EXISTS {_q(obj.name + '_' + name)}")
        except sqlite3.OperationalError:
            log.info("kept %s indexes during the load: the schema is in use", obj.name)

    def _create_indexes(self, obj: SObject) -> None:
        for name, cols_sql in _indexes(obj):
            self._conn.execute(
                f"CREATE INDEX IF NOT EXISTS {_q(obj.name + '_' + name)}"
                f" ON {_q(obj.name)} ({cols_sql})"
            )

    def _insert_many_slow(
        self, obj: SObject, rows: Iterable[dict[str, Any]], events: bool, origin: str
    ) -> int:
        count = 0
        with self.transaction(origin) as tx:
            for row in rows:
                body = {k: v for k, v in row.items() if k not in _SYSTEM}
                self._create(tx, obj, body, origin, trusted=_backdated(row))
                count += 1
            if not events:
                tx.records.clear()
        return count

    def _insert_chunk(
        self, obj: SObject, chunk: list[dict[str, Any]], now: datetime, keep: bool = True
    ) -> list[dict[str, Any]]:
        seen: dict[str, None] = {}
        for row in chunk:
            seen.update(dict.fromkeys(row))
        canon: dict[str, FieldDef] = {}
        for key in seen:
            fd = obj.field(key)
            if fd is None:
                raise _err(
                    "INVALID_FIELD", f"No such column '{key}' on sobject of type {obj.name}", [key]
                )
            if not fd.stored or not (fd.createable or fd.name in _SEEDABLE):
                raise _err(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {fd.name}{READ_ONLY_TAIL}",
                    [fd.name],
                )
            canon[key] = fd
        required = [f.name for f in obj.fields.values() if f.required]
        stamp = format_datetime(now)
        defaults: dict[str, Any] = {
            "IsDeleted": 0,
            "CreatedDate": stamp,
            "LastModifiedDate": stamp,
            "SystemModstamp": stamp,
            "CreatedById": self.user_id,
            "LastModifiedById": self.user_id,
        }
        if "OwnerId" in obj.fields:
            defaults["OwnerId"] = self.user_id
        for fd in obj.fields.values():
            if fd.stored and fd.default is not None:
                defaults[fd.name] = int(fd.default) if fd.type == "boolean" else fd.default
        defaults = {k: v for k, v in defaults.items() if k in obj.fields}
        named = obj.name in _NAMED
        # Row values are bound; per-load constants (stamps, owner, untouched defaults) are inlined
        # into the statement, which halves the binding work for a typical seed.
        keys = list(canon)
        names = [canon[k].name for k in keys]
        if self.schema.state_country:
            # A country or state in the load means its code/name partners get filled in too.
            for group in self._address_groups(obj):
                parts = [group + p for p in ("Country", "CountryCode", "State", "StateCode")]
                if set(parts) & set(names):
                    for part in parts:
                        if part not in names:
                            keys.append(part)
                            names.append(part)
                            canon[part] = obj.fields[part]
        derived = []
        if obj.name == "CampaignMember" and "Status" in names:
            derived.append("HasResponded")
        bounce = {"EmailBouncedReason", "EmailBouncedDate"}
        if "IsEmailBounced" in obj.fields and bounce & set(names):
            derived.append("IsEmailBounced")
        if obj.name == "Task" and "Status" in names:
            derived.append("CompletedDateTime")
        for name in derived:
            keys.append(name)
            names.append(name)
            canon[name] = obj.fields[name]
        consts = {k: v for k, v in defaults.items() if k not in names}
        convs: list[tuple[int, Callable[[Any], Any]]] = []
        for i, key in enumerate(keys):
            fd = canon[key]
            conv: Callable[[Any], Any] | None = None
            if fd.type == "boolean":
                conv = _bool01
            elif fd.type == "datetime":
                conv = _to_sf_datetime
            elif fd.type in ID_TYPES:
                conv = _to_id18
            if fd.name in defaults and fd.type != "boolean":
                # Rows that leave out a column some other row gives still get its default.
                conv = functools.partial(_or_default, defaults[fd.name], conv)
            if conv is not None:
                convs.append((i, conv))
        req_idx = []
        for name in required:
            if name not in names:
                if name in defaults:
                    continue  # every row takes the default
                raise _err(
                    "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{name}]", [name]
                )
            req_idx.append(names.index(name))
        first_idx = names.index("FirstName") if "FirstName" in names else None
        last_idx = names.index("LastName") if "LastName" in names else None
        sc = self.schema.state_country and any(
            n.endswith(("Country", "State", "CountryCode", "StateCode")) for n in names
        )
        counter = self._counters.get(obj.name, 0)
        ids = _id_block(obj.key_prefix, counter, len(chunk))
        counter += len(chunk)
        out_rows: list[tuple[Any, ...]] = []
        kept: list[dict[str, Any]] = []
        all_names = ["Id", *names, *(["Name"] if named else [])]
        pick = operator.itemgetter(*keys) if len(keys) > 1 else None
        for row, rid in zip(chunk, ids, strict=True):
            try:  # the usual seed: every row has every key, one C call picks them all
                vals = list(pick(row)) if pick is not None else [row.get(keys[0])]
            except KeyError:
                get = row.get
                vals = [get(k) for k in keys]
            for i, conv in convs:
                try:
                    vals[i] = conv(vals[i])
                except ValueError:
                    raise _parse_error(canon[keys[i]].type, vals[i]) from None
            for i in req_idx:
                if not vals[i]:
                    raise _err(
                        "REQUIRED_FIELD_MISSING",
                        f"Required fields are missing: [{names[i]}]",
                        [names[i]],
                    )
            if named:
                first = vals[first_idx] if first_idx is not None else None
                last = vals[last_idx] if last_idx is not None else None
                full = f"{first} {last}" if first else last
                out = (rid, *vals, full)
            else:
                out = (rid, *vals)
            if sc or keep or derived:
                rec = dict(zip(all_names, out, strict=True))
                if "HasResponded" in derived:
                    rec["HasResponded"] = int(rec.get("Status") == "Responded")
                if "IsEmailBounced" in derived:
                    rec["IsEmailBounced"] = int(
                        bool(rec.get("EmailBouncedReason") or rec.get("EmailBouncedDate"))
                    )
                if "CompletedDateTime" in derived:
                    closed = rec.get("Status") == "Completed"
                    when = rec.get("LastModifiedDate") or stamp
                    rec["CompletedDateTime"] = when if closed else None
                if sc:
                    self._sync_state_country(obj, rec, None)
                if sc or derived:
                    out = tuple(rec[n] for n in all_names)
                if keep:
                    kept.append({**consts, **rec})
            out_rows.append(out)
        self._counters[obj.name] = counter
        const_sql = [_sql_literal(v) for v in consts.values()]
        self._conn.executemany(
            f"INSERT INTO {_q(obj.name)} ({', '.join(_q(c) for c in [*all_names, *consts])})"
            f" VALUES ({', '.join(['?'] * len(all_names) + const_sql)})",
            out_rows,
        )
        return kept

    # ------------------------------------------------------------------ reads

    def get(
        self,
        sobject: str,
        record_id: str,
        fields: list[str] | None = None,
        *,
        include_deleted: bool = False,
    ) -> dict[str, Any] | None:
        """One record by Id (all fields, compound addresses nested, unless `fields` names some)."""
        got = self.get_many(sobject, [record_id], fields, include_deleted=include_deleted)
        return got[0]

    def get_many(
        self,
        sobject: str,
        ids: list[str],
        fields: list[str] | None = None,
        *,
        include_deleted: bool = False,
    ) -> list[dict[str, Any] | None]:
        """Several records of one object in the order asked (None where there is none)."""
        obj = self._obj(sobject)
        norm: list[str | None] = []
        for given in ids:
            n = normalize_id(given) if isinstance(given, str) else None
            if n is None:
                raise _err("MALFORMED_ID", f"{obj.label} ID: id value of incorrect type: {given}")
            norm.append(n if n.startswith(obj.key_prefix) else None)
        wanted = [n for n in norm if n]
        want_id = fields is None or any(f.lower() == "id" for f in fields)
        names = [f for f in fields if f.lower() != "id"] if fields else None
        select = (
            "".join(", " + f for f in names)
            if names
            else ("" if fields else ", " + self._select_all(obj))
        )
        found: dict[str, dict[str, Any]] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):
                part = wanted[start : start + 500]
                id_list = ", ".join(f"'{i}'" for i in part)
                soql = f"SELECT Id{select} FROM {obj.name} WHERE Id IN ({id_list})"
                compiled = self._compile(soql, include_deleted)
                for row in self._conn.execute(compiled.sql, compiled.params):
                    rec = compiled.build(row)
                    rid = rec["Id"]
                    if not want_id:
                        rec.pop("Id")
                    found[rid] = rec
        return [found.get(n) if n else None for n in norm]

    def _select_all(self, obj: SObject) -> str:
        cached = self._all_fields.get(obj.name)
        if cached is None:
            cached = ", ".join(f.name for f in obj.fields.values() if f.name != "Id")
            self._all_fields[obj.name] = cached
        return cached

    def find_ids(self, sobject: str, field_name: str, value: Any) -> list[str]:
        """Ids of live records whose field equals value (text ignores case): upsert's lookup."""
        obj = self._obj(sobject)
        fd = obj.field(field_name)
        if fd is None or not fd.stored:
            raise _err(
                "INVALID_FIELD", f"No such column '{field_name}' on sobject of type {obj.name}"
            )
        stored = self._convert(obj, fd, value)
        with self._lock:
            rows = self._conn.execute(
                f'SELECT "Id" FROM {_q(obj.name)} WHERE {_q(fd.name)} = ?'
                f'{" COLLATE NOCASE" if fd.is_text else ""} AND "IsDeleted" = 0 ORDER BY "Id"',
                (stored,),
            ).fetchall()
        return [r[0] for r in rows]

    def get_blob(self, sobject: str, record_id: str, field_name: str) -> bytes:
        """The bytes of a base64 field (ContentVersion.VersionData), which SOQL only points to.

        NOT_FOUND (404) for an object without such a field or no such record, ENTITY_IS_DELETED
        (404) for a record in the Recycle Bin.
        """
        obj = self._obj(sobject)
        fd = obj.field(field_name)
        if fd is None or fd.type != "base64":
            raise _err("NOT_FOUND", NOT_FOUND_MESSAGE, status=404)
        rid = self._check_id(obj, record_id)
        with self._lock:
            row = self._conn.execute(
                f'SELECT {_q(fd.name)}, "IsDeleted" FROM {_q(obj.name)} WHERE "Id" = ?', (rid,)
            ).fetchone()
        if row is None:
            raise _err("NOT_FOUND", NOT_FOUND_MESSAGE, status=404)
        if row[1]:
            raise _err("ENTITY_IS_DELETED", "entity is deleted", [], status=404)
        return bytes(row[0] or b"")

    def _compile(self, soql: str, include_deleted: bool) -> Any:
        try:
            return compile_query(self.schema, soql, self._now(), include_deleted, self.api_version)
        except SoqlError as exc:
            raise _err(exc.error_code, exc.message) from None

    def query(self, soql: str, *, include_deleted: bool = False) -> QueryResult:
        """Run a SOQL statement. Raises SalesforceError MALFORMED_QUERY / INVALID_FIELD."""
        compiled = self._compile(soql, include_deleted)
        with self._lock:
            if include_deleted:
                with self._write("") as tx:
                    self._purge(tx.now)
            matched = self._conn.execute(compiled.count_sql, compiled.count_params).fetchone()[0]
        total = compiled.total(matched)
        if compiled.is_count or total == 0:
            return QueryResult(total, iter(()), compiled.columns)
        return QueryResult(total, self._stream(compiled), compiled.columns)

    def _stream(self, compiled: Any) -> Iterator[dict[str, Any]]:
        """Rows through a private read connection, fetched in chunks, without the store's lock."""
        with self._lock:
            # Counted under the lock so a bulk load knows no reader can be using the schema.
            self._streams += 1
        conn = sqlite3.connect(self._uri, uri=True, check_same_thread=False)
        try:
            # Read-uncommitted takes no table locks in shared-cache mode, so writers keep going
            # while a long export streams.
            conn.execute("PRAGMA read_uncommitted = 1")
            cur = conn.execute(compiled.sql, compiled.params)
            build = compiled.build
            while True:
                chunk = cur.fetchmany(FETCH_CHUNK)
                if not chunk:
                    break
                for row in chunk:
                    yield build(row)
        finally:
            conn.close()
            with self._lock:
                self._streams -= 1

    def count(self, sobject: str, *, include_deleted: bool = False) -> int:
        obj = self._obj(sobject)
        where = "" if include_deleted else ' WHERE "IsDeleted" = 0'
        with self._lock:
            return int(
                self._conn.execute(f"SELECT COUNT(*) FROM {_q(obj.name)}{where}").fetchone()[0]
            )

    def describe(self, sobject: str) -> dict[str, Any]:
        """Salesforce's DescribeSObjectResult for one object (NOT_FOUND when the org has none)."""
        obj = self._obj(sobject)
        return obj.describe(self._record_types_of(obj) if "RecordTypeId" in obj.fields else None)

    def _record_types_of(self, obj: SObject) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._conn.execute(
                'SELECT "Id", "Name", "DeveloperName", "IsActive" FROM "RecordType"'
                ' WHERE "SobjectType" = ? AND "IsDeleted" = 0 ORDER BY "Id"',
                (obj.name,),
            )
            return [
                dict(zip(("Id", "Name", "DeveloperName", "IsActive"), r, strict=True)) for r in cur
            ]

    def describe_global(self) -> dict[str, Any]:
        """DescribeGlobal: `{"encoding", "maxBatchSize", "sobjects": [...]}`."""
        return self.schema.describe_global()

    # ------------------------------------------------------------------ list views

    def list_views(self, sobject: str | None = None) -> list[dict[str, Any]]:
        """Stored List Views (`{"id", "sobject", "label", "developerName", "where", "columns"}`),
        in creation order; one object's when `sobject` is given."""
        sql = "SELECT id, sobject, label, developer_name, where_clause, columns FROM _list_view"
        params: tuple[Any, ...] = ()
        if sobject is not None:
            sql += " WHERE sobject = ?"
            params = (sobject,)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY seq", params).fetchall()
        keys = ("id", "sobject", "label", "developerName", "where", "columns")
        return [{**dict(zip(keys, r, strict=True)), "columns": json.loads(r[5])} for r in rows]

    def add_list_view(
        self, sobject: str, label: str, developer_name: str, where: str | None, columns: list[str]
    ) -> str:
        """Store one List View (checked by the caller); its new 18-character `00B` Id."""
        with self._lock:
            # Ids are never reused, even after the newest view is deleted.
            top = int(
                self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM _list_view").fetchone()[0]
            )
            seq = self._view_seq = max(self._view_seq, top)
            self._view_seq += 1
            id15 = "00BSB" + _b62_encode(seq + 1, 10)
            view_id = id15 + id_suffix(id15)
            self._conn.execute(
                "INSERT INTO _list_view (id, sobject, label, developer_name, where_clause, columns,"
                " seq) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (view_id, sobject, label, developer_name, where, json.dumps(columns), seq + 1),
            )
        return view_id

    def delete_list_view(self, view_id: str) -> bool:
        with self._lock:
            cur = self._conn.execute("DELETE FROM _list_view WHERE id = ?", (view_id,))
        return cur.rowcount > 0

    def clear_list_views(self) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM _list_view")

    # ------------------------------------------------------------------ replication

    def _window(self, start: str, end: str) -> tuple[datetime, datetime, datetime]:
        try:
            lo = _parse_datetime(start)
            hi = _parse_datetime(end)
        except ValueError:
            raise _err(
                "INVALID_REPLICATION_DATE", "start and end must be ISO 8601 dateTime values"
            ) from None
        now = self._now()
        # Salesforce works in whole minutes: both ends are rounded down.
        lo = lo.replace(second=0, microsecond=0)
        hi = min(hi, now).replace(second=0, microsecond=0)
        if hi <= lo:
            raise _err(
                "INVALID_REPLICATION_DATE", "EndDate must chronologically follow the StartDate"
            )
        return lo, hi, now

    def updated_ids(self, sobject: str, start: str, end: str) -> dict[str, Any]:
        """getUpdated: `{"ids": [...], "latestDateCovered": ...}` by SystemModstamp."""
        obj = self._obj(sobject)
        lo, hi, now = self._window(start, end)
        if lo < now - timedelta(days=UPDATED_WINDOW_DAYS):
            raise _err(
                "INVALID_REPLICATION_DATE",
                f"startDate cannot be more than {UPDATED_WINDOW_DAYS} days ago",
            )
        with self._lock:
            rows = self._conn.execute(
                f'SELECT "Id" FROM {_q(obj.name)} WHERE "IsDeleted" = 0 AND "SystemModstamp" >= ?'
                ' AND "SystemModstamp" < ? ORDER BY "Id" LIMIT ?',
                (format_datetime(lo), format_datetime(hi), ID_LIMIT + 1),
            ).fetchall()
        if len(rows) > ID_LIMIT:
            raise _err(
                "EXCEEDED_ID_LIMIT",
                f"ID limit exceeded: more than {ID_LIMIT} ids in the window; use a smaller range",
            )
        return {"ids": [r[0] for r in rows], "latestDateCovered": format_datetime(hi)}

    def deleted_records(self, sobject: str, start: str, end: str) -> dict[str, Any]:
        """getDeleted: `{"deletedRecords": [{"id", "deletedDate"}], "earliestDateAvailable",
        "latestDateCovered"}`."""
        obj = self._obj(sobject)
        lo, hi, now = self._window(start, end)
        earliest = (now - timedelta(days=RECYCLE_BIN_DAYS)).replace(second=0, microsecond=0)
        if lo < earliest:
            raise _err(
                "INVALID_REPLICATION_DATE",
                f"startDate is before the earliest date available ({format_datetime(earliest)})",
            )
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, deleted_date FROM _deleted_log WHERE sobject = ? AND deleted_date >= ?"
                " AND deleted_date < ? ORDER BY deleted_date, id LIMIT ?",
                (obj.name, format_datetime(lo), format_datetime(hi), ID_LIMIT + 1),
            ).fetchall()
        if len(rows) > ID_LIMIT:
            raise _err("EXCEEDED_ID_LIMIT", f"ID limit exceeded: more than {ID_LIMIT} ids")
        return {
            "deletedRecords": [{"id": r[0], "deletedDate": r[1]} for r in rows],
            "earliestDateAvailable": format_datetime(earliest),
            "latestDateCovered": format_datetime(hi),
        }

    # ------------------------------------------------------------------ whole org

    def reset(self) -> None:
        """Drop every record (the org profile stays)."""
        with self._lock:
            self._conn.execute("BEGIN")
            for obj in self.schema.objects.values():
                if obj.name != "RecordType":
                    self._conn.execute(f"DELETE FROM {_q(obj.name)}")
            self._conn.execute("DELETE FROM _deleted_log")
            self._conn.execute("COMMIT")

    def snapshot(self, path: str) -> None:
        """Write the whole org to a SQLite file; `OrgStore(..., path=...)` loads it back."""
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with self._lock:
            dest = sqlite3.connect(tmp)
            try:
                self._conn.backup(dest)
            finally:
                dest.close()
        os.replace(tmp, path)  # readers of the file never see a half-written snapshot

    def save_snapshot(self) -> None:
        """Write to the configured SNAPSHOT path, when there is one."""
        if self.path:
            self.snapshot(self.path)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


# ---------------------------------------------------------------------- helpers


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _column_sql(fd: FieldDef) -> str:
    if fd.name == "Id":
        return '"Id" TEXT PRIMARY KEY'
    if fd.type == "boolean":
        return f"{_q(fd.name)} INTEGER NOT NULL DEFAULT 0"
    if fd.type == "int":
        return f"{_q(fd.name)} INTEGER"
    if fd.type in ("double", "currency", "percent"):
        return f"{_q(fd.name)} REAL"
    if fd.type == "base64":
        return f"{_q(fd.name)} BLOB"
    if fd.is_text:
        return f"{_q(fd.name)} TEXT COLLATE NOCASE"
    return f"{_q(fd.name)} TEXT"


_INDEXED_REFS = frozenset(
    {
        "AccountId",
        "ParentId",
        "CampaignId",
        "ContactId",
        "LeadId",
        "ConvertedContactId",
        "ConvertedAccountId",
        "PersonContactId",
        "WhoId",
        "WhatId",
        "ContentDocumentId",
        "LinkedEntityId",
    }
)


def _indexes(obj: SObject) -> list[tuple[str, str]]:
    out = [
        ("live_modstamp", '"IsDeleted", "SystemModstamp"'),
        ("modstamp", '"SystemModstamp"'),  # queryAll and getUpdated windows over both kinds
    ]
    if "LastModifiedDate" in obj.fields:  # ContentDocumentLink has no audit fields
        out.append(("lastmodified", '"LastModifiedDate"'))
    for fd in obj.stored_fields():
        if (
            fd.type == "email"
            or fd.name in _INDEXED_REFS
            or fd.external_id
            or fd.unique
            or (fd.custom and fd.type == "reference")
        ):
            out.append((fd.name.lower(), _q(fd.name)))
    return out


def _event_values(obj: SObject, rec: dict[str, Any]) -> dict[str, Any]:
    return {
        name: _out(fd, rec[name])
        for name, fd in obj.fields.items()
        if name not in ("Id", "IsDeleted", "SystemModstamp")
        and fd.stored
        and rec.get(name) is not None
    }


def _out(fd: FieldDef, value: Any) -> Any:
    if value is None:
        return None
    if fd.type == "boolean":
        return bool(value)
    return value


def _parse_error(kind: str, value: Any) -> SalesforceError:
    return _err(
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {kind} from VALUE_STRING value {value} or request may be "
        "missing a required field",
    )


def _require(obj: SObject, allowed: bool, verb: str) -> None:
    """Refuse an operation the object does not support (inserting a ContentDocument, say)."""
    if not allowed:
        raise _err("INVALID_TYPE_FOR_OPERATION", f"entity type cannot be {verb}: {obj.label}")


def _check_task(merged: dict[str, Any]) -> None:
    """A task about a lead cannot be related to anything else (its WhatId stays empty)."""
    who, what = merged.get("WhoId"), merged.get("WhatId")
    if who and what and str(who).startswith(_LEAD_PREFIX):
        raise _err("FIELD_INTEGRITY_EXCEPTION", "field integrity exception", ["WhoId", "WhatId"])


def _describe_file(new: dict[str, Any]) -> None:
    """Fill a new ContentVersion's derived fields from its PathOnClient and VersionData."""
    missing = [name for name in ("PathOnClient", "VersionData") if new.get(name) is None]
    if missing:
        message = f"Required fields are missing: [{', '.join(missing)}]"
        raise _err("REQUIRED_FIELD_MISSING", message, missing)
    data: bytes = new["VersionData"]
    stem, ext = _file_parts(new["PathOnClient"])
    if new.get("Title") is None:
        new["Title"] = stem[:255]  # Salesforce titles an untitled upload by its file name
    new.update(
        FileExtension=ext,
        FileType=_FILE_TYPES.get(ext or "", "UNKNOWN"),
        ContentSize=len(data),
        Checksum=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        IsLatest=1,
    )


def _bad() -> str:
    raise ValueError("not a date")


def _decode_base64(value: Any) -> bytes:
    """A base64 field's bytes from its JSON/CSV text (line breaks allowed, as MIME writes them)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if not isinstance(value, str):
        raise _parse_error("base64", value)
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _parse_error("base64", value) from None


def _file_parts(path: str) -> tuple[str, str | None]:
    """(title, extension) of a PathOnClient: the file name without its extension, and that
    extension in lower case (None without one)."""
    name = re.split(r"[\\/]", path)[-1]
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return name, None
    return stem, ext.lower()


def _or_default(default: Any, conv: Callable[[Any], Any] | None, value: Any) -> Any:
    if value is None or value == "":
        return default
    return conv(value) if conv is not None else value


def _sql_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool | int | float):
        return str(int(value) if isinstance(value, bool) else value)
    return "'" + str(value).replace("'", "''") + "'"


def _bool01(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", ""):
        return int(value.lower() in ("true", "1"))
    raise ValueError(value)


def _to_sf_datetime(value: Any) -> Any:
    if value is None or _is_sf_datetime(value):
        return value
    if isinstance(value, datetime):
        return format_datetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    return format_datetime(_parse_datetime(str(value)))


def _to_id18(value: Any) -> Any:
    if value is None or value == "":
        return None
    norm = normalize_id(value)
    if norm is None:
        raise ValueError(value)
    return norm


def _backdated(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: _to_sf_datetime(v)
        for k, v in row.items()
        if k in _SYSTEM and k.endswith(("Date", "Modstamp"))
    }


def _chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


_B62_PAIRS = [a + b for a in _B62 for b in _B62]


def _id_block(key_prefix: str, after: int, count: int) -> list[str]:
    """`count` consecutive 18-character ids following counter value `after` (the bulk path).

    Only the last two characters change between neighbours, so the checksum of the first ten
    and of the head of the third chunk is worked out once per 3,844 ids.
    """
    prefix = key_prefix + "SB"
    out = []
    head_of: dict[int, tuple[str, str, int]] = {}
    for n in range(after + 1, after + count + 1):
        hi, lo = divmod(n, 3844)
        cached = head_of.get(hi)
        if cached is None:
            head = prefix + _b62_encode(hi, 8)
            full = id_suffix(head + "00")
            tail_bits = sum(1 << i for i, ch in enumerate(head[10:13]) if "A" <= ch <= "Z")
            cached = head_of[hi] = (head, full[:2], tail_bits)
        head, first_two, tail_bits = cached
        out.append(head + _B62_PAIRS[lo] + first_two + _ID_CHARS[tail_bits | _PAIR_BITS[lo]])
    return out


_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_PAIR_BITS = [(("A" <= a <= "Z") << 3) | (("A" <= b <= "Z") << 4) for a in _B62 for b in _B62]


def _b62_encode(n: int, width: int) -> str:
    chars = []
    while n:
        n, r = divmod(n, 62)
        chars.append(_B62[r])
    return "".join(reversed(chars)).rjust(width, "0")


def _b62_decode(text: str) -> int:
    n = 0
    for ch in text:
        idx = _B62.find(ch)
        if idx < 0:
            return 0
        n = n * 62 + idx
    return n


def open_store(sandbox: Any) -> OrgStore:
    """Build the org's store from the sandbox config (profile, clock, snapshot path)."""
    config = sandbox.config
    return OrgStore(
        config.get("ORG_PROFILE", "standard"),
        config.get("CUSTOM_FIELDS") or None,
        clock=sandbox.clock,
        user_id=config.get("USER_ID") or DEFAULT_USER_ID,
        duplicate_rule=config.get("DUPLICATE_RULE"),
        path=config.get("SNAPSHOT"),
        record_types=config.get("RECORD_TYPES") or None,
        api_version=str((config.get("API_VERSIONS") or [DEFAULT_API_VERSION])[-1]),
    )
