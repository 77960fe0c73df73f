"""Webhooks: Salesforce change events in, dirty ids recorded, a flush scheduled; no vendor calls.

`POST /webhooks/salesforce/<setup_id>` takes Change Data Capture events (one event, the CometD
envelope, or a batch) and Platform Events, authenticated per setup by either

- a shared secret, sent as `X-Webhook-Secret: <secret>` or `Authorization: Bearer <secret>` (what a
  Flow HTTP callout can send through a Named Credential), or
- an HMAC-SHA256 signature in the Standard Webhooks form: `webhook-id`, `webhook-timestamp` (unix
  seconds, accepted within five minutes) and `webhook-signature: v1,<base64 HMAC of
  "<id>.<timestamp>.<raw body>">` (several space-separated signatures allowed, for rotation).

Answers: 202 once the ids are durably in Redis and their flush is scheduled; 401 for missing or
wrong credentials *and* for an unknown setup, alike (same status, same body shape, the same
secret comparison against a stand-in secret, so the answer never tells which setup ids exist; the
detail only says what the request itself lacks); 409 for a setup whose `salesforce_changes` leave
this door out; 400 malformed, naming the field (invalid JSON,
nesting too deep, a `commitTimestamp` past the year 9999 ...); 413 too large, chunked bodies
included; 503 (with Retry-After) when Redis or the store is down, or the flush could not be
scheduled, so the sender retries instead of losing the event.

`accept` is the handler: `middleware.web.webhook_fast_path` calls it for this route outside
Flask's per-request machinery (the hot path), and the Flask view below calls it when that path
is off; both answer alike.

Dedupe: an event with a real id (channel + replayId, transaction key + sequence number, or a
Platform Event's EventUuid) is recorded once; a delivery seen before answers `duplicates` — and
still makes sure a flush is scheduled while the setup has ids waiting, so a retry after a failed
scheduling step is what schedules it. Events without a real id are recorded every time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, has_app_context, jsonify, request
from werkzeug.datastructures import EnvironHeaders

from middleware import metrics
from middleware.salesforce.events import InvalidEvents, parse_events
from middleware.services import changes
from middleware.services.lookups import storable_id
from middleware.store import connections as connection_repo
from middleware.store import setups as setup_repo
from middleware.web import get_redis, get_settings, get_store, handles, problem
from middleware.web.webhook_input import BodyTooLarge, read_body

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

SIGNATURE_TOLERANCE_SECONDS = 300
SETUP_CACHE_SECONDS = 15.0
# Unknown ids are remembered briefly too (a flood of one id costs one query per period), but
# only briefly: a setup created in another process since must not stay invisible for long.
UNKNOWN_CACHE_SECONDS = 2.0
# Setups (and unknown ids) remembered at most; a flood of made-up ids empties the cache instead
# of growing it.
SETUP_CACHE_MAX = 10_000


@dataclass(frozen=True)
class SetupView:
    """What the webhooks need of a setup, cached briefly so a burst costs no database reads.

    The Outbound Messages door (`middleware.web.outbound`) shares this cache: it also needs
    which doors the setup opened and the org id of its Salesforce connection.
    """

    setup_id: int
    secret: str
    auth: str
    platform_event: dict[str, Any] | None
    scope: changes.Scope
    doors: tuple[str, ...] = ("webhook",)
    org_id: str | None = None  # the Salesforce connection's org id, when known


_cache_lock = threading.Lock()
CACHE_KEY = "webhook_setups"

# What an unknown setup is checked against: a random secret no request can know, so an unknown id
# costs the same comparison as a known one and fails it.
_STAND_IN_SECRET = secrets.token_urlsafe(32)


def _cache() -> dict[int, tuple[float, SetupView | None]]:
    """This app's cache of setups, unknown ids included (one per app: test apps never share)."""
    return handles().setdefault(CACHE_KEY, {})  # type: ignore[no-any-return]


def load_setup(setup_id: int) -> SetupView | None:
    """The setup's view, or None for an id no setup has (remembered for a shorter while)."""
    if not storable_id(setup_id):
        # A larger id cannot name a setup (querying it raised a database error, "503 retry").
        return None
    now = time.monotonic()
    cache = _cache()
    with _cache_lock:
        cached = cache.get(setup_id)
    if cached is not None:
        ttl = SETUP_CACHE_SECONDS if cached[1] is not None else UNKNOWN_CACHE_SECONDS
        if now - cached[0] < ttl:
            return cached[1]
    view: SetupView | None = None
    with get_store().transaction() as session:
        setup = setup_repo.get(session, setup_id)
        if setup is not None:
            secret = setup_repo.webhook_secret(session, setup) or ""
            options = setup.options or {}
            webhook = options.get("webhook") or {}
            view = SetupView(
                setup_id=setup.id,
                secret=secret,
                auth=webhook.get("auth", "shared_secret"),
                platform_event=webhook.get("platform_event"),
                scope=changes.Scope.of(setup.id, options),
                doors=tuple(options.get("salesforce_changes") or ("webhook",)),
                org_id=_org_id(session, setup.salesforce_connection_id),
            )
    with _cache_lock:
        if len(cache) >= SETUP_CACHE_MAX:
            cache.clear()
        cache[setup_id] = (now, view)
    return view


def _org_id(session: Session, connection_id: int | None) -> str | None:
    """The org id of a setup's Salesforce connection (None without one, or not learnt yet)."""
    if connection_id is None:
        return None
    connection = connection_repo.get(session, connection_id)
    return connection.account_id if connection is not None else None


def forget_setup(setup_id: int) -> None:
    """Drop a cached setup (the admin API calls this when a setup or its secret changes)."""
    if not has_app_context():
        return
    with _cache_lock:
        _cache().pop(setup_id, None)


def _given_secret(headers: EnvironHeaders) -> str:
    given = headers.get("X-Webhook-Secret", "")
    if not given:
        auth = headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
    return given


def _shared_secret_ok(secret: str, headers: EnvironHeaders) -> bool:
    return secret_matches(secret, _given_secret(headers))


def secret_matches(secret: str, given: str) -> bool:
    """Constant-time comparison of a presented secret with the setup's (empty never matches)."""
    return bool(secret) and bool(given) and hmac.compare_digest(given.encode(), secret.encode())


def secret_of(view: SetupView | None) -> str:
    """The secret a request for this setup is checked against: a stand-in no request can know
    for an unknown setup, so both cost the same comparison (and the unknown one fails)."""
    return view.secret if view is not None else _STAND_IN_SECRET


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks `v1,<base64>` signature of a body (senders and tests use it too)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _hmac_problem(secret: str, body: bytes, now: float, headers: EnvironHeaders) -> str | None:
    """Why the signature is not acceptable, or None when it is."""
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not (msg_id and stamp and signatures):
        return "webhook-id, webhook-timestamp and webhook-signature headers are required"
    try:
        timestamp = int(stamp)
    except ValueError:
        return "webhook-timestamp must be unix seconds"
    if abs(now - timestamp) > SIGNATURE_TOLERANCE_SECONDS:
        return "webhook-timestamp is more than five minutes from now"
    expected = sign(secret, msg_id, timestamp, body)
    for candidate in signatures.split()[:8]:
        if hmac.compare_digest(candidate.encode(), expected.encode()):
            return None
    return "no signature matches"


def _authenticated(
    view: SetupView | None, body: bytes, now: float, headers: EnvironHeaders
) -> bool:
    """Whether the request proves it comes from the setup's sender (never for an unknown setup).

    An unknown setup is checked the same way against a stand-in secret, so both cost the same.
    """
    secret = secret_of(view)
    if view is not None:
        mode = view.auth
    else:
        mode = "hmac" if headers.get("webhook-signature") else "shared_secret"
    if mode == "hmac":
        ok = _hmac_problem(secret, body, now, headers) is None
    else:
        ok = _shared_secret_ok(secret, headers)
    return ok and view is not None


def _refusal(setup_id: int, now: float, headers: EnvironHeaders) -> str:
    """What an unauthenticated request is told: only what the request itself lacks, never
    anything that depends on whether the setup exists or how it authenticates."""
    has_hmac = any(headers.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not has_hmac and not _given_secret(headers):
        return (
            f"no setup {setup_id} accepts this request: no credentials were sent (send the "
            "setup's secret as X-Webhook-Secret or Authorization: Bearer, or sign the body "
            "with webhook-id, webhook-timestamp and webhook-signature)"
        )
    if has_hmac:
        stamp = headers.get("webhook-timestamp", "")
        try:
            if abs(now - int(stamp)) > SIGNATURE_TOLERANCE_SECONDS:
                return (
                    f"no setup {setup_id} accepts this request: webhook-timestamp is more than "
                    "five minutes from now"
                )
        except ValueError:
            return (
                f"no setup {setup_id} accepts this request: webhook-timestamp must be unix seconds"
            )
    return f"no setup {setup_id} accepts this request: unknown setup, or wrong credentials"


# The 202's document (a plain value, so the fast path can write it without Flask's response
# machinery; the view below answers it with `jsonify`, as the fast path's bytes do).
Accepted = changes.Recorded


@bp.post("/salesforce/<int:setup_id>")
def salesforce(setup_id: int) -> Response | tuple[Response, int]:
    """Accept change events for one setup (`accept`); `webhook_fast_path` usually serves it."""
    answer = accept(setup_id, request.environ)
    if isinstance(answer, Accepted):
        return jsonify(answer.document()), 202
    return answer


def accept(setup_id: int, environ: dict[str, Any]) -> Response | Accepted:
    """Verify, validate, record ids, schedule a flush: the webhook, given its WSGI environ.

    Answers `Accepted` (the 202's document) or an error response. Needs an app context only
    (no request context), so the fast path can call it as is.
    """
    settings = get_settings()
    headers = EnvironHeaders(environ)
    try:
        body = read_body(settings.webhook_max_bytes, environ)
    except BodyTooLarge:
        metrics.webhook_event("salesforce", "rejected", "too_large")
        return problem(
            413, "Payload Too Large", f"bodies are limited to {settings.webhook_max_bytes} bytes"
        )
    try:
        view = load_setup(setup_id)
    except Exception:
        log.exception("could not load setup %s for a webhook", setup_id)
        response = problem(503, "Service Unavailable", "the store is unavailable; retry")
        response.headers["Retry-After"] = "5"
        return response

    now = time.time()
    if not _authenticated(view, body, now, headers):
        # One label for both: /metrics is public, and must not tell which ids exist either.
        metrics.webhook_event("salesforce", "rejected", "unauthorized")
        if view is not None:
            log.info("webhook for setup %s refused: missing or wrong credentials", setup_id)
        return problem(401, "Unauthorized", _refusal(setup_id, now, headers))
    assert view is not None  # an unknown setup never authenticates
    if "webhook" not in view.doors:
        metrics.webhook_event("salesforce", "rejected", "door_closed")
        return problem(
            409,
            "Conflict",
            f"setup {setup_id} takes its Salesforce changes through {', '.join(view.doors)}, "
            'not this webhook: add "webhook" to its salesforce_changes to use it',
        )

    try:
        hints = parse_events(
            body,
            call_client=settings.salesforce_call_client,
            platform_event=view.platform_event,
        )
    except InvalidEvents as exc:
        metrics.webhook_event("salesforce", "rejected", "invalid")
        return problem(400, "Bad Request", str(exc), field=exc.field, errors=exc.errors)

    try:
        recorded = changes.record(
            get_redis(), view.scope, hints, flush_delay=settings.flush_delay_seconds
        )
    except changes.NotRecorded as exc:
        if exc.reason == "redis_down":
            log.error("Redis unavailable; refusing events for setup %s", setup_id, exc_info=exc)
        else:
            log.error("could not schedule the flush of setup %s", setup_id, exc_info=exc)
        metrics.webhook_event("salesforce", "rejected", exc.reason)
        response = problem(503, "Service Unavailable", str(exc))
        response.headers["Retry-After"] = "5"
        return response
    metrics.webhook_event("salesforce", "accepted", "duplicate" if not recorded.accepted else "")
    return recorded
