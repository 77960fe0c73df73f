"""Full Sync engine: both sides read in full, compared with the store, only differences written.

Phases of one run (each checkpointed, see :mod:`checkpoint`):

1. ``prepare``    the main list and custom fields (``sf_to_cc.read.prepare_targets``);
2. ``read_cc``    one contact export (3 calls whatever the size) spooled to disk by email;
3. ``read_links`` the setup's active links, streamed from the store into the spool;
4. ``read_sf``    one Bulk 2.0 ``queryAll`` (deleted records included), page by page by locator;
5. ``sync``       records in Id order, a page at a time. A record whose fingerprint, email, lists
                  and Constant Contact state all agree costs nothing (settled by the screening
                  processes, :meth:`Classifier.screen`, before the planner sees the page); a
                  record without a link
                  whose address Constant Contact already holds with the same values and lists is
                  *married* (linked, nothing written). The rest go to the pure planner
                  (``plan_sf_to_cc(..., full_sync=True)``), and its plans are accumulated across
                  pages until an import is full (40,000 rows), then executed together
                  (``sf_to_cc.write.execute``) and recorded (``sf_to_cc.record``); then the
                  checkpoint moves;
6. ``duplicates`` addresses several records share, planned together so the oldest owns it;
7. ``reconcile``  links no record came back for: re-read by id with queryAll, and the ones that
                  are gone are planned as deletes (their link retired; with
                  ``remove_on_sf_delete`` off this setup's lists);
8. ``optouts``    Constant Contact → Salesforce: every Lead, Contact and Person Account of the
                  org whose address Constant Contact holds as unsubscribed gets the opt-out set
                  (sObject Collections, or Bulk 2.0 ingest beyond 2,000 rows), unless
                  ``sync_unsubscribes_to_sf`` is false: the setup's object from the spool, the
                  others by chunked ``Email IN (...)`` queries. Never the reverse.

Drift on the Constant Contact side is found by comparing the export with the mapped values (the
export carries the names, title, company and custom fields; phones and the address are not in
it, so their drift is repaired when the record changes or by a reset). A contact missing from
the export while linked was deleted in Constant Contact, and the record wins (revived by PUT).

Memory holds one page of records plus the pending plan (≤ 40,000 imports); the spool is on disk.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import multiprocessing
import os
import pickle
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from multiprocessing.context import BaseContext
from typing import Any

from sqlalchemy import select

from middleware.cc_to_sf import match as cc_match
from middleware.cc_to_sf import read as cc_read
from middleware.cc_to_sf import write as cc_write
from middleware.constantcontact.errors import ActivityFailed, CCError
from middleware.context import Context
from middleware.fullsync import checkpoint as checkpoints
from middleware.fullsync.activities import FINAL, attribute_import_errors, list_activities
from middleware.fullsync.budget import Budget, BudgetExhausted
from middleware.fullsync.checkpoint import Checkpoint
from middleware.fullsync.partitions import Partition
from middleware.fullsync.screen import (
    Classified,
    Classifier,
    ListsSegmenter,
    Screened,
    Segmenter,
    adopt_classifier,
    filter_segmenter,
    screen_in_child,
)
from middleware.fullsync.spool import CcRow, LinkRow, Spool
from middleware.outcome import Failure, Outcome, merge_outcomes
from middleware.salesforce.client import soql_string
from middleware.sf_to_cc import read as sf_read
from middleware.sf_to_cc import record as sf_record
from middleware.sf_to_cc import segments as sf_segments
from middleware.sf_to_cc import write as sf_write
from middleware.store import errors as errors_repo
from middleware.store import links as links_repo
from middleware.store.models import Link as LinkModel
from middleware.store.models import Run, SyncError
from middleware.store.runs import merge_counts
from middleware.sync import CcContact, Link, Plan, cc_to_sf
from middleware.sync.emails import normalise_email
from middleware.sync.fields import CC_INT_FIELDS, CC_SCALAR_FIELDS, CUSTOM_PREFIX
from middleware.sync.mapping import (
    import_row,
    import_row_size,
    mapping_plan,
    object_fields,
)
from middleware.sync.sf_to_cc import plan_sf_to_cc
from middleware.sync.types import (
    IMPORT_MAX_BYTES,
    IMPORT_MAX_ROWS,
    AddToLists,
    DeleteContact,
    Import,
    LinkRecord,
    RemoveFromLists,
    Unsubscribe,
    UpdateContact,
    UpdateLink,
)

log = logging.getLogger(__name__)

PAGE_SIZE = 5_000
BULK_PAGE = 50_000
# The Bulk query's status polls pause at most this long: a 1M-row job takes half a minute, and
# the client's default 10 s cap let the run wait up to 10 s more for results that were ready.
BULK_POLL_MAX = 2.0
# New links whose contact id a run looks up after its imports (see _fill_contact_ids).
FULL_SYNC_LOOKUPS = 10
# Links without a contact id a run fills from its export, at most: a link row rewritten costs
# ~50 µs at 100,000 links and ~180 µs at 1,000,000 on PostgreSQL (measured), so a million-link
# initial sync is filled over its next nights for ~9 s each; every reader copes meanwhile.
FULL_SYNC_FILL_MAX = 50_000
# The opt-out checkbox of the other object types an unsubscribe reaches (a Person Account's
# is on the Account).
# Constant Contact values the export carries and a Full Sync can compare with Salesforce's.
COMPARABLE = ("first_name", "last_name", "job_title", "company_name")


@dataclass
class Progress:
    """What a run has done so far, for the run record and the CLI's progress bar."""

    phase: str = "prepare"
    read_cc: int = 0
    read_sf: int = 0
    compared: int = 0
    written: int = 0
    total: int | None = None
    started: float = field(default_factory=time.monotonic)
    sync_started: float | None = None

    def percent(self) -> float | None:
        if not self.total:
            return None
        return min(100.0, 100.0 * self.compared / self.total)

    def eta_seconds(self, now: float | None = None) -> float | None:
        if not self.total or not self.sync_started or not self.compared:
            return None
        elapsed = (now if now is not None else time.monotonic()) - self.sync_started
        return max(0.0, elapsed / self.compared * (self.total - self.compared))

    def message(self) -> str:
        if self.phase in ("prepare", "read"):
            return (
                f"{self.phase}: read {self.read_cc:,} Constant Contact contacts, "
                f"{self.read_sf:,} Salesforce records"
            )
        pct = self.percent()
        eta = self.eta_seconds()
        text = f"{self.phase}: compared {self.compared:,}"
        if self.total:
            text += f" of {self.total:,}"
        if pct is not None:
            text += f" ({pct:.0f}%)"
        text += f", written {self.written:,}"
        if eta is not None and self.phase == "sync":
            text += f", about {_duration(eta)} left"
        return text


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class Result:
    """What a run (or a partition of it) did."""

    outcome: Outcome = field(default_factory=Outcome)
    compared: int = 0
    written: int = 0
    married: int = 0
    unchanged: int = 0
    optouts_to_sf: int = 0
    gone: int = 0
    phase_seconds: dict[str, float] = field(default_factory=dict)

    def counts(self) -> dict[str, Any]:
        report = self.outcome.report()
        report.update(
            records=self.compared,
            unchanged=self.unchanged,
            married=self.married,
            opt_outs_to_salesforce=self.optouts_to_sf,
            gone_from_salesforce=self.gone,
            phase_seconds=dict(self.phase_seconds),
        )
        return {k: v for k, v in report.items() if v}


@dataclass
class _Pending:
    """Plans of several pages waiting to be executed together (imports fill up across pages)."""

    actions: list[Any] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    before: dict[str, Link] = field(default_factory=dict)
    records: dict[str, str] = field(default_factory=dict)  # sf_id -> email, for error rows
    link_only: list[dict[str, Any]] = field(default_factory=list)
    import_rows: int = 0
    import_bytes: int = 0
    other_actions: int = 0
    last_sf_id: str = ""
    # Each import row's JSON size, by the action's identity: measured once, whether the row
    # is posted by this flush or carried to the next ones.
    sizes: dict[int, int] = field(default_factory=dict)

    def add(self, plan: Plan, sizes: Mapping[int, int] | None = None) -> None:
        """Queue a plan's actions (``sizes``: import sizes already measured, see ``sizes``)."""
        self.actions.extend(plan.actions)
        for warning in plan.warnings:
            if warning not in self.warnings:
                self.warnings.append(warning)
        for action in plan.actions:
            if isinstance(action, Import):
                size = (sizes or {}).get(id(action)) or import_row_size(action.values)
                self.sizes[id(action)] = size
                self.import_rows += 1
                self.import_bytes += size
            elif isinstance(action, UpdateContact | Unsubscribe | DeleteContact):
                self.other_actions += 1
            elif isinstance(action, AddToLists | RemoveFromLists):
                self.other_actions += len(action.contact_ids)

    @property
    def empty(self) -> bool:
        return not self.actions and not self.link_only

    def size_of(self, action: Import) -> int:
        return self.sizes.get(id(action)) or import_row_size(action.values)

    def plan(self) -> Plan:
        """The pages' plans as one, list activities merged per list (one call per 500 ids)."""
        adds: dict[str, set[str]] = {}
        removes: dict[str, set[str]] = {}
        others: list[Any] = []
        for action in self.actions:
            if isinstance(action, AddToLists):
                adds.setdefault(action.list_id, set()).update(action.contact_ids)
            elif isinstance(action, RemoveFromLists):
                removes.setdefault(action.list_id, set()).update(action.contact_ids)
            else:
                others.append(action)
        merged: list[Any] = [
            *(AddToLists(lid, tuple(sorted(ids))) for lid, ids in sorted(adds.items())),
            *(RemoveFromLists(lid, tuple(sorted(ids))) for lid, ids in sorted(removes.items())),
        ]
        return Plan(actions=[*merged, *others], warnings=list(self.warnings))


def estimate_cc_calls(plan: Plan) -> int:
    """Calls executing ``plan`` costs: imports are posted (checked together at the end); list
    and delete activities are posted and polled; PUTs are one call each."""
    imports = sum(1 for _ in plan.import_batches())
    lists = sum(1 for _ in plan.list_batches())
    deletes = sum(1 for _ in plan.delete_batches())
    puts = len(plan.of_type(UpdateContact)) + len(plan.of_type(Unsubscribe))
    return imports + 2 * (lists + deletes) + puts


class FullSync:
    """One Full Sync run of one setup (or one partition of it). Call :meth:`run`."""

    def __init__(
        self,
        ctx: Context,
        checkpoint: Checkpoint,
        *,
        budget: Budget | None = None,
        partition: Partition | None = None,
        segmenter: Segmenter | None = None,
        page_size: int = PAGE_SIZE,
        bulk_page: int = BULK_PAGE,
        flush_rows: int = IMPORT_MAX_ROWS,
        flush_bytes: int = IMPORT_MAX_BYTES,
        spool_dir: str | None = None,
        heartbeat: Callable[[], None] | None = None,
        reconcile: bool = True,
        processes: int | None = None,
    ) -> None:
        self.ctx = ctx
        self.cp = checkpoint
        self.reset = checkpoint.reset
        self.budget = budget or Budget()
        self.partition = partition or Partition()
        self.segmenter = segmenter or filter_segmenter(ctx.options)
        self._own_segmenter = segmenter is None
        self.page_size = page_size
        self.bulk_page = bulk_page
        self.flush_rows = flush_rows
        self.flush_bytes = flush_bytes
        self.spool_dir = spool_dir
        self.heartbeat = heartbeat or (lambda: None)
        self.do_reconcile = reconcile
        # Processes that screen pages ahead of the planner (see _screened): one per core, at
        # most two; fewer than two means the planner's own process does it.
        self.processes = processes if processes is not None else min(2, os.cpu_count() or 1)
        self.options = ctx.options
        self.spec = object_fields(ctx.options)
        self.compiled = mapping_plan(ctx.options)
        self.progress = Progress(phase=checkpoint.phase)
        self.result = Result()
        self._cc_start = ctx.cc.calls.total
        self._sf_start = ctx.sf.usage.total
        self._last_progress = 0.0
        self.columns: list[str] = []
        self.export_fields: tuple[str, ...] = ()
        self._open_error_ids: set[str] | None = None
        # What earlier attempts of this run did (a resumed run adds to it).
        self.base_counts: dict[str, Any] = dict(checkpoint.counts or {})
        self.base_calls: dict[str, int] = dict(checkpoint.api_calls or {})
        # Partition runs report through their checkpoint; the job aggregates them on the run.
        self.report_hook: Callable[[], None] | None = None
        self._spool: Spool | None = None
        self._classifier: Classifier | None = None
        self._phase_started: tuple[str, float] | None = None
        # (sf_id, email) of the links this run's imports made, None once there are too many.
        self._new_links: list[tuple[str, str]] | None = []

    # ------------------------------------------------------------------------------ the run

    def run(self) -> Result:
        """Do every phase; the checkpoint is saved as the run goes (see module docstring)."""
        with Spool(self.spool_dir) as spool:
            self._spool = spool
            self._phase("prepare")
            sf_read.prepare_targets(self.ctx)
            self._prepare_segments()
            self._check_budget(cc_next=3 + 2, sf_next=3)
            # Both vendors and the store are read at once: the Constant Contact export is
            # produced and the links streamed while the Salesforce query is parsed here.
            self._phase("read")
            with ThreadPoolExecutor(2, thread_name_prefix="fullsync-read") as pool:
                export_read = pool.submit(self._read_cc, spool)
                links_read = pool.submit(self._read_links, spool)
                try:
                    self._read_sf(spool)
                finally:
                    links_read.result()
                    export_read.result()
            spool.index_emails()
            if self.cp.inflight:
                spool.add_inflight((sf_id, fp) for sf_id, fp in self.cp.inflight)
            self.progress.total = spool.count("sf")
            self.cp.total = self.progress.total
            self._phase("sync")
            if self.cp.last_sf_id:
                self.progress.compared = spool.count_through(self.cp.last_sf_id)
            self.progress.sync_started = time.monotonic()
            self._sync(spool)
            self._phase("duplicates")
            self._duplicates(spool)
            self._phase("verify")
            rejected = self._verify_imports()
            self._fill_contact_ids(spool, rejected)
            if self.do_reconcile:
                self._phase("reconcile")
                self._reconcile(spool)
            self._phase("optouts")
            self._optouts(spool)
            self._phase("done")
        return self.result

    def _prepare_segments(self) -> None:
        """Campaign and checkbox lists (:mod:`middleware.sf_to_cc.segments`): the Campaigns read
        again, their lists made or renamed, every maintained Campaign's members read once, and
        the segmenter the screening uses built from them."""
        if not sf_segments.segmented(self.ctx):
            return
        prepared = sf_segments.prepare(self.ctx, refresh=True)
        self.result.outcome.warnings.extend(prepared.warnings)
        if not self._own_segmenter:
            return
        members: dict[str, tuple[str, ...]] = {}
        if self.options.campaign_lists is not None:  # Campaign members or List View records
            members = sf_segments.all_memberships(self.ctx, prepared.members)
        self.segmenter = ListsSegmenter(
            self.options,
            members,
            self.ctx.campaign_list_ids,
            self.ctx.checkbox_list_ids,
            by_record_id=bool(self.ctx.list_views),
        )

    # ------------------------------------------------------------------------------ reading

    def _read_cc(self, spool: Spool) -> None:
        custom = [k for k, *_ in self.compiled if k.startswith(CUSTOM_PREFIX)]
        self.export_fields = tuple(
            dict.fromkeys(
                (
                    "contact_id",
                    "email_address",
                    "permission_to_send",
                    "list_memberships",
                    *CC_SCALAR_FIELDS,
                    *custom,
                )
            )
        )
        started = time.monotonic()
        activity = self.ctx.cc.export_contacts(fields=list(self.export_fields))
        done = self.ctx.cc.wait_for_activity(str(activity["activity_id"]), timeout=3600.0)
        self._sub_phase("read_cc_export", started)
        keep = [f for f in self.export_fields if f in CC_SCALAR_FIELDS or f in custom]

        def rows() -> Iterable[tuple[str, str, str, str, list[str]]]:
            table = self.ctx.cc.iter_export_table(done)
            header = next(table, [])
            at = {name: i for i, name in enumerate(header)}
            width = len(header)
            # A column the export lacks reads as blank: index ``width``, past the header's end.
            named = ("email_address", "contact_id", "permission_to_send", "list_memberships")
            email_at, id_at, permission_at, lists_at = (at.get(name, width) for name in named)
            keep_at = [at.get(k, width) for k in keep]
            for row in table:
                if len(row) < width:
                    row.extend([""] * (width - len(row)))
                row.append("")
                email = row[email_at].strip().lower()
                if not email or not row[id_at]:
                    continue
                self.progress.read_cc += 1
                yield (
                    email,
                    row[id_at],
                    row[permission_at] or "implicit",
                    row[lists_at],
                    [row[i] for i in keep_at],
                )

        spool.add_cc(keep, rows())
        self._sub_phase("read_cc", started)

    def _read_links(self, spool: Spool) -> None:
        started = time.monotonic()
        stmt = select(
            LinkModel.sf_id,
            LinkModel.cc_contact_id,
            LinkModel.email,
            LinkModel.fingerprint,
            LinkModel.opted_out_propagated,
            LinkModel.lists,
            LinkModel.removed_on_delete,
            LinkModel.sf_created,
            LinkModel.subscribed_when_synced,
        ).where(LinkModel.setup_id == self.ctx.setup_id, LinkModel.status == "active")
        part = self.partition
        if part.low:
            stmt = stmt.where(LinkModel.sf_id >= part.low)
        if part.high:
            stmt = stmt.where(LinkModel.sf_id < part.high)
        with self.ctx.store.engine.connect() as conn:
            result = conn.execution_options(yield_per=10_000).execute(stmt)
            spool.add_links(
                LinkRow(
                    sf_id,
                    contact_id or "",
                    email or "",
                    None if self.reset else fp,
                    bool(opted_out),
                    tuple(lists or ()),
                    bool(removed),
                    created,
                    subscribed is False,
                )
                for (
                    sf_id,
                    contact_id,
                    email,
                    fp,
                    opted_out,
                    lists,
                    removed,
                    created,
                    subscribed,
                ) in result
            )
        self._sub_phase("read_links", started)

    def soql(self) -> str:
        self.columns = sf_read.select_fields(self.options)
        where = self.partition.soql_where()
        return f"SELECT {', '.join(self.columns)} FROM {self.ctx.sf_object}" + (
            f" WHERE {where}" if where else ""
        )

    def _read_sf(self, spool: Spool) -> None:
        soql = self.soql()
        email_at = self.columns.index(self.spec.email)
        part = self.partition
        columns = self.columns
        started = time.monotonic()
        job_id = self.ctx.sf.start_bulk_query(soql, include_deleted=True, poll_max=BULK_POLL_MAX)
        self._sub_phase("read_sf_job", started)

        def rows() -> Iterable[tuple[str, str, list[Any]]]:
            pages = self.ctx.sf.bulk_query_pages(job_id, page_size=self.bulk_page, blank="")
            for page in pages:
                # Bulk 2.0 answers in SELECT order from v50 on; an older org's order is mapped.
                at = None if page.header == columns else [page.header.index(c) for c in columns]
                id_at = page.header.index("Id")
                for row in page.rows:
                    sf_id = row[id_at]
                    if not sf_id or not part.contains(sf_id):
                        continue
                    values = row if at is None else [row[i] for i in at]
                    yield sf_id, normalise_email(values[email_at]), values
                    self.progress.read_sf += 1
                self._report()
                self.heartbeat()

        spool.add_sf(self.columns, rows())
        self._sub_phase("read_sf", started)

    def _sub_phase(self, name: str, started: float) -> None:
        """How long a part of the reading took (they overlap), next to the phases."""
        self.result.phase_seconds[name] = round(time.monotonic() - started, 1)

    # ------------------------------------------------------------------------------ records

    @property
    def classifier(self) -> Classifier:
        """The per-record work of the sync phase for the columns read (built on first use)."""
        if self._classifier is None or self._classifier.columns != self.columns:
            dropped = frozenset(
                key
                for key, *_ in self.compiled
                if key.startswith(CUSTOM_PREFIX)
                and key[len(CUSTOM_PREFIX) :] not in self.ctx.custom_field_ids
            )
            self._classifier = Classifier(
                self.options, list(self.columns), self.segmenter, dropped, self.compiled
            )
        return self._classifier

    def record(self, values: Sequence[Any]) -> dict[str, Any]:
        """A Bulk CSV row as SOQL JSON would give it: relationships nested, booleans typed."""
        return self.classifier.record(values)

    def _cc_agrees(self, values: Mapping[str, str], cc: CcRow) -> bool:
        for key, value in values.items():
            if key in cc.fields and (cc.fields.get(key) or "") != value:
                return False
        return True

    def _all_comparable(self, values: Mapping[str, str], cc: CcRow) -> bool:
        return all(key == "email" or key in cc.fields for key in values)

    # ------------------------------------------------------------------------------ sync

    def _full(self, pending: _Pending) -> bool:
        """Whether the pending plans fill an import call (or hold many other actions)."""
        return (
            pending.import_rows >= self.flush_rows
            or pending.import_bytes >= self.flush_bytes
            or pending.other_actions >= 5_000
        )

    def _sync(self, spool: Spool) -> None:
        pending = _Pending(last_sf_id=self.cp.last_sf_id)
        for screened in self._screened(spool):
            if screened.rows:
                self._page(
                    spool,
                    screened.rows,
                    pending,
                    force_slow=False,
                    classified=screened.classified,
                )
            self.result.compared += screened.unchanged
            self.result.unchanged += screened.unchanged
            self.progress.compared += screened.unchanged
            pending.last_sf_id = screened.last_id
            if self._full(pending):
                pending = self._flush(pending, final=False)
            self._report()
            self.heartbeat()
        self._flush(pending)

    def _screened(self, spool: Spool) -> Iterator[Screened]:
        """The sync phase's pages in Id order, each classified and screened
        (:meth:`Classifier.screen`; not in a reset, which rewrites what it cannot compare).

        The per-record work is most of the phase's CPU: with ``processes`` of 2 or more and
        more than one page, that many screening processes read and screen the next pages from
        the spool (by Id range) while this one plans and writes the page before them.
        """
        bounds = spool.page_bounds(after=self.cp.last_sf_id, page=self.page_size)
        ranges = list(zip([self.cp.last_sf_id, *bounds], bounds, strict=False))
        args = (self.ctx.main_list_id, spool.cc_fields, not self.reset)
        if self.processes < 2 or len(ranges) < 2:
            for low, high in ranges:
                yield self.classifier.screen(spool.joined_page(low, high), high, *args)
            return
        # Two pages in flight pay when most records are linked: most then settle in the
        # screening processes and the planner has little to do. Otherwise the planner is the
        # slower side (a first run plans every record), one page ahead keeps it busy and
        # more would only hold memory.
        linked = 2 * spool.count("links") >= spool.count("sf")
        with self._screening_pool(spool) as pool:
            todo = iter(ranges)
            ahead: deque[Future[Screened]] = deque(
                pool.submit(screen_in_child, low, high, *args)
                for low, high in itertools.islice(todo, self.processes if linked else 1)
            )
            while ahead:
                screened = ahead.popleft().result()
                for low, high in itertools.islice(todo, 1):
                    ahead.append(pool.submit(screen_in_child, low, high, *args))
                yield screened

    def _screening_pool(self, spool: Spool) -> ProcessPoolExecutor:
        """The screening processes of :meth:`_screened`.

        They come from a fork server: fresh processes that share nothing of this one's heap
        (forked from it, each would in time hold a copy of every page this process rewrites).
        The classifier is pickled to them, so a segmenter must pickle (a module-level function
        or class); one that does not is run by forked processes instead. Only Id ranges and
        the unsettled rows cross. Each opens the spool read-only and touches no other
        connection.
        """
        context: BaseContext
        try:
            pickle.dumps(self.classifier)
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["middleware.fullsync.screen"])
        except (pickle.PicklingError, AttributeError, TypeError, ValueError):
            context = multiprocessing.get_context("fork")
        return ProcessPoolExecutor(
            self.processes,
            mp_context=context,
            initializer=adopt_classifier,
            initargs=(self.classifier, spool.directory),
        )

    def _duplicates(self, spool: Spool) -> None:
        pending = _Pending(last_sf_id=self.cp.last_sf_id)
        for group in spool.duplicate_groups(page=self.page_size):
            self._page(spool, group, pending, force_slow=True)
            if self._full(pending):
                self._flush(pending)
                pending = _Pending(last_sf_id=self.cp.last_sf_id)
            self._report()
        self._flush(pending)

    def _page(
        self,
        spool: Spool,
        page: list[tuple[str, str | None, list[Any]]],
        pending: _Pending,
        *,
        force_slow: bool,
        classified: Sequence[Classified] | None = None,
    ) -> None:
        """Compare one page of records with the spool; queue what differs in ``pending``.

        ``classified`` is the page's :class:`Classifier` work when another process did it.
        """
        clf = self.classifier
        ids = [sf_id for sf_id, _, _ in page]
        links = spool.links_for(ids)
        # A link an import made may know no contact id yet: the export finds its contact at
        # the link's address (an email changed or blanked since needs that contact).
        emails = sorted(
            {e for _, e, _ in page if e}
            | {lk.email for lk in links.values() if lk.email and not lk.cc_contact_id}
        )
        cc_by_email = spool.cc_by_email(emails)
        # A linked contact is nearly always at its record's address: look up only the others.
        cc_by_id = {row.contact_id: row for row in cc_by_email.values()}
        others_ids = [
            lk.cc_contact_id
            for lk in links.values()
            if lk.cc_contact_id and lk.cc_contact_id not in cc_by_id
        ]
        if others_ids:
            cc_by_id.update(spool.cc_by_id(others_ids))
        inflight = spool.inflight_for(ids) if self.cp.inflight else {}
        main = self.ctx.main_list_id
        slow: list[dict[str, Any]] = []
        slow_links: dict[str, Link] = {}
        contacts: dict[str, CcContact] = {}
        unmatched: list[str] = []
        segment_lists: dict[str, Sequence[str]] = {}
        segmented = False
        # (sf_id, email, fingerprint, mapped, lists, the contact at the address or None, values)
        candidates: list[
            tuple[str, str, str, dict[str, str], tuple[str, ...], CcRow | None, Sequence[Any]]
        ] = []

        self.result.compared += len(page)
        self.progress.compared += len(page)
        for n, (sf_id, email, values) in enumerate(page):
            link = links.get(sf_id)
            matches, lists, mapped, fp = (
                classified[n] if classified is not None else clf.classify(email, values)
            )
            if lists is not None:
                segmented = True
                segment_lists[sf_id] = lists
            claims = mapped is not None
            cc = None
            if link is not None and link.cc_contact_id:
                cc = cc_by_id.get(link.cc_contact_id)
            elif link is not None and link.email:
                cc = cc_by_email.get(link.email)
            at_address = cc_by_email.get(email) if email else None
            wanted = tuple(dict.fromkeys((main, *(lists or ()))))
            if not matches:
                unmatched.append(sf_id)
            if (
                not force_slow
                and claims
                and mapped is not None
                and link is not None
                and link.email == email
                and not link.opted_out
                and cc is not None
                and cc.email == email
                and not cc.unsubscribed
                and (fp == link.fingerprint or (self.reset and self._all_comparable(mapped, cc)))
                and all(lid in cc.lists for lid in (*link.lists, *wanted))
                and (lists is None or set(link.lists) <= set(wanted))
                and self._cc_agrees(mapped, cc)
            ):
                self.result.unchanged += 1
                if fp != link.fingerprint:  # a reset that found Constant Contact in step
                    pending.link_only.append(
                        {
                            "sf_id": sf_id,
                            "sf_object": self.ctx.sf_object,
                            "cc_contact_id": cc.contact_id,
                            "fingerprint": fp,
                        }
                    )
                continue
            if (
                not force_slow
                and claims
                and mapped is not None
                and fp is not None
                and link is None
                and at_address is not None
                and not at_address.unsubscribed
                and all(lid in at_address.lists for lid in wanted)
                and self._cc_agrees(mapped, at_address)
                and (self._all_comparable(mapped, at_address) or inflight.get(sf_id) == fp)
            ):
                assert email is not None
                candidates.append((sf_id, email, fp, mapped, wanted, at_address, values))
                continue
            if (
                not force_slow
                and claims
                and mapped is not None
                and fp is not None
                and link is None
                and at_address is None
                and email
            ):
                # A new address: what the planner's last branch does, without the detour.
                candidates.append((sf_id, email, fp, mapped, wanted, None, values))
                continue
            # The planner decides. Tell it what the export showed.
            slow.append(clf.record(values))
            if link is not None:
                sync_link = _sync_link(link)
                drifted = (
                    mapped is not None
                    and cc is not None
                    and not cc.unsubscribed
                    and not self._cc_agrees(mapped, cc)
                )
                missing = link.cc_contact_id and cc is None
                orphan = not link.cc_contact_id and at_address is None
                if drifted or orphan or self.reset:
                    # Constant Contact differs from what was last written (or lost it): rewrite.
                    sync_link = replace(sync_link, fingerprint=None)
                if cc is not None and not link.cc_contact_id:
                    sync_link = replace(sync_link, cc_contact_id=cc.contact_id)
                if missing:
                    # Linked, but not in the export: deleted in Constant Contact.
                    contacts[link.cc_contact_id] = CcContact(
                        link.cc_contact_id, link.email, deleted=True
                    )
                slow_links[sf_id] = sync_link
            if cc is not None:
                contacts[cc.contact_id] = _cc_contact(cc)
            if at_address is not None:
                contacts.setdefault(at_address.contact_id, _cc_contact(at_address))

        # New addresses and marriages: only when no other record's link holds the address.
        if candidates:
            held = {lk.email for lk in spool.links_by_email([c[1] for c in candidates])}
            fast = Plan()
            created_at = (
                self.columns.index("CreatedDate") if "CreatedDate" in self.columns else None
            )
            for sf_id, email, fp, mapped, wanted, cc_row, row in candidates:
                if email in held:
                    slow.append(clf.record(row))
                    if cc_row is not None:
                        contacts.setdefault(cc_row.contact_id, _cc_contact(cc_row))
                    continue
                created = str(row[created_at] or "") or None if created_at is not None else None
                if cc_row is None:
                    fast.actions.append(Import(sf_id, email, mapped, wanted))
                    fast.actions.append(LinkRecord(sf_id, email, None, fp, wanted, created))
                    continue
                self.result.married += 1
                pending.link_only.append(
                    {
                        "sf_id": sf_id,
                        "sf_object": self.ctx.sf_object,
                        "cc_contact_id": cc_row.contact_id,
                        "email": email,
                        "fingerprint": fp,
                        "lists": list(wanted),
                        "subscribed_when_synced": True,
                        "opted_out_propagated": False,
                    }
                )
            if fast.actions:
                pending.add(fast)
        if not slow and not unmatched:
            return
        slow_ids = {str(r["Id"]) for r in slow}
        slow_emails = sorted(
            {e for sid, e, _ in page if e and sid in slow_ids}
            | {lk.email for lk in slow_links.values() if lk.email}
        )
        others = [
            _sync_link(row)
            for row in spool.links_by_email(slow_emails)
            if row.sf_id not in slow_links and row.sf_id not in ids
        ]
        for other in others:
            held_cc = (
                cc_by_id.get(other.cc_contact_id)
                or spool.cc_by_id([other.cc_contact_id]).get(other.cc_contact_id)
                if other.cc_contact_id
                else None
            )
            if held_cc is not None:
                contacts.setdefault(held_cc.contact_id, _cc_contact(held_cc))
        for cc_row in spool.cc_by_email(slow_emails).values():
            contacts.setdefault(cc_row.contact_id, _cc_contact(cc_row))
        plan = plan_sf_to_cc(
            self.options,
            slow,
            links=[*slow_links.values(), *others],
            cc_contacts=list(contacts.values()),
            main_list_id=self.ctx.main_list_id,
            custom_field_ids=self.ctx.custom_field_ids,
            now=self.ctx.now(),
            segment_lists=segment_lists if segmented else None,
            unmatched_ids=unmatched,
            frozen_lists=self.ctx.frozen_list_ids,
            full_sync=True,
            reset=self.reset,
        )
        pending.add(plan)
        pending.before.update(slow_links)
        for record in slow:
            pending.records[str(record["Id"])] = str(record.get(self.spec.email) or "")

    # ------------------------------------------------------------------------------ writing

    def _flush(self, pending: _Pending, *, final: bool = True) -> _Pending:
        """Execute the pending plans, record them, move the checkpoint past their pages.

        Imports are posted, not awaited: their activities are checked all at once at the end of
        the run (:meth:`_verify_imports`), one poll instead of one per import. Unless ``final``,
        an import body that is not full yet is carried, with everything else of its records,
        into the returned pending plans, so every import call carries as much as it may.
        """
        carry = _Pending(last_sf_id=pending.last_sf_id)
        if pending.empty:
            if pending.last_sf_id != self.cp.last_sf_id:
                self.cp.last_sf_id = pending.last_sf_id
                self._save()
            return carry
        plan = pending.plan()
        carried = (
            set()
            if final
            else _partial_import_ids(plan, pending.size_of, self.flush_rows, self.flush_bytes)
        )
        if carried:
            plan = self._split_carry(plan, pending, carried, carry)
        self._check_budget(cc_next=estimate_cc_calls(plan))
        # Before anything is posted: what this flush imports, so a run killed before recording
        # it recognises these contacts in the next export instead of importing them again.
        imported = _import_ids(plan)
        self.cp.inflight = [
            [change.sf_id, change.fingerprint]
            for change in plan.link_changes
            if isinstance(change, LinkRecord | UpdateLink)
            and change.fingerprint
            and change.sf_id in imported
        ]
        self._save()
        rest = Plan(
            actions=[a for a in plan.actions if not isinstance(a, Import)],
            warnings=plan.warnings,
        )
        outcome = sf_write.execute(self.ctx.cc, rest)  # no Constant Contact actions: no calls
        self._post_imports(plan, outcome, pending.size_of)
        self._record(plan, outcome, pending)
        self._note_new_links(sf_write.imported_links(plan, outcome.failed_ids))
        merge_outcomes(self.result.outcome, outcome)
        written = sum(
            outcome.counts.get(k, 0) for k in ("imported", "updated", "unsubscribed", "deleted")
        )
        self.result.written += written
        self.progress.written += written
        if carried and self._spool is not None:
            # Records from the first carried one on are not done yet.
            self.cp.last_sf_id = self._spool.id_before(min(carried))
        else:
            self.cp.last_sf_id = pending.last_sf_id
        self.cp.inflight = []
        self._save()
        self._report(force=True)
        return carry

    def _split_carry(
        self, plan: Plan, pending: _Pending, carried: set[str], carry: _Pending
    ) -> Plan:
        """Move the carried records' actions (all of them) into ``carry``; return the rest."""
        keep: list[Any] = []
        moved: list[Any] = []
        for action in plan.actions:
            (moved if getattr(action, "sf_id", None) in carried else keep).append(action)
        carry.add(Plan(actions=moved), sizes=pending.sizes)
        carry.warnings = list(plan.warnings)
        for sf_id in carried:
            if sf_id in pending.before:
                carry.before[sf_id] = pending.before.pop(sf_id)
            if sf_id in pending.records:
                carry.records[sf_id] = pending.records.pop(sf_id)
        return Plan(actions=keep, warnings=plan.warnings)

    def _post_imports(
        self, plan: Plan, outcome: Outcome, size_of: Callable[[Import], int] | None = None
    ) -> None:
        """Post the plan's imports (one call per body), remembering which rows each one carries."""
        counted: set[str] = set()  # a row may come in several bodies (one per list)
        for list_ids, rows in plan.import_batches(size_of=size_of):
            rows = [row for row in rows if row.sf_id not in outcome.failed_ids]
            if not rows:
                continue
            activities = self.ctx.cc.import_contacts(
                [import_row(row.values) for row in rows], list(list_ids)
            )
            ids = [str(a["activity_id"]) for a in activities if a.get("activity_id")]
            self.cp.pending_activities.extend(ids)
            if self._spool is not None and len(ids) == 1:
                self._spool.add_activity_rows(ids[0], [(r.sf_id, r.email) for r in rows])
            fresh = {row.sf_id for row in rows} - counted
            outcome.counts["imported"] += len(fresh)
            counted |= fresh

    def _verify_imports(self) -> set[str]:
        """Wait once for every import this run posted; rows Constant Contact rejected become
        sync errors and their links forget the fingerprint, so the next run writes them again.
        Returns the Salesforce ids of the rows Constant Contact rejected."""
        pending = list(dict.fromkeys(self.cp.pending_activities))
        if not pending:
            return set()
        cc = self.ctx.cc
        # Constant Contact runs an account's activities in order: when the last one is done,
        # the others are too, and one listing shows them all.
        with contextlib.suppress(ActivityFailed):
            cc.wait_for_activity(pending[-1], timeout=3600.0)
        final = {a["activity_id"]: a for a in list_activities(cc, limit=500)}
        unknown = [a for a in pending if a not in final or final[a].get("state") not in FINAL]
        if unknown:
            try:
                for activity in cc.wait_for_activities(unknown, timeout=3600.0):
                    final[activity["activity_id"]] = activity
            except ActivityFailed as exc:
                for activity in getattr(exc, "activities", None) or []:
                    final[activity["activity_id"]] = activity
        failures: list[Failure] = []
        unattributed: list[str] = []
        for activity_id in pending:
            activity = final.get(activity_id) or {}
            rows = self._spool.activity_rows(activity_id) if self._spool is not None else []
            failed, loose = attribute_import_errors(activity, rows)
            failures += failed
            unattributed += loose
        if failures:
            self._record_import_failures(failures)
        for message in unattributed:
            self.result.outcome.warnings.append(message)
        self.cp.pending_activities = []
        self._save()
        return {f.sf_id for f in failures}

    def _note_new_links(self, rows: Sequence[tuple[str, str]]) -> None:
        """Remember the new links an import made, up to what _fill_contact_ids looks up."""
        if self._new_links is None:
            return  # more than it would look up: the next export resolves them
        self._new_links.extend(rows)
        if len(self._new_links) > FULL_SYNC_LOOKUPS:
            self._new_links = None

    def _fill_contact_ids(self, spool: Spool, rejected: set[str]) -> None:
        """Links that knew no contact id get the one the export holds at their address (one
        store statement per 5,000, at most ``FULL_SYNC_FILL_MAX`` a run); the links this
        run's imports made (the import answers no ids) get theirs by one lookup each when they
        are few (``FULL_SYNC_LOOKUPS``), the others from the next run's export."""
        filled = 0
        given = 0
        with self.ctx.store.transaction() as session:
            for rows in spool.export_contact_ids(page=min(5000, FULL_SYNC_FILL_MAX)):
                if given >= FULL_SYNC_FILL_MAX:
                    break  # the next runs fill the rest: no run pays for a million at once
                filled += links_repo.fill_contact_ids(session, self.ctx.setup_id, rows)
                given += len(rows)
        try:
            filled += self._fill_new_links(rejected)
        except (BudgetExhausted, CCError) as exc:
            # Optional: the imports are done, and every reader resolves an id it needs.
            log.warning(
                "setup %s: contact ids of this run's imports left for later: %s",
                self.ctx.setup_id,
                exc,
            )
        if filled:
            self.result.outcome.counts["contact_ids_resolved"] += filled

    def _fill_new_links(self, rejected: set[str]) -> int:
        filled = 0
        if self._new_links is None:
            # One more export would cost ~13 s per 100,000 contacts; the next run's export
            # gives them their ids (one store write each), and readers resolve one they need.
            log.info(
                "setup %s: this run's new links get their contact ids from the next Full Sync",
                self.ctx.setup_id,
            )
        else:
            new = [(sf_id, email) for sf_id, email in self._new_links if sf_id not in rejected]
            if new:
                self._check_budget(cc_next=len(new))
                found = {
                    sf_id: str(data["contact_id"])
                    for sf_id, data in sf_write.new_contacts(
                        self.ctx.cc, new, limit=FULL_SYNC_LOOKUPS
                    ).items()
                }
                emails = dict(new)
                with self.ctx.store.transaction() as session:
                    filled += links_repo.fill_contact_ids(
                        session,
                        self.ctx.setup_id,
                        [(emails[sf_id], cid) for sf_id, cid in found.items()],
                    )
        return filled

    def _record_import_failures(self, failures: list[Failure]) -> None:
        rows = sf_record.error_rows(failures, self.ctx.sf_object, {}, full_sync=True)
        with self.ctx.store.transaction() as session:
            errors_repo.record_errors(session, self.ctx.setup_id, rows, run_id=self.ctx.run_id)
            links_repo.upsert_links(
                session,
                self.ctx.setup_id,
                [
                    {"sf_id": f.sf_id, "sf_object": self.ctx.sf_object, "fingerprint": None}
                    for f in failures
                ],
            )
        self.result.outcome.failures.extend(failures)
        self.result.outcome.counts["imported"] -= len({f.sf_id for f in failures})

    def _record(self, plan: Plan, outcome: Outcome, pending: _Pending) -> None:
        failed = outcome.failed_ids
        before = pending.before
        rows, retire = sf_record.store_changes(plan, failed, self.ctx.sf_object, before)
        for sf_id, link in before.items():
            # Contact ids the export resolved for links that lacked one.
            if sf_id not in failed and sf_id not in retire and link.cc_contact_id:
                rows.append(
                    {
                        "sf_id": sf_id,
                        "sf_object": self.ctx.sf_object,
                        "cc_contact_id": link.cc_contact_id,
                    }
                )
        rows = [*pending.link_only, *rows]
        failures = sf_record.error_rows(
            outcome.failures, self.ctx.sf_object, pending.records, full_sync=True
        )
        with self.ctx.store.transaction() as session:
            links_repo.retire_links(session, self.ctx.setup_id, retire)
            # Rows are grouped by their keys by upsert_links; order inside a group is kept.
            links_repo.upsert_links(session, self.ctx.setup_id, sf_record.link_columns(rows))
            if failures:
                errors_repo.record_errors(
                    session, self.ctx.setup_id, failures, run_id=self.ctx.run_id
                )
            fixed = self._open_errors(session) & ({*pending.records, *before} - failed)
            if fixed:
                errors_repo.resolve_errors(session, self.ctx.setup_id, sf_ids=sorted(fixed))
                self._open_error_ids = (self._open_error_ids or set()) - fixed

    def _open_errors(self, session: Any) -> set[str]:
        """Records of the setup with an open sync error (read once; usually few)."""
        if self._open_error_ids is None:
            self._open_error_ids = {
                sf_id
                for sf_id in session.scalars(
                    select(SyncError.sf_id).where(
                        SyncError.setup_id == self.ctx.setup_id,
                        SyncError.status.in_(("open", "retrying")),
                        SyncError.sf_id.is_not(None),
                    )
                )
                if sf_id
            }
        return self._open_error_ids

    # ------------------------------------------------------------------------------ reconcile

    def _reconcile(self, spool: Spool) -> None:
        """Links no record came back for: gone from Salesforce, or missed by the read."""
        pending = _Pending(last_sf_id=self.cp.last_sf_id)
        for ids in spool.unseen_links(self.partition.low, self.partition.high):
            self._check_budget(sf_next=max(1, len(ids) // 400))
            records, missing = sf_read.read_records(self.ctx, ids)
            links = {sf_id: _sync_link(row) for sf_id, row in spool.links_for(ids).items()}
            # Links made by an incremental import may not know their contact's id yet: the
            # export does, by email (removing from lists needs the id).
            exported = spool.cc_by_email([link.email for link in links.values() if link.email])
            for sf_id, link in list(links.items()):
                row = exported.get(link.email)
                if not link.cc_contact_id and row is not None:
                    links[sf_id] = replace(link, cc_contact_id=row.contact_id)
            self.result.gone += len(missing)
            plan = plan_sf_to_cc(
                self.options,
                records,
                links=list(links.values()),
                cc_contacts=[_cc_contact(row) for row in exported.values()],
                main_list_id=self.ctx.main_list_id,
                custom_field_ids=self.ctx.custom_field_ids,
                now=self.ctx.now(),
                missing_ids=missing,
                frozen_lists=self.ctx.frozen_list_ids,
                full_sync=True,
                reset=self.reset,
            )
            pending.add(plan)
            pending.before.update(links)
            for sf_id in ids:
                pending.records[sf_id] = ""
        self._flush(pending)

    # ------------------------------------------------------------------------------ CC → SF

    def _optouts(self, spool: Spool) -> None:
        """Unsubscribed in Constant Contact ⇒ the opt-out on every matching record (§5a).

        Records of the setup's object come from the spool (the Bulk read has them all). The
        other objects an unsubscribe reaches (Leads, Contacts, Person Accounts) are looked up
        with the poll's chunked ``Email IN (...)`` queries, once per run: by the whole run, or
        by the partition holding the lowest Ids.
        """
        if not self.options.sync_unsubscribes_to_sf:
            return
        opted_at = self.columns.index(self.spec.opted_out)
        deleted_at = self.columns.index("IsDeleted") if "IsDeleted" in self.columns else None
        own = [row for batch in spool.unsubscribed_matches(opted_at, deleted_at) for row in batch]
        by_object: dict[str, tuple[str, list[tuple[str, str]]]] = {}
        if own:
            by_object[self.ctx.sf_object] = (self.spec.opted_out, own)
        if not self.partition.low:
            for sf_object, found in self._other_optouts(spool).items():
                by_object[sf_object] = found
        for sf_object, (field_name, rows) in sorted(by_object.items()):
            self._write_optouts(sf_object, field_name, rows)

    def _other_optouts(self, spool: Spool) -> dict[str, tuple[str, list[tuple[str, str]]]]:
        """(Id, email) of records of the other object types to opt out, by object type."""
        org = cc_read.org_info(self.ctx)
        objects = [o for o in cc_to_sf.opt_out_objects(org) if o != self.ctx.sf_object]
        found: dict[str, tuple[str, list[tuple[str, str]]]] = {}
        if not objects:
            return found
        for emails in spool.unsubscribed_emails():
            # About 500 addresses fit one query's 16 KB: a call per chunk and object type.
            self._check_budget(sf_next=len(objects) * max(1, math.ceil(len(emails) / 400)))
            wanted: dict[str, set[str]] = {sf_object: set(emails) for sf_object in objects}
            for matches in cc_match.find_matches(self.ctx, org, wanted).values():
                for match in matches:
                    # Only the standard field: an NPSP alternate address never opts out.
                    if match.opted_out or not match.on_standard_email:
                        continue
                    field_name = cc_to_sf.opt_out_field(match.sf_object)
                    found.setdefault(match.sf_object, (field_name, []))[1].append(
                        (match.sf_id, match.email)
                    )
        return found

    def _write_optouts(self, sf_object: str, field_name: str, rows: list[tuple[str, str]]) -> None:
        """Set ``field_name`` on the records: sObject Collections, or Bulk 2.0 ingest above
        2,000 rows; a record Salesforce rejects becomes its sync error."""
        rows = list(dict.fromkeys(rows))
        updates = [{"Id": sf_id, field_name: True} for sf_id, _ in rows]
        failures: list[dict[str, Any]] = []
        done = 0
        bulk = len(updates) > cc_write.BULK_THRESHOLD
        self._check_budget(sf_next=6 if bulk else math.ceil(len(updates) / 200))
        written = cc_write.write_records(self.ctx.sf, sf_object, "update", updates)
        outcomes = [(r.index, r.success, r.error) for r in written]
        for index, success, error in outcomes:
            sf_id, email = rows[index]
            if success:
                done += 1
                continue
            failures.append(
                {
                    "direction": "cc_to_sf",
                    "vendor": "salesforce",
                    "code": getattr(error, "code", None) or "opt_out_rejected",
                    "message": str(getattr(error, "message", None) or error or "rejected"),
                    "sf_id": sf_id,
                    "email": email,
                    "payload": {"sf_object": sf_object, "field": field_name},
                }
            )
        self.result.optouts_to_sf += done
        if failures:
            with self.ctx.store.transaction() as session:
                errors_repo.record_errors(
                    session, self.ctx.setup_id, failures, run_id=self.ctx.run_id
                )
            self.result.outcome.warnings.append(
                f"{len(failures)} opt-out(s) could not be written to Salesforce"
            )
        log.info(
            "setup %s: %d opt-out(s) from Constant Contact written to Salesforce %s, %d rejected",
            self.ctx.setup_id,
            done,
            sf_object,
            len(failures),
        )

    # ------------------------------------------------------------------------------ plumbing

    def cc_spent(self) -> int:
        return self.ctx.cc.calls.total - self._cc_start

    def sf_spent(self) -> int:
        return self.ctx.sf.usage.total - self._sf_start

    def _check_budget(self, *, cc_next: int = 0, sf_next: int = 0) -> None:
        if self.budget.sf_daily is None and self.ctx.sf.usage.org_limit:
            self.budget.sf_daily = self.ctx.sf.usage.org_limit
            self.budget.sf_used_today = max((self.ctx.sf.usage.org_used or 0) - self.sf_spent(), 0)
        self.budget.check(
            self.ctx.now(),
            cc_spent=self.cc_spent(),
            cc_next=cc_next,
            sf_spent=self.sf_spent(),
            sf_next=sf_next,
        )

    def _phase(self, phase: str) -> None:
        # How long each phase took, on the run: where a slow run spent its time.
        now = time.monotonic()
        if self._phase_started is not None:
            took = round(now - self._phase_started[1], 1)
            self.result.phase_seconds[self._phase_started[0]] = took
            log.info(
                "setup %s: Full Sync %s took %.1f s",
                self.ctx.setup_id,
                self._phase_started[0],
                took,
            )
        self._phase_started = (phase, now)
        self.progress.phase = phase
        if phase in checkpoints.PHASES:
            self.cp.phase = phase
        self._report(force=True)

    def api_calls(self) -> dict[str, int]:
        return {"salesforce": self.sf_spent(), "constantcontact": self.cc_spent()}

    def total_counts(self) -> dict[str, Any]:
        return merge_counts(self.base_counts, self.result.counts())

    def total_calls(self) -> dict[str, int]:
        return _add(self.base_calls, self.api_calls())

    def snapshot(self) -> Checkpoint:
        """The checkpoint as it stands, counts and calls of every attempt included."""
        self.cp.done = self.progress.compared
        self.cp.total = self.progress.total
        self.cp.counts = self.total_counts()
        self.cp.api_calls = self.total_calls()
        return self.cp

    def _save(self) -> None:
        checkpoints.save(self.ctx.store, self.ctx.setup_id, self.snapshot())
        self.cp.counts, self.cp.api_calls = self.base_counts, self.base_calls

    def _report(self, *, force: bool = False) -> None:
        """Progress on the run record, at most every second (phases and flushes always)."""
        now = time.monotonic()
        if not force and now - self._last_progress < 1.0:
            return
        self._last_progress = now
        if self.report_hook is not None:
            self.report_hook()
            return
        if self.ctx.run_id is None:
            return
        with self.ctx.store.transaction() as session:
            run = session.get(Run, self.ctx.run_id)
            if run is None:
                return
            run.phase = self.progress.phase
            run.progress_done = self.progress.compared
            if self.progress.total is not None:
                run.progress_total = self.progress.total
            run.message = self.progress.message()
            run.counts = {**self.total_counts(), **_progress_counts(self.progress)}
            run.api_calls = self.total_calls()


def _progress_counts(progress: Progress) -> dict[str, Any]:
    out: dict[str, Any] = {
        "read_constantcontact": progress.read_cc,
        "read_salesforce": progress.read_sf,
        "compared": progress.compared,
        "written": progress.written,
    }
    pct = progress.percent()
    if pct is not None:
        out["percent"] = round(pct, 1)
    eta = progress.eta_seconds()
    if eta is not None and progress.phase == "sync":
        out["eta_seconds"] = round(eta)
    return out


def _add(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    out = dict(a)
    for key, value in b.items():
        out[key] = out.get(key, 0) + value
    return out


def _partial_import_ids(
    plan: Plan,
    size_of: Callable[[Import], int],
    max_rows: int = IMPORT_MAX_ROWS,
    max_bytes: int = IMPORT_MAX_BYTES,
) -> set[str]:
    """Records whose import would go in a body that is not full yet (the last of each list set)."""
    last: dict[tuple[str, ...], list[Import]] = {}
    for list_ids, rows in plan.import_batches(size_of=size_of):  # as _post_imports posts them
        last[list_ids] = rows
    partial: set[str] = set()
    for rows in last.values():
        size = sum(size_of(r) for r in rows)
        if len(rows) < max_rows and size < max_bytes * 0.9:
            partial.update(r.sf_id for r in rows)
    return partial


def _import_ids(plan: Plan) -> set[str]:
    return {a.sf_id for a in plan.of_type(Import)}


def _sync_link(row: LinkRow) -> Link:
    return Link(
        sf_id=row.sf_id,
        cc_contact_id=row.cc_contact_id,
        email=row.email,
        fingerprint=row.fingerprint,
        opted_out=row.opted_out,
        removed_on_delete=row.removed_on_delete,
        list_ids=row.lists,
        sf_created=row.sf_created,
        cc_unsubscribed=row.cc_unsubscribed,
    )


def _cc_contact(row: CcRow) -> CcContact:
    fields: dict[str, Any] = {}
    for key in CC_SCALAR_FIELDS:
        value = row.fields.get(key)
        if not value:
            continue
        if key in CC_INT_FIELDS:
            if not str(value).isdigit():
                continue
            fields[key] = int(value)
        else:
            fields[key] = value
    return CcContact(
        contact_id=row.contact_id,
        email=row.email,
        permission_to_send=row.permission,
        list_memberships=row.lists,
        fields=fields,
    )


def counts_view(run: Run) -> dict[str, Any]:
    """A run's progress as the CLI and admin API show it (percent and seconds left included)."""
    counts = dict(run.counts or {})
    return {
        "phase": run.phase,
        "done": run.progress_done,
        "total": run.progress_total,
        "percent": counts.get("percent"),
        "eta_seconds": counts.get("eta_seconds"),
        "message": run.message,
        "counts": counts,
        "api_calls": dict(run.api_calls or {}),
    }


def now_utc() -> datetime:
    return datetime.now(UTC)


__all__ = [
    "BudgetExhausted",
    "FullSync",
    "Progress",
    "Result",
    "Segmenter",
    "counts_view",
    "estimate_cc_calls",
    "soql_string",
]
