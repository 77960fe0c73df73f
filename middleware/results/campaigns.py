"""Campaign results, the Salesforce Campaigns: one per campaign activity, made once.

A Campaign is created with the email's name, Type ``Email``, its send date and subject, then its
member statuses (Sent is every Campaign's default; Bounced, Opened, Clicked and Unsubscribed are
added, Opened and Clicked as responded) and the email's HTML as a file on it. Each step is
recorded on the activity (``middleware.store.models.ResultActivity``) once done, so a step that
failed is tried again by the next run and a step that succeeded never repeats.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterable, Sequence

from middleware.cc_to_sf.write import write_records
from middleware.context import Context
from middleware.outcome import Outcome
from middleware.salesforce.errors import NotFound, RecordRejected
from middleware.store.models import ResultActivity
from middleware.sync.results import STATUSES, campaign_name

log = logging.getLogger(__name__)


def live(ctx: Context, campaign_ids: Iterable[str]) -> set[str]:
    """The Campaigns of these ids that still exist (one query per 16 KB of ids)."""
    ids = sorted(set(campaign_ids))
    if not ids:
        return set()
    return {str(r["Id"]) for r in ctx.sf.query_in("SELECT Id FROM Campaign WHERE Id", ids)}


def create(
    ctx: Context, rows: Sequence[ResultActivity], counts: dict[str, int], outcome: Outcome
) -> None:
    """A Campaign for each activity that has none (collections of 200); ids set on the rows.

    A resend's Campaign is the child of its primary email's when that one exists.
    """
    todo = [row for row in rows if row.sf_campaign_id is None]
    if not todo:
        return
    parents = {r.campaign_id: r.sf_campaign_id for r in rows if r.role == "primary_email"}
    records = []
    for row in todo:
        record: dict[str, object] = {
            "Name": campaign_name(row.name, row.role),
            "Type": "Email",
            "Status": "Completed",
            "IsActive": True,
            "Description": row.subject[:32000],
            "NumberSent": counts.get(row.activity_id, 0),
        }
        if row.sent_at is not None:
            record["StartDate"] = row.sent_at.date().isoformat()
        parent = parents.get(row.campaign_id)
        if row.role == "resend" and parent:
            record["ParentId"] = parent
        records.append(record)
    for row, result in zip(todo, write_records(ctx.sf, "Campaign", "insert", records), strict=True):
        if result.success and result.id:
            row.sf_campaign_id = result.id
            outcome.counts["campaigns_created"] += 1
        else:
            message = result.error.message if result.error else "refused"
            outcome.warnings.append(f"Campaign for email {row.name!r} not created: {message}")


def add_statuses(ctx: Context, rows: Sequence[ResultActivity], outcome: Outcome) -> None:
    """The member statuses of each new Campaign (4 rows each, collections of 200).

    A label the Campaign already has (a status someone added by hand, or a retry of a
    half-done step) counts as done.
    """
    todo = [r for r in rows if r.sf_campaign_id and not r.statuses_ready]
    if not todo:
        return
    records = [
        {
            "CampaignId": row.sf_campaign_id,
            "Label": label,
            "HasResponded": responded,
            "SortOrder": order + 3,
            "IsDefault": False,
        }
        for row in todo
        for order, (label, responded) in enumerate(STATUSES[1:])
    ]
    results = ctx.sf.create_many("CampaignMemberStatus", records)
    per = len(STATUSES) - 1
    for index, row in enumerate(todo):
        mine = results[index * per : (index + 1) * per]
        failed = [
            r for r in mine if not r.success and r.error and r.error.code != "DUPLICATE_VALUE"
        ]
        if failed:
            message = failed[0].error.message if failed[0].error else "refused"
            outcome.warnings.append(f"Member statuses of Campaign {row.sf_campaign_id}: {message}")
        else:
            row.statuses_ready = True


def attach_html(ctx: Context, row: ResultActivity, html: str | None, outcome: Outcome) -> None:
    """The email's HTML as a file on its Campaign (1 call, once)."""
    if not row.sf_campaign_id or row.html_attached or not html:
        return
    title = campaign_name(row.name, row.role)
    record = {
        "Title": title,
        "PathOnClient": f"{_file_name(title)}.html",
        "VersionData": base64.b64encode(html.encode()).decode(),
        "FirstPublishLocationId": row.sf_campaign_id,
        "Description": row.subject[:1000],
    }
    try:
        ctx.sf.create_one("ContentVersion", record)
    except (RecordRejected, NotFound) as exc:  # a file type or storage the org refuses
        outcome.warnings.append(f"The email of Campaign {title!r} was not attached: {exc}")
        return
    row.html_attached = True
    outcome.counts["emails_attached"] += 1


def set_counts(ctx: Context, sent: dict[str, int], outcome: Outcome) -> None:
    """``NumberSent`` of Campaigns whose count changed (``sf id → count``), collections of 200."""
    if not sent:
        return
    rows = [{"Id": cid, "NumberSent": n} for cid, n in sorted(sent.items())]
    for result in write_records(ctx.sf, "Campaign", "update", rows):
        if not result.success:
            message = result.error.message if result.error else "refused"
            outcome.warnings.append(f"Campaign {rows[result.index]['Id']} counts: {message}")


def _file_name(title: str) -> str:
    return re.sub(r"[^\w\- ]+", "", title).strip().replace(" ", "_") or "email"
