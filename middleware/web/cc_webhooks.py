"""Webhooks: Constant Contact's partner billing events in; a cancelled account pauses its setups.

`POST /webhooks/constantcontact` takes the only webhooks Constant Contact sends (api-notes §8):
``tier.increase``, ``tier.decrease``, ``account.cancel`` and ``account.disable``, each a pointer
``{"url": ".../v3/partner/accounts/<id>/plan", "api_key", "event_type"}``. There are no contact
or unsubscribe webhooks: those changes are polled (:mod:`middleware.cc_to_sf.poll`).

- ``CC_WEBHOOK_SECRET`` must be set: every delivery must carry ``x-ctct-hmac-sha256``, the base64
  HMAC-SHA256 of the raw body under that secret (the V2 partner webhook signature; V3 documents
  none), else 401. While the secret is unset every delivery is refused with 403 saying so (an
  unverifiable body could pause any setup), and ``/readyz?verbose`` says so too.
- Replays: a signed body acted on is remembered (its signature, in Redis) for
  ``REPLAY_WINDOW_SECONDS`` (24 h). The signature covers only the body, which carries no id or
  time, so the same signed body again is refused with 409 (``"replay": true``) and does nothing:
  a captured cancel replayed after an operator resumed must not pause the setup again. A
  delivery that failed (400, 401, 503) is not remembered, so Constant Contact's retry of it is
  acted on; the one cost is a delivery whose 200 Constant Contact never saw, which it retries
  (each minute for an hour, api-notes §8) into 409s that change nothing.
- ``account.cancel`` / ``account.disable`` pause every setup whose Constant Contact connection is
  that account (until someone resumes it): nothing is read from or written to a dead account,
  and ``/readyz`` and the admin API show the reason. Tier changes are acknowledged and logged.
- No vendor calls: the view only records the pause. Answers 200 with what it did (an unknown
  account is not an error), 400 malformed naming the field (invalid JSON, nesting too deep ...),
  401 bad signature, 403 not configured, 409 a replay, 413 too large (chunked bodies too), 503
  when the store or Redis is down so Constant Contact retries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging

from flask import Blueprint, Response, jsonify, request
from marshmallow import ValidationError
from redis.exceptions import RedisError
from sqlalchemy import select

from middleware import metrics
from middleware.store import setups as setup_repo
from middleware.store.models import Connection, Setup
from middleware.web import get_redis, get_settings, get_store, problem
from middleware.web.webhook_input import BodyTooLarge, read_body
from schemas.cc_webhooks import STOPPING_EVENTS, PartnerWebhookSchema
from schemas.json_input import BadJson, load_json

log = logging.getLogger(__name__)

bp = Blueprint("cc_webhooks", __name__, url_prefix="/webhooks")

SIGNATURE_HEADER = "x-ctct-hmac-sha256"
SOURCE = "constantcontact"
# How long a signed body acted on is remembered: far past Constant Contact's own retries (every
# minute for an hour) and a day of anyone replaying a captured delivery.
REPLAY_WINDOW_SECONDS = 24 * 3600
REPLAY_PREFIX = "ctct:ccwebhook:seen:"


def sign(secret: str, body: bytes) -> str:
    """The ``x-ctct-hmac-sha256`` value of a body (senders and tests use it too)."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _secret() -> str | None:
    return get_settings().cc_webhook_secret or None


def replay_key(signature: str) -> str:
    """The Redis key remembering a signed body acted on."""
    return REPLAY_PREFIX + hashlib.sha256(signature.encode()).hexdigest()


def pause_account(account_id: str, reason: str) -> list[int]:
    """Pause the setups of every Constant Contact connection to ``account_id``; return their ids."""
    with get_store().transaction() as session:
        connection_ids = list(
            session.scalars(
                select(Connection.id).where(
                    Connection.vendor == SOURCE, Connection.account_id == account_id
                )
            )
        )
        if not connection_ids:
            return []
        setup_ids = list(
            session.scalars(
                select(Setup.id)
                .where(Setup.constant_contact_connection_id.in_(connection_ids))
                .order_by(Setup.id)
            )
        )
        for setup_id in setup_ids:
            setup_repo.pause(session, setup_id, reason)
    return setup_ids


@bp.post("/constantcontact")
def constantcontact() -> Response | tuple[Response, int]:
    """Accept a partner webhook: verify, validate, pause setups of a cancelled account."""
    settings = get_settings()
    try:
        body = read_body(settings.webhook_max_bytes, request.environ)
    except BodyTooLarge:
        metrics.webhook_event(SOURCE, "rejected", "too_large")
        return problem(
            413, "Payload Too Large", f"bodies are limited to {settings.webhook_max_bytes} bytes"
        )

    secret = _secret()
    if secret is None:
        metrics.webhook_event(SOURCE, "rejected", "not_configured")
        return problem(
            403,
            "Forbidden",
            "Constant Contact partner webhooks are not configured on this service: set "
            f"CC_WEBHOOK_SECRET to the secret that signs {SIGNATURE_HEADER}; until then every "
            "delivery is refused",
        )
    given = request.headers.get(SIGNATURE_HEADER, "")
    if not given or not hmac.compare_digest(given.encode(), sign(secret, body).encode()):
        metrics.webhook_event(SOURCE, "rejected", "unauthorized")
        return problem(401, "Unauthorized", f"missing or wrong {SIGNATURE_HEADER}")

    try:
        payload = load_json(body or b"null")
    except BadJson as exc:
        metrics.webhook_event(SOURCE, "rejected", "invalid")
        return problem(400, "Bad Request", f"the body is not JSON: {exc}")
    if not isinstance(payload, dict):
        metrics.webhook_event(SOURCE, "rejected", "invalid")
        return problem(400, "Bad Request", "the body must be a JSON object")
    try:
        event = PartnerWebhookSchema().load(payload)
    except ValidationError as exc:
        metrics.webhook_event(SOURCE, "rejected", "invalid")
        field = next(iter(exc.normalized_messages()), None)
        return problem(
            400,
            "Bad Request",
            "invalid partner webhook",
            field=field,
            errors=exc.normalized_messages(),
        )

    account_id, event_type = event["account_id"], event["event_type"]
    # Claim the signature before acting, so two concurrent deliveries act once; a delivery that
    # then fails gives its claim back, so Constant Contact's retry is acted on.
    seen = replay_key(given)
    try:
        redis = get_redis()
        fresh = bool(redis.set(seen, "1", nx=True, ex=REPLAY_WINDOW_SECONDS))
    except RedisError:
        log.exception("Redis unavailable; refusing %s for a Constant Contact account", event_type)
        metrics.webhook_event(SOURCE, "rejected", "redis_down")
        response = problem(503, "Service Unavailable", "queue unavailable; retry later")
        response.headers["Retry-After"] = "60"
        return response
    if not fresh:
        log.warning(
            "Constant Contact %s for account %s: a replay of a delivery already acted on; ignored",
            event_type,
            account_id,
        )
        metrics.webhook_event(SOURCE, "rejected", "replay")
        return problem(
            409,
            "Conflict",
            "a replay: this signed delivery was already received and acted on; ignored",
            event_type=event_type,
            account_id=account_id,
            paused_setups=[],
            replay=True,
        )

    paused: list[int] = []
    reason = STOPPING_EVENTS.get(event_type)
    if reason is not None:
        try:
            paused = pause_account(account_id, reason)
        except Exception:
            log.exception(
                "store unavailable; refusing %s for a Constant Contact account", event_type
            )
            _forget(seen)
            metrics.webhook_event(SOURCE, "rejected", "store_down")
            response = problem(503, "Service Unavailable", "store unavailable; retry later")
            response.headers["Retry-After"] = "60"
            return response
        log.warning(
            "Constant Contact %s for account %s: paused setups %s", event_type, account_id, paused
        )
    else:
        log.info("Constant Contact %s for account %s", event_type, account_id)
    metrics.webhook_event(SOURCE, "accepted", event_type)
    return jsonify(
        event_type=event_type, account_id=account_id, paused_setups=paused, replay=False
    ), 200


def _forget(seen: str) -> None:
    """Give back a replay claim (the delivery failed; its retry must be acted on)."""
    try:
        get_redis().delete(seen)
    except RedisError:
        log.warning("could not forget a failed partner webhook; its retry will count as a replay")
