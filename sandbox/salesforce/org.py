"""One running Salesforce sandbox org: its settings, clock, faults and parts.

Every route module reaches it through `current_sandbox()`; `build.assemble` fills in its parts.
"""

from __future__ import annotations

import time
from typing import Any

from flask import current_app

from sandbox.common import Clock, Faults

DEFAULTS: dict[str, Any] = {
    "CLIENT_ID": "sandbox-client-id",
    "CLIENT_SECRET": "sandbox-client-secret",
    "ACCESS_TOKEN_TTL": 7200,  # seconds; then every call answers 401 INVALID_SESSION_ID
    # oldest still served .. current (Spring '26 = 66.0)
    "API_VERSIONS": [f"{v}.0" for v in range(31, 67)],
    "DAILY_API_LIMIT": 100000,
    # standard | person_accounts | state_country | npsp (comma-separated)
    "ORG_PROFILE": "standard",
    "DUPLICATE_RULE": False,  # "alert" (or True) | "block": DUPLICATES_DETECTED on same email
    "EVENT_URL": None,  # where change events are POSTed, the way a Flow HTTP callout would
    "EVENT_HEADERS": {},  # e.g. {"X-Webhook-Secret": "..."}
    "BULK_STEPS": 1,  # job status polls a Bulk 2.0 job spends InProgress before it completes
    "SNAPSHOT": None,  # path of a SQLite file to load the org from and snapshot to
    "ORG_ID": "00DSB0000000001AAA",
    "USER_ID": "005SB0000000001AAA",
    "REDIRECT_URIS": [],  # exact redirect URIs allowed besides loopback http://localhost:<port>/
    "QUERY_CURSOR_LIMIT": 10,  # open query locators per user; the oldest is released past this
}


class SalesforceSandbox:
    """Everything one running Salesforce sandbox knows."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config: dict[str, Any] = {**DEFAULTS, **(config or {})}
        if self.config["DUPLICATE_RULE"] is True:
            self.config["DUPLICATE_RULE"] = "alert"  # Salesforce's standard rules only alert
        self.clock: Clock = self.config.get("clock") or Clock()
        self.faults = Faults(sleep=self.config.get("sleep") or time.sleep)
        # Filled in by their modules at build time (see build.assemble): store, auth (tokens),
        # usage (API call counts and daily limits), cursors (open query locators), events, bulk,
        # listviews (the org's List Views), pubsub (the Pub/Sub API's event bus), outbound
        # (Outbound Message actions and their queue).
        self.store: Any = None
        self.auth: Any = None
        self.usage: Any = None
        self.cursors: Any = None
        self.events: Any = None
        self.bulk: Any = None
        self.listviews: Any = None
        self.pubsub: Any = None
        self.outbound: Any = None

    @property
    def api_calls(self) -> int:
        """API calls served since the last reset (see `usage.calls(family)` for one family)."""
        return int(self.usage.calls()) if self.usage is not None else 0

    def reset(self) -> None:
        for part in (
            self.store,
            self.auth,
            self.usage,
            self.cursors,
            self.events,
            self.bulk,
            self.listviews,
            self.pubsub,
            self.outbound,
        ):
            if part is not None and hasattr(part, "reset"):
                part.reset()


def current_sandbox() -> SalesforceSandbox:
    return current_app.extensions["sf_sandbox"]  # type: ignore[no-any-return]
