"""The org's data: sObject records in SQLite, SOQL over them, and the change records every write produces.

INTERFACE CONTRACT (shared by rest.py, bulk.py, events.py, seed.py; keep signatures stable).

Records are plain dicts keyed by canonical field API names (`Id`, `Email`, `MailingStreet`, ...).
Values on the wire and in dicts: strings; booleans as `True/False`; numbers as int/float; dates as
`YYYY-MM-DD`; datetimes as Salesforce prints them, `2026-11-26T10:30:00.000+0000` (UTC); null as None.

Every rejected write raises `SalesforceError(status, error_code, message, fields)`, the same
errors the real API gives (`REQUIRED_FIELD_MISSING`, `INVALID_FIELD`, `FIELD_INTEGRITY_EXCEPTION`,
`DUPLICATES_DETECTED`, `CANNOT_UPDATE_CONVERTED_LEAD`, `ENTITY_IS_DELETED`, `NOT_FOUND`,
`MALFORMED_ID`, `INVALID_FIELD_FOR_INSERT_UPDATE`, `MALFORMED_QUERY`, ...).

Every committed write also produces `ChangeRecord`s (one per record, grouped by transaction) that
are handed to every listener registered with `OrgStore.subscribe`; events.py turns them into CDC
events. Writes made inside `with store.transaction(origin=...)` share one transaction key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


class SalesforceError(Exception):
    """A Salesforce API error: HTTP status plus the `errorCode`/`statusCode` and message it carries."""

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
    columns: list[str] = field(default_factory=list)  # select-list paths, e.g. ["Id", "Account.Name"]


Listener = Callable[[list[ChangeRecord]], None]


class OrgStore:
    """All records of one sandbox org. Thread-safe (one lock around the SQLite connection)."""

    def create(self, sobject: str, values: dict[str, Any], *, origin: str = "") -> str:
        """Insert one record, returning its new 18-character Id. Validates like Salesforce."""
        raise NotImplementedError

    def update(self, sobject: str, record_id: str, values: dict[str, Any], *, origin: str = "") -> None:
        """Change the given fields of one record (no event if nothing actually changed)."""
        raise NotImplementedError

    def delete(self, sobject: str, record_id: str, *, origin: str = "") -> None:
        """Move a record to the Recycle Bin (IsDeleted = true); queryAll still sees it."""
        raise NotImplementedError

    def undelete(self, sobject: str, record_id: str, *, origin: str = "") -> None:
        """Restore a record from the Recycle Bin with its Id."""
        raise NotImplementedError

    def hard_delete(self, sobject: str, record_id: str) -> None:
        """Empty a record from the Recycle Bin: gone for good, and (as in Salesforce) no event."""
        raise NotImplementedError

    def get(
        self,
        sobject: str,
        record_id: str,
        fields: list[str] | None = None,
        *,
        include_deleted: bool = False,
    ) -> dict[str, Any] | None:
        raise NotImplementedError

    def query(self, soql: str, *, include_deleted: bool = False) -> QueryResult:
        """Run a SOQL statement. Raises SalesforceError MALFORMED_QUERY / INVALID_FIELD."""
        raise NotImplementedError

    def insert_many(self, sobject: str, rows: Iterable[dict[str, Any]], *, events: bool = False) -> int:
        """The seeding fast path: bulk insert with minimal validation; events only when asked."""
        raise NotImplementedError

    def convert_lead(
        self, lead_id: str, *, account_id: str | None = None, origin: str = ""
    ) -> dict[str, str]:
        """Convert a Lead in one transaction: Account (unless given) + Contact CREATE, Lead UPDATE."""
        raise NotImplementedError

    def updated_ids(self, sobject: str, start: str, end: str) -> dict[str, Any]:
        """getUpdated: `{"ids": [...], "latestDateCovered": ...}` by SystemModstamp."""
        raise NotImplementedError

    def deleted_records(self, sobject: str, start: str, end: str) -> dict[str, Any]:
        """getDeleted: `{"deletedRecords": [{"id", "deletedDate"}], "earliestDateAvailable", "latestDateCovered"}`."""
        raise NotImplementedError

    def transaction(self, origin: str = ""):  # type: ignore[no-untyped-def]
        """Context manager grouping writes into one transaction (one transactionKey)."""
        raise NotImplementedError

    def subscribe(self, listener: Listener) -> None:
        raise NotImplementedError

    def count(self, sobject: str, *, include_deleted: bool = False) -> int:
        raise NotImplementedError

    def reset(self) -> None:
        """Drop every record (the org profile stays)."""
        raise NotImplementedError

    def snapshot(self, path: str) -> None:
        """Write the whole org to a SQLite file; `OrgStore(..., path=...)` loads it back."""
        raise NotImplementedError


def open_store(sandbox: Any) -> OrgStore:
    """Build the org's store from the sandbox config (profile, clock, snapshot path)."""
    raise NotImplementedError
