"""Webhooks: Salesforce change events in, dirty ids recorded, a flush scheduled; no vendor calls.

`POST /webhooks/salesforce/<setup_id>` takes Change Data Capture events (one event, the CometD
envelope, or a batch) and Platform Events, authenticated per setup by either

- a shared secret, sent as `X-Webhook-Secret: <secret>` or `Authorization: Bearer <secret>` (what a
  Flow HTTP callout can send through a Named Credential), or
- an HMAC-SHA256 signature in the Standard Webhooks form: `webhook-id`, `webhook-timestamp` (unix
  seconds, accepted within five minutes) and `webhook-signature: v1,<base64 HMAC of
  "<id>.<timestamp>.<raw body>">` (several space-separated signatures allowed, for rotation).

Answers: 202 once the ids are durably in Redis; 401 bad or missing credentials; 400 malformed,
naming the field; 413 too large; 404 unknown setup; 503 (with Retry-After) when Redis is down, so
the sender retries instead of losing the event.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, has_app_context, jsonify, request
from redis.exceptions import RedisError
from werkzeug.exceptions import RequestEntityTooLarge

from middleware import intake, metrics, queue
from middleware.salesforce.events import ChangeHint, InvalidEvents, parse_events
from middleware.store import setups as setup_repo
from middleware.web import get_redis, get_settings, get_store, handles, problem

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

SIGNATURE_TOLERANCE_SECONDS = 300
SETUP_CACHE_SECONDS = 15.0

# Which change events matter to a setup of each object type. Account changes reach Contact
# setups too: a renamed Account changes its contacts' company name.
RELEVANT_ENTITIES = {
    "Contact": ("Contact", "Account"),
    "Lead": ("Lead",),
    "Account": ("Account",),
}


@dataclass(frozen=True)
class _SetupView:
    """What the intake needs of a setup, cached briefly so a burst costs no database reads."""

    setup_id: int
    secret: str
    auth: str
    object_type: str
    platform_event: dict[str, Any] | None
    loaded_at: float


_cache_lock = threading.Lock()
CACHE_KEY = "webhook_setups"


def _cache() -> dict[int, _SetupView]:
    """This app's cache of setups (one per app, so test apps never see each other's)."""
    return handles().setdefault(CACHE_KEY, {})  # type: ignore[no-any-return]


def _load_setup(setup_id: int) -> _SetupView | None:
    now = time.monotonic()
    cache = _cache()
    with _cache_lock:
        cached = cache.get(setup_id)
    if cached is not None and now - cached.loaded_at < SETUP_CACHE_SECONDS:
        return cached
    with get_store().transaction() as session:
        setup = setup_repo.get(session, setup_id)
        if setup is None:
            return None
        secret = setup_repo.webhook_secret(session, setup) or ""
        options = setup.options or {}
        webhook = options.get("webhook") or {}
        view = _SetupView(
            setup_id=setup.id,
            secret=secret,
            auth=webhook.get("auth", "shared_secret"),
            object_type=options.get("object_type", "Contact"),
            platform_event=webhook.get("platform_event"),
            loaded_at=now,
        )
    with _cache_lock:
        cache[setup_id] = view
    return view


def forget_setup(setup_id: int) -> None:
    """Drop a cached setup (the admin API calls this when a setup or its secret changes)."""
    if not has_app_context():
        return
    with _cache_lock:
        _cache().pop(setup_id, None)


def _shared_secret_ok(secret: str) -> bool:
    given = request.headers.get("X-Webhook-Secret", "")
    if not given:
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
    return bool(secret) and bool(given) and hmac.compare_digest(given.encode(), secret.encode())


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks `v1,<base64>` signature of a body (senders and tests use it too)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _hmac_problem(secret: str, body: bytes, now: float) -> str | None:
    """Why the signature is not acceptable, or None when it is."""
    msg_id = request.headers.get("webhook-id", "")
    stamp = request.headers.get("webhook-timestamp", "")
    signatures = request.headers.get("webhook-signature", "")
    if not (msg_id and stamp and signatures):
        return "webhook-id, webhook-timestamp and webhook-signature headers are required"
    try:
        timestamp = int(stamp)
    except ValueError:
        return "webhook-timestamp must be unix seconds"
    if abs(now - timestamp) > SIGNATURE_TOLERANCE_SECONDS:
        return "webhook-timestamp is more than five minutes from now"
    expected = sign(secret, msg_id, timestamp, body)
    for candidate in signatures.split():
        if hmac.compare_digest(candidate.encode(), expected.encode()):
            return None
    return "no signature matches"


def _relevant(hints: list[ChangeHint], object_type: str) -> tuple[list[ChangeHint], int, int]:
    wanted = RELEVANT_ENTITIES.get(object_type, (object_type,))
    keep: list[ChangeHint] = []
    echoes = other = 0
    for hint in hints:
        if hint.is_own_echo:
            echoes += 1  # our own write coming back: we already know
        elif hint.entity not in wanted:
            other += 1
        else:
            keep.append(hint)
    return keep, echoes, other


@bp.post("/salesforce/<int:setup_id>")
def salesforce(setup_id: int) -> Response | tuple[Response, int]:
    """Accept change events for one setup: verify, validate, record ids, schedule a flush."""
    settings = get_settings()
    length = request.content_length
    if length is not None and length > settings.webhook_max_bytes:
        metrics.webhook_event("salesforce", "rejected", "too_large")
        return problem(
            413, "Payload Too Large", f"bodies are limited to {settings.webhook_max_bytes} bytes"
        )
    try:
        view = _load_setup(setup_id)
    except Exception:
        log.exception("could not load setup %s for a webhook", setup_id)
        return problem(503, "Service Unavailable", "the store is unavailable; retry")
    if view is None:
        metrics.webhook_event("salesforce", "rejected", "unknown_setup")
        return problem(404, "Not Found", f"no setup {setup_id}")

    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        metrics.webhook_event("salesforce", "rejected", "too_large")
        return problem(413, "Payload Too Large", "body too large")

    if view.auth == "hmac":
        reason = _hmac_problem(view.secret, body, time.time())
        if reason is not None:
            metrics.webhook_event("salesforce", "rejected", "unauthorized")
            return problem(401, "Unauthorized", reason)
    elif not _shared_secret_ok(view.secret):
        metrics.webhook_event("salesforce", "rejected", "unauthorized")
        return problem(401, "Unauthorized", "missing or wrong webhook secret")

    try:
        hints = parse_events(
            body,
            call_client=settings.salesforce_call_client,
            platform_event=view.platform_event,
        )
    except InvalidEvents as exc:
        metrics.webhook_event("salesforce", "rejected", "invalid")
        return problem(400, "Bad Request", str(exc), field=exc.field, errors=exc.errors)

    keep, echoes, other = _relevant(hints, view.object_type)
    try:
        redis = get_redis()
        flush_key = f"flush-{setup_id}"
        added = intake.add_hints(redis, setup_id, keep, guard_key=queue.guard_key(flush_key))
        scheduled = None
        if added.fresh and not queue.guard_is_fresh(added.guard, settings.flush_delay_seconds):
            scheduled = queue.ensure_scheduled(
                flush_key,
                "jobs.flush.flush_setup",
                [setup_id],
                delay=settings.flush_delay_seconds,
                queue=queue.WEBHOOKS,
                connection=redis,
            )
    except RedisError:
        log.exception("Redis unavailable; refusing events for setup %s", setup_id)
        metrics.webhook_event("salesforce", "rejected", "redis_down")
        response = problem(503, "Service Unavailable", "queue unavailable; retry later")
        response.headers["Retry-After"] = "5"
        return response

    metrics.webhook_event("salesforce", "accepted", "duplicate" if not added.fresh else "")
    return (
        jsonify(
            accepted=added.fresh,
            duplicates=added.duplicates,
            echoes_ignored=echoes,
            other_objects_ignored=other,
            flush_scheduled=scheduled is not None,
        ),
        202,
    )
