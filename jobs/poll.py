"""Poll jobs: read a setup's Constant Contact changes and opt-outs into Salesforce."""

from __future__ import annotations

from typing import Any

from rq import get_current_job

from middleware import poll
from middleware.queue import current_runtime, exclusive_per_setup


@exclusive_per_setup(ttl=900)
def poll_setup(setup_id: int) -> dict[str, Any]:
    """Poll one setup (one job per setup at a time, shared with its flushes and syncs)."""
    job = get_current_job()
    return poll.run_poll(current_runtime(), setup_id, job_id=job.id if job else None)
