"""Campaign lists (seed guide: "Use a Campaign or List View to Sync ... Members"), purely.

With ``campaign_lists`` on, a setup keeps one Constant Contact list per Salesforce Campaign it
*maintains*, named exactly like the Campaign and linked by the Campaign's id (a rename renames the
list). Which Campaigns it maintains (:func:`choose_campaigns`):

1. ``excluded`` names always lose;
2. ``selected`` names limit the choice (empty: every Campaign);
3. ``record_type_labels`` keep only Campaigns of those record types (empty: any);
4. the Campaign must be active (``IsActive``) and have members of the setup's object type.

A Campaign that stops qualifying keeps its list — never deleted — but is no longer maintained:
its list is *frozen* (nobody is added or removed by this setup any more), and the run says so.

A record is in the setup's scope only while it is a member of a maintained Campaign (seed: "Only
those in the List View or the Campaign that was checked will be synced"); its segmentation lists
(:func:`segment_lists`) are its maintained Campaigns' lists plus its checkbox lists. A record
that leaves every maintained Campaign leaves this setup's lists; it is never unsubscribed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from middleware.sync.mapping import apply_namespace, get_field
from middleware.sync.options import CampaignLists, SetupOptions

# The CampaignMember field naming a member of each object type, and the record's field that
# holds the same id (a Person Account joins Campaigns through its PersonContactId).
MEMBER_FIELD = {"Contact": "ContactId", "Lead": "LeadId", "Account": "ContactId"}
MEMBER_KEY = {"Contact": "Id", "Lead": "Id", "Account": "PersonContactId"}
# Campaign fields counting members of each object type (Person Accounts are counted as Contacts).
MEMBER_COUNT_FIELD = {
    "Contact": "NumberOfContacts",
    "Lead": "NumberOfLeads",
    "Account": "NumberOfContacts",
}

REASON_INACTIVE = "inactive"
REASON_NO_MEMBERS = "no members"
REASON_NOT_SELECTED = "not selected"
REASON_EXCLUDED = "excluded"
REASON_RECORD_TYPE = "record type not chosen"
REASON_DELETED = "deleted"

# What each reason says on the run, for a Campaign whose list the setup stops maintaining.
_STOPPED = {
    REASON_INACTIVE: "is no longer active",
    REASON_NO_MEMBERS: "has no members left",
    REASON_NOT_SELECTED: "is no longer selected",
    REASON_EXCLUDED: "is excluded",
    REASON_RECORD_TYPE: "is not of a chosen record type",
    REASON_DELETED: "was deleted",
}


@dataclass(frozen=True, slots=True)
class Campaign:
    """A Salesforce Campaign as the setup sees it."""

    id: str
    name: str
    active: bool
    record_type: str | None  # the record type's label, None without record types
    members: int  # members of the setup's object type


@dataclass(frozen=True, slots=True)
class ListView:
    """A Salesforce List View of the setup's object (``source: "list_views"``)."""

    id: str
    name: str  # the view's label
    developer_name: str


@dataclass(frozen=True, slots=True)
class Choice:
    """Which Campaigns (or List Views) a setup maintains, why the others are not, and what to
    tell the user."""

    maintained: tuple[Campaign | ListView, ...]
    skipped: Mapping[str, str]  # campaign id → REASON_*
    warnings: tuple[str, ...]


def campaign_from_row(row: Mapping[str, Any], object_type: str) -> Campaign:
    """A Campaign from a SOQL row of :func:`campaign_fields`."""
    record_type = row.get("RecordType")
    label = record_type.get("Name") if isinstance(record_type, Mapping) else None
    count = row.get(MEMBER_COUNT_FIELD[object_type])
    return Campaign(
        id=str(row["Id"]),
        name=str(row.get("Name") or ""),
        active=row.get("IsActive") in (True, "true", "True"),
        record_type=str(label) if label else None,
        members=int(float(count)) if count not in (None, "") else 0,
    )


def campaign_fields(object_type: str, *, record_types: bool) -> list[str]:
    """The Campaign fields :func:`campaign_from_row` reads (``RecordType.Name`` only in an org
    whose Campaigns have record types: without them the field does not exist)."""
    names = ["Id", "Name", "IsActive", MEMBER_COUNT_FIELD[object_type]]
    return [*names, "RecordType.Name"] if record_types else names


def choose_campaigns(spec: CampaignLists, campaigns: Iterable[Campaign]) -> Choice:
    """The Campaigns whose lists the setup maintains (module docstring for the order)."""
    excluded = {fold_name(n) for n in spec.excluded}
    selected = {fold_name(n) for n in spec.selected}
    types = {fold_name(n) for n in spec.record_type_labels}
    kept: list[Campaign] = []
    skipped: dict[str, str] = {}
    seen_names: set[str] = set()
    for campaign in sorted(campaigns, key=lambda c: (c.name, c.id)):
        name = fold_name(campaign.name)
        seen_names.add(name)
        if name in excluded:
            skipped[campaign.id] = REASON_EXCLUDED
        elif selected and name not in selected:
            skipped[campaign.id] = REASON_NOT_SELECTED
        elif types and fold_name(campaign.record_type or "") not in types:
            skipped[campaign.id] = REASON_RECORD_TYPE
        elif not campaign.active:
            skipped[campaign.id] = REASON_INACTIVE
        elif campaign.members <= 0:
            skipped[campaign.id] = REASON_NO_MEMBERS
        else:
            kept.append(campaign)
    return Choice(tuple(kept), skipped, tuple(missing_selected(spec, seen_names, "Campaign")))


def choose_list_views(spec: CampaignLists, views: Iterable[ListView]) -> Choice:
    """The List Views whose lists the setup maintains: those named in ``selected`` (by label or
    API name, ignoring case), unless ``excluded``."""
    excluded = {fold_name(n) for n in spec.excluded}
    selected = {fold_name(n) for n in spec.selected}
    kept: list[Campaign | ListView] = []
    skipped: dict[str, str] = {}
    seen: set[str] = set()
    for view in sorted(views, key=lambda v: (v.name, v.id)):
        names = {fold_name(view.name), fold_name(view.developer_name)}
        seen |= names
        if names & excluded:
            skipped[view.id] = REASON_EXCLUDED
        elif not names & selected:
            skipped[view.id] = REASON_NOT_SELECTED
        else:
            kept.append(view)
    return Choice(tuple(kept), skipped, tuple(missing_selected(spec, seen, "List View")))


def missing_selected(spec: CampaignLists, known: Iterable[str], kind: str) -> list[str]:
    """A warning for each ``selected`` name none of ``known`` has (compared as names are: case
    and repeated blanks ignored): it may be made later, so never an error."""
    folded = {fold_name(name) for name in known}
    return [
        f"campaign_lists: no {kind} named {name!r} in Salesforce"
        for name in spec.selected
        if fold_name(name) not in folded
    ]


def stopped_message(name: str, reason: str, kind: str = "Campaign") -> str:
    """The run's note for a Campaign (or List View) whose list the setup stops maintaining."""
    return (
        f"{kind} {name!r} {_STOPPED.get(reason, reason)}: its Constant Contact list is kept "
        "but no longer maintained"
    )


def fold_name(name: str) -> str:
    """A name as names are compared: case and repeated blanks ignored."""
    return " ".join(name.split()).casefold()


def member_key(setup: SetupOptions, record: Mapping[str, Any]) -> str | None:
    """The id the record's CampaignMembers name it by (a Person Account's PersonContactId)."""
    value = record.get(MEMBER_KEY[setup.object_type])
    return str(value) if value else None


def checkbox_lists_of(
    setup: SetupOptions, record: Mapping[str, Any], list_ids: Mapping[str, str]
) -> list[str]:
    """The checkbox lists (ids; ``list_ids``: name → id) whose checkbox the record has set."""
    ns = setup.namespace_prefix
    out: list[str] = []
    for entry in setup.checkbox_lists:
        value = get_field(record, apply_namespace(entry.field, ns))
        if (value is True or str(value).strip().lower() == "true") and entry.list in list_ids:
            out.append(list_ids[entry.list])
    return out


def segment_lists(
    setup: SetupOptions,
    record: Mapping[str, Any],
    *,
    memberships: Collection[str],
    campaign_list_ids: Mapping[str, str],
    checkbox_list_ids: Mapping[str, str],
) -> tuple[str, ...]:
    """Every segmentation list the record belongs on besides the main list: its maintained
    Campaigns' lists (``memberships``: its Campaign ids; ``campaign_list_ids``: maintained
    Campaign id → list id) and its checkbox lists."""
    lists = [campaign_list_ids[c] for c in sorted(memberships) if c in campaign_list_ids]
    lists += checkbox_lists_of(setup, record, checkbox_list_ids)
    return tuple(dict.fromkeys(lists))


def in_campaign_scope(
    setup: SetupOptions, memberships: Collection[str], campaign_list_ids: Mapping[str, str]
) -> bool:
    """Whether a record is in the setup's scope as far as Campaigns go: always without
    ``campaign_lists``, otherwise only while a member of a maintained Campaign."""
    if setup.campaign_lists is None:
        return True
    return any(c in campaign_list_ids for c in memberships)


# --- List View queries -----------------------------------------------------------------------

_CLAUSES = ("WHERE", "ORDER BY", "LIMIT", "OFFSET", "FOR ", "UPDATE ", "WITH ", "GROUP BY")


@dataclass(frozen=True, slots=True)
class ViewQuery:
    """The parts of a List View's SOQL (describe's ``query``) a membership query keeps."""

    sobject: str
    scope: str  # "USING SCOPE ..." or ""
    where: str  # the condition, or "" for a view of every record


def _top_level(query: str) -> list[tuple[int, str]]:
    """Positions of the top-level clause keywords (outside quotes and parentheses)."""
    found: list[tuple[int, str]] = []
    depth = 0
    quoted = False
    i = 0
    upper = query.upper()
    while i < len(query):
        ch = query[i]
        if quoted:
            if ch == "\\":
                i += 2
                continue
            if ch == "'":
                quoted = False
        elif ch == "'":
            quoted = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and (i == 0 or query[i - 1].isspace()):
            for word in ("FROM", *_CLAUSES):
                if upper.startswith(word, i) and (
                    word.endswith(" ")
                    or i + len(word) == len(query)
                    or query[i + len(word)].isspace()
                ):
                    found.append((i, word.strip()))
                    break
        i += 1
    return found


def view_query(query: str) -> ViewQuery:
    """Split a List View's SOQL into its object, scope and WHERE condition.

    Raises ``ValueError`` for a query this cannot read (no top-level FROM).
    """
    marks = _top_level(query)
    starts = [i for i, word in marks if word == "FROM"]
    if not starts:
        raise ValueError("the List View's query has no FROM clause")
    start = starts[0]
    after = [(i, w) for i, w in marks if i > start and w != "FROM"]
    end_from = after[0][0] if after else len(query)
    from_part = query[start + len("FROM") : end_from].split()
    if not from_part:
        raise ValueError("the List View's query names no object")
    sobject = from_part[0]
    scope = " ".join(from_part[1:])
    where = ""
    for n, (i, word) in enumerate(after):
        if word == "WHERE":
            stop = after[n + 1][0] if n + 1 < len(after) else len(query)
            where = query[i + len("WHERE") : stop].strip()
    return ViewQuery(sobject, scope, where)


def members_soql(view: ViewQuery, id_condition: str = "") -> str:
    """``SELECT Id`` of the view's records, optionally narrowed (``Id IN (...)`` of a batch)."""
    conditions = [f"({view.where})"] if view.where else []
    if id_condition:
        conditions.append(id_condition)
    soql = f"SELECT Id FROM {view.sobject}"
    if view.scope:
        soql += f" {view.scope}"
    if conditions:
        soql += " WHERE " + " AND ".join(conditions)
    return soql
