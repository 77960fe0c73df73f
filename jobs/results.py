"""Campaign results jobs: one setup's results run, and the clock's tick that schedules them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rq import get_current_job

from middleware import queue
from middleware.queue import current_runtime, exclusive_per_setup
from middleware.results import run


@exclusive_per_setup()
def campaign_results(setup_id: int, reset: bool = False) -> dict[str, Any]:
    """Bring one setup's campaign results back (under the setup's lock, like its other runs);
    ``reset`` makes again the Campaigns deleted in Salesforce."""
    job = get_current_job()
    return run.run_results(current_runtime(), setup_id, reset=reset, job_id=job.id if job else None)


def results_tick() -> list[int]:
    """The clock's minute tick: schedule a results run for every setup whose interval passed."""
    runtime = current_runtime()
    due = run.due_setups(runtime.store, datetime.now(UTC))
    for setup_id in due:
        queue.ensure_scheduled(
            run.results_job_key(setup_id), run.RESULTS_JOB, [setup_id], connection=runtime.redis
        )
    return due
