"""Webhooks: Constant Contact's partner billing events in; a cancelled account pauses its setups.

`POST /webhooks/constantcontact` takes the only webhooks Constant Contact sends (api-notes §8):
``tier.increase``, ``tier.decrease``, ``account.cancel`` and ``account.disable``, each a pointer
``{"url": ".../v3/partner/accounts/<id>/plan", "api_key", "event_type"}``. There are no contact
or unsubscribe webhooks: those changes are polled (:mod:`middleware.poll`).

- When a secret is configured (``CC_WEBHOOK_SECRET``), the body must carry
  ``x-ctct-hmac-sha256``: the base64 HMAC-SHA256 of the raw body under that secret (the V2
  partner webhook signature; V3 documents none), else 401.
- ``account.cancel`` / ``account.disable`` pause every setup whose Constant Contact connection is
  that account (until someone resumes it): nothing is read from or written to a dead account,
  and ``/readyz`` and the admin API show the reason. Tier changes are acknowledged and logged.
- No vendor calls: the view only records the pause. Answers 200 with what it did (an unknown
  account is not an error: Constant Contact retries non-2xx answers every minute for an hour),
  400 malformed naming the field, 401 bad signature, 413 too large, 503 when the store is down
  so Constant Contact retries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging

from flask import Blueprint, Response, jsonify, request
from marshmallow import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge

from middleware import metrics
from middleware.store import setups as setup_repo
from middleware.store.models import Connection, Setup
from middleware.web import get_settings, get_store
from schemas.cc_webhooks import STOPPING_EVENTS, PartnerWebhookSchema

log = logging.getLogger(__name__)

bp = Blueprint("cc_webhooks", __name__, url_prefix="/webhooks")

SIGNATURE_HEADER = "x-ctct-hmac-sha256"
SOURCE = "constantcontact"


def sign(secret: str, body: bytes) -> str:
    """The ``x-ctct-hmac-sha256`` value of a body (senders and tests use it too)."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _secret() -> str | None:
    # Settings own configuration; until they carry this option, read it from the environment.
    settings = get_settings()
    return settings.cc_webhook_secret or None


def _problem(status: int, title: str, detail: str, **extra: object) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    return response


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
    length = request.content_length
    if length is not None and length > settings.webhook_max_bytes:
        metrics.webhook_event(SOURCE, "rejected", "too_large")
        return _problem(413, "Payload Too Large", "body too large")
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        metrics.webhook_event(SOURCE, "rejected", "too_large")
        return _problem(413, "Payload Too Large", "body too large")

    secret = _secret()
    if secret is not None:
        given = request.headers.get(SIGNATURE_HEADER, "")
        if not given or not hmac.compare_digest(given.encode(), sign(secret, body).encode()):
            metrics.webhook_event(SOURCE, "rejected", "unauthorized")
            return _problem(401, "Unauthorized", f"missing or wrong {SIGNATURE_HEADER}")

    try:
        payload = json.loads(body or b"null")
    except ValueError:
        metrics.webhook_event(SOURCE, "rejected", "invalid")
        return _problem(400, "Bad Request", "the body is not JSON")
    if not isinstance(payload, dict):
        metrics.webhook_event(SOURCE, "rejected", "invalid")
        return _problem(400, "Bad Request", "the body must be a JSON object")
    try:
        event = PartnerWebhookSchema().load(payload)
    except ValidationError as exc:
        metrics.webhook_event(SOURCE, "rejected", "invalid")
        field = next(iter(exc.normalized_messages()), None)
        return _problem(
            400,
            "Bad Request",
            "invalid partner webhook",
            field=field,
            errors=exc.normalized_messages(),
        )

    account_id, event_type = event["account_id"], event["event_type"]
    paused: list[int] = []
    reason = STOPPING_EVENTS.get(event_type)
    if reason is not None:
        try:
            paused = pause_account(account_id, reason)
        except SQLAlchemyError:
            log.exception(
                "store unavailable; refusing %s for a Constant Contact account", event_type
            )
            metrics.webhook_event(SOURCE, "rejected", "store_down")
            response = _problem(503, "Service Unavailable", "store unavailable; retry later")
            response.headers["Retry-After"] = "60"
            return response
        log.warning(
            "Constant Contact %s for account %s: paused setups %s", event_type, account_id, paused
        )
    else:
        log.info("Constant Contact %s for account %s", event_type, account_id)
    metrics.webhook_event(SOURCE, "accepted", event_type)
    return jsonify(event_type=event_type, account_id=account_id, paused_setups=paused), 200
