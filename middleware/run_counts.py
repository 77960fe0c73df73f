"""A run's counts in words a person reads: what each counter says happened.

The counts themselves (``Run.counts``) are an API: their keys never change. This module is the one
place that says what each key means, for every reader that prints a run for people (the demo, the
CLI, a dashboard). Skip reasons are already words (``sync.sf_to_cc.REASON_*`` and
``sync.cc_to_sf.REASON_*``) and are shown as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Counter key -> what the number counts, in the order they are shown.
WORDS: dict[str, str] = {
    "records": "records read",
    "imported": "contacts created or updated in Constant Contact (import)",
    "updated": "contacts updated in Constant Contact",
    "unsubscribed": "contacts unsubscribed in Constant Contact",
    "deleted": "contacts deleted in Constant Contact",
    "list_adds": "list memberships added",
    "list_removals": "list memberships removed",
    "opt_outs_set_again": "opt-outs set again in Constant Contact",
    "married": "records linked to an existing Constant Contact contact",
    "contact_ids_resolved": "Constant Contact contact ids looked up",
    "duplicate_links_retired": "duplicate links retired",
    "unchanged": "records unchanged",
    "gone_from_salesforce": "records gone from Salesforce",
    "opt_outs_to_salesforce": "opt-outs written to Salesforce",
    "opted_out": "Salesforce records opted out",
    "accounts_created": "Salesforce accounts created",
    "created_contacts": "Salesforce contacts created",
    "created_leads": "Salesforce leads created",
    "affiliations_created": "Salesforce affiliations created",
    "linked": "Constant Contact contacts linked to Salesforce records",
    "scanned_unsubscribed": "scans of every Constant Contact unsubscribe",
    "campaigns_created": "Salesforce Campaigns created for emails sent",
    "members_created": "Campaign Members created",
    "members_updated": "Campaign Members whose status rose",
    "tasks_created": "Tasks created for opens and clicks",
    "emails_attached": "emails attached to their Campaign",
    "recipients_created": "Salesforce records created for campaign recipients",
    "recipients_not_in_salesforce": "campaign recipients not in Salesforce (not created)",
    "activities_found": "emails sent found in Constant Contact",
    "campaigns_not_selected": "emails not in campaign_selection",
    "campaigns_not_supported": "emails not supported (A/B tests)",
    "reset_activities": "emails forgotten by the reset (their Campaigns made again)",
    "stopped_at_ceiling": "stopped at the run's Constant Contact call ceiling",
    "cc_calls_for_results": "Constant Contact calls spent on results",
    "errors": "record errors (see /errors)",
}
# The tracking reports a campaign results run lists per email, in this order.
REPORTS = ("sends", "opens", "clicks", "bounces", "optouts", "forwards")
# How the two halves of a Sync Now are named.
DIRECTIONS = {
    "sf_to_cc": "Salesforce → Constant Contact",
    "cc_to_sf": "Constant Contact → Salesforce",
}
# Not counts of records: progress and timings.
NOT_COUNTS = frozenset(
    {"percent", "eta_seconds", "phase_seconds", "setup_id", "run_id", "paced_seconds"}
)
REPORTED = "reported: "


def _line(key: str, value: int, both_sides: bool) -> str:
    if key == "records" and both_sides:
        return (
            f"records read: {value:,} (Salesforce records and Constant Contact contacts together)"
        )
    if key.startswith(REPORTED):
        return f"reported, {key.removeprefix(REPORTED)}: {value:,}"
    return f"{WORDS.get(key, key.replace('_', ' '))}: {value:,}"


def describe(counts: Mapping[str, Any]) -> list[str]:
    """One line per counter, e.g. ``"contacts created or updated in Constant Contact (import):
    2,880"``; a Sync Now's directions as a heading each with their lines indented under it;
    skips as ``skipped: N reason; N reason`` (reasons are words of their own)."""
    order = {key: i for i, key in enumerate(WORDS)}
    both_sides = any(key in counts for key in DIRECTIONS)
    lines: list[str] = []
    for key in sorted(counts, key=lambda k: (order.get(k, len(order)), k)):
        value = counts[key]
        if key in DIRECTIONS and isinstance(value, Mapping):
            inner = describe(value)
            lines.append(f"{DIRECTIONS[key]}:{'' if inner else ' nothing'}")
            lines.extend(f"  {line}" for line in inner)
        elif key in NOT_COUNTS or not value:
            continue
        elif key == "campaigns" and isinstance(value, Mapping):
            lines.extend(_campaign_line(name, read) for name, read in value.items())
        elif key == "skipped" and isinstance(value, Mapping):
            skips = "; ".join(f"{n:,} {reason}" for reason, n in sorted(value.items()) if n)
            lines.append(f"skipped: {skips}")
        elif isinstance(value, int) and not isinstance(value, bool):
            lines.append(_line(key, value, both_sides))
    return lines


def _campaign_line(name: str, read: Mapping[str, Any]) -> str:
    """``email 'March Appeal': 5 sends, 4 opens, 1 clicks read``, and whether reading goes on."""
    parts = [f"{read[r]:,} {r}" for r in REPORTS if isinstance(read.get(r), int)]
    more = "; the rest next run" if read.get("unfinished") else ""
    return f"email {name!r}: {', '.join(parts) or 'nothing new'} read{more}"
