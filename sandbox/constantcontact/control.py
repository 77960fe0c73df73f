"""Control routes under `/_sandbox/` (no token): seeding, read-back, unsubscribes, emails, state.

They are added to the shared control blueprint (`sandbox.common.control_blueprint`), which already
serves the clock, faults and reset.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from typing import Any

import requests
from flask import Blueprint, Response, jsonify, request

from sandbox.constantcontact.account import current_sandbox
from sandbox.constantcontact.emails import RATE_KEYS
from sandbox.constantcontact.store import INCLUDES

log = logging.getLogger(__name__)

PARTNER_EVENTS = ("tier.increase", "tier.decrease", "account.cancel", "account.disable")


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def add_routes(bp: Blueprint) -> None:
    @bp.post("/seed")
    def seed() -> tuple[Response, int]:
        body = _body()
        try:
            count = int(body.get("contacts", 0))
            ratio = float(body.get("unsubscribed_ratio", 0.0))
            seed_value = int(body.get("seed", 42))
        except (TypeError, ValueError):
            return jsonify(error="contacts, unsubscribed_ratio and seed must be numbers"), 400
        lists = body.get("lists", ["Main"])
        if not isinstance(lists, list) or not all(isinstance(x, str) and x for x in lists):
            return jsonify(error="lists must be an array of list names"), 400
        if count < 0 or not 0.0 <= ratio <= 1.0:
            return jsonify(error="contacts must be >= 0 and unsubscribed_ratio within 0..1"), 400
        store = current_sandbox().store
        result = store.seed(count, lists, ratio, seed_value, str(body.get("domain", "example.com")))
        names = store.list_names()
        result["list_ids"] = {name: lid for lid, name in names.items() if name in lists}
        return jsonify(result), 201

    @bp.get("/contacts")
    def read_back() -> tuple[Response, int] | Response:
        email = request.args.get("email", "")
        store = current_sandbox().store
        row = store.contact_by_email(email)
        if row is None:
            return jsonify(error="no contact has this email address"), 404
        contact = store.render_contact(row, INCLUDES)
        names = store.list_names()
        fields = {f["custom_field_id"]: f["name"] for f in store.custom_fields()}
        contact["list_names"] = [names[x] for x in contact["list_memberships"]]
        contact["custom_fields_by_name"] = {
            fields[c["custom_field_id"]]: c["value"]
            for c in contact["custom_fields"]
            if c["custom_field_id"] in fields
        }
        return jsonify(contact)

    @bp.post("/unsubscribe")
    def unsubscribe() -> Response:
        body = _body()
        store = current_sandbox().store
        row = store.unsubscribe_by_person(str(body.get("email", "")), body.get("reason"))
        return jsonify(store.render_contact(row, INCLUDES))

    @bp.post("/emails")
    def send_email() -> tuple[Response, int]:
        return jsonify(current_sandbox().emails.create(_body())), 201

    @bp.post("/emails/seed")
    def seed_emails() -> tuple[Response, int]:
        body = _body()
        rates = body.get("rates") or {}
        try:
            count = int(body.get("campaigns", 1))
            days = float(body.get("days_apart", 7))
            seed_value = int(body.get("seed", 42))
            rates = {str(k): float(v) for k, v in dict(rates).items()}
        except (TypeError, ValueError):
            return jsonify(error="campaigns, days_apart, seed and rates must be numbers"), 400
        if not 1 <= count <= 500 or days <= 0:
            return jsonify(error="campaigns must be 1..500 and days_apart above 0"), 400
        known = RATE_KEYS
        if any(k not in known or not 0.0 <= v <= 1.0 for k, v in rates.items()):
            return jsonify(error=f"rates takes {known}, each within 0..1"), 400
        list_ids = body.get("list_ids")
        if list_ids is not None and not (
            isinstance(list_ids, list) and all(isinstance(x, str) for x in list_ids)
        ):
            return jsonify(error="list_ids must be an array of list ids"), 400
        emails = current_sandbox().emails
        interval = int(days * 86400 * 1000)
        return jsonify(emails.seed(count, list_ids, rates, interval, seed_value)), 201

    @bp.post("/emails/<campaign_id>/resend")
    def resend_email(campaign_id: str) -> tuple[Response, int]:
        return jsonify(current_sandbox().emails.resend(campaign_id, _body())), 201

    @bp.post("/emails/<campaign_activity_id>/send")
    def send_activity(campaign_activity_id: str) -> tuple[Response, int]:
        return jsonify(current_sandbox().emails.send(campaign_activity_id, _body())), 201

    @bp.post("/emails/<campaign_activity_id>/simulate")
    def simulate_email(campaign_activity_id: str) -> tuple[Response, int]:
        return jsonify(current_sandbox().emails.simulate(campaign_activity_id, _body())), 201

    @bp.post("/emails/<campaign_activity_id>/events")
    def email_events(campaign_activity_id: str) -> tuple[Response, int]:
        events = request.get_json(silent=True)
        return jsonify(current_sandbox().emails.record_events(campaign_activity_id, events)), 201

    @bp.post("/snapshot")
    def snapshot() -> tuple[Response, int]:
        sandbox = current_sandbox()
        path = _body().get("path") or sandbox.config.get("SNAPSHOT")
        if not path:
            return jsonify(error="give 'path' or configure SNAPSHOT"), 400
        sandbox.store.snapshot(str(path))
        return jsonify(path=str(path)), 201

    @bp.get("/state")
    def state() -> Response:
        sandbox = current_sandbox()
        return jsonify(
            records=sandbox.store.counts(),
            calls=sandbox.gate.state(),
            activities=sandbox.activities.state(),
            emails=sandbox.emails.counts(),
        )

    @bp.post("/tokens")
    def tokens() -> tuple[Response, int]:
        sandbox = current_sandbox()
        scope = str(_body().get("scope") or "contact_data campaign_data offline_access")
        return jsonify(sandbox.auth.issue(sandbox.config["CLIENT_ID"], scope)), 201

    @bp.post("/tokens/expire")
    def expire_tokens() -> Response:
        return jsonify(expired=current_sandbox().auth.expire_all())

    @bp.post("/partner_webhook")
    def partner_webhook() -> tuple[Response, int]:
        sandbox = current_sandbox()
        body = _body()
        url, event = body.get("url"), body.get("event_type", "account.cancel")
        if not url or event not in PARTNER_EVENTS:
            return jsonify(error=f"give 'url' and an event_type among {PARTNER_EVENTS}"), 400
        account = sandbox.config["ACCOUNT_ID"]
        payload = {
            "url": f"https://api.cc.email/v3/partner/accounts/{account}/plan",
            "api_key": sandbox.config["PARTNER_API_KEY"],
            "event_type": event,
        }
        # Signed like Constant Contact's partner webhooks (V2's x-ctct-hmac-sha256: base64
        # HMAC-SHA256 of the raw body keyed with the API key's secret, here the client secret).
        raw = json.dumps(payload).encode()
        digest = hmac.new(sandbox.config["CLIENT_SECRET"].encode(), raw, hashlib.sha256).digest()
        headers = {
            "Content-Type": "application/json",
            "x-ctct-hmac-sha256": base64.b64encode(digest).decode(),
        }
        http = sandbox.http or requests.Session()
        try:
            resp = http.post(url, data=raw, headers=headers, timeout=10)
        except requests.RequestException as exc:
            log.warning("partner webhook delivery failed: %s", type(exc).__name__)
            return jsonify(delivered=False, error=type(exc).__name__, payload=payload), 502
        return jsonify(delivered=resp.ok, status=resp.status_code, payload=payload), 200
