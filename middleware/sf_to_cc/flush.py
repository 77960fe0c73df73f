"""SF → CC orchestration: the flush, Sync Now's catch-up, and one batch through every stage.

`flush(...)` drains a setup's intake (the ids its change events named) in batches: each batch
is collected (:mod:`.collect`), re-read from Salesforce (:mod:`.read`; events are hints, not
truth), planned by the pure rules (:mod:`.plan`), executed against Constant Contact in bulk
(:mod:`.write`), and recorded (:mod:`.record`: links, fingerprints, sync errors, run counts).
Only then are the ids acknowledged, so a batch interrupted by a crash or an outage is read again
by the next attempt. `run_flush` is the job's entry: it paces the flush (:mod:`.pacing`) and hands
it to :func:`middleware.runner.run`, which opens the run and builds the context.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from redis import Redis

from middleware import intake, queue, runner
from middleware.constantcontact import wiring as cc_wiring
from middleware.constantcontact.client import ConstantContactClient
from middleware.context import Context
from middleware.outcome import Outcome, merge_outcomes
from middleware.queue import Runtime
from middleware.salesforce.client import SalesforceClient
from middleware.sf_to_cc import collect, plan, read, record, segments, write
from middleware.sf_to_cc.pacing import last_flush_key, pacing_delay
from middleware.store import cursors
from middleware.sync import CcContact
from middleware.sync.sf_to_cc import cc_contact

log = logging.getLogger(__name__)

BATCH_SIZE = 10_000
# A flush hands over to a fresh job after this long (the webhooks queue's job timeout is 300 s).
FLUSH_MAX_SECONDS = 60.0
CURSOR_MODSTAMP = "sf_systemmodstamp"


@dataclass
class BatchResult:
    outcome: Outcome
    records: int


def sync_records(
    ctx: Context,
    records: list[dict[str, Any]],
    missing_ids: Iterable[str] = (),
    *,
    reset: bool = False,
) -> BatchResult:
    """One batch of re-read Salesforce records through read → plan → write → record."""
    segs = segments.batch_segments(ctx, records)
    if segs.held:
        # Outside every List View that can be read while a selected one cannot: left alone.
        records = [r for r in records if str(r["Id"]) not in segs.held]
    by_id = {str(r["Id"]): r for r in records}
    missing = sorted(set(missing_ids) - set(by_id))
    links = read.batch_links(ctx, records, [*by_id, *missing])
    outside = plan.outside_filter(ctx, records) | segs.outside
    needing = read.links_needing_cc(ctx, by_id, missing, links.own, outside, segs.lists)
    if read.fill_link_ids(ctx, links.own, needing):
        # A link that only lacked its contact's id may need Constant Contact no more.
        needing = read.links_needing_cc(ctx, by_id, missing, links.own, outside, segs.lists)
    contacts, resolved = read.cc_lookups(ctx, by_id, links.own, needing)
    for sf_id, contact_id in resolved.items():
        links.own[sf_id] = replace(links.own[sf_id], cc_contact_id=contact_id)

    batch_plan = plan.plan_batch(
        ctx,
        records,
        links=[*links.own.values(), *links.others],
        contacts=contacts,
        missing=missing,
        outside=outside,
        segment_lists=segs.lists,
        reset=reset,
    )
    outcome = write.execute(ctx.cc, batch_plan, ctx.custom_field_ids)
    if segs.held:
        outcome.skipped["List View unavailable"] += len(segs.held)
        outcome.warnings.append(
            f"{len(segs.held)} record(s) left as they are while List View(s) "
            f"{', '.join(map(repr, ctx.held_views))} cannot be read"
        )
    # The links of this batch's imports get their contact ids now when they are few.
    imported = write.imported_links(batch_plan, outcome.failed_ids)
    looked = {
        sf_id: cc_contact(data) for sf_id, data in write.new_contacts(ctx.cc, imported).items()
    }
    record.record_batch(ctx, batch_plan, outcome, links.own, resolved, by_id, looked)
    # A new record at an address CC already held unsubscribed gets the opt-out at once too.
    set_opt_outs_again(ctx, by_id, [*contacts, *looked.values()], outcome)
    return BatchResult(outcome=outcome, records=len(by_id) + len(missing))


def set_opt_outs_again(
    ctx: Context,
    records: Mapping[str, Mapping[str, Any]],
    contacts: Iterable[CcContact],
    outcome: Outcome,
) -> int:
    """Opt-outs someone cleared in Salesforce while Constant Contact still holds the address
    as unsubscribed are set again (§5a): planned by :func:`plan.opt_outs_to_set_again`, written
    by :func:`write.set_opt_outs` (its change events are our own echo). A record Salesforce
    rejects becomes its sync error. Counted as ``opt_outs_set_again``.
    """
    wanted = plan.opt_outs_to_set_again(ctx, records, contacts)
    if not wanted:
        return 0
    rejected = write.set_opt_outs(ctx, wanted)
    done = len(wanted) - len(rejected)
    if rejected:
        record.record_opt_out_rejections(ctx, rejected, records)
        outcome.warnings.append(f"{len(rejected)} opt-out(s) could not be set again")
    if done:
        outcome.counts["opt_outs_set_again"] += done
        log.info(
            "setup %s: %d opt-out(s) cleared in Salesforce set again (unsubscribed in CC)",
            ctx.setup_id,
            done,
        )
    return done


@dataclass
class FlushResult:
    records: int = 0
    batches: int = 0
    outcome: Outcome = field(default_factory=Outcome)
    more: bool = False  # stopped by its time bound with changes still waiting

    def add(self, done: BatchResult) -> None:
        """Count one recorded batch in."""
        self.records += done.records
        self.batches += 1
        merge_outcomes(self.outcome, done.outcome)


def flush(
    ctx: Context,
    redis: Redis,
    *,
    batch_size: int = BATCH_SIZE,
    max_seconds: float = FLUSH_MAX_SECONDS,
    monotonic: Callable[[], float] = time.monotonic,
) -> FlushResult:
    """Drain the setup's intake; each batch is acknowledged only after it was recorded.

    A flush stops taking new batches after `max_seconds`, so a steady stream of changes never
    keeps one job running past its timeout; `result.more` then says work is left, and the caller
    schedules the next flush.
    """
    result = FlushResult()
    prepared = False
    started = monotonic()
    while True:
        if result.batches and monotonic() - started > max_seconds:
            result.more = intake.pending(redis, ctx.setup_id) > 0
            return result
        batch = intake.take(redis, ctx.setup_id, batch_size)
        catchups = intake.take_catchups(redis, ctx.setup_id)
        if not len(batch) and not catchups:
            return result
        if not prepared:
            read.prepare_targets(ctx)
        # A Campaign's change (name, status, record type), or a retried Campaign / List View
        # sync error, reads the Campaigns (List Views) again.
        refresh = bool(batch.ids.get("Campaign") or batch.ids.get("ListView"))
        if not prepared or refresh:
            prepare_segments(ctx, result.outcome, redis, refresh=refresh)
            prepared = True
        records, missing = read.read_records(ctx, collect.expand_ids(ctx, batch.ids))
        for entity, stamp in catchups.items():
            if entity == ctx.sf_object:
                since = datetime.fromtimestamp(stamp / 1000, UTC)
                seen = {r["Id"] for r in records}
                records += [r for r in collect.modified_since(ctx, since) if r["Id"] not in seen]
        done = sync_records(ctx, records, missing)
        intake.ack(redis, ctx.setup_id, batch)
        intake.ack_catchups(redis, ctx.setup_id, catchups)
        result.add(done)
        record.progress(ctx, result.records)


def prepare_segments(
    ctx: Context,
    outcome: Outcome,
    redis: Redis | None,
    *,
    refresh: bool = False,
    members: bool = True,
) -> list[str]:
    """The setup's segmentation lists (:func:`segments.prepare`), warnings onto the run. The
    members of Campaigns it starts or stops maintaining are marked dirty in the intake when
    ``redis`` is given (the flush then takes them in its batches), else returned to sync;
    ``members=False``: not looked for (a run that reads every record anyway)."""
    prepared = segments.prepare(ctx, refresh=refresh)
    outcome.warnings.extend(prepared.warnings)
    changed = [*prepared.newly_maintained, *prepared.newly_frozen] if members else []
    found = segments.members_of(ctx, changed)
    if found:
        log.info(
            "setup %s: %d Campaign(s) newly maintained, %d no longer, %d member(s) to sync",
            ctx.setup_id,
            len(prepared.newly_maintained),
            len(prepared.newly_frozen),
            len(found),
        )
    if redis is not None and found:
        intake.mark_dirty(redis, ctx.setup_id, ctx.sf_object, found)
        return []
    return found


def catch_up_all(ctx: Context, *, batch_size: int = BATCH_SIZE) -> FlushResult:
    """Sync every record changed since the setup's SystemModstamp cursor (all, the first time).

    The safety net for lost events (hard deletes emit nothing, callouts are not retried): Sync Now
    runs it before draining the intake. The cursor moves after each recorded batch, so an
    interrupted catch-up resumes where it stopped; the overlap window covers commits in flight.
    """
    with ctx.store.transaction() as session:
        raw = cursors.get_cursor(session, ctx.setup_id, CURSOR_MODSTAMP)
    since = collect.parse_modstamp(raw) or collect.EPOCH
    overlap = collect.CATCH_UP_OVERLAP if raw else timedelta(0)
    read.prepare_targets(ctx)
    result = FlushResult()
    # Members of Campaigns the setup starts maintaining, and — after a first run, which reads
    # every record anyway — the records whose Campaign membership changed since the cursor.
    members = prepare_segments(ctx, result.outcome, None, refresh=True, members=bool(raw))
    lists = ctx.options.campaign_lists
    if raw and lists is not None and lists.from_campaigns:
        members += segments.members_changed_since(ctx, since - overlap)
    pending: list[dict[str, Any]] = []
    newest = since
    synced: set[str] = set()

    def record_batch(batch: list[dict[str, Any]]) -> None:
        synced.update(str(r["Id"]) for r in batch)
        result.add(sync_records(ctx, batch))
        with ctx.store.transaction() as session:
            cursors.set_cursor(session, ctx.setup_id, CURSOR_MODSTAMP, newest.isoformat())
        record.progress(ctx, result.records)

    for row in ctx.sf.modified_since(
        ctx.sf_object, read.select_fields(ctx.options), since, overlap=overlap
    ):
        pending.append(row)
        stamp = collect.parse_modstamp(row.get("SystemModstamp"))
        if stamp is not None and stamp > newest:
            newest = stamp
        if len(pending) >= batch_size:
            record_batch(pending)
            pending = []
    if pending:
        record_batch(pending)
    rest = [i for i in dict.fromkeys(members) if i not in synced]
    for index in range(0, len(rest), batch_size):
        records, missing = read.read_records(ctx, rest[index : index + batch_size])
        result.add(sync_records(ctx, records, missing))
        record.progress(ctx, result.records)
    return result


def run_flush(
    runtime: Runtime,
    setup_id: int,
    *,
    sf: SalesforceClient | None = None,
    cc: ConstantContactClient | None = None,
    job_id: str | None = None,
) -> dict[str, Any]:
    """Sync the setup's pending Salesforce changes to Constant Contact; return the run summary.

    Above half of the day's Constant Contact quota, flushes are paced so the rest lasts until
    midnight UTC (see `pacing_delay`); a flush stopped by its time bound hands over to the next.
    """
    pending = intake.pending(runtime.redis, setup_id)
    if not pending and not intake.take_catchups(runtime.redis, setup_id):
        return {"setup_id": setup_id, "records": 0}
    resume = runner.flush_resume(setup_id)
    last = runtime.redis.get(last_flush_key(setup_id))
    wait = pacing_delay(
        cc_wiring.api_limiter(runtime.settings, runtime.redis).usage(),
        pending=pending,
        last_flush=float(last) if last else None,
        now=time.time(),
    )
    if wait > 0:
        queue.ensure_scheduled(
            resume.key,
            resume.func,
            [setup_id],
            delay=wait,
            queue=resume.queue,
            connection=runtime.redis,
        )
        log.info("setup %s: flush paced by %.0fs to keep the daily quota", setup_id, wait)
        return {"setup_id": setup_id, "records": 0, "paced_seconds": round(wait, 1)}

    results: list[FlushResult] = []

    def body(ctx: Context) -> FlushResult:
        results.append(flush(ctx, runtime.redis))
        return results[-1]

    summary = runner.run(
        runtime, setup_id, "incremental", body, sf=sf, cc=cc, job_id=job_id, resume=resume
    )
    runtime.redis.set(last_flush_key(setup_id), time.time(), ex=24 * 3600)
    if results and results[-1].more:
        queue.ensure_scheduled(
            resume.key, resume.func, [setup_id], queue=resume.queue, connection=runtime.redis
        )
    return summary
