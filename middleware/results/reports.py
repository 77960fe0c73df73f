"""Campaign results, the Constant Contact side: campaigns, their activities, tracking reports.

Every read here is metered by one :class:`CallBudget` per run (the setup's
``campaign_results.max_cc_calls``): a report stops between two pages when the next call would
pass it, and its cursor (:class:`middleware.sync.results.ReportCursor`) keeps the next page's
``_links.next.href`` for the next run. A report page Constant Contact answers with an error (after
the client's own retries of throttling and 5xx) ends that report for this run, cursor kept.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from middleware.constantcontact import errors as cc_errors
from middleware.constantcontact.client import ConstantContactClient
from middleware.sync.results import READ_ROLES, ReportCursor
from middleware.vendor_errors import NeedsReauth

log = logging.getLogger(__name__)


class CallBudget:
    """The Constant Contact calls one run may still make (counted on the client itself)."""

    def __init__(self, cc: ConstantContactClient, ceiling: int) -> None:
        self.cc = cc
        self.ceiling = ceiling
        self.start = cc.calls.total
        self.exhausted = False

    @property
    def spent(self) -> int:
        return self.cc.calls.total - self.start

    def allows(self, calls: int = 1) -> bool:
        """Whether ``calls`` more fit; the first refusal marks the run as stopped by it."""
        if self.spent + calls <= self.ceiling:
            return True
        self.exhausted = True
        return False


@dataclass
class ActivityInfo:
    """What a results run needs of one campaign activity."""

    activity_id: str
    campaign_id: str
    role: str
    name: str
    subject: str = ""
    sent_at: datetime | None = None
    sent_count: int = 0
    html: str | None = None


def sent_campaigns(cc: ConstantContactClient, since: datetime) -> list[dict[str, Any]]:
    """``GET /emails`` (1 call a 500): the campaigns changed since ``since`` (a send or resend
    changes one, so every campaign sent since then is among them)."""
    return list(cc.iter_email_campaigns(after=since))


def campaign_activities(cc: ConstantContactClient, campaign_id: str) -> list[dict[str, Any]]:
    """``GET /emails/{id}`` (1 call): the activities that are sent to people (primary, resend)."""
    found = cc.email_campaign(campaign_id)
    return [a for a in found.get("campaign_activities") or [] if a.get("role") in READ_ROLES]


def activity_info(
    cc: ConstantContactClient, campaign: Mapping[str, Any], ref: Mapping[str, Any], html: bool
) -> ActivityInfo:
    """The activity's subject (and HTML when a Campaign will hold it) and its first send
    (``send_history``): 2 calls, once per activity."""
    activity_id = str(ref["campaign_activity_id"])
    detail = cc.campaign_activity(activity_id, html=html)
    history = [h for h in cc.send_history(activity_id) if h.get("run_date")]
    first = min(history, key=lambda h: str(h["run_date"])) if history else None
    return ActivityInfo(
        activity_id=activity_id,
        campaign_id=str(campaign["campaign_id"]),
        role=str(ref.get("role") or "primary_email"),
        name=str(campaign.get("name") or ""),
        subject=str(detail.get("subject") or ""),
        sent_at=_time(first["run_date"]) if first else None,
        sent_count=sum(int(h.get("count") or 0) for h in history),
        html=detail.get("html_content") if html else None,
    )


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass
class ReportRead:
    """One report's events read this run, newest first, and how the read ended."""

    events: list[Mapping[str, Any]] = field(default_factory=list)
    complete: bool = False
    error: str | None = None


def read_report(
    cc: ConstantContactClient,
    activity_id: str,
    report: str,
    cursor: ReportCursor,
    budget: CallBudget,
) -> ReportRead:
    """Read one report from ``cursor`` down to where the last pass ended, within ``budget``.

    ``cursor`` is moved in place; the caller saves it once what was read is written.
    """
    out = ReportRead()
    while True:
        if not budget.allows():
            return out
        try:
            items, href = cc.tracking_page(activity_id, report, cursor.next)
        except (cc_errors.QuotaExceeded, NeedsReauth):
            raise  # the runner pauses the setup, or marks the connection for re-consent
        except cc_errors.CCError as exc:
            if cursor.next and isinstance(exc, (cc_errors.NotFound, cc_errors.Validation)):
                # A next-page cursor Constant Contact no longer takes: start the pass again
                # (what it already read is keyed in the store, so nothing is written twice).
                log.warning("%s report of %s: cursor refused (%s); reading again", report,
                            activity_id, exc)  # fmt: skip
                cursor.next = cursor.top = None
                continue
            out.error = f"{report} report of activity {activity_id}: {exc}"
            return out
        fresh, reached = cursor.take(items)
        out.events.extend(fresh)
        if reached or not href:
            cursor.finish()
            out.complete = True
            return out
        cursor.next = href
