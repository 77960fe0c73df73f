"""Salesforce errors, grouped by what the caller should do about them, and the table that picks one.

Each class is one kind of `middleware.vendor_errors` (retry later, needs reauth, record rejected,
quota pause, or plain failed); from the caller's point of view:

- `SessionExpired`: the access token is no longer valid; refresh once and retry the call (a 401
  after that refresh needs re-consent).
- `AuthRevoked`: the refresh token was refused (`invalid_grant`), or there is none; the connection
  needs re-consent.
- `OAuthFailed`: the token endpoint refused us for another reason (wrong consumer key or secret,
  bad redirect URI): not worth retrying; the connection needs attention (re-consent once fixed).
- `ApiLimitExceeded`: the org's daily API allocation is spent (`TotalRequests`); stop for the day,
  checkpoint, never sleep-retry (quota pause). Its subclass `ConcurrencyLimitExceeded` (too many
  long-running requests, `ConcurrentPerOrgLongTxn`) is also `Retryable`, and its kind is retry
  later: try again in a while.
- `Retryable`: 5xx, timeouts, connection errors, `UNABLE_TO_LOCK_ROW`, `SERVER_UNAVAILABLE`; the
  same call may well succeed later (RQ's retry is the natural home for it).
- `QueryError`: `MALFORMED_QUERY` / `INVALID_FIELD` / `INVALID_TYPE`: a bug or a bad field mapping;
  retrying cannot help, the message names the field for the user.
- `RecordRejected(code, message, fields)`: one record was refused (validation rule, required
  field, duplicate rule, converted lead, deleted target...). A per-record sync error, not a failed
  batch; collections and Bulk 2.0 results carry one per failed row.
- `AccessDenied`: the integration user lacks a permission (FLS, object access, API disabled).
- `NotFound`, `MultipleMatches`: a single-record call found no record, or an upsert found several.
- `RequestFailed`: anything else the server refused; treat as a bug.

`error_for(status, code, message)` is the one table from (HTTP status, errorCode) to class; it
is pure and tested without HTTP. `error_from_response` parses the body shapes Salesforce uses
(REST `[{"message","errorCode","fields"}]`, collections `{"statusCode",...}`, OAuth
`{"error","error_description"}`) and applies the table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from middleware import vendor_errors
from middleware.vendor_errors import Kind, NeedsReauth, QuotaPause, RetryLater, VendorError


class SalesforceError(VendorError):
    """Base of every error the Salesforce client raises."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        fields: Sequence[str] = (),
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.fields: tuple[str, ...] = tuple(fields)
        self.url = url

    def __str__(self) -> str:
        parts = [self.code] if self.code else []
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        prefix = f"[{' '.join(parts)}] " if parts else ""
        suffix = f" (fields: {', '.join(self.fields)})" if self.fields else ""
        return f"{prefix}{self.message}{suffix}"


class SessionExpired(SalesforceError, NeedsReauth):
    """The access token expired or was invalidated: refresh once and retry.

    The client does that refresh itself; a 401 that survives it needs re-consent.
    """


class AuthRevoked(SalesforceError, NeedsReauth):
    """The refresh token is no longer accepted: the user must connect Salesforce again."""


class OAuthFailed(SalesforceError, NeedsReauth):
    """The OAuth endpoint refused the request for a reason other than a revoked grant."""


class ApiLimitExceeded(SalesforceError, QuotaPause):
    """The org's rolling 24-hour API allocation is used up: stop and checkpoint, don't sleep."""


class Retryable(SalesforceError, RetryLater):
    """A transient failure: the same request may succeed later."""


class ConcurrencyLimitExceeded(ApiLimitExceeded, Retryable):
    """Too many concurrent long-running requests in the org: retry in a while."""

    # An API limit, but one that clears within minutes: what to do is retry, not pause.
    kind: ClassVar[Kind] = Kind.RETRY_LATER
    retryable = True


class QueryError(SalesforceError):
    """The SOQL or a field name is wrong: a bug or a bad field mapping."""


class AccessDenied(SalesforceError):
    """The integration user lacks a permission (object, field-level security, API access)."""


class NotFound(SalesforceError, vendor_errors.RecordRejected):
    """The requested record or resource does not exist."""


class MultipleMatches(SalesforceError, vendor_errors.RecordRejected):
    """An upsert's external id matched several records (HTTP 300); nothing was written."""


class RequestFailed(SalesforceError):
    """Any other refusal: the request itself is wrong."""


# Codes that Salesforce may return for one record while it processes a batch, that retrying the
# record later may fix. They stay RecordRejected in per-record results (the batch went on) but
# say so, so the caller can queue the record again rather than show a sync error.
TRANSIENT_RECORD_CODES = frozenset(
    {"UNABLE_TO_LOCK_ROW", "ALL_OR_NONE_OPERATION_ROLLED_BACK", "PROCESSING_HALTED", "UNPROCESSED"}
)


class RecordRejected(SalesforceError, vendor_errors.RecordRejected):
    """Salesforce refused one record; `code`, `message` and `fields` say why."""

    def __init__(
        self,
        code: str,
        message: str,
        fields: Sequence[str] = (),
        *,
        status: int | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status, fields=fields, url=url)
        self.code: str = code

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.code in TRANSIENT_RECORD_CODES

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RecordRejected) and (self.code, self.message, self.fields) == (
            other.code,
            other.message,
            other.fields,
        )

    def __hash__(self) -> int:
        return hash((self.code, self.message, self.fields))

    def __repr__(self) -> str:
        return f"RecordRejected({self.code!r}, {self.message!r}, {list(self.fields)!r})"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able form for the store's sync-error rows."""
        return {"code": self.code, "message": self.message, "fields": list(self.fields)}


# Codes refused for a single record. A REST write that answers 400 with one of these is the same
# per-record problem a collection reports in its results.
RECORD_CODES = frozenset(
    {
        "REQUIRED_FIELD_MISSING",
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "FIELD_INTEGRITY_EXCEPTION",
        "FIELD_FILTER_VALIDATION_EXCEPTION",
        "DUPLICATES_DETECTED",
        "DUPLICATE_VALUE",
        "DUPLICATE_EXTERNAL_ID",
        "CANNOT_UPDATE_CONVERTED_LEAD",
        "ENTITY_IS_DELETED",
        "ENTITY_IS_LOCKED",
        "INVALID_EMAIL_ADDRESS",
        "INVALID_CROSS_REFERENCE_KEY",
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        "INVALID_ID_FIELD",
        "MALFORMED_ID",
        "STRING_TOO_LONG",
        "NUMBER_OUTSIDE_VALID_RANGE",
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        "CANNOT_EXECUTE_FLOW_TRIGGER",
        "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
        "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY",
        "INSUFFICIENT_ACCESS_OR_READONLY",
        "STORAGE_LIMIT_EXCEEDED",
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "PROCESSING_HALTED",
    }
)

_QUERY_CODES = ("MALFORMED_QUERY", "INVALID_FIELD", "INVALID_TYPE", "INVALID_QUERY_FILTER_OPERATOR")
_RETRY_CODES = (
    "UNABLE_TO_LOCK_ROW",
    "SERVER_UNAVAILABLE",
    "QUERY_TIMEOUT",
    "REQUEST_RUNNING_TOO_LONG",
)
_ACCESS_CODES = (
    "INSUFFICIENT_ACCESS",
    "API_DISABLED_FOR_ORG",
    "API_CURRENTLY_DISABLED",
    "FUNCTIONALITY_NOT_ENABLED",
)

# (status, errorCode) -> class, and through the class -> kind (`vendor_errors.kind_of`). `None` in
# either place is a wildcard; the most specific row wins: (status, code), then (None, code), then
# (status, None). Anything still unmatched falls back to the status family in `error_for`.
ERROR_TABLE: dict[tuple[int | None, str | None], type[SalesforceError]] = {
    (401, None): SessionExpired,
    (None, "INVALID_SESSION_ID"): SessionExpired,
    (None, "invalid_grant"): AuthRevoked,
    (None, "inactive_user"): AuthRevoked,
    (None, "inactive_org"): AuthRevoked,
    (None, "invalid_client"): OAuthFailed,
    (None, "invalid_client_id"): OAuthFailed,
    (None, "unsupported_grant_type"): OAuthFailed,
    (None, "redirect_uri_mismatch"): OAuthFailed,
    (None, "invalid_request"): OAuthFailed,
    (None, "REQUEST_LIMIT_EXCEEDED"): ApiLimitExceeded,  # refined by message in error_for
    (None, "EXCEEDED_ID_LIMIT"): QueryError,
    (300, None): MultipleMatches,
    (404, None): NotFound,
    (403, None): AccessDenied,
    (408, None): Retryable,
    (429, None): Retryable,
    **{(None, code): QueryError for code in _QUERY_CODES},
    **{(None, code): Retryable for code in _RETRY_CODES},
    **{(None, code): AccessDenied for code in _ACCESS_CODES},
    **{(None, code): RecordRejected for code in RECORD_CODES},
}


def error_class(status: int | None, code: str | None, message: str = "") -> type[SalesforceError]:
    """The error class for an HTTP status and Salesforce `errorCode` (pure; no HTTP needed)."""
    for key in ((status, code), (None, code), (status, None)):
        cls = ERROR_TABLE.get(key)
        if cls is not None:
            break
    else:
        if status is not None and status >= 500:
            cls = Retryable
        else:
            cls = RequestFailed
    if cls is ApiLimitExceeded and "ConcurrentPerOrgLongTxn" in message:
        # The concurrency cap clears within minutes; the daily one does not.
        cls = ConcurrencyLimitExceeded
    return cls


def error_for(
    status: int | None,
    code: str | None,
    message: str,
    fields: Sequence[str] = (),
    url: str | None = None,
) -> SalesforceError:
    """Build the typed error for one (status, errorCode, message)."""
    cls = error_class(status, code, message)
    if cls is RecordRejected:
        return RecordRejected(code or "UNKNOWN", message, fields, status=status, url=url)
    return cls(message, code=code, status=status, fields=fields, url=url)


def parse_error_body(body: Any) -> tuple[str | None, str, list[str]]:
    """(code, message, fields) from any Salesforce error body: REST list, collection item, OAuth."""
    if isinstance(body, (bytes, str)):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        try:
            body = json.loads(text)
        except ValueError:
            return None, text.strip()[:500] or "(empty response)", []
    if isinstance(body, list) and body:
        body = body[0]
    if isinstance(body, Mapping):
        if "error" in body and "errorCode" not in body:
            return (
                str(body["error"]),
                str(body.get("error_description") or body["error"]),
                [],
            )
        code = body.get("errorCode") or body.get("statusCode")
        fields = body.get("fields") or []
        return (
            str(code) if code is not None else None,
            str(body.get("message") or code or "(no message)"),
            [str(f) for f in fields] if isinstance(fields, list) else [],
        )
    return None, "(unrecognised error body)", []


def error_from_response(status: int, body: Any, url: str | None = None) -> SalesforceError:
    """The typed error for an HTTP response's status and (raw or parsed) body."""
    code, message, fields = parse_error_body(body)
    return error_for(status, code, message, fields, url)


def record_error(item: Mapping[str, Any]) -> RecordRejected:
    """One per-record error from a collections result (`{"statusCode","message","fields"}`)."""
    code, message, fields = parse_error_body(item)
    return RecordRejected(code or "UNKNOWN", message, fields)
