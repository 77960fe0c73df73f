"""Workers: the RQ worker the Procfile runs, and recovery from workers that died mid-job.

A worker can die mid-flush: its work horse SIGKILLed (out of memory, a stuck job killed by hand)
or the whole dyno gone. Without help that leaves the setup's lock held, the run ``running`` for
ever and delayed jobs waiting for a scheduler nobody runs. ``SyncWorker`` (Procfile ``worker``)
makes that heal within seconds:

- **work horse killed** (the worker survives): the worker releases every lock the job held
  (``queue.setup_lock`` lists them per job), marks the job's running runs ``failed`` ("worker
  died: work horse killed by signal 9 ...") and lets RQ retry the job as for any failure.
- **whole worker gone**: its heartbeat stops. Every ``SyncWorker`` heartbeats every
  ``HEARTBEAT_SECONDS`` (RQ's defaults are 30 s busy and 405 s idle) and counts as dead
  ``STALE_AFTER_SECONDS`` after its last one. Any live ``SyncWorker`` then, within
  ``RECOVER_EVERY_SECONDS``: fails the dead worker's started jobs the way RQ's own abandoned-job
  cleanup does (failure callbacks, retry with the job's ``Retry``, else the failed registry) —
  without waiting for their heartbeat to expire or for the 10-minute maintenance tick; marks
  their runs failed; and takes over the scheduler if the dead worker ran it (RQ's scheduler
  lock otherwise outlives its holder by 61 s and is only retried at maintenance time). The
  setup locks of the dead job lapse on their own within ``queue.LOCK_TTL_SECONDS`` (their
  keeper thread died with the horse; they are never force-released on a guess).
- **runs left running** by any other path (Redis restarted empty, a stock ``rq worker``'s
  cleanup) are found by :func:`fail_dead_runs` at start and every ``SWEEP_RUNS_EVERY_SECONDS``.

``/readyz`` uses :func:`live_workers` and :func:`dead_runs`: it fails while no worker is alive
and names the runs that died.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler
from rq.utils import as_text, current_timestamp, now, utcparse
from rq.worker import BaseWorker, HerokuWorker, Worker

from middleware import queue
from middleware.settings import Settings
from middleware.store import runs
from middleware.store.db import Store

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5  # a SyncWorker heartbeats this often, idle or busy
STALE_AFTER_SECONDS = 20  # ... and is dead this long after its last heartbeat
# RQ's scheduler heartbeats every second; its lock outlives it by 61 s. Half that is a safe
# verdict (a wrong one only means two schedulers for a moment: jobs are idempotent).
SCHEDULER_STALE_SECONDS = 30
RECOVER_EVERY_SECONDS = 5
SWEEP_RUNS_EVERY_SECONDS = 60
# Written into a SyncWorker's RQ hash: how often it heartbeats (a stock RQ worker has none, and
# counts as alive for as long as RQ keeps its hash).
HEARTBEAT_FIELD = "ctct_heartbeat_seconds"

_RELEASE_IF_EQUAL = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


# ------------------------------------------------------------------------------- liveness


def worker_state(connection: Redis, name: str) -> tuple[bool, str]:
    """Whether worker ``name`` is alive, and a few words saying why (for messages)."""
    key = Worker.redis_worker_namespace_prefix + name
    last, interval, death = connection.hmget(key, ["last_heartbeat", HEARTBEAT_FIELD, "death"])
    if last is None:
        return False, f"worker {name} is gone (no heartbeat in Redis)"
    if death is not None:
        return False, f"worker {name} has shut down"
    age = (now() - utcparse(as_text(last))).total_seconds()
    if interval is not None:
        limit = max(STALE_AFTER_SECONDS, 4 * int(interval))
        if age > limit:
            return False, f"worker {name} stopped heartbeating {age:.0f}s ago"
    return True, f"worker {name} (heartbeat {age:.0f}s ago)"


def live_workers(connection: Redis) -> tuple[list[str], list[str]]:
    """(names of live workers, descriptions of registered workers that are dead)."""
    live, dead = [], []
    for key in sorted(as_text(k) for k in Worker.all_keys(connection=connection)):
        name = key.removeprefix(Worker.redis_worker_namespace_prefix)
        alive, why = worker_state(connection, name)
        if alive:
            live.append(name)
        else:
            dead.append(why)
    return live, dead


def job_state(connection: Redis, job_id: str) -> tuple[bool, str]:
    """Whether the job that opened a run still carries it, and why not.

    Alive: started on a live worker, or finished (a partitioned Full Sync's coordinator: its
    partition jobs carry the run on). Anything else means the attempt that opened the run ended
    without closing it: the job is gone, failed, stopped, or waiting for a retry.
    """
    try:
        job = Job.fetch(job_id, connection=connection, serializer=queue.SERIALIZER)
    except NoSuchJobError:
        return False, "its job is gone from Redis"
    raw = job.get_status(refresh=False)
    status = getattr(raw, "value", raw)
    if status == JobStatus.FINISHED:
        return True, "finished; other jobs carry the run on"
    if status == JobStatus.STARTED:
        if not job.worker_name:
            return True, "started"
        return worker_state(connection, job.worker_name)
    if status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
        return False, f"its job is {status} again for a retry: the attempt that ran it died"
    return False, f"its job is {status}"


def scheduler_dead(connection: Redis, name: str) -> bool:
    """Whether the RQ scheduler ``name`` stopped heartbeating (its process died)."""
    last = connection.hget(SCHEDULER_KEY_TEMPLATE % name, "last_heartbeat")
    if last is None:
        return True
    return (now() - utcparse(as_text(last))).total_seconds() > SCHEDULER_STALE_SECONDS


# ------------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class DeadRun:
    """A run left ``running`` by a job that is no longer alive."""

    run_id: int
    setup_id: int
    kind: str
    job_id: str
    reason: str

    def describe(self) -> str:
        return (
            f"run {self.run_id} (setup {self.setup_id}, {self.kind}, job {self.job_id}: "
            f"{self.reason})"
        )


def death_message(kind: str, job_id: str, reason: str) -> str:
    """The message a run killed with its worker ends with."""
    then = (
        "the Full Sync goes on from its checkpoint when it runs again"
        if kind == "full"
        else "its pending changes stay queued and the job's retry or the next run syncs them"
    )
    return f"worker died: {reason} (job {job_id}); {then}"


def dead_runs(store: Store, connection: Redis) -> list[DeadRun]:
    """Runs in state ``running`` whose job is no longer alive (nothing is changed)."""
    with store.transaction() as session:
        candidates = [
            (r.id, r.setup_id, r.kind, str(r.job_id)) for r in runs.running_with_jobs(session)
        ]
    found = []
    for run_id, setup_id, kind, job_id in candidates:
        alive, reason = job_state(connection, job_id)
        if not alive:
            found.append(DeadRun(run_id, setup_id, kind, job_id, reason))
    return found


def fail_dead_runs(store: Store, connection: Redis) -> list[DeadRun]:
    """Mark every run whose job died ``failed`` ("worker died: ..."); return them."""
    failed = []
    for dead in dead_runs(store, connection):
        with store.transaction() as session:
            if runs.lock_running(session, dead.run_id, dead.job_id) is None:
                continue  # finished meanwhile
            alive, reason = job_state(connection, dead.job_id)  # again, under the row lock
            if alive:
                continue  # a retry resumed it meanwhile
            message = death_message(dead.kind, dead.job_id, reason)
            runs.finish_run(session, dead.run_id, "failed", message=message)
        failed.append(dead)
        log.warning("run %s marked failed: %s", dead.run_id, dead.describe())
    return failed


def fail_runs_of_job(store: Store, job_id: str, reason: str) -> list[int]:
    """Mark the running runs of ``job_id`` failed: its work horse is known to be dead."""
    with store.transaction() as session:
        found = runs.running_with_jobs(session, job_id)
        for run in found:
            message = death_message(run.kind, job_id, reason)
            runs.finish_run(session, run.id, "failed", message=message)
        return [run.id for run in found]


# ------------------------------------------------------------------------------- locks and jobs


def release_job_locks(connection: Redis, job_id: str) -> list[str]:
    """Release the locks ``job_id`` still holds (its work horse is dead); return their names."""
    holder = queue.lock_holder_key(job_id)
    released = []
    for member in connection.smembers(holder):
        name, _, token = as_text(member).partition("\n")
        if connection.eval(_RELEASE_IF_EQUAL, 1, name, token):
            released.append(name)
    connection.delete(holder)
    return released


def abandon_jobs_of_dead_workers(
    connection: Redis, queues: Iterable[Any], exception_handlers: list[Any], me: str
) -> dict[str, str]:
    """Fail the started jobs whose worker is dead, as RQ's abandoned-job cleanup does.

    The registry entry is marked expired and RQ's own ``StartedJobRegistry.cleanup`` runs: the
    job's failure callback, then a retry per its ``Retry`` (or the failed registry). Returns
    {job id: why}.
    """
    abandoned: dict[str, str] = {}
    for q in queues:
        registry = StartedJobRegistry(queue=q)
        marked = False
        for raw in connection.zrange(registry.key, 0, -1):
            entry = as_text(raw)  # type: ignore[arg-type]
            job_id = registry.parse_job_id(entry)
            try:
                job = Job.fetch(job_id, connection=connection, serializer=queue.SERIALIZER)
            except NoSuchJobError:
                continue  # RQ's own cleanup drops it
            if not job.worker_name or job.worker_name == me:
                continue
            alive, why = worker_state(connection, job.worker_name)
            if alive:
                continue
            connection.zadd(registry.key, {entry: 0}, xx=True)
            abandoned[job_id] = why
            marked = True
        if marked:
            registry.cleanup(current_timestamp(), exception_handlers=exception_handlers)
    for job_id, why in abandoned.items():
        log.warning("job %s abandoned: %s; retried if it has retries left", job_id, why)
    return abandoned


def take_over_scheduler(worker: BaseWorker) -> bool:
    """Start this worker's scheduler if the one holding the scheduler lock died; True if started."""
    scheduler = worker.scheduler
    if scheduler is None:
        return False  # not started --with-scheduler
    process = scheduler._process
    if process is not None and process.is_alive():
        return False
    connection = worker.connection
    for name in scheduler._queue_names:
        key = RQScheduler.get_locking_key(name)
        owner = connection.get(key)
        if owner is None or as_text(owner) == scheduler.name:
            continue
        if scheduler_dead(connection, as_text(owner)):
            connection.eval(_RELEASE_IF_EQUAL, 1, key, owner)
    scheduler.acquire_locks(auto_start=True)
    started = scheduler._process is not None and scheduler._process.is_alive()
    if started and process is None:
        worker.log.warning("Worker %s: took over the scheduler of a dead worker", worker.name)
    return started


# ------------------------------------------------------------------------------- the worker


class _WorkerStore:
    """The store, for the worker's main process: built from the environment on first use and
    disposed after each use, so no database connection is ever inherited by a forked horse."""

    def __init__(self) -> None:
        self._store: Store | None = None

    @contextmanager
    def use(self) -> Iterator[Store]:
        if self._store is None:
            settings = Settings.from_env()
            self._store = Store(settings.database_url, settings.token_encryption_keys)
        try:
            yield self._store
        finally:
            self._store.dispose()


class SyncWorker(HerokuWorker):
    """The Procfile's worker: RQ's HerokuWorker that heals from dead workers (module docstring).

    ``rq worker --worker-class middleware.workers.SyncWorker --with-scheduler ...``
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Heartbeat often, busy (RQ's default: every 30 s) or idle (every 405 s), so a dead
        # worker is told from a live one within STALE_AFTER_SECONDS.
        self.job_monitoring_interval = min(self.job_monitoring_interval, HEARTBEAT_SECONDS)
        self._recovered_at = float("-inf")
        self._swept_at = float("-inf")
        self._store = _WorkerStore()

    @property
    def dequeue_timeout(self) -> int:
        return max(1, min(self.worker_ttl - 15, HEARTBEAT_SECONDS))

    def register_birth(self) -> None:
        super().register_birth()
        self.connection.hset(self.key, HEARTBEAT_FIELD, HEARTBEAT_SECONDS)

    @property
    def should_run_maintenance_tasks(self) -> bool:
        due = time.monotonic() - self._recovered_at >= RECOVER_EVERY_SECONDS
        return bool(super().should_run_maintenance_tasks) or due

    def run_maintenance_tasks(self) -> None:
        # RQ's own maintenance (registry cleanup) keeps its interval; recovery runs every time.
        if BaseWorker.should_run_maintenance_tasks.fget(self):  # type: ignore[attr-defined]
            super().run_maintenance_tasks()
        self.recover()

    def recover(self) -> None:
        """Heal from dead workers: abandon their jobs, take over their scheduler, fail runs."""
        self._recovered_at = time.monotonic()
        abandoned: dict[str, str] = {}
        try:
            abandoned = abandon_jobs_of_dead_workers(
                self.connection, self.queues, self._exc_handlers, self.name
            )
        except Exception:
            self.log.exception("Worker %s: could not check for dead workers' jobs", self.name)
        try:
            take_over_scheduler(self)
        except Exception:
            self.log.exception("Worker %s: could not take over the scheduler", self.name)
        if not abandoned and time.monotonic() - self._swept_at < SWEEP_RUNS_EVERY_SECONDS:
            return
        self._swept_at = time.monotonic()
        try:
            with self._store.use() as store:
                for job_id, why in abandoned.items():  # the reason is known: say it
                    fail_runs_of_job(store, job_id, why)
                for dead in fail_dead_runs(store, self.connection):
                    self.log.warning("Worker %s: %s", self.name, death_message(
                        dead.kind, dead.job_id, dead.reason))  # fmt: skip
        except Exception:
            self.log.exception("Worker %s: could not mark the runs of dead jobs", self.name)

    def handle_work_horse_killed(self, job: Job, retpid: Any, ret_val: Any, rusage: Any) -> None:
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        reason = _horse_death(ret_val)
        try:
            released = release_job_locks(self.connection, job.id)
            if released:
                self.log.warning("Worker %s: released %s of job %s", self.name, released, job.id)
        except Exception:
            self.log.exception("Worker %s: could not release job %s's locks", self.name, job.id)
        try:
            with self._store.use() as store:
                failed = fail_runs_of_job(store, job.id, reason)
            if failed:
                self.log.warning("Worker %s: runs %s failed: %s", self.name, failed, reason)
        except Exception:
            self.log.exception("Worker %s: could not mark the runs of job %s", self.name, job.id)


def _horse_death(ret_val: Any) -> str:
    if isinstance(ret_val, int) and os.WIFSIGNALED(ret_val):
        number = os.WTERMSIG(ret_val)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"work horse killed by signal {number} ({name})"
    code = os.WEXITSTATUS(ret_val) if isinstance(ret_val, int) else ret_val
    return f"work horse exited unexpectedly (status {code})"
