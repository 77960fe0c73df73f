"""Shapes: rows as the plain dicts every front end shows (the admin API's JSON before dumping).

A connection never shows a token; a setup shows its webhook secret only when just created or
rotated.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from middleware.settings import Settings
from middleware.store.models import Connection, Run, Setup, SyncError, utcnow


def connection_view(row: Connection, used_by: Iterable[int] = ()) -> dict[str, Any]:
    """A connection as the API shows it: never a token."""
    return {
        "id": row.id,
        "vendor": row.vendor,
        "label": row.label,
        "base_url": row.base_url,
        "account_id": row.account_id,
        "status": row.status,
        "expires_at": row.expires_at,
        "refreshed_at": row.refreshed_at,
        "last_error": row.last_error,
        "login_url": row.login_url,
        "scopes": [str(x) for x in (row.scopes or [])],
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "used_by": sorted(used_by),
    }


def webhook_url(settings: Settings, setup_id: int) -> str:
    """Where Salesforce sends a setup's change events."""
    return f"{settings.public_url}/webhooks/salesforce/{setup_id}"


def outbound_url(settings: Settings, setup_id: int) -> str:
    """Where a setup's Outbound Message action posts (with `?secret=<webhook secret>`)."""
    return f"{webhook_url(settings, setup_id)}/outbound"


def setup_view(
    settings: Settings,
    row: Setup,
    *,
    warnings: list[str] | None = None,
    secret: str | None = None,
) -> dict[str, Any]:
    """A setup as the API shows it; the secret only when just created or rotated."""
    options = dict(row.options or {})
    view: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "options": options,
        "salesforce_connection": row.salesforce_connection_id,
        "constant_contact_connection": row.constant_contact_connection_id,
        "webhook": {
            "url": webhook_url(settings, row.id),
            "outbound_url": outbound_url(settings, row.id),
            "auth": (options.get("webhook") or {}).get("auth") or "shared_secret",
        },
        "paused": row.is_paused(utcnow()),
        "pause_reason": row.pause_reason,
        "paused_until": row.paused_until,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }
    if warnings is not None:
        view["warnings"] = warnings
    if secret is not None:
        view["webhook_secret"] = secret
    return view


def run_view(row: Run, now: datetime | None = None) -> dict[str, Any]:
    """A run with its progress and timings."""
    end = row.finished_at or (now or utcnow() if row.started_at else None)
    duration = (end - row.started_at).total_seconds() if row.started_at and end else None
    total = row.progress_total
    percent = None
    if total:
        percent = round(min(100.0, 100.0 * (row.progress_done or 0) / total), 1)
    return {
        "id": row.id,
        "setup_id": row.setup_id,
        "kind": row.kind,
        "status": row.status,
        "phase": row.phase,
        "job_id": row.job_id,
        "created_at": row.created_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "duration_seconds": duration,
        "counts": row.counts or {},
        "api_calls": row.api_calls or {},
        "message": row.message,
        "progress": {"done": row.progress_done or 0, "total": total, "percent": percent},
    }


def error_view(row: SyncError) -> dict[str, Any]:
    """A sync error as the API shows it."""
    return {
        "id": row.id,
        "setup_id": row.setup_id,
        "run_id": row.run_id,
        "sf_id": row.sf_id,
        "cc_contact_id": row.cc_contact_id,
        "email": row.email,
        "direction": row.direction,
        "vendor": row.vendor,
        "code": row.code,
        "message": row.message,
        "status": row.status,
        "attempts": row.attempts,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }
