"""Full Sync schedule: when a setup's next Full Sync is due (pure: schedule and clock in, time out).

A setup's ``schedule`` option says ``manual``, ``daily`` or ``weekly`` (with ``weekday``) at ``at``
(HH:MM) in ``timezone``. The clock process ticks every minute and asks :func:`is_due` with the
start time of the setup's last Full Sync. Asking "has a slot passed since the last run?" rather
than "is it 02:00 now?" is the missed-run guard: a clock that was down at 02:00 (a deploy, a dyno
restart) still starts the nightly sync when it comes back, once, and never twice for one slot.
A missed slot older than ``MISSED_GRACE`` is not caught up on: the next regular slot is nearer.

Wall-clock times follow the time zone, daylight saving included: a time that does not exist on
a spring-forward day runs at the first valid minute after it, an ambiguous one at its first
occurrence.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from middleware.sync.options import Schedule

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# A missed slot is caught up on for this long; beyond that the next slot is the better choice.
MISSED_GRACE = timedelta(hours=20)


def _parts(schedule: Schedule) -> tuple[str, time, ZoneInfo, int | None]:
    mode = schedule.full_sync
    hours, _, minutes = schedule.at.partition(":")
    at = time(int(hours), int(minutes or 0))
    zone = ZoneInfo(schedule.timezone)
    weekday = schedule.weekday
    day = WEEKDAYS.index(weekday.lower()) if mode == "weekly" and weekday else None
    if mode == "weekly" and day is None:
        raise ValueError("a weekly Full Sync needs a weekday")
    if mode not in ("manual", "daily", "weekly"):
        raise ValueError(f"unknown Full Sync mode {mode!r}")
    return mode, at, zone, day


def _slot(day: date, at: time, zone: ZoneInfo) -> datetime:
    """``day`` at ``at`` in ``zone``, as UTC; a time skipped by DST moves to the next valid one."""
    local = datetime.combine(day, at, tzinfo=zone)  # fold=0: the first of an ambiguous pair
    as_utc = local.astimezone(UTC)
    if as_utc.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        # A non-existent local time (spring forward): the first minute that does exist.
        probe = local.replace(tzinfo=None)
        while True:
            probe += timedelta(minutes=1)
            candidate = probe.replace(tzinfo=zone)
            if candidate.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == probe:
                return candidate.astimezone(UTC)
    return as_utc


def _slots_around(schedule: Schedule, now: datetime) -> list[datetime]:
    mode, at, zone, weekday = _parts(schedule)
    if mode == "manual":
        return []
    today = now.astimezone(zone).date()
    out = []
    for offset in range(-8, 9):
        day = today + timedelta(days=offset)
        if weekday is not None and day.weekday() != weekday:
            continue
        out.append(_slot(day, at, zone))
    return sorted(out)


def previous_run(schedule: Schedule, now: datetime) -> datetime | None:
    """The latest scheduled slot at or before ``now`` (UTC); ``None`` for a manual schedule."""
    past = [slot for slot in _slots_around(schedule, now) if slot <= now]
    return past[-1] if past else None


def next_run(schedule: Schedule, now: datetime) -> datetime | None:
    """The first scheduled slot strictly after ``now`` (UTC); ``None`` for a manual schedule."""
    future = [slot for slot in _slots_around(schedule, now) if slot > now]
    return future[0] if future else None


def is_due(
    schedule: Schedule,
    now: datetime,
    last_started: datetime | None,
    *,
    created: datetime | None = None,
    grace: timedelta = MISSED_GRACE,
) -> datetime | None:
    """The slot a Full Sync should start for now, or ``None`` when none is due.

    Due when the latest slot at or before ``now`` is no older than ``grace`` and no Full Sync
    started since it (``last_started``: the newest Full Sync run of the setup, any outcome). A
    setup ``created`` after that slot waits for the next one (its first sync is started by hand
    or by the next slot, not by a slot from before it existed).
    """
    slot = previous_run(schedule, now)
    if slot is None or now - slot > grace:
        return None
    if last_started is not None and last_started >= slot:
        return None
    if created is not None and created > slot:
        return None
    return slot


def describe(schedule: Schedule) -> str:
    """``daily at 02:00 Europe/Paris`` — for run messages and the admin page."""
    mode, at, zone, weekday = _parts(schedule)
    if mode == "manual":
        return "manual"
    day = f" on {WEEKDAYS[weekday].capitalize()}s" if weekday is not None else ""
    return f"{mode}{day} at {at.strftime('%H:%M')} {zone.key}"
