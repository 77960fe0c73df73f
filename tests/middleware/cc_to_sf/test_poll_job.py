"""The poll job: thin glue around run_poll, one job per setup at a time."""

from __future__ import annotations

from middleware import queue
from middleware.store import setups
from tests.e2e.harness import world


def test_the_job_polls_through_the_current_runtime_and_respects_a_pause() -> None:
    from jobs.poll import poll_setup

    with world() as w:
        with w.store.transaction() as session:
            setups.pause(session, w.setup_id, "Constant Contact account cancelled")
        with queue.use_runtime(w.runtime):
            result = poll_setup(w.setup_id)
            assert result == {
                "setup_id": w.setup_id,
                "paused": "Constant Contact account cancelled",
            }
            assert poll_setup(w.setup_id + 99) == {"setup_id": w.setup_id + 99, "records": 0}


def test_the_job_waits_while_another_job_holds_the_setup(monkeypatch) -> None:
    from jobs import poll as job

    rescheduled: list[float] = []
    monkeypatch.setattr(queue, "requeue_current_job", lambda delay: rescheduled.append(delay))
    with world() as w, queue.use_runtime(w.runtime):
        with queue.setup_lock(w.runtime.redis, w.setup_id, 60):
            assert job.poll_setup(w.setup_id) is None
        assert rescheduled == [queue.LOCK_BUSY_RETRY_SECONDS]
