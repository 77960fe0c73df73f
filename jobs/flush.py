"""Flush jobs: push a setup's pending Salesforce changes to Constant Contact."""

from __future__ import annotations

from typing import Any

from rq import get_current_job

from middleware.queue import current_runtime, exclusive_per_setup
from middleware.sf_to_cc import flush


@exclusive_per_setup()
def flush_setup(setup_id: int) -> dict[str, Any]:
    """Sync the changes the setup's webhooks recorded (one job per setup at a time)."""
    job = get_current_job()
    return flush.run_flush(current_runtime(), setup_id, job_id=job.id if job else None)
