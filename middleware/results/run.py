"""Campaign results, one run for one setup: discover, make Campaigns, read reports, apply.

1. Campaigns deleted in Salesforce are found (one query) and left alone from then on; a reset
   run forgets them so they are made again.
2. ``GET /emails`` lists the campaigns changed within the window; each new or changed one that
   was sent, is selected and is supported has its activities read (primary email, resend):
   subject, first send date and count (``send_history``), and the HTML when a Campaign will hold
   it. A campaign that cannot come back (an A/B test) is reported on the run, once per run.
3. Each activity sent inside the window without a Campaign gets one (campaign modes), with its
   member statuses and its email attached.
4. Each activity's reports are read from their cursors within the run's call ceiling, folded
   per recipient and applied (:mod:`.recipients`); cursors and counts are saved after.

The run's counts say what was written, and ``campaigns`` lists each campaign read with its
events; a run stopped by the ceiling says so and the next goes on from the cursors.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from middleware import runner
from middleware.cc_to_sf import read as cc_read
from middleware.constantcontact.client import ConstantContactClient
from middleware.context import Context
from middleware.outcome import Outcome
from middleware.queue import Runtime
from middleware.results import campaigns, recipients, reports
from middleware.salesforce.client import SalesforceClient
from middleware.store import cursors as cursor_repo
from middleware.store import results as repo
from middleware.store import runs
from middleware.store.db import Store
from middleware.store.models import ResultActivity
from middleware.sync import results as rules
from middleware.sync.options import SetupOptions

log = logging.getLogger(__name__)

RESULTS_JOB = "jobs.results.campaign_results"
CURSOR_LAST = "results:last_run"


def results_job_key(setup_id: int) -> str:
    return f"results-{setup_id}"


def wanted(options: SetupOptions) -> bool:
    """Whether a setup brings campaign results (or recipients) back at all."""
    return options.campaign_response_mode != "none" or (
        options.sync_all_campaign_recipients and options.sync_to_sf
    )


class ResultsOutcome(Outcome):
    """A results run's outcome: the usual counts plus, per email (its Campaign's name), the
    events read from each report (``unfinished: 1`` when a report is to be read on)."""

    def __init__(self) -> None:
        super().__init__()
        self.campaigns: dict[str, dict[str, int]] = {}

    def report(self) -> dict[str, Any]:
        out = super().report()
        if self.campaigns:
            out["campaigns"] = self.campaigns
        return out


@dataclass
class ResultsRun:
    records: int = 0
    batches: int = 0
    outcome: ResultsOutcome = field(default_factory=ResultsOutcome)


def due_setups(store: Store, now: datetime) -> list[int]:
    """Setups whose results run is due: never run, or ``every_hours`` since the last."""
    return runner.due_setups(
        store,
        now,
        CURSOR_LAST,
        lambda _setup, options: (
            timedelta(hours=options.campaign_results.every_hours) if wanted(options) else None
        ),
        cc_read.parse_time,
    )


def run_results(
    runtime: Runtime,
    setup_id: int,
    *,
    reset: bool = False,
    sf: SalesforceClient | None = None,
    cc: ConstantContactClient | None = None,
    job_id: str | None = None,
    now: Callable[[], datetime] | None = None,
) -> dict[str, Any]:
    """One results run through the runner's lifecycle (a quota pause re-schedules it)."""
    return runner.run(
        runtime,
        setup_id,
        "results",
        lambda ctx: results(ctx, reset=reset),
        sf=sf,
        cc=cc,
        job_id=job_id,
        needs_sync_to_cc=False,
        resume=runner.Resume(results_job_key(setup_id), RESULTS_JOB),
        now=now or (lambda: datetime.now(UTC)),
        phase="results",
    )


def results(ctx: Context, *, reset: bool = False) -> ResultsRun:
    """One results run of one setup (see the module docstring)."""
    out = ResultsRun()
    started = ctx.now()
    if not wanted(ctx.options):
        out.outcome.warnings.append(
            "campaign_response_mode is none and no recipients are to be created: nothing to read."
        )
        return out
    mode = ctx.options.campaign_response_mode
    spec = ctx.options.campaign_results
    budget = reports.CallBudget(ctx.cc, spec.max_cc_calls)
    org = cc_read.org_info(ctx)
    with ctx.store.transaction() as session:
        known = repo.activities(session, ctx.setup_id)
        session.expunge_all()

    if rules.makes_campaigns(mode):
        _find_deleted(ctx, known, reset, out.outcome)
    html: dict[str, str | None] = {}
    _discover(ctx, known, started, budget, html, out.outcome)
    for act in known.values():  # the window moves, and a setup may widen it
        if act.state in ("active", "closed"):
            inside = rules.in_window(act.sent_at, started, spec.window_days)
            act.state = "active" if inside else "closed"
            act.note = None if inside else f"sent before the {spec.window_days}-day window"
    active = sorted(
        (a for a in known.values() if a.state == "active"),
        key=lambda a: (a.sent_at or started, a.id or 0),
    )
    if rules.makes_campaigns(mode):
        campaigns.create(ctx, active, {a.activity_id: _sent(a) for a in active}, out.outcome)
        for act in active:
            if act.sf_campaign_id and "number_sent" not in (act.counts or {}):
                act.counts = {**(act.counts or {}), "number_sent": _sent(act)}
        campaigns.add_statuses(ctx, active, out.outcome)
        for act in active:
            if act.sf_campaign_id and not act.html_attached:
                if act.activity_id not in html and budget.allows():
                    detail = ctx.cc.campaign_activity(act.activity_id, html=True)
                    html[act.activity_id] = detail.get("html_content")
                campaigns.attach_html(ctx, act, html.get(act.activity_id), out.outcome)
    _save(ctx, known.values())

    retry = recipients.retries(ctx)
    for act in active:
        if rules.makes_campaigns(mode) and not act.sf_campaign_id:
            continue  # its Campaign could not be made: the next run tries again
        read = _read(ctx, act, budget, out)
        for again in retry.recipients.get(act.activity_id, {}).values():
            rules.merge_into(read, again)
        errors = retry.error_ids.get(act.activity_id, {})
        recipients.apply(ctx, org, act, read, out.outcome, errors)
        out.records += len(read)
        out.batches += 1
        _save(ctx, [act])
        if ctx.run_id is not None:
            with ctx.store.transaction() as session:
                runs.progress(session, ctx.run_id, done=out.records)
        if budget.exhausted:
            break
    if rules.makes_campaigns(mode):
        stale = [
            a for a in active
            if a.sf_campaign_id and _sent(a) != (a.counts or {}).get("number_sent")
        ]  # fmt: skip
        campaigns.set_counts(ctx, {a.sf_campaign_id or "": _sent(a) for a in stale}, out.outcome)
        for act in stale:
            act.counts = {**(act.counts or {}), "number_sent": _sent(act)}
        _save(ctx, stale)
    if budget.exhausted:
        out.outcome.warnings.append(
            f"Stopped at this run's ceiling of {spec.max_cc_calls} Constant Contact calls; the "
            "next run goes on where this one stopped."
        )
        out.outcome.counts["stopped_at_ceiling"] = 1
    out.outcome.counts["cc_calls_for_results"] = budget.spent
    with ctx.store.transaction() as session:
        cursor_repo.set_cursor(session, ctx.setup_id, CURSOR_LAST, started.isoformat())
    return out


def _sent(act: ResultActivity) -> int:
    counts = act.counts or {}
    return int(counts.get("sent_count") or counts.get("sends") or 0)


def _find_deleted(
    ctx: Context, known: dict[str, ResultActivity], reset: bool, outcome: Outcome
) -> None:
    """Campaigns deleted in Salesforce: their activities are left alone, or forgotten on reset."""
    made = {a.sf_campaign_id: a for a in known.values() if a.sf_campaign_id and a.state == "active"}
    alive = campaigns.live(ctx, [cid for cid in made if cid])
    for cid, act in made.items():
        if cid not in alive:
            act.state = "gone"
            act.note = f"its Salesforce Campaign {cid} was deleted; a reset run makes it again"
            outcome.warnings.append(
                f"The Salesforce Campaign of email {act.name!r} was deleted: its results are no "
                "longer written (a reset run makes it again)."
            )
    _save(ctx, [a for a in made.values() if a.state == "gone"])
    if reset:
        gone = [a for a in known.values() if a.state in ("gone", "unsupported")]
        with ctx.store.transaction() as session:
            repo.forget(session, [a.id for a in gone])
        for act in gone:
            del known[act.activity_id]
        if gone:
            outcome.counts["reset_activities"] += len(gone)


def _discover(
    ctx: Context,
    known: dict[str, ResultActivity],
    now: datetime,
    budget: reports.CallBudget,
    html: dict[str, str | None],
    outcome: ResultsOutcome,
) -> None:
    """New and changed campaigns sent inside the window, and their activities."""
    spec = ctx.options.campaign_results
    selection = ctx.options.campaign_selection
    with_html = rules.makes_campaigns(ctx.options.campaign_response_mode)
    by_campaign: dict[str, list[ResultActivity]] = {}
    for act in known.values():
        by_campaign.setdefault(act.campaign_id, []).append(act)
    listed = reports.sent_campaigns(ctx.cc, now - timedelta(days=spec.window_days))
    unsupported: list[str] = []
    for campaign in listed:
        name = str(campaign.get("name") or "")
        campaign_id = str(campaign.get("campaign_id") or "")
        if not campaign_id or not rules.sent(campaign):
            continue
        if not rules.is_selected(name, selection):
            outcome.counts["campaigns_not_selected"] += 1
            continue
        reason = rules.unsupported_reason(campaign)
        if reason is not None:
            unsupported.append(f"{name!r} ({reason})")
            continue
        updated = str(campaign.get("updated_at") or "")
        mine = by_campaign.get(campaign_id, [])
        if mine and all(a.campaign_updated == updated for a in mine):
            for act in mine:
                act.name = name  # a renamed email keeps its Campaign; the name is for the run
            continue
        if not budget.allows(1):
            return
        refs = reports.campaign_activities(ctx.cc, campaign_id)
        seen = {a.activity_id for a in mine}
        for act in mine:
            act.campaign_updated = updated
        for ref in refs:
            if str(ref["campaign_activity_id"]) in seen:
                continue
            if not budget.allows(2):
                return
            info = reports.activity_info(ctx.cc, campaign, ref, html=with_html)
            html[info.activity_id] = info.html
            inside = rules.in_window(info.sent_at, now, spec.window_days)
            act = ResultActivity(
                setup_id=ctx.setup_id,
                activity_id=info.activity_id,
                campaign_id=info.campaign_id,
                role=info.role,
                name=name,
                subject=info.subject,
                sent_at=info.sent_at,
                state="active" if inside else "closed",
                note=None if inside else f"sent before the {spec.window_days}-day window",
                statuses_ready=False,
                html_attached=False,
                campaign_updated=updated,
                cursors={},
                counts={"sent_count": info.sent_count},
            )
            known[info.activity_id] = act
            outcome.counts["activities_found"] += 1
    if unsupported:
        outcome.counts["campaigns_not_supported"] += len(unsupported)
        outcome.warnings.append("Not supported, not read: " + ", ".join(unsupported[:20]))


def _read(
    ctx: Context, act: ResultActivity, budget: reports.CallBudget, out: ResultsRun
) -> dict[str, rules.Recipient]:
    """Every report of one activity from its cursors, folded per recipient."""
    mode = ctx.options.campaign_response_mode
    wanted_reports = rules.reports_for(mode, ctx.options.sync_all_campaign_recipients)
    read: dict[str, rules.Recipient] = {}
    cursors = dict(act.cursors or {})
    totals: Counter[str] = Counter(act.counts or {})
    this_run: dict[str, int] = {}
    complete = True
    for report in wanted_reports:
        cursor = rules.ReportCursor.load(cursors.get(report))
        got = reports.read_report(ctx.cc, act.activity_id, report, cursor, budget)
        taken = rules.fold(read, report, got.events)
        totals[report] += taken
        this_run[report] = taken
        cursors[report] = cursor.dump()
        complete = complete and got.complete
        if got.error:
            out.outcome.warnings.append(f"{got.error}; read again next run")
        if budget.exhausted:
            break
    if not complete or budget.exhausted:
        this_run["unfinished"] = 1
    act.cursors = cursors
    act.counts = dict(totals)
    out.outcome.campaigns[rules.campaign_name(act.name, act.role)] = this_run
    return read


def _save(ctx: Context, rows: Any) -> None:
    """Write activities back (new ones inserted), keeping their ids on the objects."""
    with ctx.store.transaction() as session:
        for row in rows:
            merged = session.merge(row)
            session.flush()
            row.id = merged.id
