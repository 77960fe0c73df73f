"""One running Constant Contact sandbox account: its settings, clock, faults and parts.

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
    "REDIRECT_URIS": [],  # accepted besides any loopback http://localhost|127.0.0.1:<port>/...
    "ACCESS_TOKEN_TTL": 86400,  # seconds (sandbox clock); then every /v3 call answers 401
    "REFRESH_TOKEN_IDLE_TTL": 180 * 86400,  # an unused refresh token dies after 180 days
    "RATE_PER_SECOND": 4,  # per application (client id); 0 = off
    "DAILY_QUOTA": 10000,  # per application per UTC day; 0 = off
    "ACTIVITY_STEPS": 2,  # status polls an activity takes to complete; 0 = completes at once
    # When set, activities complete by time instead (seconds on the sandbox clock after they were
    # posted), the way the real service processes them; polls before then see it processing.
    "ACTIVITY_SECONDS": None,
    "MAX_QUEUED_ACTIVITIES": 1000,
    "SNAPSHOT": None,  # path of a SQLite file to load the account from and snapshot to
    "ACCOUNT_ID": "a07e1ldsbx01",  # encoded account id used in partner webhook payloads
    "PARTNER_API_KEY": "sandbox-partner-api-key",
}


class ConstantContactSandbox:
    """Everything one running Constant Contact sandbox account knows."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config: dict[str, Any] = {**DEFAULTS, **(config or {})}
        self.clock: Clock = self.config.get("clock") or Clock()
        self.sleep = self.config.get("sleep") or time.sleep
        self.faults = Faults(sleep=self.sleep)
        # Filled in by build.assemble: store, auth, gate, activities, emails.
        self.store: Any = None
        self.auth: Any = None
        self.gate: Any = None
        self.activities: Any = None
        self.emails: Any = None
        # Sends partner webhooks; tests swap in a session mounted on the receiving app.
        self.http: Any = self.config.get("http")

    def reset(self) -> None:
        for part in (self.store, self.auth, self.gate, self.activities, self.emails):
            if part is not None and hasattr(part, "reset"):
                part.reset()


def current_sandbox() -> ConstantContactSandbox:
    return current_app.extensions["cc_sandbox"]  # type: ignore[no-any-return]
