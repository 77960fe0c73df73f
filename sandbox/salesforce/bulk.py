"""Bulk API 2.0: query jobs streamed from disk, ingest jobs processed through the store.

Routes live under `/services/data/v<version>/jobs/` and are authenticated like the REST API.

Query jobs run the SOQL through the store when created (so bad SOQL is a 400 at once) and spool
its lazy rows to a temporary CSV file on a background thread; result pages are served from that
file by seeking, so memory stays flat however many rows a job has. Ingest jobs take one or more
CSV uploads, and on `UploadComplete` a background thread writes each row through the store (so it
validates and produces change events, tagged with the job's `Sforce-Call-Options` client) and
records successful, failed and unprocessed rows as CSV files.

A job's state moves on its status polls, as Salesforce's appear to: UploadComplete, then
InProgress for BULK_STEPS polls (and for as long as the work is still running), then JobComplete,
Failed or Aborted. `BulkJobs.wait(job_id)` lets a test wait for the work deterministically.

Config keys (all optional): BULK_STEPS (1), BULK_POLL_WAIT (0.05 s a poll of a busy job waits
for it), BULK_INDEX_EVERY (1000), BULK_DEFAULT_PAGE (100000 rows without maxRecords),
BULK_TMPDIR, BULK_MAX_JOBS (1000), BULK_JOB_TTL_DAYS (7).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import itertools
import json
import logging
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, Response, jsonify, request

from sandbox.salesforce import auth
from sandbox.salesforce._csvspool import (
    DELIMITERS,
    LINE_ENDINGS,
    CsvSpool,
    bulk_cell,
    column_getter,
)
from sandbox.salesforce.org import current_sandbox
from sandbox.salesforce.store import SalesforceError

log = logging.getLogger(__name__)

bp = Blueprint("sf_bulk", __name__, url_prefix="/services/data")

QUERY_OPERATIONS = ("query", "queryAll")
INGEST_OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
TERMINAL = ("JobComplete", "Failed", "Aborted")
COMPOUND_NAMES = frozenset(
    {
        "MailingAddress",
        "OtherAddress",
        "BillingAddress",
        "ShippingAddress",
        "Address",
        "PersonMailingAddress",
        "PersonOtherAddress",
    }
)
ROW_CHUNK = 200  # rows per store round (and per external-id lookup), like trigger chunks


class BulkError(Exception):
    """A Bulk API 2.0 refusal: `[{"errorCode", "message"}]` with its HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> Response:
        resp = jsonify([{"errorCode": self.code, "message": self.message}])
        resp.status_code = self.status
        return resp


def _sf_time(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}+0000"


def _strip_literals(soql: str) -> str:
    return re.sub(r"'(?:[^'\\]|\\.)*'", "''", soql)


def check_bulk_soql(soql: str, schema: Any = None) -> None:
    """Refuse what Bulk API 2.0 cannot run, with the messages Salesforce gives."""
    text = _strip_literals(soql)
    upper = text.upper()
    select = re.match(r"\s*SELECT\s+(.*?)\s+FROM\s+(\w+)", text, re.IGNORECASE | re.DOTALL)
    if select and re.search(r"\(\s*SELECT\b", select.group(1), re.IGNORECASE):
        raise BulkError(
            400,
            "FUNCTIONALITY_NOT_ENABLED",
            "Aggregate Relationships not supported in Bulk V2 Query with CSV content type",
        )
    if re.search(r"\b(COUNT|COUNT_DISTINCT|SUM|AVG|MIN|MAX)\s*\(", upper) or re.search(
        r"\bGROUP\s+BY\b", upper
    ):
        raise BulkError(
            400, "FUNCTIONALITY_NOT_ENABLED", "Aggregate queries are not supported by Bulk API"
        )
    if re.search(r"\bOFFSET\b", upper):
        raise BulkError(400, "FUNCTIONALITY_NOT_ENABLED", "OFFSET is not supported by Bulk API")
    if re.search(r"\bTYPEOF\b", upper):
        raise BulkError(400, "FUNCTIONALITY_NOT_ENABLED", "TYPEOF is not supported by Bulk API")
    if re.search(r"\bFIELDS\s*\(", upper):
        raise BulkError(400, "FUNCTIONALITY_NOT_ENABLED", "FIELDS() is not supported by Bulk API")
    if select:
        items = [i.strip() for i in select.group(1).split(",")]
        obj = schema.sobject(select.group(2)) if schema is not None else None
        for item in items:
            name = item.split(".")[-1]
            compound = name in COMPOUND_NAMES
            fd = obj.field(name) if obj is not None and "." not in item else None
            if obj is not None and "." not in item:
                compound = fd is not None and fd.type in ("address", "location")
            if compound:
                raise BulkError(
                    400,
                    "FUNCTIONALITY_NOT_ENABLED",
                    "Selecting compound data not supported in Bulk Query",
                )
            if fd is not None and fd.type == "base64":
                # File bodies never travel in a Bulk query's CSV.
                raise BulkError(
                    400,
                    "FUNCTIONALITY_NOT_ENABLED",
                    "Selecting base64 fields is not supported in Bulk Query",
                )


def _bool_cell(value: Any) -> str:
    return "" if value is None else ("true" if value else "false")


def _datetime_cell(value: Any) -> Any:
    if isinstance(value, str) and value.endswith("+0000"):
        return value[:-5] + "Z"
    return value


_PLAIN_TYPES = frozenset(
    {
        "id",
        "reference",
        "string",
        "textarea",
        "email",
        "phone",
        "url",
        "picklist",
        "multipicklist",
        "combobox",
        "date",
        "int",
        "double",
        "currency",
        "percent",
        "encryptedstring",
    }
)


def _cell_converter(kind: str | None) -> Callable[[Any], Any] | None:
    """How one column's values become CSV cells; None when the csv writer's own str() is right."""
    if kind == "boolean":
        return _bool_cell
    if kind == "datetime":
        return _datetime_cell
    if kind in _PLAIN_TYPES:
        return None
    return bulk_cell  # unknown type: decide per value


def _object_of(soql: str) -> str:
    m = re.search(r"\bFROM\s+(\w+)", _strip_literals(soql), re.IGNORECASE)
    return m.group(1) if m else ""


def _client_of(header: str) -> str | None:
    """The `client=` part of `Sforce-Call-Options: client=x, defaultNamespace=y`."""
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key.strip() == "client" and value.strip():
            return value.strip()
    return None


@dataclass
class Job:
    id: str
    kind: str  # "query" | "ingest"
    operation: str
    object: str
    api_version: str
    created: datetime
    created_by: str
    delimiter_name: str = "COMMA"
    line_ending_name: str = "LF"
    state: str = "UploadComplete"
    modstamp: datetime | None = None
    query: str = ""
    external_id: str | None = None
    client: str | None = None
    error_message: str | None = None
    polls: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    abort: threading.Event = field(default_factory=threading.Event)
    final_state: str = "JobComplete"
    thread: threading.Thread | None = None
    started: float = 0.0
    elapsed_ms: int = 0
    # query jobs
    spool: CsvSpool | None = None
    locator_key: bytes = b""
    # ingest jobs
    upload: Any = None  # temporary file of the uploaded CSV
    uploaded_bytes: int = 0
    upload_header: list[str] | None = None
    success: CsvSpool | None = None
    failure: CsvSpool | None = None
    unprocessed: CsvSpool | None = None
    processed: int = 0
    failed: int = 0

    @property
    def delimiter(self) -> str:
        return DELIMITERS[self.delimiter_name]

    @property
    def line_ending(self) -> str:
        return LINE_ENDINGS[self.line_ending_name]

    def close_files(self) -> None:
        for spool in (self.spool, self.success, self.failure, self.unprocessed):
            if spool is not None:
                spool.close()
        if self.upload is not None:
            self.upload.close()


class BulkJobs:
    """Every Bulk API 2.0 job of the sandbox org."""

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        cfg = sandbox.config
        self.steps = int(cfg.get("BULK_STEPS", 1))
        self.poll_wait = float(cfg.get("BULK_POLL_WAIT", 0.05))
        self.index_every = int(cfg.get("BULK_INDEX_EVERY", 1000))
        self.default_page = int(cfg.get("BULK_DEFAULT_PAGE", 100000))
        self.tmpdir: str | None = cfg.get("BULK_TMPDIR")
        self.max_jobs = int(cfg.get("BULK_MAX_JOBS", 1000))
        self.ttl = timedelta(days=float(cfg.get("BULK_JOB_TTL_DAYS", 7)))
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._seq = itertools.count(1)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _now(self) -> datetime:
        return self.sandbox.clock.now()  # type: ignore[no-any-return]

    def _new_id(self) -> str:
        return f"750SB{next(self._seq):010d}AAA"

    def _add(self, job: Job) -> Job:
        with self._lock:
            self._prune()
            self._jobs[job.id] = job
        return job

    def _prune(self) -> None:
        # Salesforce deletes finished jobs after 7 days; we also cap how many temp files we hold.
        cutoff = self._now() - self.ttl
        finished = [j for j in self._jobs.values() if j.done.is_set()]
        for job in finished:
            if (job.modstamp or job.created) < cutoff:
                self._drop(job.id)
        overflow = len(self._jobs) - self.max_jobs + 1
        for job in sorted(finished, key=lambda j: j.created)[: max(0, overflow)]:
            self._drop(job.id)

    def _drop(self, job_id: str) -> None:
        job = self._jobs.pop(job_id, None)
        if job is not None:
            job.abort.set()
            job.close_files()

    def get(self, job_id: str, kind: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or job.kind != kind:
            raise BulkError(404, "NOT_FOUND", "The requested resource does not exist")
        return job

    def jobs_of(self, kind: str) -> list[Job]:
        with self._lock:
            return sorted(
                (j for j in self._jobs.values() if j.kind == kind), key=lambda j: j.created
            )

    def delete(self, job_id: str, kind: str) -> None:
        job = self.get(job_id, kind)
        state = self._state(job)
        if state not in TERMINAL and not (kind == "ingest" and state == "Open"):
            raise BulkError(
                400,
                "INVALIDJOBSTATE",
                f"Job {job_id} cannot be deleted while its state is {state}",
            )
        with self._lock:
            self._drop(job_id)

    def reset(self) -> None:
        with self._lock:
            for job_id in list(self._jobs):
                self._drop(job_id)

    def wait(self, job_id: str, timeout: float = 30.0) -> str:
        """Wait for a job's background work; later polls see its final state. For tests."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise KeyError(job_id)
        if job.state not in ("Open",) and not job.done.wait(timeout):
            raise TimeoutError(f"bulk job {job_id} still running after {timeout}s")
        job.polls = max(job.polls, self.steps + 1)
        return self._state(job)

    def _state(self, job: Job) -> str:
        if job.state in ("Open", "Aborted"):
            return job.state
        if not job.done.is_set() or job.polls <= self.steps:
            return job.state if job.polls == 0 else "InProgress"
        return job.final_state

    def poll(self, job: Job) -> str:
        """One status poll: the state moves only as clients look at it."""
        if job.state not in ("Open", "Aborted") and not job.done.is_set() and self.poll_wait:
            job.done.wait(self.poll_wait)
        job.polls += 1
        return self._state(job)

    def _finish(self, job: Job, state: str, error: str | None = None) -> None:
        job.final_state = state
        job.error_message = error
        job.modstamp = self._now()
        job.elapsed_ms = int((time.monotonic() - job.started) * 1000) if job.started else 0
        job.done.set()

    def _run(self, job: Job, work: Callable[[Job], None]) -> None:
        job.started = time.monotonic()

        def target() -> None:
            try:
                work(job)
            except Exception as exc:  # a job that breaks must fail visibly, not hang InProgress
                log.exception("bulk job %s failed", job.id)
                self._finish(job, "Failed", f"InternalError : {exc}")

        job.thread = threading.Thread(target=target, name=f"bulk-{job.id}", daemon=True)
        job.thread.start()

    # -- job info ------------------------------------------------------------------------------

    def info(self, job: Job, state: str | None = None) -> dict[str, Any]:
        state = state or self._state(job)
        body: dict[str, Any] = {
            "id": job.id,
            "operation": job.operation,
            "object": job.object,
            "createdById": job.created_by,
            "createdDate": _sf_time(job.created),
            "systemModstamp": _sf_time(job.modstamp or job.created),
            "state": state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(job.api_version),
            "lineEnding": job.line_ending_name,
            "columnDelimiter": job.delimiter_name,
        }
        finished = state in TERMINAL and job.done.is_set()
        if job.kind == "query":
            body["jobType"] = "V2Query"
            body["numberRecordsProcessed"] = job.spool.rows if finished and job.spool else 0
        else:
            body["jobType"] = "V2Ingest"
            body["externalIdFieldName"] = job.external_id
            body["contentUrl"] = f"services/data/v{job.api_version}/jobs/ingest/{job.id}/batches"
            body["numberRecordsProcessed"] = job.processed
            body["numberRecordsFailed"] = job.failed
            body["apexProcessingTime"] = 0
            body["apiActiveProcessingTime"] = job.elapsed_ms
        body["retries"] = 0
        body["totalProcessingTime"] = job.elapsed_ms if finished else 0
        if state == "Failed" and job.error_message:
            body["errorMessage"] = job.error_message
        return body

    # -- query jobs ----------------------------------------------------------------------------

    def create_query(self, version: str, body: dict[str, Any], client: str | None = None) -> Job:
        operation = body.get("operation", "query")
        if operation not in QUERY_OPERATIONS:
            raise BulkError(400, "INVALIDJOB", f"Invalid operation for query job: {operation}")
        soql = body.get("query")
        if not isinstance(soql, str) or not soql.strip():
            raise BulkError(400, "INVALIDJOB", "Query is required for query jobs")
        delimiter, line_ending = self._format(body)
        store = self.sandbox.store
        check_bulk_soql(soql, getattr(store, "schema", None))
        result = store.query(soql, include_deleted=(operation == "queryAll"))
        job = Job(
            id=self._new_id(),
            kind="query",
            operation=operation,
            object=_object_of(soql),
            api_version=version,
            created=self._now(),
            created_by=self.sandbox.config["USER_ID"],
            delimiter_name=delimiter,
            line_ending_name=line_ending,
            query=soql,
            client=client,
            locator_key=secrets.token_bytes(16),
        )
        job.spool = CsvSpool(
            list(result.columns),
            job.delimiter,
            job.line_ending,
            index_every=self.index_every,
            tmpdir=self.tmpdir,
        )
        self._add(job)
        self._run(job, lambda j: self._spool_query(j, result))
        return job

    def _spool_query(self, job: Job, result: Any) -> None:
        assert job.spool is not None
        columns = list(job.spool.header)
        convert = [_cell_converter(self._column_type(job.object, c)) for c in columns]
        # Only the columns that need it get a Python call per cell; text, numbers and nulls go
        # to the csv writer as they are (it writes None as an empty field).
        special = [(i, f) for i, f in enumerate(convert) if f is not None]
        nested = [(i, column_getter(c)) for i, c in enumerate(columns) if "." in c]

        def rows() -> Iterator[list[Any]]:
            for row in result.rows:
                values = [row.get(c) for c in columns]
                for i, get in nested:
                    values[i] = get(row)
                for i, fmt in special:
                    values[i] = fmt(values[i])
                yield values

        job.spool.write_rows(rows(), should_stop=job.abort.is_set)
        if job.abort.is_set():
            return
        self._finish(job, "JobComplete")

    def _column_type(self, sobject: str, path: str) -> str | None:
        """The describe type of a select-list path, or None when the schema cannot tell."""
        schema = getattr(self.sandbox.store, "schema", None)
        obj = schema.sobject(sobject) if schema is not None else None
        if obj is None:
            return None
        assert schema is not None
        *relations, name = path.split(".")
        for rel in relations:
            fd = obj.relationship(rel)
            if fd is None or not fd.reference_to:
                return None
            obj = schema.sobject(fd.reference_to[0])
            if obj is None:
                return None
        fd = obj.field(name)
        return str(fd.type) if fd is not None else None

    def _locator(self, job: Job, row: int) -> str:
        mac = hmac.new(job.locator_key, str(row).encode(), hashlib.sha256).digest()[:6]
        masked = row ^ int.from_bytes(job.locator_key[:6], "big")
        raw = masked.to_bytes(6, "big") + mac
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _row_of(self, job: Job, locator: str) -> int:
        try:
            raw = base64.urlsafe_b64decode(locator + "=" * (-len(locator) % 4))
        except ValueError:
            raw = b""
        if len(raw) == 12:
            row = int.from_bytes(raw[:6], "big") ^ int.from_bytes(job.locator_key[:6], "big")
            mac = hmac.new(job.locator_key, str(row).encode(), hashlib.sha256).digest()[:6]
            if hmac.compare_digest(mac, raw[6:]):
                return row
        raise BulkError(400, "INVALIDLOCATOR", f"Invalid locator: {locator}")

    def results_page(
        self, job: Job, version: str, locator: str | None, max_records: int | None
    ) -> tuple[int, int, int, str]:
        """(begin, end, rows, next locator) of one result page."""
        if version != job.api_version:
            raise BulkError(
                409,
                "INVALIDVERSION",
                f"The job was created with API version {job.api_version}; "
                f"request its results with the same version, not {version}",
            )
        state = self._state(job)
        if state != "JobComplete":
            raise BulkError(
                412,
                "JOB_NOT_COMPLETE",
                f"Job {job.id} is not complete. Current status: "
                f"{re.sub(r'(?<!^)(?=[A-Z])', '_', state).upper()}",
            )
        assert job.spool is not None
        start = self._row_of(job, locator) if locator and locator != "null" else 0
        page = max_records if max_records and max_records > 0 else self.default_page
        begin, end, count = job.spool.page_span(start, page)
        following = start + count
        next_locator = self._locator(job, following) if following < job.spool.rows else "null"
        return begin, end, count, next_locator

    # -- ingest jobs ---------------------------------------------------------------------------

    def create_ingest(self, version: str, body: dict[str, Any], client: str | None = None) -> Job:
        operation = body.get("operation")
        if operation not in INGEST_OPERATIONS:
            raise BulkError(
                400,
                "INVALIDJOB",
                f"InvalidJob : Invalid operation: {operation}; use one of "
                + ", ".join(INGEST_OPERATIONS),
            )
        obj = body.get("object")
        if not isinstance(obj, str) or not obj:
            raise BulkError(400, "INVALIDJOB", "InvalidJob : Object is required")
        obj = self._canonical_object(obj)
        external_id = body.get("externalIdFieldName")
        if operation == "upsert" and not external_id:
            raise BulkError(
                400,
                "INVALIDJOB",
                f"InvalidJob : External ID was blank for {obj}. An External ID must be "
                "specified for upsert.",
            )
        if body.get("contentType", "CSV") != "CSV":
            raise BulkError(400, "INVALIDJOB", "InvalidJob : contentType must be CSV")
        delimiter, line_ending = self._format(body)
        job = Job(
            id=self._new_id(),
            kind="ingest",
            operation=operation,
            object=obj,
            api_version=version,
            created=self._now(),
            created_by=self.sandbox.config["USER_ID"],
            delimiter_name=delimiter,
            line_ending_name=line_ending,
            state="Open",
            external_id=external_id or None,
            client=client,
        )
        return self._add(job)

    def _canonical_object(self, name: str) -> str:
        schema = getattr(self.sandbox.store, "schema", None)
        if schema is None:
            return name
        obj = schema.sobject(name)
        if obj is None:
            raise BulkError(
                400,
                "INVALIDENTITY",
                f"InvalidEntity : Entity '{name}' is not supported by the Bulk API.",
            )
        return str(obj.name)

    @staticmethod
    def _format(body: dict[str, Any]) -> tuple[str, str]:
        delimiter = body.get("columnDelimiter", "COMMA")
        line_ending = body.get("lineEnding", "LF")
        if delimiter not in DELIMITERS:
            raise BulkError(400, "INVALIDJOB", f"InvalidJob : Invalid columnDelimiter: {delimiter}")
        if line_ending not in LINE_ENDINGS:
            raise BulkError(400, "INVALIDJOB", f"InvalidJob : Invalid lineEnding: {line_ending}")
        return delimiter, line_ending

    def upload(self, job: Job, data: bytes) -> None:
        if job.state != "Open":
            raise BulkError(
                409,
                "INVALIDJOBSTATE",
                f"Job {job.id} is not open for uploads (state: {self._state(job)})",
            )
        if not data.strip():
            raise BulkError(400, "INVALIDBATCH", "InvalidBatch : Empty batch")
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        first_line = data.split(b"\n", 1)[0].decode("utf-8", "replace").rstrip("\r")
        header = next(csv.reader([first_line], delimiter=job.delimiter), [])
        if job.upload is None:
            job.upload = tempfile.TemporaryFile(dir=self.tmpdir)  # noqa: SIM115
            job.upload_header = header
        else:
            # A later upload repeats the header; its rows continue the first upload's.
            if header != job.upload_header:
                raise BulkError(
                    400, "INVALIDBATCH", "InvalidBatch : Every upload must repeat the same header"
                )
            data = data.split(b"\n", 1)[1] if b"\n" in data else b""
            if job.uploaded_bytes and not self._ends_with_newline(job):
                job.upload.write(job.line_ending.encode())
        job.upload.write(data)
        job.uploaded_bytes += len(data)
        job.modstamp = self._now()

    @staticmethod
    def _ends_with_newline(job: Job) -> bool:
        job.upload.seek(-1, 2)
        last = job.upload.read(1)
        job.upload.seek(0, 2)
        return bool(last == b"\n")

    def set_state(self, job: Job, state: Any) -> Job:
        current = self._state(job)
        if state == "Aborted":
            if current in TERMINAL:
                raise BulkError(
                    400,
                    "INVALIDJOBSTATE",
                    f"Job state change from {current} to Aborted is not allowed",
                )
            job.abort.set()
            job.state = "Aborted"
            job.final_state = "Aborted"
            job.modstamp = self._now()
            if job.thread is None:
                if job.kind == "ingest" and job.upload is not None:
                    # Rows uploaded but never processed come back as unprocessed records.
                    self._run(job, self._ingest)
                else:
                    job.done.set()
            return job
        if state == "UploadComplete" and job.kind == "ingest":
            if current != "Open":
                raise BulkError(
                    400,
                    "INVALIDJOBSTATE",
                    f"Job state change from {current} to UploadComplete is not allowed",
                )
            job.state = "UploadComplete"
            job.modstamp = self._now()
            self._run(job, self._ingest)
            return job
        raise BulkError(400, "INVALIDJOBSTATE", f"Job state change to {state} is not allowed")

    # The ingest worker ----------------------------------------------------------------------

    def _ingest(self, job: Job) -> None:
        if job.upload is None or not job.uploaded_bytes:
            self._finish(job, "Failed", "InvalidBatch : No data was uploaded for this job")
            return
        job.upload.seek(0)
        text = io.TextIOWrapper(job.upload, encoding="utf-8", newline="")
        reader = csv.reader(text, delimiter=job.delimiter)
        header = [h.strip() for h in next(reader, [])]
        problem = self._header_problem(job, header)
        if problem:
            text.detach()
            self._finish(job, "Failed", problem)
            return
        spool_args = {
            "delimiter": job.delimiter,
            "line_ending": job.line_ending,
            "index_every": self.index_every,
            "tmpdir": self.tmpdir,
        }
        job.success = CsvSpool(["sf__Id", "sf__Created", *header], **spool_args)  # type: ignore[arg-type]
        job.failure = CsvSpool(["sf__Id", "sf__Error", *header], **spool_args)  # type: ignore[arg-type]
        job.unprocessed = CsvSpool(list(header), **spool_args)  # type: ignore[arg-type]
        origin = f"com/salesforce/api/bulkapi/{job.api_version}"
        if job.client:
            origin += f";client={job.client}"
        writer = _RowWriter(self.sandbox.store, job, header, origin)
        chunk: list[list[str]] = []
        aborted = False
        for row in reader:
            if not any(cell for cell in row):
                continue  # blank lines are not records
            if aborted or job.abort.is_set():
                aborted = True
                job.unprocessed.append_row(row)
                continue
            chunk.append(row)
            if len(chunk) >= ROW_CHUNK:
                writer.write(chunk)
                chunk = []
        if chunk and not job.abort.is_set():
            writer.write(chunk)
        elif chunk:
            job.unprocessed.write_rows(chunk)
        text.detach()
        if job.abort.is_set():
            self._finish(job, "Aborted")
            return
        self._finish(job, "JobComplete")

    def _header_problem(self, job: Job, header: list[str]) -> str | None:
        if not header or not any(header):
            return "InvalidBatch : Field names are missing from the header row"
        if len(set(header)) != len(header):
            return "InvalidBatch : Duplicate field names in the header row"
        if job.operation in ("delete", "hardDelete") and header != ["Id"]:
            return f"InvalidBatch : The '{job.operation}' batch must contain only ids"
        if job.operation == "update" and "Id" not in header:
            return "InvalidBatch : Field name not found : Id"
        if job.operation == "upsert" and job.external_id not in header:
            return f"InvalidBatch : Field name not found : {job.external_id}"
        schema = getattr(self.sandbox.store, "schema", None)
        obj = schema.sobject(job.object) if schema is not None else None
        if obj is None:
            return None
        assert schema is not None
        for name in header:
            if "." in name:
                rel, _, ext = name.partition(".")
                fd = obj.relationship(rel)
                parent = schema.sobject(fd.reference_to[0]) if fd and fd.reference_to else None
                if parent is None or parent.field(ext) is None:
                    return f"InvalidBatch : Field name not found : {name}"
            elif obj.field(name) is None:
                return f"InvalidBatch : Field name not found : {name}"
        return None


class _RowWriter:
    """Writes rows of one ingest job through the store, sorting them into result files."""

    def __init__(self, store: Any, job: Job, header: list[str], origin: str) -> None:
        self.store = store
        self.job = job
        self.header = header
        self.origin = origin
        schema = getattr(store, "schema", None)
        self.obj = schema.sobject(job.object) if schema is not None else None
        self.schema = schema
        self.parent_cache: dict[tuple[str, str, str], str | None] = {}
        self.id_col = header.index("Id") if "Id" in header else None

    # values --------------------------------------------------------------------------------

    def _coerce(self, name: str, text: str) -> Any:
        if text == "#N/A":
            return None
        fd = self.obj.field(name) if self.obj is not None else None
        kind = fd.type if fd is not None else None
        if kind == "boolean" or (kind is None and text.lower() in ("true", "false")):
            low = text.strip().lower()
            if low in ("true", "1", "yes"):
                return True
            if low in ("false", "0", "no"):
                return False
            return text  # let the store refuse it with its own message
        if kind in ("int",):
            try:
                return int(text)
            except ValueError:
                return text
        if kind in ("double", "currency", "percent"):
            try:
                return float(text)
            except ValueError:
                return text
        if kind == "datetime" and text.endswith("Z"):
            base = text[:-1]
            if "." not in base:
                base += ".000"
            return base + "+0000"
        return text

    def _values(self, row: list[str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, cell in zip(self.header, row, strict=False):
            if cell == "" or name == "Id":
                continue  # an empty cell leaves the field as it is
            if "." in name:
                rel, _, ext = name.partition(".")
                field_name, parent_id = self._parent(rel, ext, cell)
                values[field_name] = parent_id
            else:
                values[name] = self._coerce(name, cell)
        return values

    def _parent(self, rel: str, ext: str, value: str) -> tuple[str, str | None]:
        fd = self.obj.relationship(rel) if self.obj is not None else None
        field_name = fd.name if fd is not None else f"{rel}Id"
        parent = fd.reference_to[0] if fd is not None and fd.reference_to else rel
        if value == "#N/A":
            return field_name, None
        key = (parent, ext, value)
        if key not in self.parent_cache:
            literal = value.replace("\\", "\\\\").replace("'", "\\'")
            rows = list(self.store.query(f"SELECT Id FROM {parent} WHERE {ext} = '{literal}'").rows)
            self.parent_cache[key] = rows[0]["Id"] if len(rows) == 1 else None
            if len(rows) > 1:
                raise SalesforceError(
                    400,
                    "DUPLICATE_EXTERNAL_ID",
                    f"Foreign key external ID: {value} matched more than one record in {parent}",
                    [ext],
                )
        found = self.parent_cache[key]
        if found is None:
            raise SalesforceError(
                400,
                "INVALID_FIELD",
                f"Foreign key external ID: {value} not found for field {ext} in entity {parent}",
                [ext],
            )
        return field_name, found

    # writing -------------------------------------------------------------------------------

    def write(self, rows: list[list[str]]) -> None:
        matches: dict[str, list[str]] = {}
        job = self.job
        if job.operation == "upsert" and job.external_id != "Id":
            matches = self._lookup([r[self.header.index(str(job.external_id))] for r in rows])
        for row in rows:
            try:
                record_id, created = self._write_one(row, matches)
            except SalesforceError as exc:
                self._failed(row, exc.error_code, exc.message, exc.fields)
            except Exception as exc:  # anything else is still one row's failure, as in Salesforce
                log.exception("bulk job %s: unexpected error on a row", job.id)
                self._failed(row, "UNKNOWN_EXCEPTION", str(exc), [])
            else:
                assert job.success is not None
                job.success.append_row([record_id, "true" if created else "false", *row])
            job.processed += 1

    def _failed(self, row: list[str], code: str, message: str, fields: list[str]) -> None:
        job = self.job
        assert job.failure is not None
        record_id = row[self.id_col] if self.id_col is not None else ""
        job.failure.append_row([record_id, f"{code}:{message}:{','.join(fields)} --", *row])
        job.failed += 1

    def _lookup(self, values: list[str]) -> dict[str, list[str]]:
        wanted = sorted({v for v in values if v})
        if not wanted:
            return {}
        ext = self.job.external_id
        literals = ", ".join(
            "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in wanted
        )
        found: dict[str, list[str]] = {}
        for row in self.store.query(
            f"SELECT Id, {ext} FROM {self.job.object} WHERE {ext} IN ({literals})"
        ).rows:
            found.setdefault(str(row.get(ext)), []).append(row["Id"])
        return found

    def _write_one(self, row: list[str], matches: dict[str, list[str]]) -> tuple[str, bool]:
        job, store, origin = self.job, self.store, self.origin
        if len(row) != len(self.header):
            raise SalesforceError(
                400,
                "INVALID_FIELD",
                f"The row has {len(row)} columns but the header has {len(self.header)}",
            )
        record_id = row[self.id_col] if self.id_col is not None else ""
        if job.operation in ("delete", "hardDelete"):
            if not record_id:
                raise SalesforceError(400, "MISSING_ARGUMENT", "Id not specified in a delete call")
            if job.operation == "delete":
                store.delete(job.object, record_id, origin=origin)
            else:
                store.hard_delete(job.object, record_id)
            return record_id, False
        values = self._values(row)
        if job.operation == "insert":
            return store.create(job.object, values, origin=origin), True
        if job.operation == "update":
            if not record_id:
                raise SalesforceError(400, "MISSING_ARGUMENT", "Id not specified in an update call")
            store.update(job.object, record_id, values, origin=origin)
            return record_id, False
        # upsert
        ext = str(job.external_id)
        if ext == "Id":
            if record_id:
                store.update(job.object, record_id, values, origin=origin)
                return record_id, False
            return store.create(job.object, values, origin=origin), True
        key = row[self.header.index(ext)]
        if not key:
            raise SalesforceError(400, "MISSING_ARGUMENT", f"{ext} not specified", [ext])
        found = matches.get(key, [])
        if len(found) > 1:
            raise SalesforceError(
                300,
                "DUPLICATE_EXTERNAL_ID",
                f"{ext}: more than one record found for external id field: {found}",
                [ext],
            )
        if found:
            values.pop(ext, None)
            store.update(job.object, found[0], values, origin=origin)
            return found[0], False
        new_id = store.create(job.object, values, origin=origin)
        matches[key] = [new_id]  # a repeated key later in the file updates this record
        return new_id, True


# -- routes --------------------------------------------------------------------------------


def _jobs() -> BulkJobs:
    return current_sandbox().bulk  # type: ignore[no-any-return]


@bp.before_request
def _authenticate() -> Response | None:
    sandbox = current_sandbox()
    version = (request.view_args or {}).get("version")
    versions = sandbox.config.get("API_VERSIONS") or []
    if version is not None and versions and version not in versions:
        return BulkError(404, "NOT_FOUND", "The requested resource does not exist").response()
    if sandbox.auth is None:
        return None  # assembled without an auth part (unit tests of this module alone)
    result = auth.authenticate(sandbox.auth)
    return result if isinstance(result, Response) else None


@bp.errorhandler(BulkError)
def _bulk_error(exc: BulkError) -> Response:
    return exc.response()


@bp.errorhandler(SalesforceError)
def _sf_error(exc: SalesforceError) -> Response:
    resp = jsonify([{"errorCode": exc.error_code, "message": exc.message}])
    resp.status_code = exc.status
    return resp


def _json_body() -> dict[str, Any]:
    try:
        body = json.loads(request.get_data() or b"{}")
    except ValueError as exc:
        raise BulkError(400, "JSON_PARSER_ERROR", f"Invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BulkError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
    return body


def _call_client() -> str | None:
    return _client_of(request.headers.get("Sforce-Call-Options", ""))


def _listing(version: str, kind: str) -> Response:
    jobs = _jobs()
    records = jobs.jobs_of(kind)
    job_type = request.args.get("jobType")
    infos = [jobs.info(j) for j in records]
    if job_type:
        infos = [i for i in infos if i.get("jobType") == job_type]
    return jsonify(done=True, records=infos, nextRecordsUrl=None)


@bp.post("/v<version>/jobs/query")
def create_query_job(version: str) -> Response:
    job = _jobs().create_query(version, _json_body(), _call_client())
    # JSON even when the client says `Accept: text/csv`, as Salesforce does.
    return jsonify(_jobs().info(job, "UploadComplete"))


@bp.get("/v<version>/jobs/query")
def list_query_jobs(version: str) -> Response:
    return _listing(version, "query")


@bp.get("/v<version>/jobs/query/<job_id>")
def get_query_job(version: str, job_id: str) -> Response:
    jobs = _jobs()
    job = jobs.get(job_id, "query")
    return jsonify(jobs.info(job, jobs.poll(job)))


@bp.patch("/v<version>/jobs/query/<job_id>")
def patch_query_job(version: str, job_id: str) -> Response:
    jobs = _jobs()
    job = jobs.get(job_id, "query")
    return jsonify(jobs.info(jobs.set_state(job, _json_body().get("state"))))


@bp.delete("/v<version>/jobs/query/<job_id>")
def delete_query_job(version: str, job_id: str) -> tuple[str, int]:
    _jobs().delete(job_id, "query")
    return "", 204


@bp.get("/v<version>/jobs/query/<job_id>/results")
def query_results(version: str, job_id: str) -> Response:
    jobs = _jobs()
    job = jobs.get(job_id, "query")
    max_records: int | None = None
    if request.args.get("maxRecords"):
        try:
            max_records = int(request.args["maxRecords"])
        except ValueError as exc:
            raise BulkError(400, "INVALIDPARAMETER", "maxRecords must be a number") from exc
    begin, end, count, next_locator = jobs.results_page(
        job, version, request.args.get("locator"), max_records
    )
    assert job.spool is not None
    spool = job.spool
    resp = Response(
        spool.stream(begin, end),
        status=200,
        mimetype="text/csv",
    )
    resp.headers["Content-Type"] = "text/csv; charset=UTF-8"
    resp.headers["Sforce-NumberOfRecords"] = str(count)
    resp.headers["Sforce-Locator"] = next_locator
    resp.headers["Content-Length"] = str(len(spool.header_bytes) + end - begin)
    return resp


@bp.post("/v<version>/jobs/ingest")
def create_ingest_job(version: str) -> Response:
    jobs = _jobs()
    job = jobs.create_ingest(version, _json_body(), _call_client())
    return jsonify(jobs.info(job))


@bp.get("/v<version>/jobs/ingest")
def list_ingest_jobs(version: str) -> Response:
    return _listing(version, "ingest")


@bp.get("/v<version>/jobs/ingest/<job_id>")
def get_ingest_job(version: str, job_id: str) -> Response:
    jobs = _jobs()
    job = jobs.get(job_id, "ingest")
    return jsonify(jobs.info(job, jobs.poll(job)))


@bp.patch("/v<version>/jobs/ingest/<job_id>")
def patch_ingest_job(version: str, job_id: str) -> Response:
    jobs = _jobs()
    job = jobs.get(job_id, "ingest")
    job = jobs.set_state(job, _json_body().get("state"))
    return jsonify(jobs.info(job, job.state))


@bp.put("/v<version>/jobs/ingest/<job_id>/batches")
def upload_batch(version: str, job_id: str) -> tuple[str, int]:
    jobs = _jobs()
    job = jobs.get(job_id, "ingest")
    ctype = request.headers.get("Content-Type", "")
    if not ctype.startswith("text/csv"):
        raise BulkError(400, "INVALIDBATCH", "InvalidBatch : Content-Type must be text/csv")
    jobs.upload(job, request.get_data())
    return "", 201


@bp.delete("/v<version>/jobs/ingest/<job_id>")
def delete_ingest_job(version: str, job_id: str) -> tuple[str, int]:
    _jobs().delete(job_id, "ingest")
    return "", 204


def _ingest_results(job_id: str, which: str) -> Response:
    jobs = _jobs()
    job = jobs.get(job_id, "ingest")
    state = jobs._state(job)
    if state not in TERMINAL or not job.done.is_set():
        raise BulkError(
            412, "JOB_NOT_COMPLETE", f"Job {job_id} is not complete. Current status: {state}"
        )
    spool = getattr(job, which)
    if spool is None:  # a job that failed before reading rows has empty result files
        headers = {"success": "sf__Id,sf__Created", "failure": "sf__Id,sf__Error"}
        body = headers.get(which, "")
        return Response(body + job.line_ending if body else "", mimetype="text/csv")
    resp = Response(spool.all_bytes(), mimetype="text/csv")
    resp.headers["Content-Type"] = "text/csv; charset=UTF-8"
    return resp


@bp.get("/v<version>/jobs/ingest/<job_id>/successfulResults")
def successful_results(version: str, job_id: str) -> Response:
    return _ingest_results(job_id, "success")


@bp.get("/v<version>/jobs/ingest/<job_id>/failedResults")
def failed_results(version: str, job_id: str) -> Response:
    return _ingest_results(job_id, "failure")


# Salesforce documents `unprocessedrecords`; simple-salesforce asks for `unprocessedRecords`.
@bp.get("/v<version>/jobs/ingest/<job_id>/unprocessedrecords")
@bp.get("/v<version>/jobs/ingest/<job_id>/unprocessedRecords")
def unprocessed_results(version: str, job_id: str) -> Response:
    return _ingest_results(job_id, "unprocessed")
