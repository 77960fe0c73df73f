"""The embedded worker: runs queued and due jobs in a thread of the web process.

Used when ``REDIS_URL`` is empty (the demo, a single-process install) or ``EMBEDDED_WORKER`` is set:
the queue is then in-process (fakeredis) and no ``rq worker`` exists, so this thread does what
``rq worker --with-scheduler`` does in production.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from redis import Redis
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.timeouts import TimerDeathPenalty

from middleware import queue, workers
from middleware.logging import request_id_var

log = logging.getLogger(__name__)


class EmbeddedWorker(SimpleWorker):
    """An RQ worker that runs jobs in a thread of this process (no fork, no signals)."""

    # SIGALRM only works in the main thread; a timer thread enforces job timeouts instead.
    death_penalty_class = TimerDeathPenalty

    def perform_job(self, job: Job, rq_queue: Queue) -> bool:
        # Log lines of the job carry the id of the request that caused it (or the job id).
        token = request_id_var.set(str(job.meta.get("request_id") or job.id))
        try:
            return bool(super().perform_job(job, rq_queue))
        finally:
            request_id_var.reset(token)

    def _install_signal_handlers(self) -> None:
        # Signal handlers can only be installed from the main thread; the web server owns them.
        return None


def enqueue_due_jobs(connection: Redis, now: datetime | None = None) -> int:
    """Move scheduled jobs whose time has come onto their queues; return how many.

    What ``rq worker --with-scheduler`` does in production, for the embedded mode; retries with
    an interval are scheduled jobs too.
    """
    moved = 0
    timestamp = int((now or datetime.now(UTC)).timestamp())
    for name, q in queue.get_queues(connection).items():
        registry = ScheduledJobRegistry(queue=q)
        job_ids = registry.get_jobs_to_schedule(timestamp)
        if not job_ids:
            continue
        with connection.pipeline() as pipe:
            for job in Job.fetch_many(job_ids, connection=connection, serializer=queue.SERIALIZER):
                if job is not None:
                    q._enqueue_job(job, pipeline=pipe, at_front=job.should_enqueue_at_front())
                    moved += 1
            for job_id in job_ids:
                registry.remove(job_id, pipeline=pipe)
            pipe.execute()
        log.debug("moved %d due jobs onto %s", len(job_ids), name)
    return moved


class EmbeddedWorkerThread:
    """Runs queued and due jobs in a background thread of the web process (embedded mode)."""

    def __init__(
        self,
        connection: Redis,
        runtime: queue.Runtime | None = None,
        *,
        poll_interval: float = 0.2,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.connection = connection
        self.runtime = runtime
        self.poll_interval = poll_interval
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.worker = EmbeddedWorker(
            list(queue.get_queues(connection).values()),
            connection=connection,
            serializer=queue.SERIALIZER,
            name=f"embedded-{uuid.uuid4().hex[:8]}",
        )

    def run_pending(self) -> bool:
        """One pass: move due scheduled jobs, then run every queued job; True if any ran."""
        enqueue_due_jobs(self.connection, self.clock())
        if self.runtime is None:
            return bool(self.worker.work(burst=True, logging_level="WARNING"))
        with queue.use_runtime(self.runtime):
            return bool(self.worker.work(burst=True, logging_level="WARNING"))

    def _loop(self) -> None:
        log.info("embedded worker started")
        self._fail_dead_runs()
        while not self._stop.is_set():
            try:
                worked = self.run_pending()
            except Exception:
                # The loop must survive a Redis hiccup; job errors are handled by RQ itself.
                log.exception("embedded worker pass failed")
                worked = False
            if not worked:
                self._stop.wait(self.poll_interval)
        log.info("embedded worker stopped")

    def _fail_dead_runs(self) -> None:
        # Runs left "running" by a previous process (its in-process queue died with it).
        if self.runtime is None:
            return
        try:
            workers.fail_dead_runs(self.runtime.store, self.connection)
        except Exception:
            log.exception("could not mark the runs of dead jobs")

    def start(self) -> EmbeddedWorkerThread:
        """Start the background thread (daemon: it never holds the process open)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._loop, name="embedded-rq-worker", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to stop after the current job and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """Whether the background thread is running."""
        return self._thread is not None and self._thread.is_alive()


def start_embedded_worker(
    connection: Redis, runtime: queue.Runtime | None = None
) -> EmbeddedWorkerThread:
    """Start an embedded worker thread on ``connection``."""
    return EmbeddedWorkerThread(connection, runtime).start()
