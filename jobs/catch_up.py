"""Catch-up jobs: sync the Salesforce changes whose events were lost (every catch_up_minutes)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rq import get_current_job

from middleware import queue
from middleware.queue import current_runtime, exclusive_per_setup
from middleware.sf_to_cc import catch_up


@exclusive_per_setup()
def catch_up_setup(setup_id: int) -> dict[str, Any]:
    """One setup's catch-up, under the setup's lock like a flush."""
    job = get_current_job()
    return catch_up.run_catch_up(current_runtime(), setup_id, job_id=job.id if job else None)


def catch_up_tick() -> list[int]:
    """The clock's minute tick: schedule a catch-up for every setup whose interval has passed."""
    runtime = current_runtime()
    due = catch_up.due_setups(runtime.store, datetime.now(UTC))
    for setup_id in due:
        queue.ensure_scheduled(
            catch_up.job_key(setup_id), catch_up.JOB, [setup_id], connection=runtime.redis
        )
    return due
