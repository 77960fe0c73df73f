"""Full Sync runs: one setup's Full Sync from start to finish — lock, run record, resume, pauses.

- Never two Full Syncs of one setup at once: a Redis lock per setup (and per partition), renewed
  while the job lives, so a killed worker's lock lapses within half a minute.
- A run that stops (worker killed, vendor outage after the clients' retries) keeps its
  checkpoint; the job's retry finds it and goes on with the same run record from the next
  unrecorded record. A reset Full Sync drops any checkpoint and starts over.
- The API budget (a share of each vendor's daily calls) and Constant Contact's own daily quota
  stop a run cleanly: the run is ``paused`` with a message saying when it goes on, and a job is
  scheduled for that moment.
- A finished run shows counts per action and the calls it spent on each vendor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from sqlalchemy import func, select

from middleware import queue, runner, vendor_errors
from middleware.constantcontact import errors as cc_errors
from middleware.constantcontact.client import ConstantContactClient
from middleware.context import Context
from middleware.fullsync import checkpoint as checkpoints
from middleware.fullsync.budget import Budget, BudgetExhausted
from middleware.fullsync.checkpoint import Checkpoint
from middleware.fullsync.engine import FullSync, Segmenter
from middleware.fullsync.partitions import Partition, plan_partitions
from middleware.queue import Runtime, SetupBusy, setup_lock
from middleware.salesforce.client import SalesforceClient
from middleware.store import links as links_repo
from middleware.store import runs
from middleware.store.models import Link, Run
from middleware.store.runs import merge_counts

log = logging.getLogger(__name__)

JOB = "jobs.full_sync.full_sync"
PARTITION_JOB = "jobs.full_sync.full_sync_partition"
LOCK_TTL = queue.LOCK_TTL_SECONDS  # renewed while the job lives: only a dead worker lets it lapse
FINISH_KEY = "ctct:fullsync:finish:"


def _now() -> datetime:
    return datetime.now(UTC)


def lock_name(setup_id: int, partition: str = checkpoints.WHOLE) -> str:
    return f"fullsync:{setup_id}" + ("" if partition == checkpoints.WHOLE else f":{partition}")


def budget_for(runtime: Runtime, cc: ConstantContactClient) -> Budget:
    """The run's budget from settings (shares default to half of each vendor's daily calls)."""
    settings = runtime.settings
    try:
        used = cc.limiter.usage().used
    except Exception:  # a limiter without usage (tests' stand-ins) counts as nothing used
        used = 0
    return Budget(
        cc_daily=settings.cc_daily_quota,
        cc_share=settings.full_sync_cc_share,
        cc_used_today=used,
        sf_share=settings.full_sync_sf_share,
    )


@contextmanager
def _locked(redis: Redis, name: str) -> Iterator[Callable[[], None]]:
    with setup_lock(redis, name, ttl=LOCK_TTL) as lock:

        def heartbeat() -> None:
            try:
                lock.extend(LOCK_TTL, replace_ttl=True)
            except Exception:  # a lost lock is logged by setup_lock on release
                log.warning("could not renew the Full Sync lock %s", name)

        yield heartbeat


def run_full_sync(
    runtime: Runtime,
    setup_id: int,
    *,
    reset: bool = False,
    partitions: int = 1,
    sf: SalesforceClient | None = None,
    cc: ConstantContactClient | None = None,
    job_id: str | None = None,
    segmenter: Segmenter | None = None,
    budget: Budget | None = None,
    resume_of: int | None = None,
    **engine_kw: Any,
) -> dict[str, Any]:
    """A whole Full Sync of the setup (or, with ``partitions > 1``, its coordinator)."""
    try:
        with _locked(runtime.redis, lock_name(setup_id)) as heartbeat:
            reason = runner.paused_reason(runtime, setup_id, _now())
            if reason is not None:
                log.info("setup %s is paused (%s); Full Sync not started", setup_id, reason)
                return {"setup_id": setup_id, "paused": reason}
            if resume_of is not None:
                found = checkpoints.load(runtime.store, setup_id)
                if found is None or found.run_id != resume_of:
                    return {"setup_id": setup_id, "run_id": resume_of, "already_finished": True}
            ctx = runner.build_context(runtime, setup_id, sf=sf, cc=cc)
            if ctx is None:
                return {"setup_id": setup_id, "missing": True}
            cp = _checkpoint(runtime, ctx, reset=reset, job_id=job_id)
            if partitions > 1 and not cp.last_sf_id and cp.phase == "prepare":
                return _fan_out(runtime, ctx, cp, partitions)
            engine = FullSync(
                ctx,
                cp,
                budget=budget or budget_for(runtime, ctx.cc),
                heartbeat=heartbeat,
                segmenter=segmenter,
                **engine_kw,
            )
            return _drive(runtime, ctx, engine)
    except SetupBusy:
        log.info("setup %s: a Full Sync is already running; not starting another", setup_id)
        return {"setup_id": setup_id, "busy": True}


def _checkpoint(runtime: Runtime, ctx: Context, *, reset: bool, job_id: str | None) -> Checkpoint:
    """The checkpoint to go on from, or a new run with a fresh one."""
    store = runtime.store
    found = None if reset else checkpoints.load(store, ctx.setup_id)
    if found is not None:
        with store.transaction() as session:
            run = runs.get_run(session, found.run_id)
            if run is not None and run.status != "succeeded":
                run.status = "running"
                run.finished_at = None
                run.job_id = job_id or run.job_id
                run.message = f"resumed at {found.phase} (attempt {found.attempts + 1})"
                found.attempts += 1
                found.resume_at = None
                ctx.run_id = run.id
                log.info(
                    "setup %s: resuming Full Sync run %s at %s after %s",
                    ctx.setup_id,
                    run.id,
                    found.phase,
                    found.last_sf_id or "the start",
                )
                return found
    checkpoints.clear_all(store, ctx.setup_id)
    with store.transaction() as session:
        run = runs.open_run(session, ctx.setup_id, "full", job_id=job_id, phase="prepare")
        if reset:
            run.message = "reset: fingerprints ignored, both sides matched again by email"
        ctx.run_id = run.id
    cp = Checkpoint(run_id=int(ctx.run_id), reset=reset, started_at=_now().isoformat())
    checkpoints.save(store, ctx.setup_id, cp)
    return cp


def _drive(runtime: Runtime, ctx: Context, engine: FullSync) -> dict[str, Any]:
    """Run the engine and close the run record with what happened."""
    assert ctx.run_id is not None
    run_id = ctx.run_id
    store = runtime.store
    partition = engine.cp.partition
    try:
        result = engine.run()
    except (BudgetExhausted, cc_errors.QuotaExceeded) as exc:
        return _pause(runtime, ctx, engine, exc)
    except vendor_errors.NeedsReauth as exc:
        checkpoints.save(store, ctx.setup_id, engine.snapshot())
        return _needs_reauth(runtime, ctx, engine, exc)
    except Exception as exc:
        cp = engine.snapshot()
        checkpoints.save(store, ctx.setup_id, cp)
        with store.transaction() as session:
            runs.finish_run(
                session,
                run_id,
                "failed",
                message=(
                    f"{type(exc).__name__}: {exc} — resumable: the next attempt goes on from "
                    f"{cp.phase}" + (f" after record {cp.last_sf_id}" if cp.last_sf_id else "")
                ),
            )
            _set_totals(session, run_id, cp.counts, cp.api_calls)
        raise
    cp = engine.snapshot()
    if partition != checkpoints.WHOLE:
        checkpoints.save(store, ctx.setup_id, cp)
        return {"setup_id": ctx.setup_id, "run_id": run_id, "partition": partition, **cp.counts}
    checkpoints.clear(store, ctx.setup_id)
    message = "; ".join(dict.fromkeys(result.outcome.warnings))[:2000] or None
    with store.transaction() as session:
        runs.finish_run(session, run_id, "succeeded", message=message)
        _set_totals(session, run_id, cp.counts, cp.api_calls)
        run = runs.get_run(session, run_id)
        if run is not None:
            run.progress_done = engine.progress.compared
            run.progress_total = engine.progress.total
            run.phase = "done"
    log.info("setup %s: Full Sync run %s done: %s", ctx.setup_id, run_id, cp.counts)
    return {"setup_id": ctx.setup_id, "run_id": run_id, **cp.counts, "api_calls": cp.api_calls}


def _set_totals(
    session: Any, run_id: int, counts: dict[str, Any], api_calls: dict[str, int]
) -> None:
    run = session.get(Run, run_id)
    if run is not None:
        keep = {k: v for k, v in (run.counts or {}).items() if k in ("percent", "eta_seconds")}
        keep.pop("eta_seconds", None)
        run.counts = {**counts, **keep}
        run.api_calls = dict(api_calls)


def _pause(runtime: Runtime, ctx: Context, engine: FullSync, exc: Exception) -> dict[str, Any]:
    resume_at: datetime = getattr(exc, "resume_at", None) or _now()
    cp = engine.snapshot()
    cp.resume_at = resume_at.isoformat()
    checkpoints.save(runtime.store, ctx.setup_id, cp)
    message = (
        f"{exc}"
        if isinstance(exc, BudgetExhausted)
        else (
            f"Constant Contact daily API quota exceeded; the Full Sync resumes at "
            f"{resume_at.isoformat()}"
        )
    )
    assert ctx.run_id is not None
    with runtime.store.transaction() as session:
        runs.finish_run(session, ctx.run_id, "paused", message=message)
        _set_totals(session, ctx.run_id, cp.counts, cp.api_calls)
    delay = max(1.0, (resume_at - _now()).total_seconds() + 5)
    args: list[Any] = [ctx.setup_id, cp.reset]
    job = JOB
    if cp.partition != checkpoints.WHOLE and cp.range is not None:
        job, args = PARTITION_JOB, [ctx.setup_id, cp.run_id, cp.range, cp.reset]
    queue.enqueue(job, *args, queue=queue.FULL_SYNC, delay=delay, connection=runtime.redis)
    log.warning("setup %s: Full Sync paused: %s", ctx.setup_id, message)
    return {"setup_id": ctx.setup_id, "run_id": ctx.run_id, "paused": message}


def _needs_reauth(
    runtime: Runtime, ctx: Context, engine: FullSync, exc: Exception
) -> dict[str, Any]:
    assert ctx.run_id is not None
    cp = engine.snapshot()
    vendor = runner.mark_needs_reauth(
        runtime,
        ctx.setup_id,
        ctx.run_id,
        exc,
        dict(cp.api_calls),
        note="; the Full Sync goes on from its checkpoint once it is",
    )
    with runtime.store.transaction() as session:
        _set_totals(session, ctx.run_id, cp.counts, cp.api_calls)
    return {"setup_id": ctx.setup_id, "run_id": ctx.run_id, "failed": f"{vendor} needs_reauth"}


# ------------------------------------------------------------------------------ partitions


def _fan_out(runtime: Runtime, ctx: Context, cp: Checkpoint, count: int) -> dict[str, Any]:
    """Split the run into Id ranges and enqueue one job per range."""
    with runtime.store.transaction() as session:
        parts = plan_partitions(session, ctx.setup_id, count)
    cp.phase = "partitioned"
    cp.range = {"partitions": [p.as_json() for p in parts]}
    checkpoints.save(runtime.store, ctx.setup_id, cp)
    for part in parts:
        checkpoints.save(
            runtime.store,
            ctx.setup_id,
            Checkpoint(
                run_id=cp.run_id,
                reset=cp.reset,
                partition=part.name,
                range=part.as_json(),
                started_at=cp.started_at,
            ),
        )
    with runtime.store.transaction() as session:
        runs.progress(session, cp.run_id, phase=f"partitioned into {len(parts)}")
    ids = [
        queue.enqueue(
            PARTITION_JOB,
            ctx.setup_id,
            cp.run_id,
            part.as_json(),
            cp.reset,
            queue=queue.FULL_SYNC,
            connection=runtime.redis,
        ).id
        for part in parts
    ]
    log.info(
        "setup %s: Full Sync run %s split into %d partitions", ctx.setup_id, cp.run_id, len(parts)
    )
    return {"setup_id": ctx.setup_id, "run_id": cp.run_id, "partitions": len(parts), "jobs": ids}


def run_partition(
    runtime: Runtime,
    setup_id: int,
    run_id: int,
    partition: dict[str, Any],
    reset: bool = False,
    *,
    sf: SalesforceClient | None = None,
    cc: ConstantContactClient | None = None,
    **engine_kw: Any,
) -> dict[str, Any]:
    """One Id range of a partitioned run; the last range to finish reconciles the whole run."""
    part = Partition.from_json(partition)
    try:
        with _locked(runtime.redis, lock_name(setup_id, part.name)) as heartbeat:
            ctx = runner.build_context(runtime, setup_id, sf=sf, cc=cc)
            if ctx is None:
                return {"setup_id": setup_id, "missing": True}
            ctx.run_id = run_id
            cp = checkpoints.load(runtime.store, setup_id, part.name) or Checkpoint(
                run_id=run_id, reset=reset, partition=part.name, range=part.as_json()
            )
            if cp.run_id != run_id:
                return {"setup_id": setup_id, "stale": True}
            if cp.phase == "done":
                return _maybe_finish(runtime, ctx)
            cp.attempts += 1 if cp.phase != "prepare" else 0
            with runtime.store.transaction() as session:
                run = runs.get_run(session, run_id)
                if run is not None and run.status in ("failed", "paused"):
                    run.status, run.finished_at = "running", None
            engine = FullSync(
                ctx,
                cp,
                budget=budget_for(runtime, ctx.cc),
                partition=part,
                heartbeat=heartbeat,
                **engine_kw,
            )
            engine.report_hook = lambda: _report_partition(runtime, ctx, engine)
            summary = _drive(runtime, ctx, engine)
            if "paused" in summary or "failed" in summary:
                return summary
            return {**summary, **_maybe_finish(runtime, ctx)}
    except SetupBusy:
        log.info("setup %s: partition %s already running", setup_id, part.name)
        return {"setup_id": setup_id, "busy": part.name}


def _partition_checkpoints(runtime: Runtime, ctx: Context) -> list[Checkpoint]:
    whole = checkpoints.load(runtime.store, ctx.setup_id)
    if whole is None or not whole.range:
        return []
    found = []
    listed = whole.range.get("partitions")
    for raw in listed if isinstance(listed, list) else []:
        name = Partition.from_json(raw).name
        cp = checkpoints.load(runtime.store, ctx.setup_id, name)
        if cp is not None:
            found.append(cp)
    return found


def _report_partition(runtime: Runtime, ctx: Context, engine: FullSync) -> None:
    """Save this range's progress and show the sum of every range on the run."""
    checkpoints.save(runtime.store, ctx.setup_id, engine.snapshot())
    parts = _partition_checkpoints(runtime, ctx)
    assert ctx.run_id is not None
    done = sum(p.done for p in parts)
    totals = [p.total for p in parts]
    total = sum(t or 0 for t in totals) if all(t is not None for t in totals) else None
    with runtime.store.transaction() as session:
        run = session.get(Run, ctx.run_id)
        if run is None:
            return
        counts: dict[str, Any] = {}
        calls: dict[str, Any] = {}
        for p in parts:
            counts = merge_counts(counts, p.counts)
            calls = merge_counts(calls, p.api_calls)
        run.counts = counts
        run.api_calls = calls
        run.progress_done = done
        run.progress_total = total
        phases = sorted({p.phase for p in parts})
        run.phase = "/".join(phases)
        run.message = f"{len(parts)} partitions: compared {done:,}" + (
            f" of {total:,}" if total else ""
        )


def _maybe_finish(runtime: Runtime, ctx: Context) -> dict[str, Any]:
    """If every range is done, one of them (elected in Redis) reconciles and closes the run."""
    parts = _partition_checkpoints(runtime, ctx)
    if not parts or any(p.phase != "done" for p in parts):
        return {}
    assert ctx.run_id is not None
    if not runtime.redis.set(f"{FINISH_KEY}{ctx.run_id}", "1", nx=True, ex=24 * 3600):
        return {}
    retired = reconcile_duplicate_links(runtime, ctx.setup_id, ctx.sf_object)
    counts: dict[str, Any] = {}
    calls: dict[str, Any] = {}
    for p in parts:
        counts = merge_counts(counts, p.counts)
        calls = merge_counts(calls, p.api_calls)
    if retired:
        counts["duplicate_links_retired"] = retired
    with runtime.store.transaction() as session:
        runs.finish_run(session, ctx.run_id, "succeeded", message=f"{len(parts)} partitions")
        _set_totals(session, ctx.run_id, counts, calls)
        run = runs.get_run(session, ctx.run_id)
        if run is not None:
            run.phase = "done"
            run.progress_done = sum(p.done for p in parts)
            run.progress_total = sum(p.total or 0 for p in parts)
    checkpoints.clear_all(runtime.store, ctx.setup_id)
    log.info("setup %s: partitioned Full Sync run %s done: %s", ctx.setup_id, ctx.run_id, counts)
    return {"finished": True, "counts": counts, "api_calls": calls}


def reconcile_duplicate_links(runtime: Runtime, setup_id: int, sf_object: str) -> int:
    """Two ranges may both have linked one address: the lowest record Id keeps it (store only)."""
    with runtime.store.transaction() as session:
        dupes = list(
            session.execute(
                select(Link.email, func.min(Link.sf_id))
                .where(Link.setup_id == setup_id, Link.status == "active", Link.email.is_not(None))
                .group_by(Link.email)
                .having(func.count() > 1)
            )
        )
        losers: list[str] = []
        for email, keeper in dupes:
            losers += [
                sf_id
                for sf_id in session.scalars(
                    select(Link.sf_id).where(
                        Link.setup_id == setup_id, Link.status == "active", Link.email == email
                    )
                )
                if sf_id != keeper
            ]
        if losers:
            links_repo.retire_links(session, setup_id, losers)
    if losers:
        log.warning(
            "setup %s: %d duplicate link(s) across partitions retired", setup_id, len(losers)
        )
    return len(losers)
