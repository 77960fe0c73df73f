"""The Salesforce client: simple-salesforce for REST, our own Bulk 2.0, one session, typed errors.

simple-salesforce 1.12.10 does the REST work, unmodified. We give it our `requests.Session`
(`trust_env = False`, so a REQUESTS_CA_BUNDLE in the environment cannot override `verify=`; a
default timeout, which it never sets) and a pinned `version=`, and wrap only what it lacks:

- refresh on 401: a client built from a session id raises `SalesforceExpiredSession`; we get a new
  token from the `TokenSource`, rebuild the simple-salesforce client and retry once;
- `Sforce-Call-Options: client=<call_client>` on every write (REST, collections, Bulk 2.0), so the
  change events our writes cause carry it in `changeOrigin` and are dropped as echoes;
- a call counter per resource family (query, sobjects, composite, bulk, limits) and the org's
  `Sforce-Limit-Info` usage, fed from every response;
- typed errors (`middleware.salesforce.errors`);
- Bulk API 2.0 on our session (simple-salesforce's bulk2 neither refreshes a session nor streams
  pages the way we need): query results streamed page by page by `Sforce-Locator`, ingest with
  `#N/A` for nulls and per-row results.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast
from urllib.parse import quote_plus, urlsplit

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError as SimpleSalesforceError

from middleware.salesforce.errors import (
    QueryError,
    RecordRejected,
    RequestFailed,
    Retryable,
    SalesforceError,
    SessionExpired,
    error_from_response,
    record_error,
)
from middleware.salesforce.oauth import TokenSource

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0  # seconds; REST calls answer well within it, Bulk pages too
MAX_REQUEST_BYTES = 16_384  # request line + headers, Salesforce's cap (414/431 beyond)
COLLECTION_SIZE = 200  # sObject Collections' per-call cap
MAX_INGEST_BYTES = 100_000_000  # per Bulk 2.0 job; Salesforce allows 150 MB after base64
NULL = "#N/A"  # how Bulk CSV says "set to null" (an empty cell leaves the field as it is)
_SOQL_DATETIME = "%Y-%m-%dT%H:%M:%SZ"


class SalesforceSession(requests.Session):
    """A session with a default timeout and no environment overrides (proxies, CA bundle)."""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT, ca_bundle: str | None = None) -> None:
        super().__init__()
        self.trust_env = False
        self.default_timeout = timeout
        if ca_bundle:
            self.verify = ca_bundle

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().request(method, url, *args, **kwargs)

    @classmethod
    def adopt(
        cls, session: requests.Session | None, *, timeout: float, ca_bundle: str | None
    ) -> SalesforceSession:
        """Our session class, keeping the transport adapters (mounts) of one the caller built."""
        if isinstance(session, SalesforceSession):
            session.trust_env = False
            session.default_timeout = timeout
            if ca_bundle:
                session.verify = ca_bundle
            return session
        ours = cls(timeout=timeout, ca_bundle=ca_bundle)
        if session is not None:
            ours.adapters = session.adapters
            ours.headers.update(session.headers)
            if not ca_bundle:
                ours.verify = session.verify
        return ours


@dataclass
class ApiUsage:
    """Calls this client made by resource family, and the org's 24-hour usage as last reported."""

    calls: Counter[str] = field(default_factory=Counter)
    org_used: int | None = None
    org_limit: int | None = None

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    @property
    def org_remaining(self) -> int | None:
        if self.org_used is None or self.org_limit is None:
            return None
        return max(self.org_limit - self.org_used, 0)

    def as_dict(self) -> dict[str, Any]:
        """For metrics and the run record: calls by family plus the org's usage."""
        return {
            "calls": dict(self.calls),
            "total": self.total,
            "org_used": self.org_used,
            "org_limit": self.org_limit,
            "org_remaining": self.org_remaining,
        }


@dataclass(frozen=True)
class RecordResult:
    """The outcome for one input record, in input order: its id, or why it was refused."""

    index: int
    success: bool
    id: str | None = None
    created: bool | None = None
    error: RecordRejected | None = None


@dataclass(frozen=True)
class IdQueryResult:
    records: list[dict[str, Any]]
    missing: list[str]  # requested ids no record came back for


@dataclass(frozen=True)
class UpdatedIds:
    ids: list[str]
    latest_date_covered: str | None


@dataclass(frozen=True)
class DeletedRecords:
    records: list[tuple[str, str]]  # (id, deletedDate)
    earliest_date_available: str | None
    latest_date_covered: str | None


@dataclass
class IngestResult:
    """A Bulk 2.0 ingest: one result per input row, in input order."""

    job_ids: list[str]
    results: list[RecordResult]

    @property
    def failures(self) -> dict[int, RecordRejected]:
        return {r.index: r.error for r in self.results if r.error is not None}

    @property
    def succeeded(self) -> int:
        return sum(1 for r in self.results if r.success)


@dataclass(frozen=True)
class BulkPage:
    """One page of a Bulk 2.0 query's results; ``next_locator`` is None after the last.

    ``rows`` stream from the response: read them before asking for the next page.
    """

    job_id: str
    locator: str
    header: list[str]
    rows: Iterator[list[str | None]]
    next_locator: str | None


class BulkJobFailed(RequestFailed):
    """A Bulk 2.0 job ended Failed or Aborted; `message` is Salesforce's errorMessage."""

    def __init__(self, message: str, *, job_id: str, state: str) -> None:
        super().__init__(message, code=state)
        self.job_id = job_id
        self.state = state


def _strip_attributes(record: Any) -> Any:
    if isinstance(record, dict):
        return {k: _strip_attributes(v) for k, v in record.items() if k != "attributes"}
    return record


def soql_datetime(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime(_SOQL_DATETIME)


def soql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# Sized for ", " (the wider of the separators callers use) so chunks fit either way.
_SEPARATOR_BYTES = len(quote_plus(", "))


def soql_in(values: Iterable[str]) -> str:
    """The inside of `IN (...)`: quoted, escaped literals, as `id_chunks` sized them."""
    return ", ".join(soql_string(v) for v in values)


_RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*")


def _check_names(*names: str) -> None:
    # sObject and field names go into SOQL text; refuse anything that is not a plain identifier.
    for name in names:
        if not _IDENT.fullmatch(name):
            raise QueryError(f"not a Salesforce field or object name: {name!r}")


class _IterStream(io.RawIOBase):
    """A readable stream over an iterator of byte chunks (an HTTP body being streamed)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(b), len(self._buffer))
        b[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


class SalesforceClient:
    """One Salesforce org, through one session and one token source."""

    def __init__(
        self,
        instance_url: str,
        token_source: TokenSource,
        session: requests.Session | None = None,
        version: str = "66.0",
        call_client: str = "ctct-sync",
        ca_bundle: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        get_retries: int = 2,
        bulk_poll_max: float = 10.0,
        bulk_timeout: float = 3600.0,
    ) -> None:
        self.instance_url = instance_url.rstrip("/")
        self.version = version.removeprefix("v")
        self.call_client = call_client
        self.token_source = token_source
        self.session = SalesforceSession.adopt(session, timeout=timeout, ca_bundle=ca_bundle)
        self.session.hooks["response"].append(self._count_response)
        self.usage = ApiUsage()
        # Told (used, limit) each time Salesforce reports the org's 24-hour API usage, so that a
        # page can show it after this client is gone (see ``middleware.api_budget``).
        self.on_org_usage: Callable[[int, int], None] | None = None
        self._sleep = sleep
        self._monotonic = monotonic
        self._get_retries = get_retries
        self._bulk_poll_max = bulk_poll_max
        self._bulk_timeout = bulk_timeout
        self._describe_cache: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._token = token_source.access_token()
        self._sf = self._build(self._token)

    # -- plumbing --------------------------------------------------------------------------------

    def _build(self, token: str) -> Salesforce:
        return Salesforce(
            instance_url=self.instance_url,
            session_id=token,
            version=self.version,
            session=self.session,
        )

    @property
    def base_url(self) -> str:
        """`https://host/services/data/vNN.0/` exactly as simple-salesforce builds it."""
        return str(self._sf.base_url)

    @property
    def _write_headers(self) -> dict[str, str]:
        return {"Sforce-Call-Options": f"client={self.call_client}"}

    def _count_response(self, resp: requests.Response, *args: Any, **kwargs: Any) -> None:
        path = urlsplit(resp.url).path
        match = re.search(r"/services/data/v[\d.]+/([^/?]*)", path)
        if match is None:
            return
        head = match.group(1)
        family = {"queryAll": "query", "jobs": "bulk"}.get(head, head) or "resources"
        with self._lock:
            self.usage.calls[family] += 1
            info = resp.headers.get("Sforce-Limit-Info", "")
            usage = re.search(r"(?:^|[;\s])api-usage=(\d+)/(\d+)", info)
            if usage:
                self.usage.org_used, self.usage.org_limit = int(usage[1]), int(usage[2])
        if usage:
            self._report_org_usage()

    def _report_org_usage(self) -> None:
        used, limit, hook = self.usage.org_used, self.usage.org_limit, self.on_org_usage
        if hook is None or used is None or limit is None:
            return
        try:
            hook(used, limit)
        except Exception:  # a page's figure is never worth a failed call
            log.warning("could not record the org's API usage", exc_info=True)

    def _refresh(self, stale: str) -> None:
        with self._lock:
            if self._token != stale:
                return  # another thread of this client already refreshed
            log.info("salesforce session expired; refreshing")
            self._token = self.token_source.refresh(stale)
            self._sf = self._build(self._token)

    def _call(self, fn: Callable[[Salesforce], T], *, idempotent: bool = False) -> T:
        """Run one simple-salesforce call: refresh once on 401, retry GETs on transient errors."""
        refreshed = False
        attempt = 0
        while True:
            token, sf = self._token, self._sf
            try:
                return fn(sf)
            except SimpleSalesforceError as exc:
                err = error_from_response(exc.status, exc.content, exc.url)
            except requests.RequestException as exc:
                err = Retryable(f"Salesforce did not answer: {type(exc).__name__}")
                err.__cause__ = exc
            if isinstance(err, SessionExpired) and not refreshed:
                refreshed = True
                self._refresh(token)
                continue
            if isinstance(err, Retryable) and idempotent and attempt < self._get_retries:
                attempt += 1
                delay = min(2.0**attempt, 30.0)
                log.warning("salesforce %s; retry %d in %.0fs", err.code or "error", attempt, delay)
                self._sleep(delay)
                continue
            raise err

    def _http(
        self,
        method: str,
        path: str,
        *,
        write: bool = False,
        ok: Sequence[int] = (200, 201, 204),
        stream: bool = False,
        **kwargs: Any,
    ) -> requests.Response:
        """A request on our session (Bulk 2.0), with the same refresh and error rules."""
        refreshed = False
        attempt = 0
        url = path if path.startswith("https://") else self.base_url + path.lstrip("/")
        extra_headers = dict(kwargs.pop("headers", {}) or {})
        while True:
            token = self._token
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            headers.update(extra_headers)
            if write:
                headers.update(self._write_headers)
            try:
                resp = self.session.request(method, url, headers=headers, stream=stream, **kwargs)
            except requests.RequestException as exc:
                err: SalesforceError = Retryable(f"Salesforce did not answer: {type(exc).__name__}")
                err.__cause__ = exc
            else:
                if resp.status_code in ok:
                    return resp
                err = error_from_response(resp.status_code, resp.content, url)
            if isinstance(err, SessionExpired) and not refreshed:
                refreshed = True
                self._refresh(token)
                continue
            if isinstance(err, Retryable) and method == "GET" and attempt < self._get_retries:
                attempt += 1
                self._sleep(min(2.0**attempt, 30.0))
                continue
            raise err

    # -- queries ---------------------------------------------------------------------------------

    def query_iter(self, soql: str, include_deleted: bool = False) -> Iterator[dict[str, Any]]:
        """`GET /query` (or `/queryAll`) then every `nextRecordsUrl`: records without attributes."""
        page = self._call(
            lambda sf: sf.query(soql, include_deleted=include_deleted), idempotent=True
        )
        while True:
            for record in page.get("records", []):
                yield _strip_attributes(record)
            next_url = page.get("nextRecordsUrl")
            if page.get("done", True) or not next_url:
                return
            page = self._call(_query_more(next_url), idempotent=True)

    def _request_overhead(self, soql_without_ids: str, include_deleted: bool) -> int:
        """Bytes of one query request besides the ids: request line and every header."""
        url = self.base_url + ("queryAll/" if include_deleted else "query/")
        prepared = self.session.prepare_request(
            requests.Request(
                "GET",
                url,
                params={"q": soql_without_ids},
                headers={**self._sf.headers},
            )
        )
        parts = urlsplit(str(prepared.url))
        target = parts.path + ("?" + parts.query if parts.query else "")
        line = len("GET ") + len(target.encode()) + len(" HTTP/1.1")
        headers = dict(prepared.headers)
        headers.setdefault("Host", parts.netloc)
        header_bytes = sum(len(k) + len(str(v)) + 4 for k, v in headers.items())
        return line + header_bytes

    def id_chunks(
        self,
        soql_prefix: str,
        ids: Sequence[str],
        soql_suffix: str = "",
        *,
        include_deleted: bool = False,
    ) -> Iterator[list[str]]:
        """Split `ids` so each `prefix IN (...) suffix` request stays under 16,384 bytes.

        The size is computed from the real request (URL-encoded SOQL, our headers, the token),
        not guessed, with a margin for headers the transport adds (Content-Length, Connection).
        """
        margin = 256
        empty = f"{soql_prefix} IN () {soql_suffix}".strip()
        budget = MAX_REQUEST_BYTES - margin - self._request_overhead(empty, include_deleted)
        if budget <= 0:
            raise QueryError(
                "the SELECT list alone is too long for one request; select fewer fields"
            )
        chunk: list[str] = []
        used = 0
        for record_id in ids:
            cost = len(quote_plus(soql_string(record_id))) + (_SEPARATOR_BYTES if chunk else 0)
            if chunk and used + cost > budget:
                yield chunk
                chunk, used = [], 0
                cost = len(quote_plus(soql_string(record_id)))
            if cost > budget:
                raise QueryError("one id does not fit a request; select fewer fields")
            chunk.append(record_id)
            used += cost
        if chunk:
            yield chunk

    def query_in(
        self,
        soql_prefix: str,
        values: Sequence[str],
        soql_suffix: str = "",
        *,
        include_deleted: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Rows of `soql_prefix IN (...) soql_suffix` for every value, in as few requests as
        fit 16 KB (:meth:`id_chunks`; a row matching values of two chunks comes back twice)."""
        chunks = self.id_chunks(soql_prefix, values, soql_suffix, include_deleted=include_deleted)
        for chunk in chunks:
            soql = f"{soql_prefix} IN ({soql_in(chunk)}){soql_suffix}"
            yield from self.query_iter(soql, include_deleted=include_deleted)

    def query_by_ids(
        self,
        sobject: str,
        fields: Sequence[str],
        ids: Iterable[str],
        include_deleted: bool = False,
    ) -> IdQueryResult:
        """Records of `sobject` with these ids (`GET /query` in as few requests as fit 16 KB)."""
        _check_names(sobject, *fields)
        wanted = list(dict.fromkeys(ids))
        select = list(dict.fromkeys(["Id", *fields]))
        prefix = f"SELECT {', '.join(select)} FROM {sobject} WHERE Id"
        records: list[dict[str, Any]] = []
        found: set[str] = set()
        for record in self.query_in(prefix, wanted, include_deleted=include_deleted):
            records.append(record)
            found.add(str(record.get("Id", ""))[:15])
        missing = [i for i in wanted if i[:15] not in found]
        return IdQueryResult(records, missing)

    def modified_since(
        self,
        sobject: str,
        fields: Sequence[str],
        since: datetime,
        overlap: timedelta = timedelta(minutes=5),
        include_deleted: bool = True,
    ) -> Iterator[dict[str, Any]]:
        """Records changed since `since - overlap`, oldest first, deleted ones included.

        The catch-up for GAP_OVERFLOW events, wildcard ids and Sync Now: SystemModstamp moves
        on every change (LastModifiedDate may not), and the overlap covers commits that were
        in flight when the last watermark was taken. Callers dedupe by Id + SystemModstamp.
        """
        _check_names(sobject, *fields)
        select = list(dict.fromkeys(["Id", *fields, "SystemModstamp"]))
        if include_deleted:
            select = list(dict.fromkeys([*select, "IsDeleted"]))
        start = soql_datetime(since - overlap)
        soql = (
            f"SELECT {', '.join(select)} FROM {sobject} "
            f"WHERE SystemModstamp >= {start} ORDER BY SystemModstamp"
        )
        return self.query_iter(soql, include_deleted=include_deleted)

    def describe(self, sobject: str, *, refresh: bool = False) -> dict[str, Any]:
        """`GET /sobjects/{sobject}/describe`, cached for the life of this client."""
        _check_names(sobject)
        if refresh or sobject not in self._describe_cache:
            result = self._call(lambda sf: getattr(sf, sobject).describe(), idempotent=True)
            self._describe_cache[sobject] = result
        return self._describe_cache[sobject]

    def list_views(self, sobject: str) -> list[dict[str, Any]]:
        """`GET /sobjects/{sobject}/listviews` and every `nextRecordsUrl`: the object's List
        Views (`id`, `label`, `developerName`, ...)."""
        _check_names(sobject)
        path = f"sobjects/{sobject}/listviews"
        views: list[dict[str, Any]] = []
        while True:
            page = self._http("GET", path).json()
            views += page.get("listviews") or []
            following = page.get("nextRecordsUrl")
            if page.get("done", True) or not following:
                return views
            path = self._data_path(str(following))

    def list_view_query(self, sobject: str, view_id: str) -> str:
        """`GET /sobjects/{sobject}/listviews/{id}/describe`: the view's SOQL (`query`)."""
        _check_names(sobject)
        if not _RECORD_ID.fullmatch(view_id):
            raise QueryError(f"not a List View id: {view_id!r}")
        described = self._http("GET", f"sobjects/{sobject}/listviews/{view_id}/describe").json()
        return str(described.get("query") or "")

    def _data_path(self, url: str) -> str:
        """A `/services/data/vNN.N/...` URL Salesforce returned, relative to our base URL."""
        marker = "/services/data/"
        if marker in url:
            url = url.split(marker, 1)[1]
            return url.split("/", 1)[1] if "/" in url else ""
        return url

    def limits(self) -> dict[str, Any]:
        """`GET /limits`: the org's allocations; also refreshes `usage.org_*`."""
        result: dict[str, Any] = self._call(lambda sf: sf.limits(), idempotent=True)
        daily = result.get("DailyApiRequests") or {}
        if "Max" in daily and "Remaining" in daily:
            with self._lock:
                self.usage.org_limit = int(daily["Max"])
                self.usage.org_used = int(daily["Max"]) - int(daily["Remaining"])
            self._report_org_usage()
        return result

    def updated(self, sobject: str, start: datetime, end: datetime) -> UpdatedIds:
        """`GET /sobjects/{sobject}/updated/?start&end` (getUpdated, by SystemModstamp)."""
        _check_names(sobject)
        body = self._call(
            lambda sf: getattr(sf, sobject).updated(_aware(start), _aware(end)), idempotent=True
        )
        return UpdatedIds(list(body.get("ids") or []), body.get("latestDateCovered"))

    def deleted(self, sobject: str, start: datetime, end: datetime) -> DeletedRecords:
        """`GET /sobjects/{sobject}/deleted/?start&end` (getDeleted, 15 days back at most)."""
        _check_names(sobject)
        body = self._call(
            lambda sf: getattr(sf, sobject).deleted(_aware(start), _aware(end)), idempotent=True
        )
        return DeletedRecords(
            [(r["id"], r.get("deletedDate", "")) for r in body.get("deletedRecords") or []],
            body.get("earliestDateAvailable"),
            body.get("latestDateCovered"),
        )

    # -- writes through sObject Collections ------------------------------------------------------

    def create_many(
        self, sobject: str, records: Sequence[Mapping[str, Any]], all_or_none: bool = False
    ) -> list[RecordResult]:
        """`POST /composite/sobjects`, ≤ 200 records a call; results in input order."""
        return self._collections("POST", "composite/sobjects", sobject, records, all_or_none)

    def create_one(self, sobject: str, record: Mapping[str, Any]) -> str:
        """`POST /sobjects/{sobject}` (1 call): the new record's id. For what collections do
        not take, such as a file's ContentVersion with its base64 ``VersionData``; a record
        Salesforce refuses raises its :class:`RecordRejected`. Not retried (it creates)."""
        _check_names(sobject)
        path = f"sobjects/{sobject}"
        item = self._call(_restful(path, "POST", dict(record), self._write_headers))
        return str(item["id"])

    def update_many(
        self, sobject: str, records: Sequence[Mapping[str, Any]], all_or_none: bool = False
    ) -> list[RecordResult]:
        """`PATCH /composite/sobjects`; every record needs its `Id`."""
        return self._collections("PATCH", "composite/sobjects", sobject, records, all_or_none)

    def upsert_many(
        self,
        sobject: str,
        records: Sequence[Mapping[str, Any]],
        ext_id: str | None = None,
        all_or_none: bool = False,
    ) -> list[RecordResult]:
        """`PATCH /composite/sobjects/{sobject}/{ext_id}`: create or update by external id."""
        if not ext_id:
            raise ValueError("upsert_many needs the external id field (ext_id)")
        _check_names(ext_id)
        path = f"composite/sobjects/{sobject}/{ext_id}"
        return self._collections("PATCH", path, sobject, records, all_or_none, key=ext_id)

    def _collections(
        self,
        method: str,
        path: str,
        sobject: str,
        records: Sequence[Mapping[str, Any]],
        all_or_none: bool,
        key: str | None = None,
    ) -> list[RecordResult]:
        _check_names(sobject)
        need = key or ("Id" if method == "PATCH" else None)
        results: list[RecordResult | None] = [None] * len(records)
        sendable: list[int] = []
        for index, record in enumerate(records):
            if need and not record.get(need):
                results[index] = RecordResult(
                    index,
                    False,
                    error=RecordRejected("MISSING_ARGUMENT", f"{need} not specified", [need]),
                )
            else:
                sendable.append(index)
        for start in range(0, len(sendable), COLLECTION_SIZE):
            chunk = sendable[start : start + COLLECTION_SIZE]
            body = {
                "allOrNone": all_or_none,
                "records": [{"attributes": {"type": sobject}, **records[i]} for i in chunk],
            }
            # PATCH (update, upsert by external id) is idempotent and safe to retry; a create
            # retried after a timeout could duplicate records, so POST is not.
            items = self._call(
                _restful(path, method, body, self._write_headers), idempotent=method == "PATCH"
            )
            if not isinstance(items, list) or len(items) != len(chunk):
                raise RequestFailed(
                    f"collections answered {len(items) if isinstance(items, list) else 'no'} "
                    f"results for {len(chunk)} records"
                )
            for index, item in zip(chunk, items, strict=True):
                if item.get("success"):
                    results[index] = RecordResult(
                        index, True, id=item.get("id"), created=item.get("created")
                    )
                else:
                    errors = item.get("errors") or [{}]
                    results[index] = RecordResult(
                        index, False, id=item.get("id"), error=record_error(errors[0])
                    )
        return [r for r in results if r is not None]

    # -- Bulk API 2.0 ----------------------------------------------------------------------------

    def _wait_for_job(
        self, kind: str, job_id: str, poll_max: float | None = None
    ) -> dict[str, Any]:
        """Poll `GET /jobs/{kind}/{id}` with backoff (pauses up to ``poll_max``, default the
        client's ``bulk_poll_max``) until the job is done."""
        cap = self._bulk_poll_max if poll_max is None else poll_max
        delay = min(0.5, cap)
        deadline = self._monotonic() + self._bulk_timeout
        while True:
            info: dict[str, Any] = self._http("GET", f"jobs/{kind}/{job_id}").json()
            state = info.get("state")
            if state == "JobComplete":
                return info
            if state in ("Failed", "Aborted"):
                message = info.get("errorMessage") or f"the job ended {state}"
                raise BulkJobFailed(message, job_id=job_id, state=str(state))
            if self._monotonic() > deadline:
                raise Retryable(f"Bulk job {job_id} still {state} after {self._bulk_timeout:.0f}s")
            self._sleep(delay)
            delay = min(delay * 1.5, cap)

    def _csv_rows(self, resp: requests.Response) -> Iterator[list[str]]:
        stream = io.TextIOWrapper(
            io.BufferedReader(_IterStream(resp.iter_content(64 * 1024)), 64 * 1024),
            encoding="utf-8",
            newline="",
        )
        try:
            yield from csv.reader(line.replace("\0", "") for line in stream)
        finally:
            resp.close()

    def bulk_query(
        self, soql: str, include_deleted: bool = False, page_size: int = 50_000
    ) -> Iterator[dict[str, Any]]:
        """Bulk 2.0 query (`POST /jobs/query`, poll, `GET .../results?locator=`), row by row.

        Holds at most one page; rows are dicts keyed by the CSV header, empty cells None. A
        session that expires mid-job is refreshed and the same locator fetched again.
        """
        job_id = self.start_bulk_query(soql, include_deleted)
        for page in self.bulk_query_pages(job_id, page_size=page_size):
            for row in page.rows:
                yield dict(zip(page.header, row, strict=False))

    def start_bulk_query(
        self, soql: str, include_deleted: bool = False, *, poll_max: float | None = None
    ) -> str:
        """`POST /jobs/query`, then poll `GET /jobs/query/{id}` until it completes; the job id.

        ``poll_max`` caps the pause between status polls (default ``bulk_poll_max``): a caller
        that waits on the results can trade a few polls for reading them seconds earlier.
        """
        job = self._http(
            "POST",
            "jobs/query",
            json={
                "operation": "queryAll" if include_deleted else "query",
                "query": soql,
                "contentType": "CSV",
                "columnDelimiter": "COMMA",
                "lineEnding": "LF",
            },
        ).json()
        job_id = str(job["id"])
        self._wait_for_job("query", job_id, poll_max)
        return job_id

    def bulk_query_pages(
        self,
        job_id: str,
        locator: str | None = None,
        *,
        page_size: int = 50_000,
        blank: str | None = None,
    ) -> Iterator[BulkPage]:
        """A completed Bulk 2.0 query's results from ``locator`` on (`GET .../results`, 1 call a
        page): each page's header, rows (lists, empty cells ``blank``: None unless a caller
        that treats both alike asks for ``""``, which spares a pass over every cell) and the
        next page's locator.

        Results stay readable for days, so a run that stopped after a page goes on from its
        ``next_locator`` instead of querying again.
        """
        pages = 0
        while True:
            params: dict[str, Any] = {"maxRecords": page_size}
            if locator:
                params["locator"] = locator
            resp = self._http(
                "GET",
                f"jobs/query/{job_id}/results",
                params=params,
                headers={"Accept": "text/csv"},
                stream=True,
            )
            next_locator = resp.headers.get("Sforce-Locator", "")
            if next_locator == "null":
                next_locator = ""
            rows = self._csv_rows(resp)
            header = next(rows, None) or []
            body = (
                cast(Iterator[list[str | None]], rows)  # the cells as they came
                if blank == ""
                else ([v or blank for v in row] for row in rows)
            )
            pages += 1
            yield BulkPage(job_id, locator or "", header, body, next_locator or None)
            if not next_locator:
                log.info("bulk query %s: %d page(s)", job_id, pages)
                return
            locator = next_locator

    def bulk_ingest(
        self,
        sobject: str,
        operation: str,
        rows: Sequence[Mapping[str, Any]],
        ext_id: str | None = None,
        *,
        max_job_bytes: int = MAX_INGEST_BYTES,
    ) -> IngestResult:
        """Bulk 2.0 ingest: create, `PUT .../batches`, close, poll, then read every row's result.

        `operation` is insert, update, upsert (needs `ext_id`) or delete. `None` values are sent
        as `#N/A` (set to null); absent keys leave fields untouched only if no row has them.
        Input larger than `max_job_bytes` of CSV is split over several jobs.
        """
        if operation not in ("insert", "update", "upsert", "delete", "hardDelete"):
            raise ValueError(f"unknown Bulk 2.0 operation {operation!r}")
        if operation == "upsert" and not ext_id:
            raise ValueError("upsert needs the external id field (ext_id)")
        _check_names(sobject, *([ext_id] if ext_id else []))
        columns = list(dict.fromkeys(k for row in rows for k in row))
        if operation in ("delete", "hardDelete"):
            columns = ["Id"]
        _check_names(*columns)

        def cell(value: Any) -> str:
            if value is None:
                return NULL
            if isinstance(value, bool):
                return "true" if value else "false"
            if isinstance(value, datetime):
                return soql_datetime(value)
            return str(value)

        # One CSV line per row, keyed by its text: results come back unordered and carry the
        # original columns, so the text of those columns finds the input row again.
        lines: list[str] = []
        for row in rows:
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\n").writerow([cell(row.get(c)) for c in columns])
            lines.append(buffer.getvalue())
        header_line = io.StringIO()
        csv.writer(header_line, lineterminator="\n").writerow(columns)

        job_ids: list[str] = []
        results: list[RecordResult | None] = [None] * len(rows)
        start = 0
        while start < len(lines):
            size = len(header_line.getvalue().encode())
            end = start
            while end < len(lines) and (
                end == start or size + len(lines[end].encode()) <= max_job_bytes
            ):
                size += len(lines[end].encode())
                end += 1
            job_id = self._ingest_job(
                sobject,
                operation,
                ext_id,
                header_line.getvalue(),
                lines,
                start,
                end,
                columns,
                results,
            )
            job_ids.append(job_id)
            start = end
        return IngestResult(job_ids, [r for r in results if r is not None])

    def _ingest_job(
        self,
        sobject: str,
        operation: str,
        ext_id: str | None,
        header_line: str,
        lines: list[str],
        start: int,
        end: int,
        columns: list[str],
        results: list[RecordResult | None],
    ) -> str:
        spec: dict[str, Any] = {
            "object": sobject,
            "operation": operation,
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        }
        if ext_id:
            spec["externalIdFieldName"] = ext_id
        job = self._http("POST", "jobs/ingest", json=spec, write=True).json()
        job_id = job["id"]
        body = (header_line + "".join(lines[start:end])).encode()
        try:
            self._http(
                "PUT",
                f"jobs/ingest/{job_id}/batches",
                data=body,
                headers={"Content-Type": "text/csv"},
                write=True,
                ok=(201, 200),
            )
            self._http(
                "PATCH", f"jobs/ingest/{job_id}", json={"state": "UploadComplete"}, write=True
            )
        except SalesforceError:
            self._abort(job_id)
            raise
        self._wait_for_job("ingest", job_id)

        pending: dict[tuple[str, ...], list[int]] = {}
        for index in range(start, end):
            key = tuple(next(csv.reader([lines[index]])))
            pending.setdefault(key, []).append(index)

        def take(original: list[str]) -> int | None:
            indexes = pending.get(tuple(original))
            return indexes.pop(0) if indexes else None

        width = len(columns)
        for row in self._result_rows(job_id, "successfulResults"):
            hit = take(row[2 : 2 + width])
            if hit is not None:
                created = row[1].lower() == "true" if len(row) > 1 else None
                results[hit] = RecordResult(hit, True, id=row[0] or None, created=created)
        for row in self._result_rows(job_id, "failedResults"):
            hit = take(row[2 : 2 + width])
            if hit is not None:
                results[hit] = RecordResult(
                    hit, False, id=row[0] or None, error=parse_bulk_error(row[1])
                )
        for row in self._result_rows(job_id, "unprocessedrecords"):
            hit = take(row[:width])
            if hit is not None:
                results[hit] = RecordResult(
                    hit,
                    False,
                    error=RecordRejected("UNPROCESSED", "the job ended before this row ran"),
                )
        for index in range(start, end):
            if results[index] is None:
                results[index] = RecordResult(
                    index,
                    False,
                    error=RecordRejected("UNPROCESSED", "no result came back for this row"),
                )
        return str(job_id)

    def _result_rows(self, job_id: str, which: str) -> Iterator[list[str]]:
        resp = self._http(
            "GET", f"jobs/ingest/{job_id}/{which}", headers={"Accept": "text/csv"}, stream=True
        )
        rows = self._csv_rows(resp)
        next(rows, None)  # header
        yield from rows

    def _abort(self, job_id: str) -> None:
        try:
            self._http("PATCH", f"jobs/ingest/{job_id}", json={"state": "Aborted"}, write=True)
        except SalesforceError as exc:
            log.warning("could not abort bulk job %s: %s", job_id, exc.code)


def parse_bulk_error(text: str) -> RecordRejected:
    """`REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --` → error."""
    text = text.strip()
    if text.endswith("--"):
        text = text[:-2].rstrip()
    code, sep, rest = text.partition(":")
    if not sep or not re.fullmatch(r"[A-Z_]+", code):
        return RecordRejected("UNKNOWN", text)
    message, sep, tail = rest.rpartition(":")
    if sep and re.fullmatch(r"[A-Za-z0-9_.,\s]*", tail):
        fields = [f.strip() for f in tail.split(",") if f.strip()]
        return RecordRejected(code, message.strip(), fields)
    return RecordRejected(code, rest.strip())


def _query_more(url: str) -> Callable[[Salesforce], Any]:
    def call(sf: Salesforce) -> Any:
        return sf.query_more(url, identifier_is_url=True)

    return call


def _restful(
    path: str, method: str, body: Any, headers: dict[str, str]
) -> Callable[[Salesforce], Any]:
    def call(sf: Salesforce) -> Any:
        return sf.restful(path, method=method, json=body, headers=headers)

    return call


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


__all__ = [
    "ApiUsage",
    "BulkJobFailed",
    "DeletedRecords",
    "IdQueryResult",
    "IngestResult",
    "RecordResult",
    "SalesforceClient",
    "SalesforceSession",
    "UpdatedIds",
]
