"""The vendors' API budgets as last seen, kept where every process and page can read them.

Salesforce reports an org's API requests of the last 24 hours (used/max) on every response
(``Sforce-Limit-Info: api-usage=N/M``); a client only keeps that while it lives.
``record_salesforce`` writes the latest report per connection to one small Redis hash (one write
per Salesforce call, no extra call to Salesforce), and ``salesforce`` reads it back.
Constant Contact sends no such header: its day is counted by our own limiter
(``constantcontact.limiter``), which needs nothing from here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from redis import Redis

# A report older than this says little about today; the key goes away by itself.
KEEP_SECONDS = 2 * 24 * 3600


def _key(connection_id: int) -> str:
    return f"ctct:sf-usage:{connection_id}"


def record_salesforce(
    redis: Redis, connection_id: int, used: int, limit: int, at: float | None = None
) -> None:
    """Keep the org's last reported 24-hour usage of this connection."""
    when = time.time() if at is None else at
    with redis.pipeline() as pipe:
        pipe.hset(_key(connection_id), mapping={"used": used, "limit": limit, "at": when})
        pipe.expire(_key(connection_id), KEEP_SECONDS)
        pipe.execute()


def salesforce_recorder(redis: Redis, connection_id: int) -> Callable[[int, int], None]:
    """What a Salesforce client calls with each report (``SalesforceClient.on_org_usage``)."""

    def record(used: int, limit: int) -> None:
        record_salesforce(redis, connection_id, used, limit)

    return record


def salesforce(redis: Redis, connection_id: int) -> dict[str, Any] | None:
    """``{"used", "limit", "reported_at"}`` as Salesforce last reported them, or ``None``."""
    raw: dict[Any, Any] = redis.hgetall(_key(connection_id))  # type: ignore[assignment]
    values = {
        (k.decode() if isinstance(k, bytes) else str(k)): (
            v.decode() if isinstance(v, bytes) else str(v)
        )
        for k, v in raw.items()
    }
    try:
        return {
            "used": int(values["used"]),
            "limit": int(values["limit"]),
            "reported_at": datetime.fromtimestamp(float(values["at"]), UTC),
        }
    except (KeyError, ValueError):
        return None
