"""Poll jobs: read a setup's Constant Contact changes and opt-outs into Salesforce."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rq import get_current_job

from middleware import queue
from middleware.cc_to_sf import poll
from middleware.queue import current_runtime, exclusive_per_setup


@exclusive_per_setup()
def poll_setup(setup_id: int) -> dict[str, Any]:
    """Poll one setup (one job per setup at a time, shared with its flushes and syncs)."""
    job = get_current_job()
    return poll.run_poll(current_runtime(), setup_id, job_id=job.id if job else None)


def poll_tick() -> list[int]:
    """The clock's minute tick: schedule a poll for every setup whose interval has passed."""
    runtime = current_runtime()
    due = poll.due_setups(runtime.store, datetime.now(UTC))
    for setup_id in due:
        queue.ensure_scheduled(
            poll.poll_job_key(setup_id), poll.POLL_JOB, [setup_id], connection=runtime.redis
        )
    return due
