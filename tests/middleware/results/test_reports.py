"""Reading tracking reports within a call ceiling, from a cursor (a fake client counts calls)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from middleware.constantcontact import errors as cc_errors
from middleware.constantcontact.client import CallCounter
from middleware.results.reports import CallBudget, read_report
from middleware.sync.results import ReportCursor


class FakeCC:
    """Pages of 2 events, newest first; ``fail`` maps an href (or None) to an error to raise."""

    def __init__(self, times: list[str], fail: dict[Any, Exception] | None = None) -> None:
        self.times = times
        self.calls = CallCounter()
        self.fail = fail or {}
        self.asked: list[str | None] = []

    def tracking_page(self, activity: str, report: str, href: str | None = None) -> Any:
        self.calls.add("reports", "200")
        self.asked.append(href)
        if href in self.fail:
            raise self.fail.pop(href)
        start = int(href.rsplit("=", 1)[1]) if href else 0
        page = [{"contact_id": f"c{i}", "created_time": t} for i, t in
                enumerate(self.times[start : start + 2], start)]  # fmt: skip
        nxt = f"/v3/reports?next={start + 2}" if start + 2 < len(self.times) else None
        return page, nxt


TIMES = ["t09", "t08", "t07", "t06", "t05"]


def test_a_pass_reads_every_page_then_only_what_is_newer():
    cc = FakeCC(TIMES)
    cursor = ReportCursor()
    read = read_report(cc, "a1", "opens", cursor, CallBudget(cc, 100))  # type: ignore[arg-type]
    assert read.complete and len(read.events) == 5 and cc.calls.total == 3
    assert cursor.dump() == {"until": "t09"}
    cc.times = ["t11", "t10", *TIMES]
    again = read_report(cc, "a1", "opens", cursor, CallBudget(cc, 100))  # type: ignore[arg-type]
    assert [e["created_time"] for e in again.events] == ["t11", "t10"]
    assert again.complete and cc.calls.total == 5  # two more pages: t11,t10 then t09 stops


def test_the_ceiling_stops_between_pages_and_the_next_run_goes_on():
    cc = FakeCC(TIMES)
    cursor = ReportCursor()
    budget = CallBudget(cc, 2)  # type: ignore[arg-type]
    first = read_report(cc, "a1", "opens", cursor, budget)  # type: ignore[arg-type]
    assert not first.complete and budget.exhausted and len(first.events) == 4
    assert cursor.next == "/v3/reports?next=4" and cursor.top == "t09"
    resumed = ReportCursor.load(cursor.dump())
    rest = read_report(cc, "a1", "opens", resumed, CallBudget(cc, 2))  # type: ignore[arg-type]
    assert rest.complete and [e["created_time"] for e in rest.events] == ["t05"]
    assert resumed.dump() == {"until": "t09"}


def test_an_error_page_ends_the_report_with_its_cursor_kept():
    cc = FakeCC(TIMES, fail={"/v3/reports?next=2": cc_errors.ServerError("down", status=503)})
    cursor = ReportCursor()
    read = read_report(cc, "a1", "clicks", cursor, CallBudget(cc, 100))  # type: ignore[arg-type]
    assert not read.complete and "clicks report of activity a1" in str(read.error)
    assert cursor.next == "/v3/reports?next=2"


def test_a_cursor_constant_contact_no_longer_takes_starts_the_pass_again():
    cc = FakeCC(TIMES, fail={"/v3/reports?next=2": cc_errors.NotFound("gone", status=404)})
    cursor = ReportCursor(next="/v3/reports?next=2", top="t09")
    read = read_report(cc, "a1", "opens", cursor, CallBudget(cc, 100))  # type: ignore[arg-type]
    assert read.complete and len(read.events) == 5
    assert cc.asked[:2] == ["/v3/reports?next=2", None]


def test_quota_is_not_swallowed():
    cc = FakeCC(
        TIMES,
        fail={None: cc_errors.QuotaExceeded("quota", resume_at=datetime(2026, 12, 8, tzinfo=UTC))},
    )
    with pytest.raises(cc_errors.QuotaExceeded):
        read_report(cc, "a1", "opens", ReportCursor(), CallBudget(cc, 100))  # type: ignore[arg-type]
