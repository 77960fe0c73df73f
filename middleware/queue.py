"""Queue: RQ wiring (named queues, JSON jobs, retries, per-setup locks) and the embedded mode.

Production runs Redis and ``rq worker --with-scheduler`` processes (see Procfile). With no
``REDIS_URL`` the service runs *embedded*: a process-wide fakeredis server stands in for Redis and
a thread of the web process runs the very same job functions, so ``make demo`` needs no server.

Jobs are top-level functions called with plain JSON arguments (ids, strings, dicts). Inside a job,
``current_runtime()`` gives the settings, store and Redis of the process running it.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import json
import logging
import os
import pickle
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import fakeredis
import redis as redis_lib
from redis import Redis
from rq import Queue, Retry, Worker, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.serializers import JSONSerializer

from middleware.logging import configure_logging, request_id_var
from middleware.settings import Settings
from middleware.store.db import Store

log = logging.getLogger(__name__)

# Highest priority first: workers drain `webhooks` before `default` before `full_sync`.
WEBHOOKS, DEFAULT, FULL_SYNC = "webhooks", "default", "full_sync"
QUEUE_NAMES = (WEBHOOKS, DEFAULT, FULL_SYNC)


class JobSerializer(JSONSerializer):
    """JSON for every job we write; also *reads* the pickled jobs ``rq cron`` enqueues.

    rq 2.12's cron scheduler builds its queues without a serializer option, so its jobs arrive
    pickled; without this fallback a JSON worker would fail every scheduled Full Sync.
    """

    @staticmethod
    def loads(s: bytes, *args: Any, **kwargs: Any) -> Any:
        if s[:1] == b"\x80":  # pickle protocol 2+ header; JSON text never starts with it
            return pickle.loads(s)
        return JSONSerializer.loads(s, *args, **kwargs)


SERIALIZER = JobSerializer

# Retry transient failures (vendor 5xx, network) three times, backing off; then the failed
# registry keeps the job for a year, visible in the admin API and requeueable.
RETRY_MAX = 3
RETRY_INTERVALS = (10, 60, 300)
DEFAULT_JOB_TIMEOUT = {WEBHOOKS: 300, DEFAULT: 900, FULL_SYNC: 4 * 3600}
RESULT_TTL = 24 * 3600
FAILURE_TTL = 365 * 24 * 3600

LOCK_PREFIX = "ctct:lock:setup:"
GUARD_PREFIX = "ctct:scheduled:"
# A pending-job guard outlives any sane backlog; if it still expires, the worst case is one
# extra (idempotent, lock-serialised) job, never a lost one.
GUARD_TTL_SECONDS = 3600
LOCK_BUSY_RETRY_SECONDS = 5.0
_GUARD_GRACE_SECONDS = 30
# A pending job due at most this much later than asked is good enough (not replaced).
REPLACE_SLACK_SECONDS = 5

# The Redis key of a job is this prefix and its id: the webhook's intake script reads the status
# of the guard's job in the round trip that reads the guard (`guard_is_fresh`'s `job_status`).
JOB_KEY_PREFIX = Job.redis_job_namespace_prefix
# Statuses of a job that has not started: its guard still stands for work to come.
_WAITING_STATUSES = frozenset(
    status.value for status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED)
)

_NO_RETRY: Any = object()
F = TypeVar("F", bound=Callable[..., Any])


# The clock (jobs/cron.py) ticks once a minute and a job starts a little after its tick: an
# interval counts as passed this much early, or a 1-minute interval would come due every other tick.
CLOCK_TICK_SLACK = timedelta(seconds=30)


def interval_passed(previous: datetime | None, every: timedelta, now: datetime) -> bool:
    """Whether a clock-driven job last started at ``previous`` is due again at ``now``."""
    return previous is None or now - previous >= every - CLOCK_TICK_SLACK


# --------------------------------------------------------------------------- connections


_embedded_lock = threading.Lock()
_embedded_server: fakeredis.FakeServer | None = None


def embedded_server() -> fakeredis.FakeServer:
    """The process-wide fakeredis server used when no REDIS_URL is set (created on first use)."""
    global _embedded_server
    with _embedded_lock:
        if _embedded_server is None:
            _embedded_server = fakeredis.FakeServer()
        return _embedded_server


def embedded_redis(server: fakeredis.FakeServer | None = None) -> Redis:
    """A client of the embedded server (or of ``server``, for isolated tests)."""
    return fakeredis.FakeRedis(server=server or embedded_server())


def redis_from_url(url: str, **kwargs: Any) -> Redis:
    """A Redis client for ``url``; ``rediss://`` accepts self-signed certificates (Heroku)."""
    if url.startswith("rediss://"):
        # Heroku Key-Value Store uses self-signed certificates: encrypt, but do not verify.
        kwargs.setdefault("ssl_cert_reqs", None)
        kwargs.setdefault("ssl_check_hostname", False)
    # Fail fast so a webhook answers 503 (and the sender retries) instead of hanging.
    kwargs.setdefault("socket_connect_timeout", 5)
    kwargs.setdefault("socket_timeout", 10)
    kwargs.setdefault("health_check_interval", 30)
    return redis_lib.Redis.from_url(url, **kwargs)


class TolerantRedis(Redis):
    """Redis client for the ``rq`` CLI (``--connection-class``): accepts Heroku's self-signed TLS.

    ``rq worker --url rediss://...`` would otherwise refuse the certificate. No socket timeout
    here: workers block on BLPOP for minutes by design.
    """

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Any:
        if url.startswith("rediss://"):
            kwargs.setdefault("ssl_cert_reqs", None)
            kwargs.setdefault("ssl_check_hostname", False)
        return super().from_url(url, **kwargs)


def get_redis(settings: Settings) -> Redis:
    """The configured Redis, or the embedded stand-in when ``REDIS_URL`` is empty."""
    if settings.redis_url is None:
        return embedded_redis()
    return redis_from_url(settings.redis_url)


def get_queue(connection: Redis, name: str = DEFAULT) -> Queue:
    """One named queue with the JSON serializer."""
    if name not in QUEUE_NAMES:
        raise ValueError(f"unknown queue {name!r}; queues are {QUEUE_NAMES}")
    return Queue(
        name,
        connection=connection,
        serializer=SERIALIZER,
        default_timeout=DEFAULT_JOB_TIMEOUT[name],
    )


def get_queues(connection: Redis) -> dict[str, Queue]:
    """Every queue, highest priority first."""
    return {name: get_queue(connection, name) for name in QUEUE_NAMES}


# --------------------------------------------------------------------------- runtime


@dataclass(frozen=True)
class Runtime:
    """What a job needs from its process: settings, store and Redis."""

    settings: Settings
    store: Store
    redis: Redis


_runtime_var: contextvars.ContextVar[Runtime | None] = contextvars.ContextVar(
    "middleware_runtime", default=None
)
_process_runtime: Runtime | None = None
_process_runtime_lock = threading.Lock()


def set_runtime(runtime: Runtime) -> contextvars.Token[Runtime | None]:
    """Make ``runtime`` current until :func:`reset_runtime` (a request's before/teardown hooks)."""
    return _runtime_var.set(runtime)


def reset_runtime(token: contextvars.Token[Runtime | None]) -> None:
    """Undo the :func:`set_runtime` that gave ``token``."""
    _runtime_var.reset(token)


@contextmanager
def use_runtime(runtime: Runtime) -> Iterator[Runtime]:
    """Make ``runtime`` current for the code inside (requests, CLI commands, tests)."""
    token = set_runtime(runtime)
    try:
        yield runtime
    finally:
        reset_runtime(token)


def current_runtime() -> Runtime:
    """The runtime in use: set by the web app / embedded worker, else built from the environment.

    An ``rq worker`` process has no app: the first job builds the runtime from ``Settings.from_env``
    and reuses the running job's Redis connection.
    """
    runtime = _runtime_var.get()
    if runtime is not None:
        return runtime
    global _process_runtime
    with _process_runtime_lock:
        if _process_runtime is None:
            settings = Settings.from_env()
            # An rq worker only configures RQ's own logger; our job logs need a handler too.
            configure_logging(settings.log_level)
            job = get_current_job()
            connection = job.connection if job is not None else get_redis(settings)
            _process_runtime = Runtime(
                settings=settings,
                store=Store(settings.database_url, settings.token_encryption_keys),
                redis=connection,
            )
        return _process_runtime


def current_redis() -> Redis:
    """The Redis of the runtime in use: the app's, the running job's, else the environment's."""
    return _connection(None)


def _connection(connection: Redis | None) -> Redis:
    if connection is not None:
        return connection
    runtime = _runtime_var.get()
    if runtime is not None:
        return runtime.redis
    # Inside a job of an rq worker: the worker's own connection, no settings needed.
    job = get_current_job()
    if job is not None:
        return job.connection
    return current_runtime().redis


# --------------------------------------------------------------------------- enqueueing


def func_path(func: Callable[..., Any] | str) -> str:
    """``module.function`` for a top-level function; refuses lambdas, methods and closures."""
    if isinstance(func, str):
        return func
    module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", "")
    if not module or "." in qualname or "<" in qualname:
        raise ValueError(f"jobs must be top-level functions, not {func!r}")
    return f"{module}.{qualname}"


def default_retry() -> Retry:
    """The retry policy jobs get unless told otherwise."""
    return Retry(max=RETRY_MAX, interval=list(RETRY_INTERVALS))


def _check_json(args: Sequence[Any], kwargs: dict[str, Any]) -> None:
    try:
        json.dumps([list(args), kwargs])
    except TypeError as exc:
        raise TypeError(f"job arguments must be plain JSON (ids, strings, dicts): {exc}") from None


def _as_timedelta(delay: float | timedelta) -> timedelta:
    return delay if isinstance(delay, timedelta) else timedelta(seconds=float(delay))


def enqueue(
    func: Callable[..., Any] | str,
    *args: Any,
    queue: str = DEFAULT,
    job_id: str | None = None,
    at_front: bool = False,
    delay: float | timedelta | None = None,
    retry: Retry | None = _NO_RETRY,
    job_timeout: int | str | None = None,
    description: str | None = None,
    meta: dict[str, Any] | None = None,
    connection: Redis | None = None,
    kwargs: dict[str, Any] | None = None,
) -> Job:
    """Put a job on a queue, now or after ``delay`` seconds; return the RQ job.

    ``retry=None`` disables retries; the default is ``default_retry()``. ``connection`` defaults to
    the current runtime's Redis.
    """
    job_kwargs = dict(kwargs or {})
    _check_json(args, job_kwargs)
    # Carry the request id of the webhook or admin call into the job, for one grep end to end.
    request_id = request_id_var.get()
    if request_id != "-":
        meta = {"request_id": request_id, **(meta or {})}
    q = get_queue(_connection(connection), queue)
    options: dict[str, Any] = {
        "args": args,
        "kwargs": job_kwargs,
        "job_id": job_id,
        "retry": default_retry() if retry is _NO_RETRY else retry,
        "job_timeout": job_timeout,
        "result_ttl": RESULT_TTL,
        "failure_ttl": FAILURE_TTL,
        "description": description,
        "meta": meta,
    }
    path = func_path(func)
    if delay is not None and _as_timedelta(delay) > timedelta(0):
        options["at_front"] = at_front  # honoured when the scheduler moves it to the queue
        return q.enqueue_in(_as_timedelta(delay), path, **_rq_kwargs(options))
    return q.enqueue_call(path, at_front=at_front, **_enqueue_call_kwargs(options))


def _rq_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    # Queue.enqueue_in() takes job options with these reserved names.
    out = {k: v for k, v in options.items() if k not in ("args", "kwargs") and v is not None}
    return {**out, "args": options["args"], "kwargs": options["kwargs"]}


def _enqueue_call_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    return {
        "args": options["args"],
        "kwargs": options["kwargs"],
        "job_id": options["job_id"],
        "retry": options["retry"],
        "timeout": options["job_timeout"],
        "result_ttl": options["result_ttl"],
        "failure_ttl": options["failure_ttl"],
        "description": options["description"],
        "meta": options["meta"],
    }


def ensure_scheduled(
    key: str,
    func: Callable[..., Any] | str,
    args: Sequence[Any] = (),
    delay: float | timedelta = 0.0,
    *,
    queue: str = DEFAULT,
    connection: Redis | None = None,
    retry: Retry | None = _NO_RETRY,
    job_timeout: int | str | None = None,
) -> str | None:
    """Make sure exactly one job for ``key`` is waiting and runs within ``delay``; return its id
    if this call scheduled it.

    Used by the webhook intake: every event of a setup calls ``ensure_scheduled("flush-<id>",
    ...)``, and only the first one within the coalescing window schedules a flush. Once that job
    *starts*, the next event schedules a fresh one, so a change arriving while a flush runs is
    never stranded. Returns ``None`` when a job for ``key`` due no later than this one (give or
    take ``REPLACE_SLACK_SECONDS``) was already queued or scheduled.

    A pending job due *later* than this call asks (a flush held for a quota reset at 00:00 UTC,
    or paced) is replaced: the guard moves to the new job in one compare-and-set, and the later
    job is taken off the schedule. So an earlier request (an operator's resume, a webhook, the
    clock's stranded-work check) is never refused by a later one, and still exactly one job is
    pending. A job that finds its setup still paused schedules itself again for the pause's end.
    """
    conn = _connection(connection)
    guard = GUARD_PREFIX + key
    seconds = max(_as_timedelta(delay).total_seconds(), 0.0)
    for _attempt in range(5):
        pending = _text(conn.get(guard))
        now = time.time()
        job_id = f"{key}-{uuid.uuid4().hex[:12]}"
        token = f"{job_id}|{int(now)}|{int(now + seconds)}"
        ttl = int(seconds) + GUARD_TTL_SECONDS
        if pending is None:
            if not conn.set(guard, token, nx=True, ex=ttl):
                continue  # a concurrent call scheduled one: look at it
        else:
            if guard_is_fresh(pending, delay):
                return None
            if _guard_is_stale(conn, pending):
                _delete_if_equal(conn, guard, pending)
                continue
            due = _pending_due(conn, pending)
            if due <= now + seconds + REPLACE_SLACK_SECONDS:
                return None  # the pending job runs soon enough
            if not _swap_if_equal(conn, guard, pending, token, ttl):
                continue  # changed under us (another replacement, or it started)
        try:
            enqueue(
                run_guarded,
                guard,
                token,
                func_path(func),
                list(args),
                queue=queue,
                job_id=job_id,
                delay=delay,
                retry=retry,
                job_timeout=job_timeout,
                description=f"{func_path(func)}{tuple(args)!r} [{key}]",
                connection=conn,
            )
        except Exception:
            if pending is None:
                _delete_if_equal(conn, guard, token)
            else:  # the later job is still scheduled: the guard goes back to it
                _swap_if_equal(conn, guard, token, pending, ttl)
            raise
        if pending is not None:
            replaced = pending.partition("|")[0]
            _unschedule(conn, replaced)
            log.info("%s: job %s replaces %s, due later", key, job_id, replaced)
        return job_id
    return None


def guard_key(key: str) -> str:
    """The Redis key holding the pending job of ``key`` (read it to skip ``ensure_scheduled``)."""
    return GUARD_PREFIX + key


def _parse_guard(value: str) -> tuple[str, int, int | None]:
    """(job id, created, due) of a guard token; tokens written before due times have none."""
    parts = value.split("|")
    created = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    due = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None
    return parts[0], created, due


def guard_is_fresh(
    token: str | bytes | None, delay: float | timedelta, job_status: str | bytes | None = None
) -> bool:
    """Whether a guard's job surely has not started yet and runs within ``delay`` (so nothing
    needs scheduling).

    The webhook's hot path, no job lookup: a guard whose job is not yet due (plus a grace
    period; starting deletes the guard) belongs to a job still waiting, and it is good enough
    when it is due within ``delay`` (plus ``REPLACE_SLACK_SECONDS``). A guard past its time is
    good enough too when ``job_status`` (its job's status, read in the same round trip as the
    guard: see ``JOB_KEY_PREFIX``) says the job is still waiting for a worker — what
    ``ensure_scheduled``'s closer look would find, and under a steady stream with busy workers
    the common case. Anything else (no status, a job past the queue, a guard due later than
    asked) needs ``ensure_scheduled``'s closer look.
    """
    value = _text(token)
    if not value:
        return False
    _job_id, created, due = _parse_guard(value)
    now = time.time()
    wanted = _as_timedelta(delay).total_seconds()
    if due is None:  # a guard written before due times: judged by its age, as then
        return now - created < wanted + _GUARD_GRACE_SECONDS
    if due > now + wanted + REPLACE_SLACK_SECONDS:
        return False
    return now < due + _GUARD_GRACE_SECONDS or _text(job_status) in _WAITING_STATUSES


def pending_job_id(key: str, connection: Redis | None = None) -> str | None:
    """The id of the job ``ensure_scheduled`` holds pending for ``key``, if any."""
    value = _text(_connection(connection).get(GUARD_PREFIX + key))
    return value.partition("|")[0] if value is not None else None


def pending_job_due(key: str, connection: Redis | None = None) -> datetime | None:
    """When the job ``ensure_scheduled`` holds pending for ``key`` is due, if one is."""
    conn = _connection(connection)
    value = _text(conn.get(GUARD_PREFIX + key))
    if value is None:
        return None
    return datetime.fromtimestamp(_pending_due(conn, value), UTC)


def _pending_due(conn: Redis, token: str) -> float:
    job_id, _created, due = _parse_guard(token)
    if due is not None:
        return float(due)
    # An older guard: the scheduled registry knows when its job is due.
    try:
        job = Job.fetch(job_id, connection=conn, serializer=SERIALIZER)
    except NoSuchJobError:
        return 0.0
    registry = ScheduledJobRegistry(job.origin, connection=conn, serializer=SERIALIZER)
    score = conn.zscore(registry.key, job_id)
    return float(score) if score is not None else 0.0


def _unschedule(conn: Redis, job_id: str) -> None:
    """Take a replaced job off the schedule (if the scheduler moved it already, it runs: a
    flush is idempotent and serialised by the setup lock, so that costs one empty run)."""
    try:
        job = Job.fetch(job_id, connection=conn, serializer=SERIALIZER)
    except NoSuchJobError:
        return
    registry = ScheduledJobRegistry(job.origin, connection=conn, serializer=SERIALIZER)
    if conn.zrem(registry.key, job_id):
        job.delete()


def _guard_is_stale(conn: Redis, token: str) -> bool:
    # A guard whose job is gone or already past the queue (e.g. Redis lost it, or a failed
    # trampoline) must not block scheduling. A job still being created by a concurrent call
    # has no hash yet: that counts as pending for a grace period.
    job_id, created, _due = _parse_guard(token)
    try:
        status = Job.fetch(job_id, connection=conn, serializer=SERIALIZER).get_status(refresh=False)
    except NoSuchJobError:
        return time.time() - created > _GUARD_GRACE_SECONDS
    return status not in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED, None)


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _delete_if_equal(conn: Redis, key: str, value: str) -> bool:
    with conn.pipeline() as pipe:
        try:
            pipe.watch(key)
            if _text(pipe.get(key)) != value:
                pipe.unwatch()
                return False
            pipe.multi()
            pipe.delete(key)
            pipe.execute()
            return True
        except redis_lib.WatchError:
            return False


def _swap_if_equal(conn: Redis, key: str, old: str, new: str, ttl: int) -> bool:
    with conn.pipeline() as pipe:
        try:
            pipe.watch(key)
            if _text(pipe.get(key)) != old:
                pipe.unwatch()
                return False
            pipe.multi()
            pipe.set(key, new, ex=ttl)
            pipe.execute()
            return True
        except redis_lib.WatchError:
            return False


def clear_guard(key: str, connection: Redis | None = None) -> str | None:
    """Forget the pending job of ``key`` and take it off the schedule; return its id.

    For an operator's "try again now": the next ``ensure_scheduled`` schedules afresh.
    """
    conn = _connection(connection)
    guard = GUARD_PREFIX + key
    value = _text(conn.get(guard))
    if value is None or not _delete_if_equal(conn, guard, value):
        return None
    job_id = value.partition("|")[0]
    _unschedule(conn, job_id)
    return job_id


def run_guarded(guard: str, token: str, path: str, args: list[Any]) -> Any:
    """Job trampoline of ``ensure_scheduled``: release the guard, then run the real job."""
    job = get_current_job()
    if job is not None:
        # From now on a new event must schedule a new job: this one may have read its input.
        _delete_if_equal(job.connection, guard, token)
    func = import_func(path)
    return func(*args)


def import_func(path: str) -> Callable[..., Any]:
    """The function named ``module.function``."""
    module_name, _, name = path.rpartition(".")
    func = getattr(importlib.import_module(module_name), name)
    if not callable(func):
        raise TypeError(f"{path} is not callable")
    return func  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- per-setup lock


class SetupBusy(RuntimeError):
    """Another job of the same setup holds its lock."""


# A setup lock outlives a dead holder by at most LOCK_TTL_SECONDS: a thread of the holder renews
# it every LOCK_RENEW_SECONDS while the job lives, so a SIGKILLed work horse (or a whole worker
# gone with its dyno) frees the setup within half a minute instead of a job timeout.
LOCK_TTL_SECONDS = 30.0
LOCK_RENEW_SECONDS = 10.0
# Which locks a running job holds ("name\ntoken" members), so the worker that sees its work
# horse die can release them at once (see middleware.workers).
LOCK_HOLDER_PREFIX = "ctct:lock-holder:"


def lock_holder_key(job_id: str) -> str:
    """The Redis set of the locks job ``job_id`` holds."""
    return LOCK_HOLDER_PREFIX + job_id


def lock_token(job_id: str | None = None) -> str:
    """A lock value naming its holder: ``<job id>|<host>|<pid>|<random>`` (for operators too)."""
    return f"{job_id or '-'}|{socket.gethostname()}|{os.getpid()}|{uuid.uuid4().hex[:8]}"


class _LockKeeper:
    """A daemon thread renewing a lock's TTL every ``every`` seconds until stopped."""

    def __init__(self, lock: redis_lib.lock.Lock, every: float) -> None:
        self.lock = lock
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="setup-lock-keeper", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.lock.reacquire()
            except redis_lib.exceptions.LockNotOwnedError:
                log.error("lock %s lost (expired while its job ran); not renewed", self.lock.name)
                return
            except Exception as exc:  # Redis unreachable for a moment: try again next time
                log.warning("could not renew lock %s: %s", self.lock.name, exc)

    def start(self) -> _LockKeeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@contextmanager
def setup_lock(
    connection: Redis, setup_id: int | str, ttl: float = LOCK_TTL_SECONDS
) -> Iterator[redis_lib.lock.Lock]:
    """Hold the setup's write lock for the block, or raise ``SetupBusy`` at once.

    The lock lives ``ttl`` seconds past its holder's last sign of life: a keeper thread renews it
    every ``ttl / 3`` seconds while the block runs, so a killed worker frees the setup within
    ``ttl``. Inside an RQ job the lock's value names the job (and the job's holder set lists the
    lock), so the worker that sees its work horse die releases it at once.
    """
    name = f"{LOCK_PREFIX}{setup_id}"
    job = get_current_job()
    token = lock_token(job.id if job is not None else None)
    # thread_local=False: the keeper thread must see the token to renew it.
    lock = connection.lock(name, timeout=ttl, blocking=False, thread_local=False)
    if not lock.acquire(blocking=False, token=token):
        raise SetupBusy(f"setup {setup_id} is busy")
    holder = lock_holder_key(job.id) if job is not None else None
    member = f"{name}\n{token}"
    if holder is not None:
        with connection.pipeline() as pipe:
            pipe.sadd(holder, member)
            pipe.expire(holder, 7 * 24 * 3600)
            pipe.execute()
    keeper = _LockKeeper(lock, min(LOCK_RENEW_SECONDS, ttl / 3)).start()
    try:
        yield lock
    finally:
        keeper.stop()
        try:
            lock.release()
        except redis_lib.exceptions.LockError:
            log.warning("lock of setup %s expired before the job finished", setup_id)
        if holder is not None:
            with contextlib.suppress(redis_lib.exceptions.RedisError):  # else it expires
                connection.srem(holder, member)


def requeue_current_job(delay: float = LOCK_BUSY_RETRY_SECONDS) -> Job | None:
    """Schedule a copy of the running job ``delay`` seconds from now (same function and args)."""
    job = get_current_job()
    if job is None:
        return None
    attempt = int(job.meta.get("lock_waits", 0)) + 1
    return enqueue(
        job.func_name or "",
        *job.args,
        kwargs=dict(job.kwargs),
        queue=job.origin,
        delay=delay,
        meta={**job.meta, "lock_waits": attempt},
        description=job.description,
        connection=job.connection,
    )


def exclusive_per_setup(
    ttl: float = LOCK_TTL_SECONDS, retry_in: float = LOCK_BUSY_RETRY_SECONDS
) -> Callable[[F], F]:
    """Decorate a job whose first argument is a setup id: one such job per setup at a time.

    When the setup is busy the job reschedules itself ``retry_in`` seconds later and returns
    ``None`` instead of failing (a busy setup is not an error).
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(setup_id: int | str, *args: Any, **kwargs: Any) -> Any:
            conn = _connection(None)
            try:
                with setup_lock(conn, setup_id, ttl):
                    return func(setup_id, *args, **kwargs)
            except SetupBusy:
                again = requeue_current_job(retry_in)
                log.info(
                    "setup %s busy; %s rescheduled as %s in %.0fs",
                    setup_id,
                    func.__name__,
                    again.id if again else "-",
                    retry_in,
                )
                return None

        return wrapper  # type: ignore[return-value]

    return decorate


# --------------------------------------------------------------------------- state for admins


def queue_state(connection: Redis) -> dict[str, Any]:
    """Depth and registry counts per queue, and the workers, for the admin API and /readyz."""
    queues: dict[str, dict[str, int]] = {}
    for name, q in get_queues(connection).items():
        queues[name] = {
            "queued": q.count,
            "started": StartedJobRegistry(queue=q).count,
            "scheduled": ScheduledJobRegistry(queue=q).count,
            "deferred": DeferredJobRegistry(queue=q).count,
            "failed": FailedJobRegistry(queue=q).count,
            "finished": FinishedJobRegistry(queue=q).count,
        }
    workers = [
        {
            "name": w.name,
            "state": str(w.get_state()),
            "queues": w.queue_names(),
            "current_job": w.get_current_job_id(),
            "successful_jobs": w.successful_job_count,
            "failed_jobs": w.failed_job_count,
        }
        for w in Worker.all(connection=connection)
    ]
    return {
        "queues": queues,
        "backlog": sum(q["queued"] for q in queues.values()),
        "failed": sum(q["failed"] for q in queues.values()),
        "scheduled": sum(q["scheduled"] for q in queues.values()),
        "started": sum(q["started"] for q in queues.values()),
        "workers": workers,
    }


def wait_for_jobs(
    connection: Redis,
    *,
    timeout: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> bool:
    """Block until every queue is empty and nothing is running (demo and end-to-end helpers)."""
    deadline = monotonic() + timeout
    while monotonic() < deadline:
        state = queue_state(connection)
        if state["backlog"] == 0 and state["started"] == 0:
            return True
        sleep(0.05)
    return False
