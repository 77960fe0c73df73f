"""Constant Contact's daily quota: the pause says when it ends, and nothing stays stuck behind it.

One `429 quota_exceeded` pauses the setup until 00:00 UTC and holds its flush for then. That held
job must not refuse an earlier one (a webhook, the clock's stranded-work sweep, an operator's
resume), and an operator's resume asks Constant Contact again at once: the setup pauses again
only if Constant Contact says so again. On fakeredis and on a real Redis.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from middleware import intake, queue, runner
from middleware.constantcontact import wiring as cc_wiring
from middleware.constantcontact.client import ConstantContactClient
from middleware.constantcontact.limiter import RedisLimiter
from middleware.constantcontact.oauth import StaticTokenSource
from middleware.fullsync import clock
from middleware.sf_to_cc.flush import run_flush
from middleware.store import runs, setups
from tests.e2e.harness import CC_BASE, World, world

FAULTS = f"{CC_BASE}/_sandbox/faults"
ADMIN = {"Authorization": "Bearer e2e-admin"}


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.integration)])
def redis(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("fake_redis" if request.param == "fake" else "real_redis")


def shared_limiter(w: World) -> RedisLimiter:
    """The application's limiter keys in Redis, as every worker's client uses them."""
    app_limiter = cc_wiring.api_limiter(w.runtime.settings, w.redis)
    assert isinstance(app_limiter, RedisLimiter)
    return RedisLimiter(w.redis, app_limiter.prefix, 10_000, 1.0)


def flush(w: World) -> dict[str, Any]:
    """The flush job's body with a client that shares the application's limiter in Redis."""
    cc = ConstantContactClient(
        f"{CC_BASE}/v3",
        w.cc_session,
        StaticTokenSource(w.cc_token),
        shared_limiter(w),
        sleep=lambda _s: None,
    )
    return run_flush(w.runtime, w.setup_id, sf=w.sf_client(), cc=cc)


def held_for(w: World) -> datetime | None:
    return queue.pending_job_due(f"flush-{w.setup_id}", connection=w.redis)


def resume(w: World) -> int:
    return int(w.web.post(f"/admin/api/setups/{w.setup_id}/resume", headers=ADMIN).status_code)


def midnight() -> datetime:
    return setups.next_utc_midnight(datetime.now(UTC))


def test_quota_pause_says_when_it_resumes_and_yields_to_earlier_work(redis: Any) -> None:
    with world(redis=redis) as w:
        w.deliver_to_webhook = False
        rid = w.sf_create(LastName="Quota", Email="quota@example.org")
        intake.mark_dirty(w.redis, w.setup_id, "Contact", [rid])
        w.cc_session.post(FAULTS, json={"status": 429, "error_key": "quota_exceeded", "count": 1})

        summary = flush(w)
        assert summary["paused"].startswith(runner.QUOTA_REASON)
        assert summary["resumes_at"] == midnight().isoformat()
        with w.store.transaction() as session:
            run = runs.recent_runs(session, w.setup_id, 1)[0]
            assert run.status == "paused"
            assert f"resumes at {midnight():%Y-%m-%d} 00:00 UTC (in " in run.message
            assert f"/admin/api/setups/{w.setup_id}/resume" in run.message
        due = held_for(w)
        assert due is not None and due >= midnight()  # the flush is held for the reset
        ready = w.web.get("/readyz")
        assert ready.status_code == 503
        detail = ready.json["checks"]["setups"]["detail"]
        assert midnight().isoformat() in detail and "resumes in" in detail
        assert "flush held for 00:00:0" in detail and "/resume tries again now" in detail
        assert shared_limiter(w).blocked_until() == midnight()  # every worker stops

        # A new change event is not refused by the flush held for midnight: it gets one now.
        w.deliver_to_webhook = True
        w.sf_update(rid, FirstName="Webhook")
        assert w.last_webhook.status_code == 202
        assert w.last_webhook.json["flush_scheduled"] is True
        soon = held_for(w)
        assert soon is not None and soon < datetime.now(UTC) + timedelta(seconds=10)
        # That flush starts (its trampoline frees the guard), finds the setup still paused and
        # holds one for midnight again.
        queue.clear_guard(f"flush-{w.setup_id}", connection=w.redis)
        assert "paused" in flush(w)
        due = held_for(w)
        assert due is not None and due >= midnight()
        # The clock's sweep keeps it there while the pause lasts ...
        clock.sweep_flushes(w.store, w.redis)
        assert held_for(w) == due

        # ... and an operator's resume tries again right away.
        response = w.web.post(f"/admin/api/setups/{w.setup_id}/resume", headers=ADMIN)
        assert response.status_code == 200 and response.json["paused"] is False
        soon = held_for(w)
        assert soon is not None and soon <= datetime.now(UTC) + timedelta(seconds=1)
        assert shared_limiter(w).blocked_until() is None
        done = flush(w)
        assert done["records"] == 1 and "paused" not in done
        assert w.cc_contact("quota@example.org")["first_name"] == "Webhook"
        assert w.web.get("/readyz").json["checks"]["setups"]["status"] == "ok"


def test_resume_pauses_again_only_when_constant_contact_says_so_again(redis: Any) -> None:
    with world(redis=redis) as w:
        w.deliver_to_webhook = False
        rid = w.sf_create(LastName="Again", Email="again@example.org")
        intake.mark_dirty(w.redis, w.setup_id, "Contact", [rid])
        w.cc_session.post(FAULTS, json={"status": 429, "error_key": "quota_exceeded", "count": 2})
        assert "paused" in flush(w)
        assert resume(w) == 200
        # Constant Contact still refuses: paused again, with the reset time, nothing lost.
        assert "paused" in flush(w)
        assert intake.pending(w.redis, w.setup_id) == 1
        with w.store.transaction() as session:
            assert setups.get(session, w.setup_id).pause_reason == runner.QUOTA_REASON
        # Its answer changed: the next resume goes through.
        assert resume(w) == 200
        assert flush(w)["records"] == 1
        assert w.cc_contact("again@example.org") is not None


def test_the_clock_replaces_a_held_flush_once_the_pause_is_gone(redis: Any) -> None:
    with world(redis=redis) as w:
        w.deliver_to_webhook = False
        rid = w.sf_create(LastName="Clock", Email="clock@example.org")
        intake.mark_dirty(w.redis, w.setup_id, "Contact", [rid])
        w.cc_session.post(FAULTS, json={"status": 429, "error_key": "quota_exceeded", "count": 1})
        assert "paused" in flush(w)
        # The pause is lifted without the resume path (the database edited, say): the job held
        # for midnight must not strand the changes until then.
        with w.store.transaction() as session:
            setups.resume(session, w.setup_id)
        assert clock.sweep_flushes(w.store, w.redis) == [w.setup_id]
        soon = held_for(w)
        assert soon is not None and soon <= datetime.now(UTC) + timedelta(seconds=1)
