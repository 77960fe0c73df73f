"""Flush pacing: Constant Contact's daily quota belongs to the whole application.

Below half of it, changes go out as fast as they come; above, each flush (an import and its
polls, about three calls) waits long enough for the remainder to last until 00:00 UTC. A big
backlog is worth its calls at once: the pacing only stretches the steady trickle.
"""

from __future__ import annotations

from datetime import UTC, datetime

from middleware.constantcontact.limiter import DailyUsage
from middleware.store import setups

PACE_FROM_SHARE = 0.5
CALLS_PER_FLUSH = 3
PACE_SKIP_BACKLOG = 2000


def last_flush_key(setup_id: int) -> str:
    """The Redis key holding when the setup's last flush ran (epoch seconds)."""
    return f"ctct:lastflush:{setup_id}"


def pacing_delay(usage: DailyUsage, *, pending: int, last_flush: float | None, now: float) -> float:
    """Seconds the next flush should wait to keep the day's quota (0 = go now)."""
    if not usage.limit or last_flush is None or pending >= PACE_SKIP_BACKLOG:
        return 0.0
    if usage.used < usage.limit * PACE_FROM_SHARE:
        return 0.0
    remaining = max(usage.limit - usage.used, 1)
    moment = datetime.fromtimestamp(now, UTC)
    midnight = setups.next_utc_midnight(moment)
    interval = CALLS_PER_FLUSH * (midnight - moment).total_seconds() / remaining
    # Never past the quota reset: a flush held longer would outwait the budget it keeps.
    until_reset = (midnight - moment).total_seconds() + 5
    return min(max(0.0, last_flush + interval - now), until_reset)
