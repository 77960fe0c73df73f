"""The day's API budget of a setup's vendors: what has been spent against each vendor's limit.

- Salesforce counts an org's API requests over a rolling 24 hours against the org's allocation;
  we show its own figures as last reported on a response (``middleware.api_budget``), with when.
- Constant Contact allows an application 10,000 calls a UTC day across every account it is
  connected to; our limiter counts each call before it is sent (``constantcontact.limiter``) and
  stops background work a little below the vendor's limit (``wiring.DAILY_RESERVE``).

Both are shown with what this setup's own runs spent today (their ``api_calls``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from middleware import api_budget
from middleware.constantcontact import wiring as cc_wiring
from middleware.services.lookups import get_setup
from middleware.settings import Settings
from middleware.store import connections as connection_repo
from middleware.store.models import Run, utcnow


def _share(used: int, limit: int) -> float | None:
    return round(min(100.0, 100.0 * used / limit), 1) if limit else None


def salesforce_budget(redis: Redis, connection_id: int | None) -> dict[str, Any]:
    """The org's 24-hour API requests used of its maximum, as Salesforce last reported them."""
    seen = api_budget.salesforce(redis, connection_id) if connection_id is not None else None
    if seen is None:
        return {
            "connection_id": connection_id,
            "known": False,
            "used": None,
            "limit": None,
            "remaining": None,
            "percent": None,
            "reported_at": None,
            "text": (
                "Salesforce API requests: not known yet (Salesforce reports them on each call; "
                "none since the last two days)."
                if connection_id is not None
                else "Salesforce API requests: no Salesforce connection."
            ),
        }
    used, limit = seen["used"], seen["limit"]
    return {
        "connection_id": connection_id,
        "known": True,
        "used": used,
        "limit": limit,
        "remaining": max(limit - used, 0),
        "percent": _share(used, limit),
        "reported_at": seen["reported_at"],
        "text": (
            f"Salesforce API requests in the last 24 hours: {used:,} of {limit:,} "
            f"({_share(used, limit) or 0:g}%), as Salesforce reported at "
            f"{seen['reported_at']:%Y-%m-%d %H:%M} UTC."
        ),
    }


def constant_contact_budget(settings: Settings, redis: Redis) -> dict[str, Any]:
    """The application's Constant Contact calls today (UTC) against the daily quota."""
    limiter = cc_wiring.api_limiter(settings, redis)
    usage = limiter.usage()
    quota = int(settings.cc_daily_quota)
    blocked = limiter.blocked_until()
    text = f"Constant Contact calls today (UTC {usage.day}): {usage.used:,}"
    if quota:
        text += f" of {quota:,} ({_share(usage.used, quota) or 0:g}%)"
    text += ", every connected account together."
    if usage.limit and usage.limit < quota:
        text += f" Background syncing stops at {usage.limit:,} to keep some for people."
    if blocked is not None:
        text += f" Calls are paused until {blocked:%Y-%m-%d %H:%M} UTC."
    return {
        "day": usage.day,
        "used": usage.used,
        "limit": quota or None,
        "background_limit": usage.limit or None,
        "remaining": max(quota - usage.used, 0) if quota else None,
        "percent": _share(usage.used, quota),
        "blocked_until": blocked,
        "text": text,
    }


def setup_calls_today(
    session: Session, setup_id: int, now: datetime | None = None
) -> dict[str, int]:
    """API calls per vendor of the setup's runs created since 00:00 UTC today."""
    moment = (now or utcnow()).astimezone(UTC)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    totals: dict[str, int] = {}
    for calls in session.scalars(
        select(Run.api_calls).where(Run.setup_id == setup_id, Run.created_at >= midnight)
    ):
        for vendor, n in (calls or {}).items():
            if isinstance(n, int) and not isinstance(n, bool):
                totals[vendor] = totals.get(vendor, 0) + n
    return dict(sorted(totals.items()))


def setup_budget(
    settings: Settings, session: Session, redis: Redis, setup_id: int
) -> dict[str, Any]:
    """Both vendors' budgets for a setup's connections, and what its runs spent today."""
    row = get_setup(session, setup_id)
    return {
        "setup_id": setup_id,
        "salesforce": salesforce_budget(redis, row.salesforce_connection_id),
        "constantcontact": constant_contact_budget(settings, redis),
        "setup_today": setup_calls_today(session, setup_id),
    }


def all_budgets(settings: Settings, session: Session, redis: Redis) -> dict[str, Any]:
    """Constant Contact's day for the application and each Salesforce connection's org usage."""
    orgs = []
    for conn in connection_repo.all_connections(session):
        if conn.vendor == "salesforce":
            orgs.append(
                {"label": conn.label, "account_id": conn.account_id}
                | salesforce_budget(redis, conn.id)
            )
    return {"constantcontact": constant_contact_budget(settings, redis), "salesforce": orgs}
