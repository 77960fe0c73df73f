"""Full Sync schedule: next/previous slots in a time zone, DST, and the missed-run guard."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from middleware.fullsync import schedule
from middleware.sync.options import Schedule
from schemas.setup import setup_options


def sched(**given: str) -> Schedule:
    """A setup's schedule as the schema loads it (defaults for what is not given)."""
    return setup_options({"name": "s", "main_list": "Main", "schedule": given}).schedule


DAILY = sched(full_sync="daily", at="02:00", timezone="UTC")
PARIS = sched(full_sync="daily", at="02:00", timezone="Europe/Paris")
WEEKLY = sched(full_sync="weekly", weekday="monday", at="03:30")
NEW_YORK = sched(full_sync="daily", at="02:30", timezone="America/New_York")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("sched", "now", "expected"),
    [
        (DAILY, "2026-11-26T01:59", "2026-11-26T02:00"),
        (DAILY, "2026-11-26T02:00", "2026-11-27T02:00"),
        (WEEKLY, "2026-11-26T12:00", "2026-11-30T03:30"),
        (PARIS, "2026-11-26T00:00", "2026-11-26T01:00"),
        (PARIS, "2026-07-01T00:30", "2026-07-02T00:00"),
        # 02:30 does not exist in New York on 2026-03-08: the first minute that does (03:00 EDT).
        (NEW_YORK, "2026-03-08T05:00", "2026-03-08T07:00"),
    ],
)
def test_next_run(sched: Schedule, now: str, expected: str) -> None:
    assert schedule.next_run(sched, at(now)) == at(expected)


def test_manual_never_runs_by_itself() -> None:
    manual = sched(full_sync="manual")
    assert schedule.next_run(manual, at("2026-11-26T00:00")) is None
    assert schedule.is_due(manual, at("2026-11-26T03:00"), None) is None
    assert schedule.describe(manual) == "manual"


def test_due_once_per_slot() -> None:
    now = at("2026-11-26T02:00")
    assert schedule.is_due(DAILY, now, at("2026-11-25T02:00")) == now
    assert schedule.is_due(DAILY, now + timedelta(minutes=1), now) is None
    assert schedule.is_due(DAILY, at("2026-11-26T01:59"), at("2026-11-25T02:00")) is None


def test_missed_run_is_caught_up_after_a_restart_but_not_a_day_late() -> None:
    # The clock was down from 01:00 to 07:30: the 02:00 run still happens, once.
    slot = schedule.is_due(DAILY, at("2026-11-26T07:30"), at("2026-11-25T02:01"))
    assert slot == at("2026-11-26T02:00")
    # Down for 21 hours: the slot is too old, the next one is nearer.
    assert schedule.is_due(DAILY, at("2026-11-26T23:30"), at("2026-11-25T02:01")) is None


def test_a_new_setup_waits_for_its_first_slot() -> None:
    created = at("2026-11-26T09:00")
    assert schedule.is_due(DAILY, at("2026-11-26T10:00"), None, created=created) is None
    slot = schedule.is_due(DAILY, at("2026-11-27T02:00"), None, created=created)
    assert slot == at("2026-11-27T02:00")


def test_weekly_needs_a_day_and_reads_well() -> None:
    with pytest.raises(ValueError):
        # The schema refuses this; the schedule does not trust that it was asked.
        no_day = replace(sched(full_sync="daily"), full_sync="weekly")
        schedule.next_run(no_day, at("2026-11-26T00:00"))
    friday = sched(full_sync="weekly", weekday="friday", at="04:15", timezone="Asia/Tokyo")
    assert schedule.describe(friday) == "weekly on Fridays at 04:15 Asia/Tokyo"
