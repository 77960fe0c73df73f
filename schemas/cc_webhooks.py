"""Schemas for Constant Contact's partner webhooks: the four billing topics, as a pointer.

Constant Contact posts ``{"url": "https://api.cc.email/v3/partner/accounts/<id>/plan",
"api_key": "...", "event_type": "tier.increase"}`` (api-notes §8). The body carries no account
details beyond the account id inside ``url``; :class:`PartnerWebhookSchema` loads it with unknown
keys excluded (vendors add fields) and adds ``account_id``.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate, validates

EVENT_TYPES = ("tier.increase", "tier.decrease", "account.cancel", "account.disable")
# Events after which nothing may be read from or written to the account.
STOPPING_EVENTS = {
    "account.cancel": "Constant Contact account cancelled",
    "account.disable": "Constant Contact account disabled",
}
_PLAN_URL = re.compile(r"/partner/accounts/(?P<account>[^/?#\s]+)/plan/?(?:[?#].*)?$")


class PartnerWebhookSchema(Schema):
    """One partner webhook delivery."""

    class Meta:
        unknown = EXCLUDE

    url = fields.String(
        required=True,
        validate=validate.Length(max=2000),
        metadata={"description": "Partner API URL of the account's plan (a pointer)."},
    )
    api_key = fields.String(
        load_default=None,
        allow_none=True,
        metadata={"description": "The partner's API key (never stored or logged)."},
    )
    event_type = fields.String(
        required=True,
        validate=validate.OneOf(EVENT_TYPES),
        metadata={"description": "The billing topic.", "enum": list(EVENT_TYPES)},
    )

    @validates("url")
    def _plan_url(self, value: str, **_: Any) -> None:
        if not _PLAN_URL.search(value):
            raise ValidationError("Expected .../v3/partner/accounts/<account id>/plan.")

    @post_load
    def _account(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        match = _PLAN_URL.search(data["url"])
        assert match is not None  # validated above
        data["account_id"] = match.group("account")
        return data
