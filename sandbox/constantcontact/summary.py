"""`GET /v3/account/summary`: who the connected account is (the spec's `Customer`).

The service reads `encoded_account_id` right after a Connect, so that connecting the same
account again re-authorises its connection instead of adding a second one. The organisation's
details are fixed sandbox values; `extra_fields` adds `physical_address` and/or `company_logo`.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from sandbox.constantcontact import errors
from sandbox.constantcontact.account import current_sandbox

bp = Blueprint("cc_summary", __name__, url_prefix="/v3")

EXTRA_FIELDS = ("physical_address", "company_logo")


@bp.get("/account/summary")
def account_summary() -> Response:
    config = current_sandbox().config
    asked = [f.strip() for f in request.args.get("extra_fields", "").split(",") if f.strip()]
    unknown = [f for f in asked if f not in EXTRA_FIELDS]
    if unknown:
        raise errors.bad_request(f"extra_fields value {unknown[0]} is not valid.")
    body: dict[str, Any] = {
        "contact_email": "owner@sandbox.example.org",
        "contact_phone": "5085550100",
        "country_code": "US",
        "encoded_account_id": config["ACCOUNT_ID"],
        "first_name": "Sandbox",
        "last_name": "Owner",
        "organization_name": config.get("ORGANIZATION_NAME") or "Sandbox Nonprofit",
        "organization_phone": "508-555-0100",
        "state_code": "MA",
        "time_zone_id": "US/Eastern",
        "website": "https://sandbox.example.org",
    }
    if "physical_address" in asked:
        body["physical_address"] = {
            "address_line1": "1 Sandbox Way",
            "city": "Waltham",
            "state_code": "MA",
            "postal_code": "02451",
            "country_code": "US",
        }
    if "company_logo" in asked:
        body["company_logo"] = {
            "url": "https://sandbox.example.org/logo.png",
            "external_url": "https://sandbox.example.org/logo.png",
            "internal_id": "1",
        }
    return jsonify(body)
