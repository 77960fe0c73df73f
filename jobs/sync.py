"""Sync Now jobs: an incremental sync of a setup on demand (admin API, CLI, demo)."""

from __future__ import annotations

from typing import Any

from rq import get_current_job

from middleware.queue import current_runtime, exclusive_per_setup
from middleware.sync_now import run_sync_now


@exclusive_per_setup()
def sync_now(setup_id: int) -> dict[str, Any]:
    """Catch up on every Salesforce change since the last run, then the pending ones."""
    job = get_current_job()
    return run_sync_now(current_runtime(), setup_id, job_id=job.id if job else None)
