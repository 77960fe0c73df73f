"""Poll cursors: CC's newest timestamp, the overlap, and what the overlap must not redo."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from middleware.cc_to_sf import read
from middleware.cc_to_sf.read import Mark
from middleware.sync.cc_to_sf import CcSubscriber


def c(contact_id: str) -> CcSubscriber:
    return CcSubscriber(contact_id, f"{contact_id}@example.org")


def stamp(minute: int, second: int = 0) -> str:
    return f"2026-11-26T10:{minute:02d}:{second:02d}.000Z"


def test_a_fresh_cursor_reads_everything() -> None:
    mark = Mark.load(None)
    assert (mark.at, mark.since, mark.dump()) == (None, None, None)
    assert mark.fresh(c("a"), stamp(0))


def test_the_next_read_starts_an_overlap_earlier_and_skips_what_was_handled() -> None:
    mark = Mark()
    mark.observe(c("a"), stamp(10))
    mark.observe(c("b"), stamp(20))
    again = Mark.load(mark.dump())
    assert again.at == datetime(2026, 11, 26, 10, 20, tzinfo=UTC)
    assert again.since == again.at - read.OVERLAP
    assert not again.fresh(c("b"), stamp(20))  # handled, same change
    assert again.fresh(c("b"), stamp(21))  # changed again since
    assert "a" not in again.seen  # older than the overlap window: forgotten


def test_the_cursor_never_moves_back() -> None:
    mark = Mark()
    mark.observe(c("a"), stamp(30))
    mark.observe(c("b"), stamp(5))
    assert mark.at == datetime(2026, 11, 26, 10, 30, tzinfo=UTC)


def test_a_contact_without_a_timestamp_is_always_fresh_and_moves_nothing() -> None:
    mark = Mark()
    mark.observe(c("a"), None)
    assert (mark.at, mark.fresh(c("a"), None)) == (None, True)


def test_memory_is_bounded_when_a_first_read_stamps_everyone_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(read, "MAX_SEEN", 100)
    mark = Mark()
    for i in range(1000):
        mark.observe(c(f"id{i:04d}"), stamp(0, i % 60))
    assert len(mark.seen) <= 100
    assert mark.at == datetime(2026, 11, 26, 10, 0, 59, tzinfo=UTC)


def test_an_old_bare_timestamp_cursor_still_loads() -> None:
    mark = Mark.load("2026-11-26T10:00:00+00:00")
    assert mark.at == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    assert mark.since == mark.at - timedelta(minutes=5)
