"""SF → CC segmentation lists: Campaign, List View and checkbox lists, resolved and kept current.

The rules are :mod:`middleware.sync.campaigns`' (which Campaigns a setup maintains, which lists a
record belongs on); this module does their I/O:

- :func:`prepare` (once per run): the checkbox lists' ids (created when missing), and — with
  ``campaign_lists`` — the Campaign lists: Salesforce's Campaigns read (one query), the choice
  made, each maintained Campaign's list found by name or created (all of the account's lists in
  one call), renamed when its Campaign was, and the registry stored (a cursor: Campaign id → list
  id, name, maintained or why not). A Campaign that stops qualifying keeps its list, frozen, and
  the run says so; one whose list would pass the account's 1,000 lists is a sync error naming it.
  The Campaigns are read again when a Campaign change event arrived, on Sync Now and the Full
  Sync, and at least every :data:`REFRESH_AFTER`. With ``source: "list_views"`` the same goes
  for the object's List Views (one call), each selected view's query read from its describe and
  tried; a view the org refuses is a sync error, and while it is refused its list is frozen and
  the records in no working view are held (:class:`BatchSegments`).
- :func:`members_of` / :func:`people_of_members`: Campaign members as the setup's record ids
  (CampaignMember change events name members, not people).
- :func:`batch_segments`: for a batch of re-read records, each one's segmentation lists and the
  ids outside the setup's Campaigns (one CampaignMember query per batch) or List Views (each
  view's query narrowed to the batch); :func:`all_memberships` the same for a Full Sync.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from middleware.constantcontact.errors import Conflict, Validation
from middleware.context import Context
from middleware.salesforce.client import soql_in
from middleware.salesforce.errors import SalesforceError
from middleware.store import cursors
from middleware.store import errors as errors_repo
from middleware.sync.campaigns import (
    MEMBER_FIELD,
    REASON_DELETED,
    REASON_NOT_SELECTED,
    Campaign,
    Choice,
    ListView,
    ViewQuery,
    campaign_fields,
    campaign_from_row,
    choose_campaigns,
    choose_list_views,
    in_campaign_scope,
    member_key,
    members_soql,
    segment_lists,
    stopped_message,
    view_query,
)
from middleware.sync.options import CampaignLists
from middleware.vendor_errors import RecordRejected

log = logging.getLogger(__name__)

CURSOR_CAMPAIGN_LISTS = "campaign_lists"
CURSOR_CHECKBOX_LISTS = "checkbox_lists"
REFRESH_AFTER = timedelta(minutes=15)
LIST_CAP_CODE = "list_cap"
LIST_ERROR_CODE = "campaign_list_failed"
VIEW_ERROR_CODE = "list_view_refused"
KINDS = {"campaigns": "Campaign", "list_views": "List View"}
# The entity a retried sync error of each kind is marked dirty as (the flush reads them again).
SOURCE_OBJECTS = {"Campaign": "Campaign", "List View": "ListView"}


@dataclass
class Prepared:
    """What :func:`prepare` learned: Campaigns newly maintained and newly frozen (their members
    need a sync: they may have come into the setup's scope, or left it)."""

    newly_maintained: list[str] = field(default_factory=list)
    newly_frozen: list[str] = field(default_factory=list)
    members: int = 0  # members the maintained Campaigns count (when they were read again)
    warnings: list[str] = field(default_factory=list)


def segmented(ctx: Context) -> bool:
    """Whether the setup has segmentation lists (Campaigns or checkboxes) to keep current."""
    return ctx.options.campaign_lists is not None or bool(ctx.options.checkbox_lists)


def prepare(ctx: Context, *, refresh: bool = False) -> Prepared:
    """Resolve the setup's segmentation lists onto ``ctx`` (module docstring)."""
    done = Prepared()
    if ctx.options.checkbox_lists:
        _prepare_checkbox_lists(ctx)
    if ctx.options.campaign_lists is not None:
        _prepare_campaign_lists(ctx, refresh, done)
    ctx.segments_prepared = True
    return done


def _prepare_checkbox_lists(ctx: Context) -> None:
    names = [entry.list for entry in ctx.options.checkbox_lists]
    with ctx.store.transaction() as session:
        raw = cursors.get_cursor(session, ctx.setup_id, CURSOR_CHECKBOX_LISTS)
    known: dict[str, str] = json.loads(raw) if raw else {}
    if any(name not in known for name in names):
        for name in names:
            if name not in known:
                known[name] = str(ctx.cc.get_or_create_list(name)["list_id"])
        with ctx.store.transaction() as session:
            cursors.set_cursor(session, ctx.setup_id, CURSOR_CHECKBOX_LISTS, json.dumps(known))
    ctx.checkbox_list_ids = {name: known[name] for name in names}


def load_registry(ctx: Context) -> dict[str, Any]:
    """The stored Campaign ↔ list registry: ``{"checked_at", "campaigns": {id: {...}}}``."""
    with ctx.store.transaction() as session:
        raw = cursors.get_cursor(session, ctx.setup_id, CURSOR_CAMPAIGN_LISTS)
    registry: dict[str, Any] = json.loads(raw) if raw else {}
    registry.setdefault("campaigns", {})
    return registry


def _apply(ctx: Context, registry: Mapping[str, Any]) -> None:
    """The registry onto ``ctx``: maintained lists, frozen ones (a held List View's list too:
    while it cannot be read nobody is added to or removed from it), List View queries."""
    entries: Mapping[str, Mapping[str, Any]] = registry["campaigns"]
    live = {sid: e for sid, e in entries.items() if e.get("maintained") and not e.get("held")}
    ctx.campaign_list_ids = {sid: e["list_id"] for sid, e in live.items() if e.get("list_id")}
    ctx.frozen_list_ids = frozenset(
        e["list_id"] for sid, e in entries.items() if sid not in live and e.get("list_id")
    )
    ctx.list_views = {
        sid: ViewQuery(*e["query"])
        for sid, e in live.items()
        if e.get("kind") == "List View" and e.get("query")
    }
    ctx.held_views = tuple(sorted(str(e.get("name")) for e in entries.values() if e.get("held")))


def _due(registry: Mapping[str, Any], now: datetime) -> bool:
    checked = registry.get("checked_at")
    if not checked:
        return True
    return now - datetime.fromisoformat(checked) >= REFRESH_AFTER


def _campaign_choice(ctx: Context, spec: CampaignLists, done: Prepared) -> Choice:
    """Salesforce's Campaigns (one query), chosen by :func:`choose_campaigns`."""
    described = {str(f.get("name")) for f in ctx.sf.describe("Campaign").get("fields") or ()}
    record_types = "RecordTypeId" in described
    select = campaign_fields(ctx.sf_object, record_types=record_types)
    rows = ctx.sf.query_iter(f"SELECT {', '.join(select)} FROM Campaign")
    choice = choose_campaigns(spec, [campaign_from_row(row, ctx.sf_object) for row in rows])
    if spec.record_type_labels and not record_types:
        done.warnings.append(
            "campaign_lists: record_type_labels is set but this org's Campaigns have no record "
            "types, so no Campaign qualifies"
        )
    return choice


def _list_view_choice(
    ctx: Context, spec: CampaignLists, entries: dict[str, dict[str, Any]], errors: list[Any]
) -> Choice:
    """The object's List Views (one call), chosen by :func:`choose_list_views`; each chosen
    view's query read from its describe and tried once (``LIMIT 1``). A view the org refuses is
    a sync error naming it, and is held: see :func:`batch_segments`."""
    views = [
        ListView(str(v["id"]), str(v.get("label") or ""), str(v.get("developerName") or ""))
        for v in ctx.sf.list_views(ctx.sf_object)
    ]
    choice = choose_list_views(spec, views)
    for entry in entries.values():
        entry.pop("held", None)  # only a view still selected, and refused now, is held
    working: list[Campaign | ListView] = []
    for view in choice.maintained:
        entry = entries.setdefault(view.id, {"name": view.name})
        try:
            parsed = view_query(ctx.sf.list_view_query(ctx.sf_object, view.id))
            if parsed.sobject.casefold() != ctx.sf_object.casefold():
                raise ValueError(f"it lists {parsed.sobject} records, not {ctx.sf_object}")
            list(ctx.sf.query_iter(members_soql(parsed) + " LIMIT 1"))
        except (SalesforceError, ValueError) as exc:
            entry["held"] = True
            errors.append(_view_error(view, exc))
            continue
        entry.update(query=[parsed.sobject, parsed.scope, parsed.where], held=False)
        working.append(view)
    return Choice(tuple(working), choice.skipped, choice.warnings)


def _prepare_campaign_lists(ctx: Context, refresh: bool, done: Prepared) -> None:
    registry = load_registry(ctx)
    now = ctx.now()
    if not (refresh or _due(registry, now)):
        _apply(ctx, registry)
        return
    spec = ctx.options.campaign_lists
    assert spec is not None
    kind = KINDS[spec.source]
    entries: dict[str, dict[str, Any]] = registry["campaigns"]
    errors: list[dict[str, Any]] = []
    if spec.source == "list_views":
        choice = _list_view_choice(ctx, spec, entries, errors)
    else:
        choice = _campaign_choice(ctx, spec, done)
    done.warnings += choice.warnings
    maintained_ids = {c.id for c in choice.maintained}
    resolved: list[str] = []

    lists_by_name: dict[str, str] | None = None
    for source in choice.maintained:
        entry = entries.get(source.id)
        try:
            if entry and entry.get("list_id"):
                if entry.get("name") != source.name:
                    ctx.cc.rename_list(entry["list_id"], source.name)
                    log.info("setup %s: list of %s %s renamed", ctx.setup_id, kind, source.id)
            else:
                if lists_by_name is None:
                    lists_by_name = {
                        str(item.get("name", "")).casefold(): str(item["list_id"])
                        for item in ctx.cc.iter_lists()
                    }
                list_id = lists_by_name.get(source.name.casefold())
                if list_id is None:
                    list_id = _create_list(ctx, source.name, kind)
                    lists_by_name[source.name.casefold()] = list_id
                entry = entries.setdefault(source.id, {})
                entry["list_id"] = list_id
        except _ListRefused as exc:
            errors.append(_list_error(source.id, source.name, kind, exc.code, str(exc)))
            continue
        except RecordRejected as exc:
            # Constant Contact refused this list (a name it will not take...): this Campaign's
            # sync error, the others go on. Outages, quota and auth errors stop the run.
            errors.append(_list_error(source.id, source.name, kind, LIST_ERROR_CODE, str(exc)))
            continue
        if not entry.get("maintained"):
            done.newly_maintained.append(source.id)
        if isinstance(source, Campaign):
            done.members += source.members
        entry.update(name=source.name, kind=kind, maintained=True, reason=None)
        resolved.append(source.id)

    for sid, entry in entries.items():
        if sid in maintained_ids or entry.get("held"):
            continue
        if entry.get("kind", kind) != kind:
            reason = REASON_NOT_SELECTED  # the setup switched between Campaigns and List Views
        else:
            reason = choice.skipped.get(sid, REASON_DELETED)
        if entry.get("maintained"):
            name = str(entry.get("name") or sid)
            done.warnings.append(stopped_message(name, reason, entry.get("kind", kind)))
            if reason != REASON_DELETED:
                done.newly_frozen.append(sid)
        entry.update(maintained=False, reason=reason)
    registry["checked_at"] = now.isoformat()
    with ctx.store.transaction() as session:
        cursors.set_cursor(session, ctx.setup_id, CURSOR_CAMPAIGN_LISTS, json.dumps(registry))
        if errors:
            errors_repo.record_errors(session, ctx.setup_id, errors, run_id=ctx.run_id)
        if resolved:
            errors_repo.resolve_errors(session, ctx.setup_id, sf_ids=resolved)
    for err in errors:
        done.warnings.append(err["message"])
    _apply(ctx, registry)


class _ListRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _create_list(ctx: Context, name: str, kind: str) -> str:
    try:
        return str(ctx.cc.create_list(name, f"Salesforce {kind} (kept by the sync)")["list_id"])
    except Conflict:
        found = ctx.cc.find_list(name)
        if found is None:
            raise
        return str(found["list_id"])
    except Validation as exc:
        if "at most" in str(exc) and "lists" in str(exc):
            raise _ListRefused(
                LIST_CAP_CODE,
                f"{kind} {name!r} gets no list: the Constant Contact account already holds "
                "its 1,000 lists",
            ) from None
        raise


def _list_error(source_id: str, name: str, kind: str, code: str, message: str) -> dict[str, Any]:
    if code != LIST_CAP_CODE:
        message = f"{kind} {name!r}: its Constant Contact list could not be made: {message}"
    return {
        "direction": "sf_to_cc",
        "vendor": "constantcontact",
        "code": code,
        "message": message,
        "sf_id": source_id,
        "payload": {"sf_object": SOURCE_OBJECTS[kind], "name": name},
    }


def _view_error(view: Campaign | ListView, exc: Exception) -> dict[str, Any]:
    return {
        "direction": "sf_to_cc",
        "vendor": "salesforce",
        "code": getattr(exc, "code", None) or VIEW_ERROR_CODE,
        "message": (
            f"List View {view.name!r} cannot be read: {exc}; its records are left as they are "
            "until it can"
        ),
        "sf_id": view.id,
        "payload": {"sf_object": "ListView", "name": view.name},
    }


def member_column(ctx: Context) -> str:
    """The CampaignMember column naming the setup's records (a Person Account by its contact's
    AccountId)."""
    return "Contact.AccountId" if ctx.sf_object == "Account" else MEMBER_FIELD[ctx.sf_object]


def person_of(ctx: Context, row: Mapping[str, Any]) -> str | None:
    if ctx.sf_object == "Account":
        contact = row.get("Contact")
        value = contact.get("AccountId") if isinstance(contact, Mapping) else None
    else:
        value = row.get(MEMBER_FIELD[ctx.sf_object])
    return str(value) if value else None


def members_of(ctx: Context, campaign_ids: Sequence[str]) -> list[str]:
    """The setup's record ids that are members of these Campaigns (or in these List Views: a
    view no longer maintained has no query on ``ctx``, and its members are found by the next
    Full Sync)."""
    if not campaign_ids:
        return []
    if ctx.options.campaign_lists is not None and not ctx.options.campaign_lists.from_campaigns:
        found = (
            str(row["Id"])
            for cid in campaign_ids
            if (view := ctx.list_views.get(cid)) is not None
            for row in ctx.sf.query_iter(members_soql(view))
        )
        return list(dict.fromkeys(found))
    column = member_column(ctx)
    member = MEMBER_FIELD[ctx.sf_object]
    prefix = f"SELECT {column} FROM CampaignMember WHERE {member} != null AND CampaignId"
    people = (person_of(ctx, row) for row in ctx.sf.query_in(prefix, list(campaign_ids)))
    return list(dict.fromkeys(p for p in people if p))


def people_of_members(ctx: Context, member_ids: Sequence[str]) -> list[str]:
    """The setup's record ids named by these CampaignMembers, deleted ones included (queryAll:
    a member removed from a Campaign must leave its list)."""
    if not member_ids:
        return []
    column = member_column(ctx)
    result = ctx.sf.query_by_ids("CampaignMember", [column], member_ids, include_deleted=True)
    people = (person_of(ctx, row) for row in result.records)
    return list(dict.fromkeys(p for p in people if p))


def members_changed_since(ctx: Context, since: datetime) -> list[str]:
    """The setup's record ids whose CampaignMembers were added, changed or removed since
    ``since`` (queryAll by SystemModstamp: a removed member comes back with IsDeleted)."""
    member = MEMBER_FIELD[ctx.sf_object]
    soql = (
        f"SELECT {member_column(ctx)} FROM CampaignMember WHERE {member} != null"
        f" AND SystemModstamp >= {since.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"
    )
    people = (person_of(ctx, row) for row in ctx.sf.query_iter(soql, include_deleted=True))
    return list(dict.fromkeys(p for p in people if p))


def _view_memberships(ctx: Context, ids: Sequence[str]) -> dict[str, set[str]]:
    """Maintained List View ids per record id: each view's own query, narrowed to ``ids``."""
    out: dict[str, set[str]] = {}
    for view_id, view in sorted(ctx.list_views.items()):
        for row in ctx.sf.query_in(members_soql(view, "Id"), list(ids)):
            out.setdefault(str(row["Id"]), set()).add(view_id)
    return out


def memberships(ctx: Context, records: Iterable[Mapping[str, Any]]) -> dict[str, set[str]]:
    """Campaign (or List View) ids per record id, among those the setup maintains."""
    if ctx.options.campaign_lists is not None and not ctx.options.campaign_lists.from_campaigns:
        return _view_memberships(ctx, [str(r["Id"]) for r in records])
    keys = {
        key: str(record["Id"])
        for record in records
        if (key := member_key(ctx.options, record)) is not None
    }
    out: dict[str, set[str]] = {}
    if not keys or not ctx.campaign_list_ids:
        return out
    member = MEMBER_FIELD[ctx.sf_object]
    prefix = f"SELECT CampaignId, {member} FROM CampaignMember WHERE {member}"
    for row in ctx.sf.query_in(prefix, list(keys)):
        campaign = str(row.get("CampaignId") or "")
        key = str(row.get(member) or "")
        if campaign in ctx.campaign_list_ids and key in keys:
            out.setdefault(keys[key], set()).add(campaign)
    return out


# Above this many maintained Campaigns' members (the Campaigns' own counts), the Full Sync reads
# CampaignMembers through Bulk 2.0 instead of the paged REST query (2,000 rows a call).
BULK_MEMBERS_FROM = 20_000
# Up to this many maintained Campaigns are named in the query; more, and every member is read.
CAMPAIGNS_IN_SOQL = 200


def all_memberships(ctx: Context, expected: int) -> dict[str, tuple[str, ...]]:
    """Every maintained Campaign's members: member key (:func:`member_key`) → Campaign ids
    (with List Views: record id → view ids, each view's query read whole). ``expected``: the
    members the Campaigns count, which picks REST or Bulk 2.0."""
    if not ctx.campaign_list_ids:
        return {}
    if ctx.list_views:
        views: dict[str, list[str]] = {}
        for view_id, view in sorted(ctx.list_views.items()):
            for row in ctx.sf.query_iter(members_soql(view)):
                views.setdefault(str(row["Id"]), []).append(view_id)
        return {key: tuple(ids) for key, ids in views.items()}
    member = MEMBER_FIELD[ctx.sf_object]
    soql = f"SELECT CampaignId, {member} FROM CampaignMember WHERE {member} != null"
    if len(ctx.campaign_list_ids) <= CAMPAIGNS_IN_SOQL:
        soql += f" AND CampaignId IN ({soql_in(sorted(ctx.campaign_list_ids))})"
    rows = ctx.sf.bulk_query(soql) if expected >= BULK_MEMBERS_FROM else ctx.sf.query_iter(soql)
    joined: dict[str, list[str]] = {}
    for row in rows:
        campaign = str(row.get("CampaignId") or "")
        key = str(row.get(member) or "")
        if key and campaign in ctx.campaign_list_ids:
            joined.setdefault(key, []).append(campaign)
    return {key: tuple(sorted(set(ids))) for key, ids in joined.items()}


@dataclass
class BatchSegments:
    """One batch's segmentation: each record's lists, who is outside the Campaigns (or List
    Views), and who is held: outside every view that can be read while a selected one cannot,
    so neither pushed nor taken off a list until it can."""

    lists: dict[str, tuple[str, ...]] | None
    outside: set[str]
    held: set[str] = field(default_factory=set)


def batch_segments(ctx: Context, records: Sequence[Mapping[str, Any]]) -> BatchSegments:
    """Each live record's segmentation lists, and — with ``campaign_lists`` — the records that
    are members of no maintained Campaign (outside the setup's scope)."""
    if not segmented(ctx):
        return BatchSegments(None, set())
    if not ctx.segments_prepared:
        # Unprepared, every record would look outside the Campaigns and leave its lists.
        raise RuntimeError("segments.prepare(ctx) must run before a batch is planned")
    live = [r for r in records if not r.get("IsDeleted")]
    joined = memberships(ctx, live) if ctx.options.campaign_lists is not None else {}
    lists: dict[str, tuple[str, ...]] = {}
    outside: set[str] = set()
    held: set[str] = set()
    for record in live:
        sf_id = str(record["Id"])
        member_of = joined.get(sf_id, set())
        if not in_campaign_scope(ctx.options, member_of, ctx.campaign_list_ids):
            if ctx.held_views:
                held.add(sf_id)
            else:
                outside.add(sf_id)
            continue
        lists[sf_id] = segment_lists(
            ctx.options,
            record,
            memberships=member_of,
            campaign_list_ids=ctx.campaign_list_ids,
            checkbox_list_ids=ctx.checkbox_list_ids,
        )
    return BatchSegments(lists, outside, held)
