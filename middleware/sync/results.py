"""Campaign results, the pure rules: which campaigns come back, and what each recipient becomes.

Constant Contact reports what happened to each email it sent (a campaign *activity*: the primary
email, a resend to non-openers); these rules turn those events into what Salesforce shows
(DESIGN §5a "Campaign results"):

- a campaign comes back when it was sent inside the setup's window, is named in
  ``campaign_selection`` (or the selection is ``all``), and is an ordinary email: A/B tests and
  activities other than ``primary_email``/``resend`` lack the per-recipient reports and are
  reported as not supported;
- a recipient's Campaign Member status is the highest it has earned and never goes down:
  Sent < Bounced < Opened < Clicked < Unsubscribed (Opened and Clicked are "responded");
- a recipient gets one Task for opening an activity (dated the first open) and one per distinct
  link clicked (dated the first click), never two for the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from middleware.sync.campaigns import fold_name
from middleware.sync.cc_to_sf import SfMatch
from middleware.sync.emails import normalise_email

MODES = ("campaign", "activity", "campaign_and_activity")

# Campaign Member statuses, lowest first: (label, responded). "Sent" is every new Campaign's
# default status in Salesforce; the others are created on each Campaign we make.
STATUSES: tuple[tuple[str, bool], ...] = (
    ("Sent", False),
    ("Bounced", False),
    ("Opened", True),
    ("Clicked", True),
    ("Unsubscribed", False),
)
RANK = {label: rank for rank, (label, _) in enumerate(STATUSES)}
# The tracking report each status comes from, and the report's event kind.
REPORT_STATUS = {
    "sends": "Sent",
    "bounces": "Bounced",
    "opens": "Opened",
    "clicks": "Clicked",
    "optouts": "Unsubscribed",
}
READ_ROLES = ("primary_email", "resend")
AB_TEST_TYPE_CODE = 57
NAME_LIMIT = 80  # Campaign.Name


def makes_campaigns(mode: str) -> bool:
    return mode in ("campaign", "campaign_and_activity")


def makes_tasks(mode: str) -> bool:
    return mode in ("activity", "campaign_and_activity")


def reports_for(mode: str, all_recipients: bool) -> tuple[str, ...]:
    """The tracking reports a setup reads, cheapest first.

    Campaign modes need every recipient (``sends``) and every status; Task mode only opens and
    clicks, plus ``optouts`` (an opt-out is synced under the opt-out rules whatever the mode) and
    ``sends`` when every recipient is to exist in Salesforce. ``forwards`` only feed the counts.
    """
    if makes_campaigns(mode):
        return ("optouts", "bounces", "clicks", "opens", "forwards", "sends")
    if not makes_tasks(mode):
        return ("optouts", "sends") if all_recipients else ()
    reports = ["optouts", "clicks", "opens"]
    if all_recipients:
        reports.append("sends")
    return tuple(reports)


def higher(current: str | None, new: str) -> str:
    """The status a member ends with: never lower than what it already has."""
    if current is None or RANK[new] > RANK.get(current, -1):
        return new
    return current


def is_selected(name: str, selection: str | Iterable[str]) -> bool:
    """``campaign_selection``: ``all`` or names, compared like Campaign names (case, blanks)."""
    if isinstance(selection, str):
        return selection == "all" or fold_name(name) == fold_name(selection)
    return fold_name(name) in {fold_name(wanted) for wanted in selection}


def unsupported_reason(campaign: Mapping[str, object]) -> str | None:
    """Why a campaign (a ``GET /emails`` summary or ``GET /emails/{id}``) cannot come back."""
    kind = str(campaign.get("type") or "").upper().replace("/", "_")
    if campaign.get("type_code") == AB_TEST_TYPE_CODE or "AB_TEST" in kind:
        return "an A/B test: Constant Contact gives no per-recipient reports for its variants"
    if "AUTOMAT" in kind:
        return "an automated email: it is sent one contact at a time, with no campaign reports"
    return None


def sent(campaign: Mapping[str, object]) -> bool:
    """Whether a campaign has gone out (``Done``; ``Executing`` is still sending)."""
    return str(campaign.get("current_status") or "").lower() in ("done", "sent")


def in_window(sent_at: datetime | None, now: datetime, days: int) -> bool:
    return sent_at is not None and sent_at >= now - timedelta(days=days)


def campaign_name(name: str, role: str) -> str:
    """The Salesforce Campaign's name: the CC campaign's, a resend marked, within 80 chars."""
    suffix = " (resend)" if role == "resend" else ""
    return name[: NAME_LIMIT - len(suffix)] + suffix


def open_subject(name: str) -> str:
    return f"Email Opened: {name}"[:255]


def click_subject(name: str) -> str:
    return f"Email Clicked: {name}"[:255]


def choose_person(matches: Iterable[SfMatch], object_type: str) -> SfMatch | None:
    """The record a recipient's results go on when several hold the address: one of the
    setup's object type first, then one found on its standard email field, then the oldest."""
    ordered = sorted(
        matches,
        key=lambda m: (
            m.sf_object != object_type,
            not m.on_standard_email,
            m.created or "",
            m.sf_id,
        ),
    )
    return ordered[0] if ordered else None


def member_field(person_id: str) -> str:
    """The CampaignMember field a person id goes in (a Person Account's is its contact id)."""
    return "LeadId" if person_id.startswith("00Q") else "ContactId"


@dataclass
class Recipient:
    """What one run read about one recipient of one activity."""

    contact_id: str
    email: str
    status: str | None = None
    first_open: str | None = None  # ISO time of the earliest open read
    clicks: dict[str, tuple[str, str]] = field(default_factory=dict)  # url_id -> (url, time)
    opted_out_at: str | None = None
    names: dict[str, str] = field(default_factory=dict)  # first_name / last_name for creation


def _earlier(a: str | None, b: str) -> str:
    return b if a is None or b < a else a


def fold(
    recipients: dict[str, Recipient], report: str, events: Iterable[Mapping[str, object]]
) -> int:
    """Add one report's events to ``recipients`` (by contact id); return the events taken."""
    taken = 0
    status = REPORT_STATUS.get(report)
    for event in events:
        contact_id = str(event.get("contact_id") or "")
        if not contact_id:
            continue
        taken += 1
        if report == "forwards":
            continue  # counted only
        email = normalise_email(str(event.get("email_address") or ""))
        at = str(event.get("created_time") or "")
        person = recipients.get(contact_id)
        if person is None:
            person = recipients[contact_id] = Recipient(contact_id, email)
        elif email and not person.email:
            person.email = email
        for key in ("first_name", "last_name"):
            value = event.get(key)
            if value and key not in person.names:
                person.names[key] = str(value)
        if status is not None:
            person.status = higher(person.status, status)
        if report == "opens" or report == "clicks":
            # A click is an open too: trackers count it as one when the image was blocked.
            person.first_open = _earlier(person.first_open, at)
        if report == "clicks":
            url_id = str(event.get("url_id") or event.get("link_url") or "")
            url = str(event.get("link_url") or "")
            known = person.clicks.get(url_id)
            if known is None or at < known[1]:
                person.clicks[url_id] = (url, at)
        if report == "optouts":
            person.opted_out_at = _earlier(person.opted_out_at, at)
    return taken


def merge_into(recipients: dict[str, Recipient], other: Recipient) -> None:
    """Add what ``other`` knows of a recipient (a retried one) to what this run read."""
    mine = recipients.get(other.contact_id)
    if mine is None:
        recipients[other.contact_id] = other
        return
    if other.status is not None:
        mine.status = higher(mine.status, other.status)
    if other.first_open is not None:
        mine.first_open = _earlier(mine.first_open, other.first_open)
    if other.opted_out_at is not None:
        mine.opted_out_at = _earlier(mine.opted_out_at, other.opted_out_at)
    for url_id, (url, at) in other.clicks.items():
        if url_id not in mine.clicks or at < mine.clicks[url_id][1]:
            mine.clicks[url_id] = (url, at)
    mine.email = mine.email or other.email


@dataclass(frozen=True)
class Stored:
    """What the store holds of a recipient already (its idempotency keys)."""

    sf_person_id: str | None = None
    sf_member_id: str | None = None
    status: str | None = None
    open_task_id: str | None = None
    click_tasks: Mapping[str, str] = field(default_factory=dict)


@dataclass
class RecipientPlan:
    """The writes one batch of recipients needs in Salesforce."""

    member_inserts: list[tuple[str, str]] = field(default_factory=list)  # (contact id, status)
    member_updates: list[tuple[str, str]] = field(default_factory=list)
    open_tasks: list[str] = field(default_factory=list)  # contact ids
    click_tasks: list[tuple[str, str]] = field(default_factory=list)  # (contact id, url_id)


def plan_recipients(
    mode: str, read: Mapping[str, Recipient], stored: Mapping[str, Stored], matched: Iterable[str]
) -> RecipientPlan:
    """What to write for the recipients read (``read``) that have a Salesforce record.

    ``matched`` are the contact ids with a person in Salesforce; a member is inserted once with
    the highest status read and updated only when the status rises; each open and each link
    clicked gets a Task once.
    """
    plan = RecipientPlan()
    for contact_id in sorted(set(matched)):
        person = read.get(contact_id)
        if person is None:
            continue
        known = stored.get(contact_id, Stored())
        if makes_campaigns(mode) and person.status is not None:
            status = higher(known.status, person.status)
            if known.sf_member_id is None:
                plan.member_inserts.append((contact_id, status))
            elif status != known.status:
                plan.member_updates.append((contact_id, status))
        if makes_tasks(mode):
            if person.first_open is not None and known.open_task_id is None:
                plan.open_tasks.append(contact_id)
            for url_id in sorted(person.clicks):
                if url_id not in known.click_tasks:
                    plan.click_tasks.append((contact_id, url_id))
    return plan


@dataclass
class ReportCursor:
    """Where one report of one activity is read to (reports list the newest first).

    A *pass* reads from the newest event down to the first one no newer than ``until`` (what
    the last complete pass reached), then ``until`` becomes the newest time it saw. A pass the
    run's call budget interrupts keeps its next page (``next``) and its newest time (``top``)
    so the next run goes on from there; events that arrive meanwhile are newer than ``top``
    and the pass after picks them up.
    """

    until: str | None = None
    next: str | None = None
    top: str | None = None

    @classmethod
    def load(cls, value: Mapping[str, object] | None) -> ReportCursor:
        value = value or {}
        return cls(*(str(value[k]) if value.get(k) else None for k in ("until", "next", "top")))

    def dump(self) -> dict[str, str]:
        return {
            k: v for k, v in (("until", self.until), ("next", self.next), ("top", self.top)) if v
        }

    def take(
        self, items: Iterable[Mapping[str, object]]
    ) -> tuple[list[Mapping[str, object]], bool]:
        """The page's events newer than ``until`` and whether the pass reached ``until``."""
        fresh: list[Mapping[str, object]] = []
        for item in items:
            at = str(item.get("created_time") or "")
            if self.until is not None and at <= self.until:
                return fresh, True
            if self.top is None or at > self.top:
                self.top = at
            fresh.append(item)
        return fresh, False

    def finish(self) -> None:
        """The pass reached the oldest event or ``until``: what it saw is all read."""
        if self.top is not None and (self.until is None or self.top > self.until):
            self.until = self.top
        self.next = self.top = None
