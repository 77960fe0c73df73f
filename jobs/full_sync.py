"""Full Sync jobs: a setup's whole Full Sync (or a reset one), and one Id range of a split run.

The admin API and CLI enqueue ``full_sync`` by path on the ``full_sync`` queue; the clock
enqueues it per setup schedule. A retry of a job whose worker died goes on from the checkpoint.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rq import get_current_job

from middleware.fullsync import clock, run
from middleware.queue import current_runtime


def full_sync(
    setup_id: int, reset: bool = False, partitions: int = 1, resume_of: int | None = None
) -> dict[str, Any]:
    """Make both sides true again for one setup; ``reset`` ignores fingerprints and checkpoints.

    ``partitions > 1`` splits the run into Id ranges run by that many jobs at once.
    ``resume_of`` (the clock's revival of a stalled run) only goes on with that run: if it has
    finished meanwhile, nothing new is started.
    """
    job = get_current_job()
    return run.run_full_sync(
        current_runtime(),
        setup_id,
        reset=reset,
        partitions=partitions,
        job_id=job.id if job else None,
        resume_of=resume_of,
    )


def full_sync_partition(
    setup_id: int, run_id: int, partition: dict[str, Any], reset: bool = False
) -> dict[str, Any]:
    """One Id range of a partitioned Full Sync; the last one to finish closes the run."""
    return run.run_partition(current_runtime(), setup_id, run_id, partition, reset)


def clock_tick() -> dict[str, Any]:
    """The clock's minute tick: due Full Syncs, stranded flushes (``middleware.fullsync.clock``)."""
    runtime = current_runtime()
    return clock.tick(runtime.store, runtime.redis, datetime.now(UTC))
