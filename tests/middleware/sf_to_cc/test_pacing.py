"""Flush pacing keeps the application's daily Constant Contact quota; a long flush hands over."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from middleware import intake, runner
from middleware.constantcontact.limiter import DailyUsage
from middleware.sf_to_cc import flush
from middleware.sf_to_cc.pacing import pacing_delay
from tests.e2e.harness import world

NOON = datetime(2026, 11, 26, 12, 0, tzinfo=UTC).timestamp()  # 12 h to midnight


def usage(used: int, limit: int = 10_000) -> DailyUsage:
    return DailyUsage(day="2026-11-26", used=used, limit=limit)


@pytest.mark.parametrize(
    ("use", "pending", "last", "expected"),
    [
        pytest.param(usage(1000), 10, NOON - 1, 0.0, id="below half the quota: no pacing"),
        pytest.param(usage(9000), 10, None, 0.0, id="first flush of the day goes at once"),
        pytest.param(usage(9000), 5000, NOON - 1, 0.0, id="a big backlog is worth its calls"),
        pytest.param(usage(9000, limit=0), 10, NOON - 1, 0.0, id="no local quota: no pacing"),
        # 1,000 calls left for 43,200 s, 3 calls a flush: one flush per 129.6 s.
        pytest.param(usage(9000), 10, NOON - 29.6, 100.0, id="stretched to last until midnight"),
        pytest.param(usage(9000), 10, NOON - 200, 0.0, id="long enough since the last flush"),
        # The budget used up: one flush would wait 3 × 43,200 s, but the quota resets at 00:00.
        pytest.param(usage(10_000), 10, NOON, 43_205.0, id="never held past the quota reset"),
    ],
)
def test_pacing_delay(use, pending, last, expected) -> None:
    got = pacing_delay(use, pending=pending, last_flush=last, now=NOON)
    assert got == pytest.approx(expected, abs=0.01)


def test_a_flush_hands_over_after_its_time_bound() -> None:
    with world() as w:
        w.deliver_to_webhook = False
        ids = [w.sf_create(LastName=f"T{i}", Email=f"t{i}@example.org") for i in range(6)]
        intake.mark_dirty(w.redis, w.setup_id, "Contact", ids)
        ticks = iter(range(0, 1000, 100))  # every look at the clock is 100 s later
        ctx = runner.build_context(w.runtime, w.setup_id, sf=w.sf_client(), cc=w.cc_client())
        result = flush.flush(ctx, w.redis, batch_size=2, monotonic=lambda: next(ticks))
        assert result.batches == 1 and result.more
        assert intake.pending(w.redis, w.setup_id) == 4
