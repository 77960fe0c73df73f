"""Full Sync API budget: a run may spend only a share of each vendor's daily allowance.

Constant Contact allows 10,000 calls a day *per application* (all setups together), reset at
00:00 UTC; Salesforce's allowance is per org over a rolling 24 hours and reported on every
response (``Sforce-Limit-Info``). A Full Sync checks before each step that the calls it is about
to make still fit its share; when they don't it stops cleanly with a checkpoint and says when it
will go on: 00:00 UTC for Constant Contact, in an hour for Salesforce (its window rolls).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

CC = "constantcontact"
SF = "salesforce"
DEFAULT_SHARE = 0.5


class BudgetExhausted(Exception):
    """The next step would spend more than the run's share of a vendor's daily calls."""

    def __init__(self, vendor: str, needed: int, left: int, resume_at: datetime) -> None:
        name = "Constant Contact" if vendor == CC else "Salesforce"
        super().__init__(
            f"{name} API budget for Full Syncs used: the next step needs about {needed} calls, "
            f"{left} left of this run's share today; resumes at {resume_at.isoformat()}"
        )
        self.vendor = vendor
        self.needed = needed
        self.left = left
        self.resume_at = resume_at


def next_utc_midnight(now: datetime) -> datetime:
    day = now.astimezone(UTC).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass
class Budget:
    """What one run may spend. ``*_used_today`` are the vendor-wide counts when the run began.

    ``cc_daily`` is the application's daily Constant Contact quota; ``sf_daily`` the org's
    (``None`` until Salesforce reported it). A share of 0 disables the check for that vendor.
    """

    cc_daily: int = 10_000
    cc_share: float = DEFAULT_SHARE
    cc_used_today: int = 0
    sf_daily: int | None = None
    sf_share: float = DEFAULT_SHARE
    sf_used_today: int = 0

    def cc_allowance(self) -> int | None:
        if not self.cc_share or not self.cc_daily:
            return None
        return max(int(self.cc_daily * self.cc_share) - self.cc_used_today, 0)

    def sf_allowance(self) -> int | None:
        if not self.sf_share or not self.sf_daily:
            return None
        return max(int(self.sf_daily * self.sf_share) - self.sf_used_today, 0)

    def check(
        self, now: datetime, *, cc_spent: int, cc_next: int, sf_spent: int = 0, sf_next: int = 0
    ) -> None:
        """Raise :class:`BudgetExhausted` if ``*_next`` more calls would pass a vendor's share."""
        cc_left = self.cc_allowance()
        if cc_left is not None and cc_next and cc_spent + cc_next > cc_left:
            raise BudgetExhausted(CC, cc_next, max(cc_left - cc_spent, 0), next_utc_midnight(now))
        sf_left = self.sf_allowance()
        if sf_left is not None and sf_next and sf_spent + sf_next > sf_left:
            resume = now.astimezone(UTC) + timedelta(hours=1)
            raise BudgetExhausted(SF, sf_next, max(sf_left - sf_spent, 0), resume)
