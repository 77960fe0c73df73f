"""Constant Contact V3 client: the calls the sync makes, all through one metered `_request`.

Every call waits for the shared limiter (4/s and the daily budget are per application), carries a
timeout, retries what Constant Contact says may be retried (429 ``throttled``, the activity queue
limit, 5xx, timeouts) with exponential backoff and jitter, refreshes the token once after a 401,
and turns anything else into a typed error from :mod:`errors`. ``calls`` counts every request by
endpoint family and status so a run can report the API calls it spent.

A POST that timed out is retried like any other call although Constant Contact may have done it:
the bulk activities are idempotent, a repeated ``POST /contacts`` answers 409 (callers already
handle that by looking the address up), a repeated list creation is absorbed by
``get_or_create_list``.

Each public method's docstring names the vendor endpoint and its call cost. The create-or-update
"sign-up form" endpoint is never used: it re-subscribes people who unsubscribed.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from middleware.constantcontact.errors import (
    ActivityFailed,
    ActivityTimeout,
    AuthExpired,
    CCError,
    Conflict,
    QuotaExceeded,
    ServerError,
    TooManyActivities,
    Validation,
    error_for,
)
from middleware.constantcontact.limiter import RateLimiter
from middleware.constantcontact.oauth import TokenSource
from middleware.sync.fields import CC_SCALAR_FIELDS

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.cc.email/v3"

PAGE_LIMIT = 500  # GET /contacts maximum
LISTS_FILTER_MAX = 25  # list ids in one GET /contacts?lists=
IMPORT_MAX_ROWS = 40_000
# "< 4 MB" and bytes beyond it are silently dropped, so stay clearly below 4 MiB and 4,000,000.
IMPORT_MAX_BYTES = 3_900_000
ACTIVITY_IDS_MAX = 500  # contact_ids per list-membership / delete activity
ACTIVITY_LISTS_MAX = 50  # list_ids per activity
CUSTOM_FIELDS_PAGE = 100
LISTS_PAGE = 1000  # GET /contact_lists answers up to 1,000 per page, an account's whole cap
REPORT_PAGE = 500  # GET /emails and the tracking reports answer up to 500 per page
TRACKING_REPORTS = ("sends", "opens", "unique_opens", "clicks", "bounces", "optouts", "forwards")
FINAL_STATES = {"completed", "failed", "cancelled", "timed_out"}
FAILED_STATES = {"failed", "cancelled", "timed_out"}
# The first poll of an activity just posted: at most this long after it (and by default) ...
FIRST_POLL_SECONDS = 1.0
# ... at least this long, and learned from the last few activities' processing times.
MIN_FIRST_POLL_SECONDS = 0.2
ACTIVITY_SAMPLES = 5


@dataclass(frozen=True)
class RetryPolicy:
    """How hard `_request` tries before giving a retryable error back to the job."""

    max_retries: int = 4  # after the first attempt
    base: float = 0.5  # seconds; doubled per attempt, full jitter
    cap: float = 30.0
    throttled_min: float = 1.0  # the 4/s window needs at least this to move
    activities_base: float = 15.0  # the 1,000-queued-activities limit drains slowly


class CallCounter:
    """Requests spent, by endpoint family (``contacts``, ``activities``…) and status (or error)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def add(self, family: str, status: str) -> None:
        with self._lock:
            self._counts[(family, status)] += 1

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def by_family(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        with self._lock:
            for (family, _), n in self._counts.items():
                out[family] += n
        return dict(out)

    def snapshot(self) -> dict[str, dict[str, int]]:
        """``{family: {status: count}}``, e.g. ``{"contacts": {"200": 3, "429": 1}}``."""
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            for (family, status), n in sorted(self._counts.items()):
                out.setdefault(family, {})[status] = n
        return out


def _family(path: str) -> str:
    first = path.lstrip("/").split("/", 1)[0].split("?", 1)[0]
    return first or "root"


def _csv(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(str(v) for v in value)
    return value


def _retry_after(response: requests.Response) -> float:
    value = response.headers.get("Retry-After", "")
    try:
        return max(float(value), 0.0)
    except ValueError:
        return 0.0  # the HTTP-date form is not worth parsing for an undocumented header


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


class ConstantContactClient:
    """One connected Constant Contact account, seen through the V3 API."""

    # Per-call limits of the bulk endpoints; instance attributes so tests can use small ones.
    import_max_rows = IMPORT_MAX_ROWS
    import_max_bytes = IMPORT_MAX_BYTES
    activity_ids_max = ACTIVITY_IDS_MAX

    def __init__(
        self,
        base_url: str,
        session: requests.Session,
        token_source: TokenSource,
        limiter: RateLimiter,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
        counter: CallCounter | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._base_path = urlsplit(self.base_url).path.rstrip("/")  # "/v3"
        self.session = session
        self.tokens = token_source
        self.limiter = limiter
        self.now = now
        self.sleep = sleep
        self.monotonic = monotonic
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.rng = rng or random.Random()
        self.calls = counter or CallCounter()
        self._lists: dict[str, dict[str, Any]] = {}
        # How long this account's recent activities took to process (seconds, newest last).
        self._activity_seconds: deque[float] = deque(maxlen=ACTIVITY_SAMPLES)

    # ------------------------------------------------------------------ the one request path

    def _path_of(self, href: str) -> str:
        """A ``_links`` href (``/v3/contacts?cursor=…``) as a path relative to ``base_url``."""
        parts = urlsplit(href)
        path = parts.path
        if self._base_path and path.startswith(self._base_path + "/"):
            path = path[len(self._base_path) :]
        return path + (f"?{parts.query}" if parts.query else "")

    def _backoff(self, attempt: int, error: CCError, retry_after: float = 0.0) -> float:
        policy = self.retry
        base = policy.activities_base if isinstance(error, TooManyActivities) else policy.base
        delay = self.rng.uniform(0, min(policy.cap, base * (2**attempt)))
        if isinstance(error, TooManyActivities):
            delay = max(delay, base)
        elif error.status == 429:
            delay = max(delay, policy.throttled_min)
        # Constant Contact documents no Retry-After, but if a proxy or a future API sends one,
        # waiting less than it asks only earns another 429.
        return max(delay, min(retry_after, policy.cap))

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        expect: tuple[int, ...] = (200,),
        stream: bool = False,
        accept: str = "application/json",
    ) -> requests.Response:
        """Send one logical call: limiter, timeout, retries, one refresh on 401, typed errors."""
        if "sign_up" in path:  # see module docstring: never, whatever a caller builds
            raise ValueError("the sign-up form endpoint re-subscribes contacts and is not used")
        family = _family(path)
        url = self.base_url + path
        query = {k: _csv(v) for k, v in (params or {}).items() if v is not None}
        headers = {"Accept": accept}
        if json_body is not None:
            data = json.dumps(json_body, separators=(",", ":"), ensure_ascii=False).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        refreshed = False
        attempt = 0
        retry_after = 0.0
        token = self.tokens.access_token()
        while True:
            self.limiter.acquire()
            headers["Authorization"] = f"Bearer {token}"
            try:
                response = self.session.request(
                    method,
                    url,
                    params=query or None,
                    data=data,
                    headers=headers,
                    timeout=self.timeout,
                    stream=stream,
                )
            except (requests.Timeout, requests.ConnectionError) as exc:
                self.calls.add(family, "timeout" if isinstance(exc, requests.Timeout) else "error")
                error: CCError = ServerError(
                    f"no answer from Constant Contact ({type(exc).__name__})",
                    method=method,
                    path=path,
                )
            else:
                self.calls.add(family, str(response.status_code))
                if response.status_code in expect:
                    return response
                retry_after = _retry_after(response)
                error = self._error(response, method, path)
                if isinstance(error, AuthExpired) and not refreshed:
                    refreshed = True
                    log.info("Constant Contact answered 401 on %s %s; refreshing", method, family)
                    token = self.tokens.refresh(token)
                    continue
                if isinstance(error, QuotaExceeded):
                    # Every worker must stop, not only this one.
                    self.limiter.block_until(error.resume_at)
                    raise error
            if not error.retryable or attempt >= self.retry.max_retries:
                raise error
            delay = self._backoff(attempt, error, retry_after)
            attempt += 1
            log.warning(
                "Constant Contact %s %s failed (%s); retry %d in %.1fs",
                method,
                family,
                error.error_key or error.status or "no answer",
                attempt,
                delay,
            )
            self.sleep(delay)

    def _error(self, response: requests.Response, method: str, path: str) -> CCError:
        try:
            body: Any = response.json()
        except ValueError:
            body = response.content
        finally:
            response.close()
        return error_for(response.status_code, body, now=self.now(), method=method, path=path)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    # ------------------------------------------------------------------ contacts

    def iter_contacts(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """``GET /contacts``, every page (``_links.next.href``), ``limit`` 500: one call per page.

        Filters are the endpoint's query parameters (``status``, ``lists``, ``updated_after``,
        ``include``…); lists become comma-separated, datetimes ISO-8601. Note that
        ``updated_after`` does not see opt-outs: use ``optout_after`` or ``status="unsubscribed"``.
        A ``segment_id`` query still being computed (202) is re-asked after a pause.
        """
        lists = filters.get("lists")
        if isinstance(lists, (list, tuple, set)) and len(lists) > LISTS_FILTER_MAX:
            raise ValueError(f"GET /contacts filters on at most {LISTS_FILTER_MAX} lists at once")
        params: dict[str, Any] | None = {"limit": PAGE_LIMIT, **filters}
        path = "/contacts"
        pending_polls = 0
        while True:
            response = self._request("GET", path, params=params, expect=(200, 202))
            page = response.json()
            if response.status_code == 202:
                pending_polls += 1
                if pending_polls > 10:
                    raise ServerError("segment contacts still processing", method="GET", path=path)
                self.sleep(min(2.0 * pending_polls, 10.0))
                continue
            yield from page.get("contacts") or []
            href = ((page.get("_links") or {}).get("next") or {}).get("href")
            if not href:
                return
            path, params = self._path_of(href), None

    def get_contact(
        self, contact_id: str, include: Sequence[str] | None = ("custom_fields", "list_memberships")
    ) -> dict[str, Any]:
        """``GET /contacts/{contact_id}`` (1 call); a deleted contact comes with ``deleted_at``."""
        params = {"include": include} if include else None
        return self._json("GET", f"/contacts/{contact_id}", params=params)  # type: ignore[no-any-return]

    def find_contact_by_email(
        self,
        email: str,
        include: Sequence[str] | None = ("custom_fields", "list_memberships"),
    ) -> dict[str, Any] | None:
        """``GET /contacts?email=…&status=all`` (1 call): the contact for an address, even deleted.

        ``status=all`` matters: an address Constant Contact holds as deleted still blocks
        ``POST /contacts`` (409) and must be revived with a PUT instead.
        """
        address = email.strip().lower()
        params: dict[str, Any] = {"email": address, "status": "all", "limit": 1}
        if include:
            params["include"] = include
        page = self._json("GET", "/contacts", params=params)
        for contact in page.get("contacts") or []:
            if (contact.get("email_address") or {}).get("address", "").lower() == address:
                return contact  # type: ignore[no-any-return]
        return None

    def create_contact(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /contacts`` (1 call); ``create_source`` defaults to ``Account``.

        Raises :class:`Conflict` (``contacts.api.conflict``) when the address ever existed in the
        account, deleted ones included: look it up with :meth:`find_contact_by_email` and PUT.
        """
        payload = {"create_source": "Account", **body}
        return self._json("POST", "/contacts", json_body=payload, expect=(201, 200))  # type: ignore[no-any-return]

    def update_contact(self, contact_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """``PUT /contacts/{contact_id}`` (1 call), ``update_source`` ``Account``.

        PUT replaces top-level properties: any omitted (``first_name``, ``job_title``…) becomes
        null, while omitted sub-resources (custom fields, phones, addresses, lists) are kept. Send
        the full contact. A PUT on a deleted contact revives it.
        """
        payload = {**body, "update_source": "Account"}
        return self._json("PUT", f"/contacts/{contact_id}", json_body=payload)  # type: ignore[no-any-return]

    def unsubscribe_contact(
        self, contact_id: str, current: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """``PUT /contacts/{contact_id}`` with ``permission_to_send: unsubscribed``, by the Account.

        Cost: 2 calls (``GET`` then ``PUT``), because PUT nulls the top-level properties it is
        not given; 1 call when ``current`` (the contact as just read) is passed; 0 or 1 when the
        contact is already unsubscribed (it is returned unchanged). Constant Contact records
        ``opt_out_source: Account`` because ``update_source`` is ``Account`` (the field itself is
        read-only in the API).
        """
        contact = current if current is not None else self.get_contact(contact_id, include=None)
        email = contact.get("email_address") or {}
        if email.get("permission_to_send") == "unsubscribed":
            return contact
        if not email.get("address"):
            raise Validation("contact has no email address to unsubscribe", path="/contacts")
        body: dict[str, Any] = {
            k: contact[k] for k in CC_SCALAR_FIELDS if contact.get(k) is not None
        }
        body["email_address"] = {"address": email["address"], "permission_to_send": "unsubscribed"}
        return self.update_contact(contact_id, body)

    def delete_contact(self, contact_id: str) -> None:
        """``DELETE /contacts/{contact_id}`` (1 call): a soft delete, not an opt-out."""
        self._request("DELETE", f"/contacts/{contact_id}", expect=(204, 200))

    # ------------------------------------------------------------------ lists and custom fields

    def get_or_create_list(self, name: str, description: str | None = None) -> dict[str, Any]:
        """``GET /contact_lists?name=…`` then, if missing, ``POST /contact_lists`` (1–3 calls).

        Safe against a racing creator: a 409 on POST means it exists now, so it is read again.
        Results are cached for the life of the client.
        """
        if name in self._lists:
            return self._lists[name]
        found = self._find_list(name)
        if found is None:
            body: dict[str, Any] = {"name": name}
            if description:
                body["description"] = description
            try:
                found = self._json("POST", "/contact_lists", json_body=body, expect=(201, 200))
            except Conflict:
                found = self._find_list(name, status="all")
                if found is None:
                    raise
                if found.get("deleted_at"):
                    raise Conflict(
                        f"a deleted list is still named {name!r}; rename or restore it in "
                        "Constant Contact",
                        status=409,
                        path="/contact_lists",
                    ) from None
        assert found is not None
        self._lists[name] = found
        return found

    def find_list(self, name: str) -> dict[str, Any] | None:
        """``GET /contact_lists?name=…`` (1 call): the active list of that exact name, or None."""
        if name in self._lists:
            return self._lists[name]
        found = self._find_list(name)
        if found is not None:
            self._lists[name] = found
        return found

    def _find_list(self, name: str, status: str = "active") -> dict[str, Any] | None:
        page = self._json("GET", "/contact_lists", params={"name": name, "status": status})
        for item in page.get("lists") or []:
            if item.get("name") == name:
                return item  # type: ignore[no-any-return]
        return None

    def iter_lists(self) -> Iterator[dict[str, Any]]:
        """``GET /contact_lists`` every active list (``limit`` 1000: an account holds ≤ 1,000,
        so one call)."""
        params = {"limit": LISTS_PAGE, "status": "active"}
        for item in self._pages("/contact_lists", params, "lists"):
            self._lists.setdefault(str(item.get("name")), item)
            yield item

    def create_list(self, name: str, description: str | None = None) -> dict[str, Any]:
        """``POST /contact_lists`` (1 call); a name already taken raises ``Conflict``."""
        body: dict[str, Any] = {"name": name}
        if description:
            body["description"] = description
        created: dict[str, Any] = self._json(
            "POST", "/contact_lists", json_body=body, expect=(201, 200)
        )
        self._lists[name] = created
        return created

    def rename_list(self, list_id: str, name: str) -> dict[str, Any]:
        """``GET`` then ``PUT /contact_lists/{list_id}`` (2 calls): the PUT replaces the whole
        list, so its favorite flag and description are sent back as they are."""
        current = self._json("GET", f"/contact_lists/{list_id}")
        body = {
            "name": name,
            "favorite": bool(current.get("favorite")),
            "description": current.get("description") or "",
        }
        updated: dict[str, Any] = self._json("PUT", f"/contact_lists/{list_id}", json_body=body)
        self._lists.pop(str(current.get("name")), None)
        self._lists[name] = updated
        return updated

    # ------------------------------------------------------------------ email campaigns, reports

    def _pages(
        self, path: str, params: dict[str, Any] | None, key: str
    ) -> Iterator[dict[str, Any]]:
        """Every item under ``key`` of ``path`` and each ``_links.next.href`` after it."""
        items, href = self._page(path, params, key)
        while True:
            yield from items
            if not href:
                return
            items, href = self._page(href, None, key)

    def _page(
        self, path_or_href: str, params: dict[str, Any] | None, key: str
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page (1 call): its items under ``key`` and its ``_links.next.href``, if any."""
        page = self._json("GET", self._path_of(path_or_href), params=params)
        href = ((page.get("_links") or {}).get("next") or {}).get("href")
        return list(page.get(key) or []), href or None

    def iter_email_campaigns(
        self, *, after: datetime | None = None, before: datetime | None = None
    ) -> Iterator[dict[str, Any]]:
        """``GET /emails`` every page (500 a call): the account's email campaigns, those
        updated after ``after`` / before ``before`` when given (a send or a resend updates one)."""
        params: dict[str, Any] = {"limit": REPORT_PAGE}
        if after is not None:
            params["after_date"] = _iso_utc(after)
        if before is not None:
            params["before_date"] = _iso_utc(before)
        return self._pages("/emails", params, "campaigns")

    def email_campaign(self, campaign_id: str) -> dict[str, Any]:
        """``GET /emails/{campaign_id}`` (1 call): the campaign with its ``campaign_activities``
        (``role``: ``primary_email``, ``resend``, ``permalink``...)."""
        return self._json("GET", f"/emails/{campaign_id}")  # type: ignore[no-any-return]

    def campaign_activity(self, campaign_activity_id: str, *, html: bool = False) -> dict[str, Any]:
        """``GET /emails/activities/{id}`` (1 call): subject, sender, lists; ``html`` asks for
        the email's ``html_content`` too."""
        params = {"include": "html_content"} if html else None
        return self._json(  # type: ignore[no-any-return]
            "GET", f"/emails/activities/{campaign_activity_id}", params=params
        )

    def iter_tracking(self, campaign_activity_id: str, report: str) -> Iterator[dict[str, Any]]:
        """``GET /reports/email_reports/{id}/tracking/{report}`` every page (500 a call), most
        recent first: ``report`` is one of :data:`TRACKING_REPORTS`."""
        if report not in TRACKING_REPORTS:
            raise ValueError(f"unknown tracking report {report!r}; one of {TRACKING_REPORTS}")
        path = f"/reports/email_reports/{campaign_activity_id}/tracking/{report}"
        return self._pages(path, {"limit": REPORT_PAGE}, "tracking_activities")

    def tracking_page(
        self, campaign_activity_id: str, report: str, href: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a tracking report (1 call): the first, or the one ``href`` names (a
        ``_links.next.href`` an earlier page gave, so a read can stop and go on later)."""
        if report not in TRACKING_REPORTS:
            raise ValueError(f"unknown tracking report {report!r}; one of {TRACKING_REPORTS}")
        if href:
            return self._page(href, None, "tracking_activities")
        path = f"/reports/email_reports/{campaign_activity_id}/tracking/{report}"
        return self._page(path, {"limit": REPORT_PAGE}, "tracking_activities")

    def send_history(self, campaign_activity_id: str) -> list[dict[str, Any]]:
        """``GET /emails/activities/{id}/send_history`` (1 call): each send's ``run_date``,
        ``count`` and lists, oldest first; empty if the activity was never sent."""
        found = self._json("GET", f"/emails/activities/{campaign_activity_id}/send_history")
        return list(found or [])

    def iter_custom_fields(self) -> Iterator[dict[str, Any]]:
        """``GET /contact_custom_fields`` every page (``limit`` 100; an account holds ≤ 100)."""
        return self._pages("/contact_custom_fields", {"limit": CUSTOM_FIELDS_PAGE}, "custom_fields")

    def ensure_custom_fields(self, names: Iterable[str]) -> dict[str, str]:
        """``{name: custom_field_id}``; missing text fields made by ``POST /contact_custom_fields``.

        A name matches a field's ``name`` (what imports use after ``cf:``) or its ``label``.
        Cost: 1 call to list, plus 1 per field created (plus 1 re-read if a creation races).
        """
        wanted = list(dict.fromkeys(n for n in names if n))
        if not wanted:
            return {}
        known = self._custom_field_index()
        missing = [n for n in wanted if n not in known]
        for name in missing:
            body = {"label": name, "type": "string"}
            try:
                created = self._json(
                    "POST", "/contact_custom_fields", json_body=body, expect=(201, 200)
                )
                known[name] = created["custom_field_id"]
                if created.get("name"):
                    known[created["name"]] = created["custom_field_id"]
            except Conflict:
                known.update(self._custom_field_index())
                if name not in known:
                    raise
        return {n: known[n] for n in wanted}

    def _custom_field_index(self) -> dict[str, str]:
        index: dict[str, str] = {}
        for field in self.iter_custom_fields():
            for key in (field.get("label"), field.get("name")):
                if key:
                    index.setdefault(key, field["custom_field_id"])
        return index

    # ------------------------------------------------------------------ bulk activities

    def import_contacts(
        self, rows: Iterable[dict[str, Any]], list_ids: Sequence[str]
    ) -> list[dict[str, Any]]:
        """``POST /activities/contacts_json_import``: one call per ≤ 40,000 rows and < 4 MB.

        Rows are flat import objects (``email``, ``first_name``…, ``cf:<name>``). The batch size is
        measured on the exact bytes sent, because Constant Contact silently drops what lies beyond
        4 MB. Rows are consumed lazily. Returns the created activities (wait on them).
        """
        if not list_ids:
            raise ValueError("a JSON import needs at least one list id")
        if len(list_ids) > ACTIVITY_LISTS_MAX:
            raise ValueError(f"a JSON import takes at most {ACTIVITY_LISTS_MAX} list ids")
        activities = []
        for payload in self._import_payloads(rows, list_ids):
            activity = self._json(
                "POST", "/activities/contacts_json_import", data=payload, expect=(201, 200)
            )
            activities.append(activity)
        return activities

    def _import_payloads(
        self, rows: Iterable[dict[str, Any]], list_ids: Sequence[str]
    ) -> Iterator[bytes]:
        """The request bodies, built by appending serialised rows until a limit would be crossed."""
        max_rows, max_bytes = self.import_max_rows, self.import_max_bytes
        head = b'{"import_data":['
        tail = b'],"list_ids":' + json.dumps(list(list_ids), separators=(",", ":")).encode() + b"}"
        overhead = len(head) + len(tail)
        batch: list[bytes] = []
        size = overhead
        for row in rows:
            encoded = json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode()
            extra = len(encoded) + (1 if batch else 0)  # the comma
            if overhead + len(encoded) > max_bytes:
                raise Validation(
                    f"one import row is {len(encoded)} bytes, more than a whole import may carry",
                    path="/activities/contacts_json_import",
                )
            if batch and (len(batch) >= max_rows or size + extra > max_bytes):
                yield head + b",".join(batch) + tail
                batch, size = [], overhead
                extra = len(encoded)
            batch.append(encoded)
            size += extra
        if batch:
            yield head + b",".join(batch) + tail

    def _membership_activity(
        self, kind: str, contact_ids: Sequence[str], list_ids: Sequence[str]
    ) -> list[dict[str, Any]]:
        activities = []
        ids = list(dict.fromkeys(contact_ids))
        for lists in _chunks(list(dict.fromkeys(list_ids)), ACTIVITY_LISTS_MAX):
            for chunk in _chunks(ids, self.activity_ids_max):
                body = {"source": {"contact_ids": chunk}, "list_ids": lists}
                activities.append(
                    self._json("POST", f"/activities/{kind}", json_body=body, expect=(201, 200))
                )
        return activities

    def add_list_memberships(
        self, contact_ids: Sequence[str], list_ids: Sequence[str]
    ) -> list[dict[str, Any]]:
        """``POST /activities/add_list_memberships``: 1 call per 500 contacts (per 50 lists)."""
        return self._membership_activity("add_list_memberships", contact_ids, list_ids)

    def remove_list_memberships(
        self, contact_ids: Sequence[str], list_ids: Sequence[str]
    ) -> list[dict[str, Any]]:
        """``POST /activities/remove_list_memberships``: 1 call per 500 contacts (per 50 lists)."""
        return self._membership_activity("remove_list_memberships", contact_ids, list_ids)

    def delete_contacts(self, contact_ids: Sequence[str]) -> list[dict[str, Any]]:
        """``POST /activities/contact_delete``: 1 call per 500 contacts (soft delete)."""
        return [
            self._json(
                "POST",
                "/activities/contact_delete",
                json_body={"contact_ids": chunk},
                expect=(201, 200),
            )
            for chunk in _chunks(list(dict.fromkeys(contact_ids)), self.activity_ids_max)
        ]

    def export_contacts(
        self,
        *,
        list_ids: Sequence[str] | None = None,
        contact_ids: Sequence[str] | None = None,
        status: str | None = None,
        fields: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """``POST /activities/contact_exports`` (1 call): a CSV export activity.

        Without filters every contact is exported. ``status`` (e.g. ``unsubscribed``) combines
        with ``list_ids`` or ``contact_ids``; when ``fields`` is given, ``email_address`` must be
        among them for the opt-in/out columns.
        """
        body: dict[str, Any] = {}
        if list_ids:
            body["list_ids"] = list(list_ids)
        if contact_ids:
            body["contact_ids"] = list(contact_ids)
        if status:
            body["status"] = status
        if fields:
            body["fields"] = list(fields)
        return self._json(  # type: ignore[no-any-return]
            "POST", "/activities/contact_exports", json_body=body, expect=(201, 200)
        )

    def iter_export_rows(self, activity: dict[str, Any]) -> Iterator[dict[str, str]]:
        """``GET /contact_exports/{file_export_id}`` (1 call): the CSV rows, streamed as dicts.

        ``activity`` is a completed export activity (see :meth:`wait_for_activity`). The file is
        read in chunks, never loaded whole.
        """
        table = self.iter_export_table(activity)
        header = next(table, None)
        for row in table:
            yield dict(zip(header or (), row, strict=False))

    def iter_export_table(self, activity: dict[str, Any]) -> Iterator[list[str]]:
        """Like :meth:`iter_export_rows`, as lists: the header row first, then each row's values
        in its order (no dict per row: a million-row export is read a third faster)."""
        href = ((activity.get("_links") or {}).get("results") or {}).get("href") or ""
        path = self._path_of(href) if href else ""
        if not path.startswith("/contact_exports/"):
            # The spec's example link says "contacts_exports"; the operation is contact_exports.
            path = f"/contact_exports/{activity['activity_id']}"
        response = self._request("GET", path, stream=True, accept="text/csv")
        try:
            text = io.TextIOWrapper(
                io.BufferedReader(_ChunkReader(response.iter_content(64 * 1024))),
                encoding="utf-8-sig",
                newline="",
            )
            for row in csv.reader(text):
                if row:  # a blank line is no row (as csv.DictReader has it)
                    yield row
        finally:
            response.close()

    def get_activity(self, activity_id: str) -> dict[str, Any]:
        """``GET /activities/{activity_id}`` (1 call)."""
        return self._json("GET", f"/activities/{activity_id}")  # type: ignore[no-any-return]

    def list_activities(self, state: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """``GET /activities`` (1 call): the account's recent activities, newest first.

        ``state`` narrows the listing (``processing``, ``completed``, ``failed``, ...); ``limit``
        is at most 500, Constant Contact's cap.
        """
        params: dict[str, Any] = {"limit": limit}
        if state is not None:
            params["state"] = state
        page = self._json("GET", "/activities", params=params)
        return list((page or {}).get("activities") or [])

    def first_poll_delay(self) -> float:
        """How long to wait before the first poll of an activity just posted.

        Constant Contact processes an activity in its own time, and a poll before it is done is
        a wasted call, so the first poll comes when this account's recent activities were done
        (``completed_at`` − ``created_at``: the slowest of the last few, plus 5 % and 20 ms), never
        later than ``FIRST_POLL_SECONDS`` (a long export must not delay the next small import's
        poll) nor sooner than ``MIN_FIRST_POLL_SECONDS``. With nothing seen yet:
        ``FIRST_POLL_SECONDS``. Learning is per client (one job's flushes share one).
        """
        if not self._activity_seconds:
            return FIRST_POLL_SECONDS
        typical = max(self._activity_seconds) * 1.05 + 0.02
        return min(FIRST_POLL_SECONDS, max(MIN_FIRST_POLL_SECONDS, typical))

    def _learn(self, activity: Mapping[str, Any]) -> None:
        """Remember how long a completed activity took, from its own timestamps."""
        try:
            took = (
                datetime.fromisoformat(str(activity["completed_at"]))
                - datetime.fromisoformat(str(activity["created_at"]))
            ).total_seconds()
        except (KeyError, TypeError, ValueError):
            return  # no or unreadable timestamps: nothing learned
        if took >= 0:
            self._activity_seconds.append(took)

    def wait_for_activity(
        self,
        activity_id: str,
        timeout: float = 600.0,
        *,
        first_delay: float | None = None,
        max_delay: float = 30.0,
    ) -> dict[str, Any]:
        """Poll ``GET /activities/{activity_id}`` with growing pauses until it ends (1 call a poll).

        Returns the final activity when ``completed`` (its ``activity_errors`` may still list
        rejected rows); raises :class:`ActivityFailed` for ``failed``/``cancelled``/``timed_out``
        and :class:`ActivityTimeout` when ``timeout`` seconds pass first.
        """
        return self.wait_for_activities(
            [activity_id], timeout, first_delay=first_delay, max_delay=max_delay
        )[0]

    def wait_for_activities(
        self,
        activity_ids: Sequence[str],
        timeout: float = 600.0,
        *,
        first_delay: float | None = None,
        max_delay: float = 30.0,
    ) -> list[dict[str, Any]]:
        """Wait for several activities, in input order: each round reads them all in one
        ``GET /activities`` listing (it carries each one's state and errors) when more than one
        is unfinished, and polls by id only those the listing no longer shows (1 call each).

        All are waited for before a failure is raised, so callers know what did complete:
        :class:`ActivityFailed` carries the first failed activity, ``.activities`` all of them.
        ``first_delay``: the pause before the first poll, by default :meth:`first_poll_delay`.
        """
        if first_delay is None:
            first_delay = self.first_poll_delay()
        deadline = self.monotonic() + timeout
        final: dict[str, dict[str, Any]] = {}
        pending = list(dict.fromkeys(activity_ids))
        delay = first_delay
        last: dict[str, dict[str, Any]] = {}
        if pending and first_delay > 0:
            # An activity just posted is never done yet: a poll now would be a wasted call.
            self.sleep(first_delay)
            delay = min(first_delay * 1.5, max_delay)
        while pending:
            listed: dict[str, dict[str, Any]] = {}
            if len(pending) > 1:
                listed = {str(a.get("activity_id")): a for a in self.list_activities()}
            for activity_id in list(pending):
                activity = listed.get(activity_id) or self.get_activity(activity_id)
                last[activity_id] = activity
                if activity.get("state") in FINAL_STATES:
                    final[activity_id] = activity
                    pending.remove(activity_id)
                    if activity.get("state") == "completed":
                        self._learn(activity)
            if not pending:
                break
            if self.monotonic() + delay > deadline:
                waiting = last[pending[0]]
                raise ActivityTimeout(
                    f"activity {pending[0]} still {waiting.get('state')} after {timeout:.0f}s "
                    f"({waiting.get('percent_done', 0)}% done)",
                    activity=waiting,
                    path="/activities",
                )
            self.sleep(delay)
            delay = min(delay * 1.5, max_delay)
        results = [final[a] for a in dict.fromkeys(activity_ids)]
        for activity in results:
            if activity.get("state") in FAILED_STATES:
                errors = activity.get("activity_errors") or []
                raise ActivityFailed(
                    f"activity {activity.get('activity_id')} {activity.get('state')}: "
                    + ("; ".join(str(e) for e in errors[:5]) or "no details given"),
                    activity=activity,
                    activities=results,
                    path="/activities",
                )
        return results


class _ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks, so csv can stream a download."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


def _iso_utc(when: datetime) -> str:
    """An ISO-8601 UTC timestamp as Constant Contact's date filters take it."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
