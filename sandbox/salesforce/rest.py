"""REST API room of the Salesforce sandbox: versions, query/queryAll, sObjects, Collections, limits.

Paths, statuses and bodies follow the real org (see reference/salesforce-api-notes.md §4), so a
client changes only its base URL. The request hooks here do what every org does to every API call:
reject over-long requests (414/431), check the bearer token (401 INVALID_SESSION_ID), enforce the
daily request allocation (403 REQUEST_LIMIT_EXCEEDED), count the call, and stamp
`Sforce-Limit-Info` on the response.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import re
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from sandbox.common import Fault
from sandbox.salesforce.auth import authenticate
from sandbox.salesforce.org import SalesforceSandbox, current_sandbox
from sandbox.salesforce.store import SalesforceError

log = logging.getLogger(__name__)

bp = Blueprint("sf_rest", __name__)

MAX_REQUEST_BYTES = 16_384  # request line + headers, Salesforce's documented cap
DEFAULT_BATCH = 2000
MIN_BATCH = 200
COLLECTION_LIMIT = 200
LOCATOR_IDLE = timedelta(minutes=15)
API_PATH = re.compile(r"^/services/data/v(?P<version>[^/]+)(?:/(?P<rest>.*))?$")
ID_RE = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
NOT_FOUND_MESSAGE = "The requested resource does not exist"
ROLLED_BACK = {
    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "message": "Record rolled back because not all records were valid and the request was using "
    "AllOrNone header",
    "fields": [],
}
NUMERIC_TYPES = ("double", "int", "currency", "percent", "long")


# ---------------------------------------------------------------------------------------------
# Errors


def error_response(status: int, error_code: str, message: str, fields: list[str] | None = None):  # type: ignore[no-untyped-def]
    """A REST error: `[{"message", "errorCode", "fields"}]` with its HTTP status."""
    body: dict[str, Any] = {"message": message, "errorCode": error_code}
    if fields is not None:
        body["fields"] = fields
    resp = jsonify([body])
    resp.status_code = status
    return resp


# Request-level errors carry no `fields` (record-level DML errors always do, even when empty).
BARE_ERRORS = frozenset(
    {
        "NOT_FOUND",
        "ENTITY_IS_DELETED",
        "MALFORMED_QUERY",
        "INVALID_FIELD",
        "INVALID_TYPE",
        "INVALID_QUERY_LOCATOR",
        "JSON_PARSER_ERROR",
        "MISSING_ARGUMENT",
        "EXCEEDED_ID_LIMIT",
        "INVALID_QUERY_FILTER_OPERATOR",
    }
)


def sf_error_response(exc: SalesforceError) -> Response:
    body = exc.rest_body()
    if not exc.fields and exc.error_code in BARE_ERRORS:
        body = [{"message": exc.message, "errorCode": exc.error_code}]
    resp = jsonify(body)
    resp.status_code = exc.status
    return resp


FAULT_BODIES: dict[int, tuple[str, str]] = {
    400: ("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record"),
    401: ("INVALID_SESSION_ID", "Session expired or invalid"),
    403: ("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
    404: ("NOT_FOUND", NOT_FOUND_MESSAGE),
    500: (
        "UNKNOWN_EXCEPTION",
        "An unexpected error occurred. Please include this ErrorId if you contact support: "
        "1234567890-12345 (-1234567890)",
    ),
    502: ("SERVER_UNAVAILABLE", "Bad Gateway"),
    503: ("SERVER_UNAVAILABLE", "Server is unavailable; please try again later."),
}
FAULT_KEYS: dict[str, tuple[int, str, str]] = {
    "concurrent": (403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded."),
    "lock": (400, "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record"),
}


def fault_response(fault: Fault) -> Response:
    """Salesforce-shaped body for an injected fault; `error_key` picks a flavour (e.g. `lock`)."""
    status = fault.status or 500
    if fault.error_key in FAULT_KEYS:
        _, code, message = FAULT_KEYS[fault.error_key]
    elif fault.error_key:
        code, message = fault.error_key, f"injected {fault.error_key}"
    else:
        code, message = FAULT_BODIES.get(status, ("UNKNOWN_EXCEPTION", "injected fault"))
    resp = jsonify([{"message": message, "errorCode": code}])
    resp.status_code = status
    return resp


# ---------------------------------------------------------------------------------------------
# API usage: the daily allocation and per-family counts


class ApiUsage:
    """API calls counted per sandbox-clock day (the allocation) and per resource family (ever)."""

    def __init__(self, sandbox: SalesforceSandbox) -> None:
        self.sandbox = sandbox
        self._lock = threading.Lock()
        self._day: date | None = None
        self.today = 0
        self.total = 0
        self.by_family: Counter[str] = Counter()
        self._consumed: Counter[str] = Counter()  # other daily allocations (bulk jobs, batches)

    @property
    def limit(self) -> int:
        return int(self.sandbox.config["DAILY_API_LIMIT"])

    def _roll(self) -> None:
        day = self.sandbox.clock.now().date()
        if day != self._day:
            self._day = day
            self.today = 0
            self._consumed.clear()

    def exhausted(self) -> bool:
        with self._lock:
            self._roll()
            return self.today >= self.limit

    def count(self, family: str) -> None:
        with self._lock:
            self._roll()
            self.today += 1
            self.total += 1
            self.by_family[family] += 1

    def consume(self, allocation: str, amount: int = 1) -> None:
        """Spend another daily allocation, e.g. `DailyBulkV2QueryJobs` (called by bulk.py)."""
        with self._lock:
            self._roll()
            self._consumed[allocation] += amount

    def consumed(self, allocation: str) -> int:
        with self._lock:
            self._roll()
            return self._consumed[allocation]

    def header(self) -> str:
        with self._lock:
            self._roll()
            return f"api-usage={self.today}/{self.limit}"

    def calls(self, family: str | None = None) -> int:
        """API calls since the last reset: all of them, or one family's (`query`, `sobjects`...)."""
        with self._lock:
            return self.total if family is None else self.by_family[family]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            self._roll()
            return {
                "total": self.total,
                "today": self.today,
                "limit": self.limit,
                "by_family": dict(self.by_family),
            }

    def reset(self) -> None:
        with self._lock:
            self._day = None
            self.today = 0
            self.total = 0
            self.by_family.clear()
            self._consumed.clear()


def family_of(rest: str) -> str:
    """The resource family an API path belongs to, for call counting."""
    head = rest.split("/", 1)[0].strip()
    return {
        "": "resources",
        "query": "query",
        "queryAll": "query",
        "jobs": "bulk",
        "composite": "composite",
        "sobjects": "sobjects",
        "limits": "limits",
    }.get(head, head)


# ---------------------------------------------------------------------------------------------
# Hooks


def _request_size() -> tuple[int, int]:
    env = request.environ
    raw_uri = env.get("REQUEST_URI") or env.get("RAW_URI")
    if not raw_uri:
        raw_uri = quote(env.get("SCRIPT_NAME", "") + env.get("PATH_INFO", ""))
        if env.get("QUERY_STRING"):
            raw_uri += "?" + env["QUERY_STRING"]
    line = len(request.method) + 1 + len(raw_uri.encode("latin-1", "replace")) + len(" HTTP/1.1")
    headers = sum(len(k) + len(v) + 4 for k, v in request.headers.items())
    return line, headers


def install_hooks(app: Flask) -> None:
    """Size check, auth, daily limit, call counting and Sforce-Limit-Info for every API call."""
    app.json.sort_keys = False  # type: ignore[attr-defined]  # field order as Salesforce sends it
    app.url_map.strict_slashes = False  # the org answers `query` and `query/` alike

    @app.before_request
    def _api_gate() -> Response | tuple[str, int, dict[str, str]] | None:
        path = request.path
        if path.startswith("/_sandbox"):
            return None
        line, headers = _request_size()
        if line > MAX_REQUEST_BYTES:
            return "URI Too Long", 414, {"Content-Type": "text/plain"}
        if line + headers > MAX_REQUEST_BYTES:
            return "Request Header Fields Too Large", 431, {"Content-Type": "text/plain"}
        match = API_PATH.match(path)
        if match is None:
            return None
        sandbox = current_sandbox()
        version = match.group("version")
        if version not in sandbox.config["API_VERSIONS"]:
            return error_response(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
        checked = authenticate(sandbox.auth)
        if isinstance(checked, Response):
            return checked
        g.sf_api = True
        g.sf_version = version
        if sandbox.usage.exhausted():
            log.info("sandbox daily API limit reached (%d)", sandbox.usage.limit)
            return error_response(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        sandbox.usage.count(family_of(match.group("rest") or ""))
        return None

    @app.after_request
    def _limit_info(resp: Response) -> Response:
        if API_PATH.match(request.path) and getattr(g, "sf_api", False):
            resp.headers["Sforce-Limit-Info"] = current_sandbox().usage.header()
        return resp

    @app.errorhandler(404)
    def _not_found(exc: HTTPException) -> Response | HTTPException:
        if request.path.startswith("/services/"):
            return error_response(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
        return exc

    @app.errorhandler(405)
    def _not_allowed(exc: HTTPException) -> Response | HTTPException:
        if request.path.startswith("/services/"):
            allowed = ",".join(sorted(getattr(exc, "valid_methods", None) or []))
            return error_response(
                405,
                "METHOD_NOT_ALLOWED",
                f"HTTP Method '{request.method}' not allowed. Allowed are {allowed}",
            )
        return exc

    @app.errorhandler(SalesforceError)
    def _sf_error(exc: SalesforceError) -> Response:
        return sf_error_response(exc)


# ---------------------------------------------------------------------------------------------
# Helpers shared by the routes (and control.py)


def release_label(version: str) -> str:
    """`66.0` → `Spring '26`: three releases a year, v60 being Spring '24."""
    offset = int(float(version)) - 60
    season = ("Spring", "Summer", "Winter")[offset % 3]
    year = 24 + offset // 3 + (1 if season == "Winter" else 0)
    return f"{season} '{year % 100:02d}"


def base_path(version: str) -> str:
    return f"/services/data/v{version}"


def record_url(version: str, sobject: str, record_id: str) -> str:
    return f"{base_path(version)}/sobjects/{sobject}/{record_id}"


def to_18(record_id: str) -> str:
    """Salesforce's case-safe 18-character form of a 15-character Id."""
    if len(record_id) != 15:
        return record_id
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
    suffix = ""
    for chunk in range(3):
        bits = 0
        for pos, char in enumerate(record_id[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << pos
        suffix += alphabet[bits]
    return record_id + suffix


def call_options_origin(version: str) -> str:
    """changeOrigin for a REST write: `com/salesforce/api/rest/<v>[;client=<token>]`."""
    origin = f"com/salesforce/api/rest/{version}"
    options = request.headers.get("Sforce-Call-Options", "")
    for part in re.split(r"[,;]", options):
        key, _, value = part.strip().partition("=")
        if key.strip() == "client" and value.strip():
            return f"{origin};client={value.strip()}"
    return origin


def allow_save() -> bool:
    header = request.headers.get("Sforce-Duplicate-Rule-Header", "")
    for part in re.split(r"[,;]", header):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "allowsave" and value.strip().lower() == "true":
            return True
    return False


def json_body() -> Any:
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise SalesforceError(400, "JSON_PARSER_ERROR", "The request body is empty.")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SalesforceError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from None


class Schema:
    """Per-request view of the store's describe results, fetched at most once per object."""

    def __init__(self, sandbox: SalesforceSandbox) -> None:
        self.store = sandbox.store
        self._cache: dict[str, dict[str, Any] | None] = {}
        self._global: list[dict[str, Any]] | None = None
        self._blobs: dict[str, frozenset[str]] = {}

    def describe(self, sobject: str) -> dict[str, Any] | None:
        key = sobject.lower()
        if key not in self._cache:
            try:
                self._cache[key] = self.store.describe(sobject)
            except SalesforceError:
                self._cache[key] = None
        return self._cache[key]

    def require(self, sobject: str) -> dict[str, Any]:
        described = self.describe(sobject)
        if described is None:
            raise SalesforceError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
        return described

    def name(self, sobject: str) -> str:
        return str(self.require(sobject)["name"])

    def field(self, sobject: str, name: str) -> dict[str, Any] | None:
        described = self.describe(sobject)
        for item in (described or {}).get("fields", []):
            if item["name"].lower() == name.lower():
                return item  # type: ignore[no-any-return]
        return None

    def blob_fields(self, sobject: str) -> frozenset[str]:
        """Names of the object's base64 fields (ContentVersion.VersionData), cached."""
        key = sobject.lower()
        found = self._blobs.get(key)
        if found is None:
            fields = (self.describe(sobject) or {}).get("fields", [])
            found = frozenset(f["name"] for f in fields if f.get("type") == "base64")
            self._blobs[key] = found
        return found

    def global_sobjects(self) -> list[dict[str, Any]]:
        if self._global is None:
            described = self.store.describe_global()
            if isinstance(described, dict):
                described = described.get("sobjects", [])
            self._global = list(described)
        return self._global

    def type_of_id(self, record_id: str) -> str | None:
        prefix = record_id[:3]
        for item in self.global_sobjects():
            if item.get("keyPrefix") == prefix:
                return str(item["name"])
        return None

    def parent_field(self, sobject: str, relationship: str) -> dict[str, Any] | None:
        for item in (self.describe(sobject) or {}).get("fields", []):
            if (item.get("relationshipName") or "").lower() == relationship.lower():
                return item  # type: ignore[no-any-return]
        return None

    def parent_type(self, sobject: str, relationship: str) -> str:
        item = self.parent_field(sobject, relationship)
        targets = (item or {}).get("referenceTo") or []
        return str(targets[0]) if targets else relationship

    def child_type(self, sobject: str, relationship: str) -> str:
        for item in (self.describe(sobject) or {}).get("childRelationships", []):
            if (item.get("relationshipName") or "").lower() == relationship.lower():
                return str(item["childSObject"])
        return relationship


def _nest_flat(row: dict[str, Any]) -> dict[str, Any]:
    """`{"Account.Name": x}` → `{"Account": {"Name": x}}`; an all-null parent becomes null."""
    if not any("." in key for key in row):
        return row
    out: dict[str, Any] = {}
    groups: dict[str, dict[str, Any]] = {}
    for key, value in row.items():
        head, dot, rest = key.partition(".")
        if not dot:
            out[key] = value
            continue
        if head not in groups:
            groups[head] = {}
            out[head] = groups[head]
        groups[head][rest] = value
    for head, sub in groups.items():
        nested = _nest_flat(sub)
        out[head] = None if all(v is None for v in nested.values()) else nested
    return out


def shape_record(
    row: dict[str, Any],
    sobject: str,
    version: str,
    schema: Schema | None,
    known_id: str | None = None,
) -> dict[str, Any]:
    """A record as the REST API prints it: `attributes {type, url}` first, parents nested alike.

    `known_id` is a parent's Id taken from the child's reference field when the parent's own
    Id was not selected, so its url can still be given.
    """
    row = _nest_flat(row)
    given = row.get("attributes")
    sobject = (given or {}).get("type") or sobject
    attributes: dict[str, Any] = {"type": sobject}
    record_id = row.get("Id") or known_id
    if sobject == "AggregateResult":
        pass
    elif record_id:
        attributes["url"] = record_url(version, sobject, record_id)
    elif given and given.get("url"):
        attributes["url"] = re.sub(
            r"/services/data/v[^/]+/", base_path(version) + "/", given["url"]
        )
    out: dict[str, Any] = {"attributes": attributes}
    blobs = schema.blob_fields(sobject) if schema else frozenset()
    for key, value in row.items():
        if key == "attributes":
            continue
        if key in blobs and isinstance(value, str):
            # A base64 field reads as the path of its bytes, in the version the client asked.
            value = _VERSIONED.sub(base_path(version) + "/", value, count=1)
        elif isinstance(value, dict) and "records" in value and isinstance(value["records"], list):
            child = schema.child_type(sobject, key) if schema else key
            value = {
                **{k: v for k, v in value.items() if k != "records"},
                "records": [shape_record(r, child, version, schema) for r in value["records"]],
            }
        elif (
            isinstance(value, dict)
            and sobject != "AggregateResult"
            and not (schema and schema.field(sobject, key))  # compound (address) values stay bare
        ):
            reference = schema.parent_field(sobject, key) if schema else None
            parent = schema.parent_type(sobject, key) if schema else key
            parent_id = row.get(reference["name"]) if reference else None
            value = shape_record(value, parent, version, schema, parent_id)
        out[key] = value
    return out


_VERSIONED = re.compile(r"^/services/data/v[^/]+/")
_AGGREGATE = re.compile(r"\b(COUNT|COUNT_DISTINCT|SUM|AVG|MIN|MAX)\s*\(\s*\w", re.IGNORECASE)


def query_sobject(soql: str) -> str:
    """The object a SOQL statement reads: its FROM outside parentheses and quotes."""
    depth = 0
    quoted = False
    i = 0
    while i < len(soql):
        char = soql[i]
        if quoted:
            if char == "\\":
                i += 1
            elif char == "'":
                quoted = False
        elif char == "'":
            quoted = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif depth == 0 and soql[i : i + 4].upper() == "FROM" and (i == 0 or soql[i - 1].isspace()):
            match = re.match(r"FROM\s+(\w+)", soql[i:], re.IGNORECASE)
            if match:
                return match.group(1)
        i += 1
    return ""


def soql_literal(value: Any, field_type: str = "string") -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if field_type in NUMERIC_TYPES:
        try:
            float(value)
            return str(value)
        except (TypeError, ValueError):
            pass
    if field_type == "boolean" and str(value).lower() in ("true", "false"):
        return str(value).lower()
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def ids_matching(
    sandbox: SalesforceSandbox, sobject: str, field_name: str, value: Any, field_type: str
) -> list[str]:
    """Live records whose field equals value (text ignoring case, as SOQL `=` does)."""
    if hasattr(sandbox.store, "find_ids"):
        return list(sandbox.store.find_ids(sobject, field_name, value))
    result = sandbox.store.query(
        f"SELECT Id FROM {sobject} WHERE {field_name} = {soql_literal(value, field_type)}"
    )
    return [row["Id"] for row in result.rows]


# The email field a person record is looked up by (control read-back).
EMAIL_FIELDS = {"Contact": "Email", "Lead": "Email", "Account": "PersonEmail"}


# ---------------------------------------------------------------------------------------------
# Query cursors


@dataclass
class Cursor:
    locator: str
    endpoint: str  # query | queryAll
    sobject: str
    rows: Iterator[dict[str, Any]]
    total: int
    batch: int
    position: int
    last_used: datetime
    last_page: tuple[int, list[dict[str, Any]], bool] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def release(rows: Iterator[dict[str, Any]]) -> None:
    """Close a store row generator early so its SQLite connection goes back at once."""
    close = getattr(rows, "close", None)
    if close is not None:
        # ValueError: another request is reading it right now; it ends on its own then.
        with contextlib.suppress(ValueError):
            close()


class QueryCursors:
    """Open query locators: each keeps the store's lazy iterator, never the whole result."""

    def __init__(self, sandbox: SalesforceSandbox) -> None:
        self.sandbox = sandbox
        self._lock = threading.Lock()
        self._open: dict[str, Cursor] = {}

    def _purge(self, now: datetime) -> None:
        for key in [k for k, c in self._open.items() if now - c.last_used > LOCATOR_IDLE]:
            release(self._open.pop(key).rows)

    def open(self, cursor: Cursor) -> None:
        limit = int(self.sandbox.config.get("QUERY_CURSOR_LIMIT", 10))
        with self._lock:
            self._purge(cursor.last_used)
            # As in Salesforce, a user's oldest cursor is released when the cap is reached.
            while len(self._open) >= limit:
                oldest = min(self._open.values(), key=lambda c: c.last_used)
                release(self._open.pop(oldest.locator).rows)
            self._open[cursor.locator] = cursor

    def get(self, locator: str) -> Cursor | None:
        now = self.sandbox.clock.now()
        with self._lock:
            self._purge(now)
            return self._open.get(locator)

    def close(self, locator: str) -> None:
        with self._lock:
            cursor = self._open.pop(locator, None)
        if cursor is not None:
            release(cursor.rows)

    def count(self) -> int:
        with self._lock:
            self._purge(self.sandbox.clock.now())
            return len(self._open)

    def reset(self) -> None:
        with self._lock:
            for cursor in self._open.values():
                release(cursor.rows)
            self._open.clear()

    @staticmethod
    def new_locator() -> str:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        return "01gSB" + "".join(secrets.choice(alphabet) for _ in range(13))


def batch_size() -> int:
    header = request.headers.get("Sforce-Query-Options", "")
    match = re.search(r"batchSize\s*=\s*(\d+)", header, re.IGNORECASE)
    if not match:
        return DEFAULT_BATCH
    return max(MIN_BATCH, min(DEFAULT_BATCH, int(match.group(1))))


def _page(cursor: Cursor, version: str, schema: Schema) -> dict[str, Any]:
    start = cursor.position
    raw = list(itertools.islice(cursor.rows, cursor.batch))
    cursor.position += len(raw)
    records = [shape_record(r, cursor.sobject, version, schema) for r in raw]
    done = len(raw) < cursor.batch or cursor.position >= cursor.total
    cursor.last_page = (start, records, done)
    return _page_body(cursor, version, records, done)


def _page_body(
    cursor: Cursor, version: str, records: list[dict[str, Any]], done: bool
) -> dict[str, Any]:
    body: dict[str, Any] = {"totalSize": cursor.total, "done": done}
    if not done:
        body["nextRecordsUrl"] = (
            f"{base_path(version)}/{cursor.endpoint}/{cursor.locator}-{cursor.position}"
        )
    body["records"] = records
    return body


def long_text_columns(schema: Schema, sobject: str, columns: list[str]) -> int:
    """How many selected columns are custom long text areas (more than 255 characters)."""
    count = 0
    for column in columns:
        if "." in column:
            continue
        item = schema.field(sobject, column)
        if item and item.get("custom") and item.get("type") == "textarea":
            count += int(item.get("length", 0)) > 255
    return count


def _run_query(endpoint: str, version: str) -> Response:
    sandbox = current_sandbox()
    soql = request.args.get("q", "")
    if not soql.strip():
        raise SalesforceError(400, "MALFORMED_QUERY", "SOQL statement cannot be empty")
    result = sandbox.store.query(soql, include_deleted=endpoint == "queryAll")
    sobject = getattr(result, "sobject", None) or query_sobject(soql)
    schema = Schema(sandbox)
    batch = batch_size()
    if long_text_columns(schema, sobject, result.columns) >= 2:
        batch = min(batch, MIN_BATCH)  # Salesforce's cap when 2+ long text areas are selected
    if _AGGREGATE.search(soql.split("FROM", 1)[0] if "FROM" in soql else soql):
        sobject = "AggregateResult"
    cursor = Cursor(
        locator=QueryCursors.new_locator(),
        endpoint=endpoint,
        sobject=sobject,
        rows=iter(result.rows),
        total=result.total_size,
        batch=batch,
        position=0,
        last_used=sandbox.clock.now(),
    )
    body = _page(cursor, version, schema)
    if body["done"]:
        release(cursor.rows)
    else:
        sandbox.cursors.open(cursor)
    return jsonify(body)


def _query_more(endpoint: str, version: str, locator_offset: str) -> Response:
    sandbox = current_sandbox()
    locator, _, offset_text = locator_offset.rpartition("-")
    cursor = sandbox.cursors.get(locator) if locator and offset_text.isdigit() else None
    if cursor is None:
        raise SalesforceError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
    offset = int(offset_text)
    with cursor.lock:
        cursor.last_used = sandbox.clock.now()
        if cursor.last_page is not None and offset == cursor.last_page[0]:
            # A retried page (the client timed out, say) is served again, not skipped.
            _, records, done = cursor.last_page
            position, cursor.position = cursor.position, offset + len(records)
            body = _page_body(cursor, version, records, done)
            cursor.position = position
            return jsonify(body)
        if offset < cursor.position:
            raise SalesforceError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        skipped = sum(1 for _ in itertools.islice(cursor.rows, offset - cursor.position))
        cursor.position += skipped
        body = _page(cursor, version, Schema(sandbox))
    if body["done"]:
        sandbox.cursors.close(locator)
    return jsonify(body)


@bp.get("/services/data/v<version>/query")
def query(version: str) -> Response:
    return _run_query("query", version)


@bp.get("/services/data/v<version>/queryAll")
def query_all(version: str) -> Response:
    return _run_query("queryAll", version)


@bp.get("/services/data/v<version>/query/<locator>")
def query_more(version: str, locator: str) -> Response:
    return _query_more("query", version, locator)


@bp.get("/services/data/v<version>/queryAll/<locator>")
def query_all_more(version: str, locator: str) -> Response:
    return _query_more("queryAll", version, locator)


# ---------------------------------------------------------------------------------------------
# Versions and resources


@bp.get("/services/data")
def versions() -> Response:
    listed = [
        {"label": release_label(v), "url": base_path(v), "version": v}
        for v in current_sandbox().config["API_VERSIONS"]
    ]
    return jsonify(listed)


@bp.get("/services/data/v<version>")
def resources(version: str) -> Response:
    names = [
        "tooling",
        "metadata",
        "eclair",
        "folders",
        "prechatForms",
        "composite",
        "jobs",
        "query",
        "queryAll",
        "search",
        "sobjects",
        "limits",
        "recent",
        "quickActions",
        "analytics",
        "theme",
        "appMenu",
        "actions",
    ]
    return jsonify({name: f"{base_path(version)}/{name}" for name in names})


@bp.get("/services/data/v<version>/limits")
def limits(version: str) -> Response:
    sandbox = current_sandbox()
    usage = sandbox.usage
    snap = usage.snapshot()

    def pair(name: str, maximum: int) -> dict[str, int]:
        return {"Max": maximum, "Remaining": max(0, maximum - usage.consumed(name))}

    body = {
        "ActiveScratchOrgs": {"Max": 3, "Remaining": 3},
        "ConcurrentAsyncGetReportInstances": {"Max": 200, "Remaining": 200},
        "ConcurrentSyncReportRuns": {"Max": 20, "Remaining": 20},
        "DailyApiRequests": {
            "Max": snap["limit"],
            "Remaining": max(0, snap["limit"] - snap["today"]),
        },
        "DailyAsyncApexExecutions": {"Max": 250000, "Remaining": 250000},
        "DailyBulkApiBatches": pair("DailyBulkApiBatches", 15000),
        "DailyBulkV2QueryFileStorageMB": pair("DailyBulkV2QueryFileStorageMB", 976562),
        "DailyBulkV2QueryJobs": pair("DailyBulkV2QueryJobs", 10000),
        "DailyDeliveredPlatformEvents": pair("DailyDeliveredPlatformEvents", 50000),
        "DailyStreamingApiEvents": {"Max": 1000000, "Remaining": 1000000},
        "DataStorageMB": {"Max": 5120, "Remaining": 5120},
        "FileStorageMB": {"Max": 20480, "Remaining": 20480},
        "HourlyPublishedPlatformEvents": {"Max": 250000, "Remaining": 250000},
        "MassEmail": {"Max": 5000, "Remaining": 5000},
        "SingleEmail": {"Max": 5000, "Remaining": 5000},
    }
    return jsonify(body)


# ---------------------------------------------------------------------------------------------
# sObjects


@bp.get("/services/data/v<version>/sobjects")
def describe_global(version: str) -> Response:
    described = current_sandbox().store.describe_global()
    if isinstance(described, list):
        described = {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": described}
    return jsonify(described)


@bp.get("/services/data/v<version>/sobjects/<sobject>")
def sobject_info(version: str, sobject: str) -> Response:
    described = Schema(current_sandbox()).require(sobject)
    keep = (
        "activateable",
        "createable",
        "custom",
        "customSetting",
        "deletable",
        "deprecatedAndHidden",
        "feedEnabled",
        "keyPrefix",
        "label",
        "labelPlural",
        "layoutable",
        "mergeable",
        "mruEnabled",
        "name",
        "queryable",
        "replicateable",
        "retrieveable",
        "searchable",
        "triggerable",
        "undeletable",
        "updateable",
        "urls",
    )
    info = {k: described[k] for k in keep if k in described}
    return jsonify({"objectDescribe": info, "recentItems": []})


@bp.get("/services/data/v<version>/sobjects/<sobject>/describe")
def sobject_describe(version: str, sobject: str) -> Response:
    return jsonify(Schema(current_sandbox()).require(sobject))


def _record_body() -> dict[str, Any]:
    body = json_body()
    if not isinstance(body, dict):
        raise SalesforceError(
            400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject from an array"
        )
    body.pop("attributes", None)
    return body


@bp.post("/services/data/v<version>/sobjects/<sobject>")
def create_record(version: str, sobject: str) -> tuple[Response, int]:
    sandbox = current_sandbox()
    name = Schema(sandbox).name(sobject)
    values = _record_body()
    if "Id" in values or "id" in values:
        raise SalesforceError(
            400, "INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", ["Id"]
        )
    new_id = sandbox.store.create(
        name, values, origin=call_options_origin(version), allow_save=allow_save()
    )
    return jsonify(id=new_id, success=True, errors=[]), 201


def _missing_record(sandbox: SalesforceSandbox, sobject: str, record_id: str) -> SalesforceError:
    if sandbox.store.get(sobject, record_id, ["Id"], include_deleted=True) is not None:
        return SalesforceError(404, "ENTITY_IS_DELETED", "entity is deleted")
    return SalesforceError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)


def _fields_arg() -> list[str] | None:
    raw = request.args.get("fields")
    if raw is None:
        return None
    return [f.strip() for f in raw.split(",") if f.strip()]


def _not_an_id(name: str) -> SalesforceError:
    return SalesforceError(
        404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {name}"
    )


@bp.get("/services/data/v<version>/sobjects/<sobject>/<record_id>")
def get_record(version: str, sobject: str, record_id: str) -> Response:
    sandbox = current_sandbox()
    schema = Schema(sandbox)
    name = schema.name(sobject)
    if not ID_RE.match(record_id):
        raise _not_an_id(record_id)
    record_id = to_18(record_id)
    row = sandbox.store.get(name, record_id, _fields_arg())
    if row is None:
        raise _missing_record(sandbox, name, record_id)
    return jsonify(shape_record(row, name, version, schema))


@bp.patch("/services/data/v<version>/sobjects/<sobject>/<record_id>")
def update_record(version: str, sobject: str, record_id: str) -> tuple[str, int]:
    sandbox = current_sandbox()
    name = Schema(sandbox).name(sobject)
    if not ID_RE.match(record_id):
        raise _not_an_id(record_id)
    record_id = to_18(record_id)
    values = _record_body()
    if to_18(str(values.pop("Id", record_id))) != record_id:
        raise SalesforceError(400, "INVALID_ID_FIELD", "The Id field should not be specified")
    if sandbox.store.get(name, record_id, ["Id"]) is None:
        raise _missing_record(sandbox, name, record_id)
    sandbox.store.update(
        name, record_id, values, origin=call_options_origin(version), allow_save=allow_save()
    )
    return "", 204


@bp.delete("/services/data/v<version>/sobjects/<sobject>/<record_id>")
def delete_record(version: str, sobject: str, record_id: str) -> tuple[str, int]:
    sandbox = current_sandbox()
    name = Schema(sandbox).name(sobject)
    if not ID_RE.match(record_id):
        raise _not_an_id(record_id)
    record_id = to_18(record_id)
    if sandbox.store.get(name, record_id, ["Id"]) is None:
        raise _missing_record(sandbox, name, record_id)
    sandbox.store.delete(name, record_id, origin=call_options_origin(version))
    return "", 204


def _window() -> tuple[str, str]:
    start, end = request.args.get("start"), request.args.get("end")
    if not start or not end:
        raise SalesforceError(
            400, "MISSING_ARGUMENT", "start and end are both required query parameters"
        )
    return start, end


@bp.get("/services/data/v<version>/sobjects/<sobject>/updated")
def get_updated(version: str, sobject: str) -> Response:
    sandbox = current_sandbox()
    name = Schema(sandbox).name(sobject)
    start, end = _window()
    return jsonify(sandbox.store.updated_ids(name, start, end))


@bp.get("/services/data/v<version>/sobjects/<sobject>/deleted")
def get_deleted(version: str, sobject: str) -> Response:
    sandbox = current_sandbox()
    name = Schema(sandbox).name(sobject)
    start, end = _window()
    return jsonify(sandbox.store.deleted_records(name, start, end))


def external_id_field(schema: Schema, sobject: str, field_name: str) -> dict[str, Any]:
    """The describe entry of a field usable for upsert/lookup: Id, an External ID or idLookup."""
    item = schema.field(sobject, field_name)
    if item is None or not (item["name"] == "Id" or item.get("externalId") or item.get("idLookup")):
        raise _not_an_id(field_name)
    return item


def _matches_url_list(version: str, sobject: str, ids: list[str]) -> Response:
    resp = jsonify([record_url(version, sobject, i) for i in ids])
    resp.status_code = 300
    return resp


def _blob(sandbox: SalesforceSandbox, sobject: str, record_id: str, field_name: str) -> Response:
    """sObject Blob Retrieve: a base64 field's bytes, as the body itself."""
    data = sandbox.store.get_blob(sobject, to_18(record_id), field_name)
    # Salesforce labels file bodies with this (unregistered) media type.
    return Response(data, status=200, mimetype="application/octetstream")


@bp.get("/services/data/v<version>/sobjects/<sobject>/<field_name>/<path:value>")
def get_by_external_id(version: str, sobject: str, field_name: str, value: str) -> Response:
    sandbox = current_sandbox()
    schema = Schema(sandbox)
    name = schema.name(sobject)
    blob = next((f for f in schema.blob_fields(name) if f.lower() == value.lower()), None)
    if blob is not None and ID_RE.match(field_name):
        return _blob(sandbox, name, field_name, blob)  # `.../ContentVersion/<id>/VersionData`
    ext = external_id_field(schema, name, field_name)
    ids = ids_matching(sandbox, name, ext["name"], value, ext.get("type", "string"))
    if not ids:
        raise SalesforceError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
    if len(ids) > 1:
        return _matches_url_list(version, name, ids)
    row = sandbox.store.get(name, ids[0], _fields_arg())
    return jsonify(shape_record(row or {"Id": ids[0]}, name, version, schema))


@bp.delete("/services/data/v<version>/sobjects/<sobject>/<field_name>/<path:value>")
def delete_by_external_id(
    version: str, sobject: str, field_name: str, value: str
) -> Response | tuple[str, int]:
    sandbox = current_sandbox()
    schema = Schema(sandbox)
    name = schema.name(sobject)
    ext = external_id_field(schema, name, field_name)
    ids = ids_matching(sandbox, name, ext["name"], value, ext.get("type", "string"))
    if not ids:
        raise SalesforceError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
    if len(ids) > 1:
        return _matches_url_list(version, name, ids)
    sandbox.store.delete(name, ids[0], origin=call_options_origin(version))
    return "", 204


@dataclass
class UpsertOutcome:
    record_id: str
    created: bool


def upsert_one(
    sandbox: SalesforceSandbox,
    schema: Schema,
    sobject: str,
    ext: dict[str, Any],
    value: Any,
    values: dict[str, Any],
    origin: str,
    save_anyway: bool,
    *,
    update_only: bool = False,
    version: str = "",
) -> UpsertOutcome:
    """Create or update one record by an external ID, as `PATCH sobjects/T/Field/value` does."""
    field_name = ext["name"]
    for key in list(values):
        if key.lower() == field_name.lower():
            if str(values[key]) != str(value):
                raise SalesforceError(
                    400,
                    "INVALID_FIELD",
                    f"The value of the external ID field {field_name} in the body does not match "
                    "the value in the URL",
                    [field_name],
                )
            del values[key]
    if "Id" in values and field_name != "Id":
        raise SalesforceError(
            400,
            "INVALID_FIELD",
            "Unable to create/update fields: Id. Please check the security "
            "settings of this field and verify that it is read/write for your profile or "
            "permission set.",
            ["Id"],
        )
    if field_name == "Id":
        ids = [to_18(str(value))] if value else []
        if ids and sandbox.store.get(sobject, ids[0], ["Id"]) is None:
            raise _missing_record(sandbox, sobject, ids[0])
    else:
        if value is None or value == "":
            raise SalesforceError(
                400, "MISSING_ARGUMENT", f"{field_name} not specified", [field_name]
            )
        ids = ids_matching(sandbox, sobject, field_name, value, ext.get("type", "string"))
    if len(ids) > 1:
        raise _MultipleMatches(ids)
    if ids:
        sandbox.store.update(sobject, ids[0], values, origin=origin, allow_save=save_anyway)
        return UpsertOutcome(ids[0], False)
    if update_only:
        raise SalesforceError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
    if field_name != "Id":
        values = {**values, field_name: value}
    new_id = sandbox.store.create(sobject, values, origin=origin, allow_save=save_anyway)
    return UpsertOutcome(new_id, True)


class _MultipleMatches(Exception):
    def __init__(self, ids: list[str]) -> None:
        super().__init__(f"{len(ids)} records match")
        self.ids = ids


@bp.patch("/services/data/v<version>/sobjects/<sobject>/<field_name>/")
@bp.patch("/services/data/v<version>/sobjects/<sobject>/<field_name>/<path:value>")
def upsert_record(
    version: str, sobject: str, field_name: str, value: str = ""
) -> Response | tuple[Response, int]:
    sandbox = current_sandbox()
    schema = Schema(sandbox)
    name = schema.name(sobject)
    ext = external_id_field(schema, name, field_name)
    update_only = request.args.get("updateOnly", "").lower() == "true"
    try:
        outcome = upsert_one(
            sandbox,
            schema,
            name,
            ext,
            value,
            _record_body(),
            call_options_origin(version),
            allow_save(),
            update_only=update_only,
            version=version,
        )
    except _MultipleMatches as exc:
        return _matches_url_list(version, name, exc.ids)
    body = jsonify(id=outcome.record_id, success=True, errors=[], created=outcome.created)
    return body, 201 if outcome.created else 200


# ---------------------------------------------------------------------------------------------
# sObject Collections


class _Rollback(Exception):
    """Raised inside the store transaction so an allOrNone request leaves nothing behind."""


def _too_many() -> SalesforceError:
    return SalesforceError(
        400,
        "EXCEEDED_ID_LIMIT",
        f"record limit reached. cannot submit more than {COLLECTION_LIMIT} records into this call",
    )


def require_version(version: str, minimum: float) -> None:
    """Resources newer than the requested API version do not exist there (404, as in the org)."""
    if float(version) < minimum:
        raise SalesforceError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)


COLLECTIONS_SINCE = 42.0
COLLECTIONS_UPSERT_SINCE = 46.0


def _collection_payload() -> tuple[list[Any], bool]:
    body = json_body()
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise SalesforceError(400, "JSON_PARSER_ERROR", "The request must have a records array")
    records = body["records"]
    if len(records) > COLLECTION_LIMIT:
        raise _too_many()
    return records, bool(body.get("allOrNone", False))


def _failure(exc: SalesforceError, record_id: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": record_id} if record_id else {}
    out.update(success=False, errors=[exc.collection_error()])
    return out


def run_collection(
    sandbox: SalesforceSandbox,
    items: list[Any],
    all_or_none: bool,
    origin: str,
    work: Callable[[Any], dict[str, Any]],
    known_id: Callable[[Any], str | None],
) -> list[dict[str, Any]]:
    """Apply `work` to each item inside one store transaction; per-item results in order.

    A failed item becomes `{"success": false, "errors": [{statusCode...}]}`; with allOrNone the
    transaction is rolled back and every other item reports ALL_OR_NONE_OPERATION_ROLLED_BACK.
    """
    results: list[dict[str, Any] | None] = [None] * len(items)
    failed: set[int] = set()
    try:
        with sandbox.store.transaction(origin=origin):
            for index, item in enumerate(items):
                try:
                    results[index] = work(item)
                except SalesforceError as exc:
                    results[index] = _failure(exc, known_id(item))
                    failed.add(index)
            if all_or_none and failed:
                raise _Rollback()
    except _Rollback:
        for index, item in enumerate(items):
            if index not in failed:
                rid = known_id(item)
                rolled: dict[str, Any] = {"id": rid} if rid else {}
                rolled.update(success=False, errors=[dict(ROLLED_BACK)])
                results[index] = rolled
    return [r for r in results if r is not None]


def _record_type(record: Any, schema: Schema) -> str:
    if not isinstance(record, dict):
        raise SalesforceError(400, "JSON_PARSER_ERROR", "Each record must be an object")
    given = (record.get("attributes") or {}).get("type")
    if not given:
        raise SalesforceError(400, "INVALID_TYPE", "Must send a concrete entity type.")
    described = schema.describe(str(given))
    if described is None:
        raise SalesforceError(400, "INVALID_TYPE", f"sObject type '{given}' is not supported.")
    return str(described["name"])


def _values(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "attributes"}


@bp.post("/services/data/v<version>/composite/sobjects")
def collection_create(version: str) -> Response:
    require_version(version, COLLECTIONS_SINCE)
    sandbox = current_sandbox()
    schema = Schema(sandbox)
    records, all_or_none = _collection_payload()
    origin = call_options_origin(version)
    save_anyway = allow_save()

    def work(record: Any) -> dict[str, Any]:
        sobject = _record_type(record, schema)
        values = _values(record)
        if any(k.lower() == "id" for k in values):
            raise SalesforceError(
                400, "INVALID_FIELD", "cannot specify Id in an insert call", ["Id"]
            )
        new_id = sandbox.store.create(sobject, values, origin=origin, allow_save=save_anyway)
        return {"id": new_id, "success": True, "errors": []}

    return jsonify(run_collection(sandbox, records, all_or_none, origin, work, lambda _: None))


def _record_id(record: Any) -> str | None:
    if isinstance(record, dict):
        value = record.get("id") or record.get("Id")
        return to_18(str(value)) if value else None
    return None


@bp.patch("/services/data/v<version>/composite/sobjects")
def collection_update(version: str) -> Response:
    require_version(version, COLLECTIONS_SINCE)
    sandbox = current_sandbox()
    schema = Schema(sandbox)
    records, all_or_none = _collection_payload()
    origin = call_options_origin(version)
    save_anyway = allow_save()

    def work(record: Any) -> dict[str, Any]:
        sobject = _record_type(record, schema)
        record_id = _record_id(record)
        if not record_id:
            raise SalesforceError(400, "MISSING_ARGUMENT", "Id not specified in an update call")
        if not ID_RE.match(record_id):
            raise SalesforceError(400, "MALFORMED_ID", f"Id in the record is invalid: {record_id}")
        values = {k: v for k, v in _values(record).items() if k.lower() != "id"}
        if sandbox.store.get(sobject, record_id, ["Id"]) is None:
            missing = _missing_record(sandbox, sobject, record_id)
            if missing.error_code == "NOT_FOUND":
                missing = SalesforceError(
                    400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id"
                )
            raise missing
        sandbox.store.update(sobject, record_id, values, origin=origin, allow_save=save_anyway)
        return {"id": record_id, "success": True, "errors": []}

    return jsonify(run_collection(sandbox, records, all_or_none, origin, work, _record_id))


@bp.delete("/services/data/v<version>/composite/sobjects")
def collection_delete(version: str) -> Response:
    require_version(version, COLLECTIONS_SINCE)
    sandbox = current_sandbox()
    schema = Schema(sandbox)
    ids = [i.strip() for i in request.args.get("ids", "").split(",") if i.strip()]
    if not ids:
        raise SalesforceError(400, "MISSING_ARGUMENT", "ids parameter is required")
    if len(ids) > COLLECTION_LIMIT:
        raise _too_many()
    all_or_none = request.args.get("allOrNone", "false").lower() == "true"
    origin = call_options_origin(version)

    def work(raw: str) -> dict[str, Any]:
        if not ID_RE.match(raw):
            raise SalesforceError(400, "MALFORMED_ID", f"malformed id {raw}")
        record_id = to_18(raw)
        sobject = schema.type_of_id(record_id)
        if sobject is None or sandbox.store.get(sobject, record_id, ["Id"]) is None:
            if sobject and sandbox.store.get(sobject, record_id, ["Id"], include_deleted=True):
                raise SalesforceError(400, "ENTITY_IS_DELETED", "entity is deleted")
            raise SalesforceError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
        sandbox.store.delete(sobject, record_id, origin=origin)
        return {"id": record_id, "success": True, "errors": []}

    def known(raw: str) -> str | None:
        return to_18(raw) if ID_RE.match(raw) else raw

    return jsonify(run_collection(sandbox, ids, all_or_none, origin, work, known))


@bp.patch("/services/data/v<version>/composite/sobjects/<sobject>/<field_name>")
def collection_upsert(version: str, sobject: str, field_name: str) -> Response:
    require_version(version, COLLECTIONS_UPSERT_SINCE)
    sandbox = current_sandbox()
    schema = Schema(sandbox)
    name = schema.name(sobject)
    ext = external_id_field(schema, name, field_name)
    records, all_or_none = _collection_payload()
    origin = call_options_origin(version)
    save_anyway = allow_save()

    def work(record: Any) -> dict[str, Any]:
        if _record_type(record, schema) != name:
            raise SalesforceError(
                400, "INVALID_TYPE", f"Record type must be {name} for this upsert", []
            )
        values = _values(record)
        key = next((k for k in values if k.lower() == ext["name"].lower()), None)
        value = values.pop(key) if key else None
        if value in (None, ""):
            raise SalesforceError(
                400, "MISSING_ARGUMENT", f"{ext['name']} not specified", [ext["name"]]
            )
        try:
            outcome = upsert_one(sandbox, schema, name, ext, value, values, origin, save_anyway)
        except _MultipleMatches as exc:
            raise SalesforceError(
                300,
                "DUPLICATE_EXTERNAL_ID",
                f"{ext['name']}: more than one record found for external id field: {exc.ids}",
                [ext["name"]],
            ) from None
        return {"id": outcome.record_id, "success": True, "errors": [], "created": outcome.created}

    return jsonify(run_collection(sandbox, records, all_or_none, origin, work, lambda _: None))


@bp.route("/services/data/v<version>/composite/sobjects/<sobject>", methods=["GET", "POST"])
def collection_retrieve(version: str, sobject: str) -> Response:
    require_version(version, COLLECTIONS_SINCE)
    sandbox = current_sandbox()
    schema = Schema(sandbox)
    name = schema.name(sobject)
    if request.method == "POST":
        body = json_body()
        ids = [str(i) for i in (body.get("ids") or [])] if isinstance(body, dict) else []
        fields = [str(f) for f in (body.get("fields") or [])] if isinstance(body, dict) else []
    else:
        ids = [i.strip() for i in request.args.get("ids", "").split(",") if i.strip()]
        fields = _fields_arg() or []
    if not ids:
        raise SalesforceError(400, "MISSING_ARGUMENT", "ids parameter is required")
    if not fields:
        raise SalesforceError(400, "MISSING_ARGUMENT", "fields parameter is required")
    if len(ids) > 2000:
        raise SalesforceError(400, "EXCEEDED_ID_LIMIT", "cannot retrieve more than 2000 records")
    out: list[dict[str, Any] | None] = []
    for raw in ids:
        row = sandbox.store.get(name, to_18(raw), fields) if ID_RE.match(raw) else None
        out.append(shape_record(row, name, version, schema) if row is not None else None)
    return jsonify(out)
