"""SF → CC segmentation lists: Campaign lists and checkbox lists, resolved and kept current.

The rules are :mod:`middleware.sync.campaigns`' (which Campaigns a setup maintains, which lists a
record belongs on); this module does their I/O:

- :func:`prepare` (once per run): the checkbox lists' ids (created when missing), and — with
  ``campaign_lists`` — the Campaign lists: Salesforce's Campaigns read (one query), the choice
  made, each maintained Campaign's list found by name or created (all of the account's lists in
  one call), renamed when its Campaign was, and the registry stored (a cursor: Campaign id → list
  id, name, maintained or why not). A Campaign that stops qualifying keeps its list, frozen, and
  the run says so; one whose list would pass the account's 1,000 lists is a sync error naming it.
  The Campaigns are read again when a Campaign change event arrived, on Sync Now and the Full
  Sync, and at least every :data:`REFRESH_AFTER`.
- :func:`members_of` / :func:`people_of_members`: Campaign members as the setup's record ids
  (CampaignMember change events name members, not people).
- :func:`batch_segments`: for a batch of re-read records, each one's segmentation lists and the
  ids outside the setup's Campaigns (one CampaignMember query per batch).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from middleware.constantcontact.errors import CCError, Conflict, Validation
from middleware.context import Context
from middleware.salesforce.client import soql_string
from middleware.store import cursors
from middleware.store import errors as errors_repo
from middleware.sync.campaigns import (
    MEMBER_FIELD,
    REASON_DELETED,
    campaign_fields,
    campaign_from_row,
    choose_campaigns,
    in_campaign_scope,
    member_key,
    segment_lists,
    stopped_message,
)

log = logging.getLogger(__name__)

CURSOR_CAMPAIGN_LISTS = "campaign_lists"
CURSOR_CHECKBOX_LISTS = "checkbox_lists"
REFRESH_AFTER = timedelta(minutes=15)
LIST_CAP_CODE = "list_cap"
LIST_ERROR_CODE = "campaign_list_failed"


@dataclass
class Prepared:
    """What :func:`prepare` learned: Campaigns newly maintained and newly frozen (their members
    need a sync: they may have come into the setup's scope, or left it)."""

    newly_maintained: list[str] = field(default_factory=list)
    newly_frozen: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def segmented(ctx: Context) -> bool:
    """Whether the setup has segmentation lists (Campaigns or checkboxes) to keep current."""
    return ctx.options.campaign_lists is not None or bool(ctx.options.checkbox_lists)


def prepare(ctx: Context, *, refresh: bool = False) -> Prepared:
    """Resolve the setup's segmentation lists onto ``ctx`` (module docstring)."""
    done = Prepared()
    ctx.segments_prepared = True
    if ctx.options.checkbox_lists:
        _prepare_checkbox_lists(ctx)
    if ctx.options.campaign_lists is not None:
        _prepare_campaign_lists(ctx, refresh, done)
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
    entries: Mapping[str, Mapping[str, Any]] = registry["campaigns"]
    ctx.campaign_list_ids = {
        cid: e["list_id"] for cid, e in entries.items() if e.get("maintained") and e.get("list_id")
    }
    ctx.frozen_list_ids = frozenset(
        e["list_id"] for e in entries.values() if not e.get("maintained") and e.get("list_id")
    )


def _due(registry: Mapping[str, Any], now: datetime) -> bool:
    checked = registry.get("checked_at")
    if not checked:
        return True
    return now - datetime.fromisoformat(checked) >= REFRESH_AFTER


def _prepare_campaign_lists(ctx: Context, refresh: bool, done: Prepared) -> None:
    registry = load_registry(ctx)
    now = ctx.now()
    if not (refresh or _due(registry, now)):
        _apply(ctx, registry)
        return
    spec = ctx.options.campaign_lists
    assert spec is not None
    described = {str(f.get("name")) for f in ctx.sf.describe("Campaign").get("fields") or ()}
    record_types = "RecordTypeId" in described
    select = campaign_fields(ctx.sf_object, record_types=record_types)
    rows = ctx.sf.query_iter(f"SELECT {', '.join(select)} FROM Campaign")
    campaigns = [campaign_from_row(row, ctx.sf_object) for row in rows]
    choice = choose_campaigns(spec, campaigns)
    done.warnings += choice.warnings
    if spec.record_type_labels and not record_types:
        done.warnings.append(
            "campaign_lists: record_type_labels is set but this org's Campaigns have no record "
            "types, so no Campaign qualifies"
        )
    entries: dict[str, dict[str, Any]] = registry["campaigns"]
    maintained_ids = {c.id for c in choice.maintained}
    errors: list[dict[str, Any]] = []
    resolved: list[str] = []

    lists_by_name: dict[str, str] | None = None
    for campaign in choice.maintained:
        entry = entries.get(campaign.id)
        try:
            if entry and entry.get("list_id"):
                if entry.get("name") != campaign.name:
                    ctx.cc.rename_list(entry["list_id"], campaign.name)
                    log.info("setup %s: list of Campaign %s renamed", ctx.setup_id, campaign.id)
            else:
                if lists_by_name is None:
                    lists_by_name = {
                        str(item.get("name", "")).casefold(): str(item["list_id"])
                        for item in ctx.cc.iter_lists()
                    }
                list_id = lists_by_name.get(campaign.name.casefold())
                if list_id is None:
                    list_id = _create_list(ctx, campaign.name)
                    lists_by_name[campaign.name.casefold()] = list_id
                entry = entries[campaign.id] = {"list_id": list_id}
        except _ListRefused as exc:
            errors.append(_list_error(campaign.id, campaign.name, exc.code, str(exc)))
            continue
        except CCError as exc:
            errors.append(_list_error(campaign.id, campaign.name, LIST_ERROR_CODE, str(exc)))
            continue
        if not entry.get("maintained"):
            done.newly_maintained.append(campaign.id)
        entry.update(name=campaign.name, maintained=True, reason=None, members=campaign.members)
        resolved.append(campaign.id)

    for cid, entry in entries.items():
        if cid in maintained_ids:
            continue
        reason = choice.skipped.get(cid, REASON_DELETED)
        if entry.get("maintained"):
            done.warnings.append(stopped_message(str(entry.get("name") or cid), reason))
            if reason != REASON_DELETED:
                done.newly_frozen.append(cid)
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


def _create_list(ctx: Context, name: str) -> str:
    try:
        return str(ctx.cc.create_list(name, "Salesforce Campaign (kept by the sync)")["list_id"])
    except Conflict:
        found = ctx.cc.find_list(name)
        if found is None:
            raise
        return str(found["list_id"])
    except Validation as exc:
        if "at most" in str(exc) and "lists" in str(exc):
            raise _ListRefused(
                LIST_CAP_CODE,
                f"Campaign {name!r} gets no list: the Constant Contact account already holds "
                "its 1,000 lists",
            ) from None
        raise


def _list_error(campaign_id: str, name: str, code: str, message: str) -> dict[str, Any]:
    if code != LIST_CAP_CODE:
        message = f"Campaign {name!r}: its Constant Contact list could not be made: {message}"
    return {
        "direction": "sf_to_cc",
        "vendor": "constantcontact",
        "code": code,
        "message": message,
        "sf_id": campaign_id,
        "payload": {"sf_object": "Campaign", "campaign": name},
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
    """The setup's record ids that are members of these Campaigns."""
    if not campaign_ids:
        return []
    column = member_column(ctx)
    member = MEMBER_FIELD[ctx.sf_object]
    prefix = f"SELECT {column} FROM CampaignMember WHERE {member} != null AND CampaignId"
    out: list[str] = []
    for chunk in ctx.sf.id_chunks(prefix, list(campaign_ids)):
        quoted = ", ".join(soql_string(i) for i in chunk)
        for row in ctx.sf.query_iter(f"{prefix} IN ({quoted})"):
            person = person_of(ctx, row)
            if person:
                out.append(person)
    return list(dict.fromkeys(out))


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


def memberships(ctx: Context, records: Iterable[Mapping[str, Any]]) -> dict[str, set[str]]:
    """Campaign ids per record id, among the Campaigns the setup maintains."""
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
    for chunk in ctx.sf.id_chunks(prefix, list(keys)):
        quoted = ", ".join(soql_string(i) for i in chunk)
        for row in ctx.sf.query_iter(f"{prefix} IN ({quoted})"):
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
    """Every maintained Campaign's members: member key (:func:`member_key`) → Campaign ids.
    ``expected``: the members the Campaigns count, which picks REST or Bulk 2.0."""
    if not ctx.campaign_list_ids:
        return {}
    member = MEMBER_FIELD[ctx.sf_object]
    soql = f"SELECT CampaignId, {member} FROM CampaignMember WHERE {member} != null"
    if len(ctx.campaign_list_ids) <= CAMPAIGNS_IN_SOQL:
        named = ", ".join(soql_string(c) for c in sorted(ctx.campaign_list_ids))
        soql += f" AND CampaignId IN ({named})"
    rows = ctx.sf.bulk_query(soql) if expected >= BULK_MEMBERS_FROM else ctx.sf.query_iter(soql)
    joined: dict[str, list[str]] = {}
    for row in rows:
        campaign = str(row.get("CampaignId") or "")
        key = str(row.get(member) or "")
        if key and campaign in ctx.campaign_list_ids:
            joined.setdefault(key, []).append(campaign)
    return {key: tuple(sorted(set(ids))) for key, ids in joined.items()}


def maintained_members(ctx: Context) -> int:
    """The members of the setup's object type its maintained Campaigns count (stored)."""
    registry = load_registry(ctx)
    return sum(
        int(entry.get("members") or 0)
        for cid, entry in registry["campaigns"].items()
        if cid in ctx.campaign_list_ids
    )


@dataclass
class BatchSegments:
    """One batch's segmentation: each record's lists, and who is outside the Campaigns."""

    lists: dict[str, tuple[str, ...]] | None
    outside: set[str]


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
    for record in live:
        sf_id = str(record["Id"])
        member_of = joined.get(sf_id, set())
        if not in_campaign_scope(ctx.options, member_of, ctx.campaign_list_ids):
            outside.add(sf_id)
            continue
        lists[sf_id] = segment_lists(
            ctx.options,
            record,
            memberships=member_of,
            campaign_list_ids=ctx.campaign_list_ids,
            checkbox_list_ids=ctx.checkbox_list_ids,
        )
    return BatchSegments(lists, outside)
