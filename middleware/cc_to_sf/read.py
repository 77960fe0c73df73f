"""CC → SF, stage 1 (read): what Constant Contact changed since the cursors, and what to retry.

- the setup's source (``cc_source``: the main list, all active contacts, or the main list plus
  named lists) changed since its cursor (``updated_after``), or all of it the first time;
- opt-outs, which ``updated_after`` does not see (api-notes §3.1): ``optout_after`` since its
  cursor, or the whole unsubscribed population (the scan);
- contacts to look at again: opt-outs someone cleared in Salesforce, and sync errors someone
  asked to retry;
- and what the rules need to read them: the org's describe (cached a day), the source's list
  ids, the custom fields' names.

Cursors (:class:`Mark`) are Constant Contact's own timestamps, so our clock's skew does not
matter; each read starts ``OVERLAP`` earlier, and remembers what it handled inside the overlap.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from middleware.constantcontact.client import LISTS_FILTER_MAX
from middleware.constantcontact.errors import NotFound
from middleware.context import Context, main_list_id
from middleware.salesforce.client import soql_datetime
from middleware.store import cursors
from middleware.store.models import Link, SyncError
from middleware.sync import cc_to_sf as rules
from middleware.sync.cc_to_sf import CcSubscriber, OrgInfo

log = logging.getLogger(__name__)

CURSOR_UPDATED = "cc_poll_updated_after"
CURSOR_OPTOUT = "cc_poll_optout_after"
CURSOR_SCAN = "cc_poll_unsubscribed_scan"
CURSOR_LAST_POLL = "cc_poll_last"
CURSOR_ORG = "sf_org_profile"
CURSOR_CUSTOM_FIELD_NAMES = "cc_custom_field_names"
CURSOR_SOURCE_LISTS = "cc_source_lists"

OVERLAP = timedelta(minutes=5)
ORG_PROFILE_TTL = timedelta(hours=24)
RETRY_BATCH = 100
MAX_SEEN = 10_000  # contacts a cursor remembers inside its overlap window
INCLUDE = ("custom_fields", "phone_numbers", "street_addresses", "list_memberships")


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def get_cursor(ctx: Context, name: str) -> str | None:
    with ctx.store.transaction() as session:
        return cursors.get_cursor(session, ctx.setup_id, name)


def set_cursors(ctx: Context, values: Mapping[str, str | None]) -> None:
    with ctx.store.transaction() as session:
        for name, value in values.items():
            cursors.set_cursor(session, ctx.setup_id, name, value)


def org_info(ctx: Context) -> OrgInfo:
    """What the org's describe says (picklists, Person Accounts, NPSP), cached for a day."""
    cached = json.loads(get_cursor(ctx, CURSOR_ORG) or "{}")
    checked = parse_time(cached.get("checked_at"))
    if checked is not None and ctx.now() - checked < ORG_PROFILE_TTL:
        return OrgInfo(**cached["org"])
    # One describe tells all three: Contact.IsPersonAccount only exists in Person Account orgs.
    contact = {f["name"] for f in ctx.sf.describe("Contact").get("fields", [])}
    info = OrgInfo(
        state_country_picklists="MailingStateCode" in contact,
        person_accounts="IsPersonAccount" in contact,
        npsp=set(rules.NPSP_EMAIL_FIELDS) <= contact,
    )
    org = {
        "state_country_picklists": info.state_country_picklists,
        "person_accounts": info.person_accounts,
        "npsp": info.npsp,
    }
    set_cursors(ctx, {CURSOR_ORG: json.dumps({"checked_at": ctx.now().isoformat(), "org": org})})
    return info


def source_list_ids(ctx: Context) -> list[str] | None:
    """List ids the source reads, or None for all active contacts.

    ``{lists: [...]}`` reads the main list *and* the named lists: the seed's "Sync Contacts from
    Specific Constant Contact List(s)" brings those back "aside from your specified Main List".
    """
    main = main_list_id(ctx)
    if ctx.options.cc_source == "all_active":
        return None
    names = ctx.options.source_lists
    if names is None:
        return [main]
    cached = json.loads(get_cursor(ctx, CURSOR_SOURCE_LISTS) or "{}")
    if any(n not in cached for n in names):
        cached = {}
        for name in names:
            found = ctx.cc.find_list(name)
            if found is None:
                # A mistyped name must not create an empty list in the account: say so instead.
                log.warning("setup %s: cc_source list %r does not exist", ctx.setup_id, name)
                continue
            cached[name] = str(found["list_id"])
        if cached:
            set_cursors(ctx, {CURSOR_SOURCE_LISTS: json.dumps(cached)})
    return list(dict.fromkeys([main, *(cached[n] for n in names if n in cached)]))


def custom_field_names(ctx: Context) -> dict[str, str]:
    """CC custom field id → name, for the ``cf:`` entries ``field_map`` reads from CC."""
    wanted = set(ctx.options.custom_fields_from_cc)
    if not wanted:
        return {}
    cached: dict[str, str] = json.loads(get_cursor(ctx, CURSOR_CUSTOM_FIELD_NAMES) or "{}")
    if not wanted <= set(cached.values()):
        cached = {}
        for item in ctx.cc.iter_custom_fields():
            cached[str(item["custom_field_id"])] = str(item.get("name") or item.get("label"))
        set_cursors(ctx, {CURSOR_CUSTOM_FIELD_NAMES: json.dumps(cached)})
    return cached


@dataclass
class Mark:
    """A read's cursor: Constant Contact's newest timestamp seen, and what the overlap re-reads.

    ``seen`` holds the contacts (id → timestamp) already handled inside the overlap window, so
    the next read, which starts ``OVERLAP`` before ``at``, passes them over instead of looking
    them up in Salesforce again: an idle poll costs no Salesforce call.
    """

    at: datetime | None = None
    seen: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, raw: str | None) -> Mark:
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
        except ValueError:
            return cls(parse_time(raw))  # a bare timestamp
        return cls(parse_time(data.get("at")), dict(data.get("seen") or {}))

    @property
    def since(self) -> datetime | None:
        return self.at - OVERLAP if self.at is not None else None

    def fresh(self, contact: CcSubscriber, stamp: str | None) -> bool:
        return not stamp or self.seen.get(contact.contact_id) != stamp

    def observe(self, contact: CcSubscriber, stamp: str | None) -> None:
        when = parse_time(stamp)
        if when is None or not contact.contact_id:
            return
        self.at = _later(self.at, when)
        self.seen[contact.contact_id] = str(stamp)
        if len(self.seen) > MAX_SEEN:
            self._prune()

    def _prune(self) -> None:
        # A first read of a large account can stamp thousands of contacts within one overlap
        # window: keep the newest, so memory and the stored cursor stay small. A contact dropped
        # here is merely looked at again by the next read (the store knows it if it was linked).
        assert self.at is not None
        floor = self.at - OVERLAP
        kept = {k: v for k, v in self.seen.items() if (parse_time(v) or floor) >= floor}
        if len(kept) > MAX_SEEN:
            newest = sorted(kept.items(), key=lambda kv: kv[1], reverse=True)[: MAX_SEEN // 2]
            kept = dict(newest)
        self.seen = kept

    def dump(self) -> str | None:
        if self.at is None:
            return None
        self._prune()
        return json.dumps({"at": self.at.isoformat(), "seen": self.seen}, sort_keys=True)


def read_source(
    ctx: Context, list_ids: list[str] | None, since: datetime | None, names: Mapping[str, str]
) -> Iterator[CcSubscriber]:
    filters: dict[str, Any] = {"include": list(INCLUDE)}
    if since is not None:
        filters["updated_after"] = since
    if list_ids is None:
        groups: list[list[str] | None] = [None]
        filters["status"] = "active"
    else:
        groups = [
            list_ids[i : i + LISTS_FILTER_MAX] for i in range(0, len(list_ids), LISTS_FILTER_MAX)
        ]
    seen: set[str] = set()
    for group in groups:
        query = dict(filters)
        if group is not None:
            query["lists"] = group
        for resource in ctx.cc.iter_contacts(**query):
            contact = rules.subscriber_from_cc(resource, names)
            if contact.contact_id not in seen:
                seen.add(contact.contact_id)
                yield contact


def read_optouts(ctx: Context, since: datetime | None) -> Iterator[CcSubscriber]:
    filters: dict[str, Any] = {"status": "unsubscribed"}
    if since is not None:
        filters["optout_after"] = since
    for resource in ctx.cc.iter_contacts(**filters):
        yield rules.subscriber_from_cc(resource)


def cleared_opt_outs(
    ctx: Context, since: datetime | None, names: Mapping[str, str]
) -> list[CcSubscriber]:
    """Contacts to look at again because Salesforce cleared an opt-out that CC still holds.

    Only when some of the setup's links remember an unsubscribed contact: then one query for
    the setup's records not opted out and modified since the last poll (with the overlap),
    and a ``GET /contacts/{id}`` for each such record that is one of those links (at most
    ``RETRY_BATCH``). The batch then goes through the ordinary rules: a contact still
    unsubscribed sets the opt-out again on every record of its address (rule 2).
    """
    if since is None:
        return []
    with ctx.store.transaction() as session:
        flagged = {
            sf_id: contact_id
            for sf_id, contact_id in session.execute(
                select(Link.sf_id, Link.cc_contact_id).where(
                    Link.setup_id == ctx.setup_id,
                    Link.status == "active",
                    Link.subscribed_when_synced.is_(False),
                )
            )
        }
    if not flagged:
        return []
    field_name = rules.opt_out_field(ctx.sf_object)  # type: ignore[arg-type]
    soql = (
        f"SELECT Id FROM {ctx.sf_object} WHERE {field_name} = false "
        f"AND SystemModstamp >= {soql_datetime(since - OVERLAP)}"
    )
    wanted = [flagged[str(r["Id"])] for r in ctx.sf.query_iter(soql) if flagged.get(str(r["Id"]))]
    return _read_contacts(ctx, list(dict.fromkeys(wanted))[:RETRY_BATCH], names)


def _read_contacts(
    ctx: Context, contact_ids: Iterable[Any], names: Mapping[str, str]
) -> list[CcSubscriber]:
    """These Constant Contact contacts, one read each; one deleted meanwhile is left out."""
    found: list[CcSubscriber] = []
    for contact_id in contact_ids:
        try:
            resource = ctx.cc.get_contact(str(contact_id), include=INCLUDE)
        except NotFound:
            continue
        found.append(rules.subscriber_from_cc(resource, names))
    return found


def read_retries(ctx: Context, names: Mapping[str, str]) -> list[CcSubscriber]:
    """Contacts of ``cc_to_sf`` errors marked ``retrying`` (the admin API's retry)."""
    with ctx.store.transaction() as session:
        rows = list(
            session.scalars(
                select(SyncError)
                .where(
                    SyncError.setup_id == ctx.setup_id,
                    SyncError.direction == "cc_to_sf",
                    SyncError.status == "retrying",
                )
                .order_by(SyncError.id)
                .limit(RETRY_BATCH)
            )
        )
        wanted = [(row.payload or {}).get("cc_contact_id") or row.cc_contact_id for row in rows]
    return _read_contacts(ctx, dict.fromkeys(w for w in wanted if w), names)
