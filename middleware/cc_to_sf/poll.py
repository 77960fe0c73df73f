"""Poll, Constant Contact → Salesforce: new subscribers and unsubscribes, read on a schedule.

Constant Contact sends no contact or unsubscribe webhooks (api-notes §8), so each setup is polled
every ``schedule.poll_minutes``. One poll:

1. reads the setup's source (``cc_source``: the main list, all active contacts, or the main list
   plus named lists) changed since its cursor (``updated_after``), or all of it the first time
   (DESIGN §5a Runs: subscribers who were there before the setup existed are linked or created);
2. reads opt-outs, which ``updated_after`` does not see (api-notes §3.1): ``optout_after`` since
   its cursor, and a full ``status=unsubscribed`` scan on the first poll and then once a day as the
   safety net (it also sets an opt-out again that someone cleared in Salesforce, §5a). Opt-outs
   are read account-wide: an unsubscribe takes the contact off every list;
3. re-reads the contacts of ``cc_to_sf`` sync errors someone asked to retry;
4. for each batch: finds the addresses in Salesforce (chunked ``Email IN (...)``, one query per
   object type and 16 KB, never one per contact), plans with the pure rules
   (:mod:`middleware.sync.cc_to_sf`), writes opt-outs, Accounts, records and NPSP affiliations
   in batches (sObject Collections of 200, Bulk API 2.0 above ``BULK_THRESHOLD``), and records
   links, run counts and sync errors (a record Salesforce rejects is that record's error; the
   rest of the batch goes on).

Cursors are Constant Contact's own timestamps (the newest ``updated_at`` / ``opt_out_date`` seen),
so our clock's skew does not matter, and each read starts ``OVERLAP`` earlier so contacts committed
while the last read ran are not missed; they are moved only once every batch of the read is
recorded, so an interrupted poll reads the same window again (the work is idempotent: linked
addresses are skipped from the store, opted-out records are not written twice).

Writes carry our ``Sforce-Call-Options`` client id (the client adds it), so their change events
are recognised as echoes; records created here are linked with the fingerprint the SF→CC direction
will compute for them, so it finds nothing to write back.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import select

from middleware import incremental, runner
from middleware.constantcontact.client import LISTS_FILTER_MAX, ConstantContactClient
from middleware.constantcontact.errors import NotFound
from middleware.executor import Failure, Outcome
from middleware.incremental import Context, merge_outcomes
from middleware.queue import Runtime, interval_passed
from middleware.salesforce.client import RecordResult, SalesforceClient, soql_datetime, soql_in
from middleware.store import cursors, runs, setups
from middleware.store import errors as errors_repo
from middleware.store import links as links_repo
from middleware.store.bulk import chunked
from middleware.store.db import Store
from middleware.store.models import Cursor, Link, Setup, SyncError
from middleware.sync import cc_to_sf as rules
from middleware.sync.cc_to_sf import CcSubscriber, OrgInfo, SfAccount, SfMatch
from middleware.sync.emails import mask_email, normalise_email
from middleware.sync.options import SetupOptions
from schemas.setup import setup_options

log = logging.getLogger(__name__)

CURSOR_UPDATED = "cc_poll_updated_after"
CURSOR_OPTOUT = "cc_poll_optout_after"
CURSOR_SCAN = "cc_poll_unsubscribed_scan"
CURSOR_LAST_POLL = "cc_poll_last"
CURSOR_ORG = "sf_org_profile"
CURSOR_CUSTOM_FIELD_NAMES = "cc_custom_field_names"
CURSOR_SOURCE_LISTS = "cc_source_lists"

OVERLAP = timedelta(minutes=5)
SCAN_EVERY = timedelta(hours=24)
ORG_PROFILE_TTL = timedelta(hours=24)
BATCH_SIZE = 5_000
# Salesforce's advice: Bulk API 2.0 for more than about 2,000 records (api notes §8.2).
BULK_THRESHOLD = 2_000
RETRY_BATCH = 100
MAX_SEEN = 10_000  # contacts a cursor remembers inside its overlap window
INCLUDE = ("custom_fields", "phone_numbers", "street_addresses", "list_memberships")
POLL_JOB = "jobs.poll.poll_setup"


def poll_job_key(setup_id: int) -> str:
    return f"poll-{setup_id}"


# ------------------------------------------------------------------------------- schedule


def polls(stored: Mapping[str, Any]) -> bool:
    """Whether a setup with these stored options has anything to poll for (the admin API asks
    with the dict it holds; jobs read ``SetupOptions.polls``)."""
    return setup_options(stored).polls


def poll_interval(options: SetupOptions) -> timedelta:
    return timedelta(minutes=options.schedule.poll_minutes)


def due_setups(store: Store, now: datetime) -> list[int]:
    """Setups whose poll is due at ``now``: never polled, or ``poll_minutes`` since the last.

    Paused setups and setups with nothing to poll are left out. Two queries, whatever the number
    of setups; the clock tick enqueues ``jobs.poll.poll_setup`` for each id.
    """
    with store.transaction() as session:
        rows = list(session.scalars(select(Setup).order_by(Setup.id)))
        last = dict(
            session.execute(
                select(Cursor.setup_id, Cursor.value).where(Cursor.name == CURSOR_LAST_POLL)
            ).all()
        )
        due: list[int] = []
        for setup in rows:
            if setup.is_paused(now):
                continue
            try:
                options = setup_options(setup.options)
            except ValidationError as exc:
                log.warning("setup %s has unusable options: %s", setup.id, exc.messages)
                continue
            if not options.polls:
                continue
            if interval_passed(_parse_time(last.get(setup.id)), poll_interval(options), now):
                due.append(setup.id)
    return due


# ------------------------------------------------------------------------------- the run


def run_poll(
    runtime: Runtime,
    setup_id: int,
    *,
    sf: SalesforceClient | None = None,
    cc: ConstantContactClient | None = None,
    job_id: str | None = None,
    now: Callable[[], datetime] | None = None,
) -> dict[str, Any]:
    """Poll one setup through the runner's run lifecycle (see ``middleware.runner``).

    A setup with ``sync_to_cc: false`` is polled too: it is exactly the CC → SF one-way case. A
    quota pause re-schedules the poll for when the quota resets.
    """
    with runtime.store.transaction() as session:
        setup = setups.get(session, setup_id)
        options = setup_options(setup.options) if setup is not None else None
    if options is not None and not options.polls:
        return {"setup_id": setup_id, "records": 0, "polls": False}
    return runner.run(
        runtime,
        setup_id,
        "poll",
        poll,
        sf=sf,
        cc=cc,
        job_id=job_id,
        needs_sync_to_cc=False,
        resume=runner.Resume(poll_job_key(setup_id), POLL_JOB),
        now=now or (lambda: datetime.now(UTC)),
        phase="poll",
    )


# ------------------------------------------------------------------------------- one poll


@dataclass
class PollResult:
    records: int = 0
    batches: int = 0
    outcome: Outcome = field(default_factory=Outcome)


def _parse_time(value: Any) -> datetime | None:
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


def _get(ctx: Context, name: str) -> str | None:
    with ctx.store.transaction() as session:
        return cursors.get_cursor(session, ctx.setup_id, name)


def _set(ctx: Context, values: Mapping[str, str | None]) -> None:
    with ctx.store.transaction() as session:
        for name, value in values.items():
            cursors.set_cursor(session, ctx.setup_id, name, value)


def org_info(ctx: Context) -> OrgInfo:
    """What the org's describe says (picklists, Person Accounts, NPSP), cached for a day."""
    cached = json.loads(_get(ctx, CURSOR_ORG) or "{}")
    checked = _parse_time(cached.get("checked_at"))
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
    _set(ctx, {CURSOR_ORG: json.dumps({"checked_at": ctx.now().isoformat(), "org": org})})
    return info


def main_list_id(ctx: Context) -> str:
    """The main list's id (created if missing, as the SF→CC direction does), cached."""
    main = ctx.options.main_list
    name, _, list_id = (_get(ctx, incremental.CURSOR_MAIN_LIST) or "").rpartition("|")
    if name != main or not list_id:
        list_id = str(ctx.cc.get_or_create_list(main)["list_id"])
        _set(ctx, {incremental.CURSOR_MAIN_LIST: f"{main}|{list_id}"})
    ctx.main_list_id = list_id
    return list_id


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
    cached = json.loads(_get(ctx, CURSOR_SOURCE_LISTS) or "{}")
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
            _set(ctx, {CURSOR_SOURCE_LISTS: json.dumps(cached)})
    return list(dict.fromkeys([main, *(cached[n] for n in names if n in cached)]))


def custom_field_names(ctx: Context) -> dict[str, str]:
    """CC custom field id → name, for the ``cf:`` entries ``field_map`` reads from CC."""
    wanted = set(ctx.options.custom_fields_from_cc)
    if not wanted:
        return {}
    cached: dict[str, str] = json.loads(_get(ctx, CURSOR_CUSTOM_FIELD_NAMES) or "{}")
    if not wanted <= set(cached.values()):
        cached = {}
        for item in ctx.cc.iter_custom_fields():
            cached[str(item["custom_field_id"])] = str(item.get("name") or item.get("label"))
        _set(ctx, {CURSOR_CUSTOM_FIELD_NAMES: json.dumps(cached)})
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
            return cls(_parse_time(raw))  # a bare timestamp
        return cls(_parse_time(data.get("at")), dict(data.get("seen") or {}))

    @property
    def since(self) -> datetime | None:
        return self.at - OVERLAP if self.at is not None else None

    def fresh(self, contact: CcSubscriber, stamp: str | None) -> bool:
        return not stamp or self.seen.get(contact.contact_id) != stamp

    def observe(self, contact: CcSubscriber, stamp: str | None) -> None:
        when = _parse_time(stamp)
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
        kept = {k: v for k, v in self.seen.items() if (_parse_time(v) or floor) >= floor}
        if len(kept) > MAX_SEEN:
            newest = sorted(kept.items(), key=lambda kv: kv[1], reverse=True)[: MAX_SEEN // 2]
            kept = dict(newest)
        self.seen = kept

    def dump(self) -> str | None:
        if self.at is None:
            return None
        self._prune()
        return json.dumps({"at": self.at.isoformat(), "seen": self.seen}, sort_keys=True)


def poll(ctx: Context, *, batch_size: int = BATCH_SIZE) -> PollResult:
    """One poll of one setup (see the module docstring); cursors move when it is all recorded."""
    started = ctx.now()
    org = org_info(ctx)
    list_ids = source_list_ids(ctx)
    names = custom_field_names(ctx)
    result = PollResult()
    updated = Mark.load(_get(ctx, CURSOR_UPDATED))
    optouts = Mark.load(_get(ctx, CURSOR_OPTOUT))
    last_scan = _parse_time(_get(ctx, CURSOR_SCAN))

    def record(batch: list[CcSubscriber]) -> None:
        done = sync_contacts(ctx, org, batch)
        result.records += len(batch)
        result.batches += 1
        merge_outcomes(result.outcome, done)
        if ctx.run_id is not None:
            with ctx.store.transaction() as session:
                runs.progress(session, ctx.run_id, done=result.records)

    # New and changed subscribers of the source (all of it the first time).
    fresh = (
        c
        for c in _read_source(ctx, list_ids, updated.since, names)
        if updated.fresh(c, c.updated_at)
    )
    for batch in chunked(fresh, batch_size):
        record(batch)
        for contact in batch:
            updated.observe(contact, contact.updated_at)

    # Opt-outs since the cursor; the whole unsubscribed population on the first poll and then
    # once a day, as the safety net (it also repairs opt-outs cleared in Salesforce).
    scan = optouts.at is None or last_scan is None or started - last_scan >= SCAN_EVERY
    reads = _read_optouts(ctx, None if scan else optouts.since)
    recent = (c for c in reads if scan or optouts.fresh(c, c.opt_out_date))
    for batch in chunked(recent, batch_size):
        record(batch)
        for contact in batch:
            optouts.observe(contact, contact.opt_out_date)

    # Opt-outs cleared in Salesforce since the last poll on records whose contact CC holds as
    # unsubscribed (the scan would find them only within a day).
    if not scan:
        cleared = _cleared_opt_outs(ctx, _parse_time(_get(ctx, CURSOR_LAST_POLL)), names)
        if cleared:
            record(cleared)

    # Contacts whose sync errors someone asked to retry.
    retry = _read_retries(ctx, names)
    if retry:
        record(retry)

    # Cursors hold only Constant Contact's timestamps: while a read has seen nothing, it keeps
    # reading from the start (cheap when there is nothing to read), so our clock never counts.
    values: dict[str, str | None] = {CURSOR_LAST_POLL: started.isoformat()}
    for name, mark in ((CURSOR_UPDATED, updated), (CURSOR_OPTOUT, optouts)):
        if mark.at is not None:
            values[name] = mark.dump()
    if scan:
        values[CURSOR_SCAN] = started.isoformat()
        result.outcome.counts["scanned_unsubscribed"] += 1
    _set(ctx, values)
    return result


def _read_source(
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


def _read_optouts(ctx: Context, since: datetime | None) -> Iterator[CcSubscriber]:
    filters: dict[str, Any] = {"status": "unsubscribed"}
    if since is not None:
        filters["optout_after"] = since
    for resource in ctx.cc.iter_contacts(**filters):
        yield rules.subscriber_from_cc(resource)


def _cleared_opt_outs(
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


def _read_retries(ctx: Context, names: Mapping[str, str]) -> list[CcSubscriber]:
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


# ------------------------------------------------------------------------------- one batch


def _object_filter(sf_object: str, org: OrgInfo) -> str:
    if sf_object == "Lead":
        return " AND IsConverted = false"  # converted Leads are read-only; their Contact counts
    if sf_object == "Account":
        return " AND IsPersonAccount = true"
    if org.person_accounts:
        return " AND IsPersonAccount = false"  # person contacts are opted out via their Account
    return ""


def find_matches(
    ctx: Context, org: OrgInfo, wanted: Mapping[str, set[str]]
) -> dict[str, list[SfMatch]]:
    """Salesforce records holding the addresses: per object, chunked ``field IN (...)`` queries.

    ``wanted`` maps object types to the addresses to look for in them. The email fields of an
    object are ORed in one query, each given the same chunk of addresses.
    """
    found: dict[str, list[SfMatch]] = {}
    for sf_object, emails in wanted.items():
        if not emails:
            continue
        fields = rules.email_fields(ctx.options, org, sf_object)  # type: ignore[arg-type]
        opt = "PersonHasOptedOutOfEmail" if sf_object == "Account" else "HasOptedOutOfEmail"
        select_list = ", ".join(dict.fromkeys(["Id", "CreatedDate", opt, *fields]))
        prefix = f"SELECT {select_list} FROM {sf_object} WHERE ({fields[0]}"
        others = "".join(f" OR {f} IN ()" for f in fields[1:])
        suffix = f"{others}){_object_filter(sf_object, org)}"
        ordered = sorted(emails)
        # A record whose email fields fall into two chunks comes back twice: count it once.
        known: set[tuple[str, str]] = set()
        for chunk in ctx.sf.id_chunks(prefix, ordered, suffix):
            # The other fields repeat the chunk: split it so the whole query still fits.
            step = -(-len(chunk) // len(fields))
            for start in range(0, len(chunk), step):
                part = soql_in(chunk[start : start + step])
                where = " OR ".join(f"{f} IN ({part})" for f in fields)
                soql = f"SELECT {select_list} FROM {sf_object} WHERE ({where})"
                soql += _object_filter(sf_object, org)
                for record in ctx.sf.query_iter(soql):
                    for name in fields:
                        email = normalise_email(record.get(name))
                        if email in emails and (str(record["Id"]), name) not in known:
                            known.add((str(record["Id"]), name))
                            found.setdefault(email, []).append(
                                SfMatch(
                                    sf_object,  # type: ignore[arg-type]
                                    str(record["Id"]),
                                    email,
                                    name,
                                    opted_out=bool(record.get(opt)),
                                    created=str(record.get("CreatedDate") or ""),
                                )
                            )
    return found


def find_accounts(ctx: Context, org: OrgInfo, names: Iterable[str]) -> list[SfAccount]:
    """Business Accounts whose name is one of ``names`` (SOQL compares without case)."""
    wanted = sorted({n for n in names if n})
    if not wanted:
        return []
    suffix = " AND IsPersonAccount = false" if org.person_accounts else ""
    prefix = "SELECT Id, Name, CreatedDate FROM Account WHERE Name"
    found: list[SfAccount] = []
    for chunk in ctx.sf.id_chunks(prefix, wanted, suffix):
        soql = f"{prefix} IN ({soql_in(chunk)}){suffix}"
        for record in ctx.sf.query_iter(soql):
            found.append(
                SfAccount(
                    str(record["Id"]),
                    str(record.get("Name") or ""),
                    str(record.get("CreatedDate") or ""),
                )
            )
    return found


def _write(
    sf: SalesforceClient, sobject: str, operation: str, rows: Sequence[Mapping[str, Any]]
) -> list[RecordResult]:
    """Collections (≤ 200 a call) for small batches, one Bulk 2.0 job above the threshold."""
    if not rows:
        return []
    if len(rows) > BULK_THRESHOLD:
        return sf.bulk_ingest(sobject, operation, rows).results
    if operation == "insert":
        return sf.create_many(sobject, rows)
    return sf.update_many(sobject, rows)


def _failure(
    contact_id: str, email: str, code: str, message: str, sf_id: str | None = None
) -> Failure:
    return Failure(
        sf_id=sf_id or "", code=code, message=message, email=email, cc_contact_id=contact_id
    )


def sync_contacts(ctx: Context, org: OrgInfo, contacts: Sequence[CcSubscriber]) -> Outcome:
    """Plan and carry out one batch of CC contacts; record links, errors, counts."""
    outcome = Outcome()
    unique = {c.contact_id or c.email: c for c in contacts}
    batch = list(unique.values())
    emails = {c.email for c in batch if c.email}
    with ctx.store.transaction() as session:
        known = links_repo.for_emails(session, ctx.setup_id, emails, include_retired=True)
    linked = set(known)
    # Links an import made know no contact id until someone looks: the poll sees it here.
    ids_seen = [
        (c.email, c.contact_id)
        for c in batch
        if c.contact_id
        and not c.deleted
        and any(row.status == "active" and not row.cc_contact_id for row in known.get(c.email, ()))
    ]
    sync_to_sf = ctx.options.sync_to_sf
    opt_outs = ctx.options.sync_unsubscribes_to_sf
    wanted: dict[str, set[str]] = {}
    for contact in batch:
        if not contact.email or contact.deleted:
            continue
        if contact.unsubscribed:
            objects = rules.opt_out_objects(org) if opt_outs else []
        elif contact.email in linked or not sync_to_sf:
            objects = []
        else:
            objects = rules.match_objects(ctx.options, org)
        for sf_object in objects:
            wanted.setdefault(sf_object, set()).add(contact.email)
    matches = find_matches(ctx, org, wanted)
    main = ctx.main_list_id
    plan = rules.plan_cc_to_sf(
        ctx.options, batch, matches=matches, linked_emails=linked, org=org, main_list_id=main
    )
    # Every new Contact's company is looked up, whether or not a missing Account may be
    # created (create_missing_accounts: false stops only the creation).
    if plan.account_names:
        accounts = find_accounts(ctx, org, plan.account_names)
        plan = rules.plan_cc_to_sf(
            ctx.options,
            batch,
            matches=matches,
            accounts=accounts,
            linked_emails=linked,
            org=org,
            main_list_id=main,
        )
    outcome.warnings.extend(plan.warnings)
    for skip in plan.skips:
        outcome.skipped[skip.reason] += 1
    for note in plan.reports:
        outcome.counts[f"reported: {note.reason}"] += 1
    for error in plan.errors:
        outcome.failures.append(_failure(error.contact_id, error.email, error.code, error.message))

    succeeded: set[str] = set()
    _write_opt_outs(ctx, plan, outcome, succeeded)
    link_rows, retired = _write_creates(ctx, plan, outcome, succeeded)
    link_rows += _existing_links(ctx, plan, outcome, succeeded)
    # Links remember that CC holds the contact unsubscribed, so a later Salesforce change
    # that clears the opt-out is recognised and the opt-out set again (§5a).
    link_rows += [
        {"sf_id": row.sf_id, "sf_object": row.sf_object, "subscribed_when_synced": False}
        for c in batch
        if c.unsubscribed and not c.deleted
        for row in known.get(c.email, ())
        if row.status == "active" and row.subscribed_when_synced
    ]
    link_rows += [
        {"sf_id": row.sf_id, "sf_object": row.sf_object, "subscribed_when_synced": True}
        for c in batch
        if not c.unsubscribed and not c.deleted
        for row in known.get(c.email, ())
        if row.status == "active" and not row.subscribed_when_synced
    ]
    _record(ctx, batch, link_rows, retired, outcome, succeeded, ids_seen)
    return outcome


def _write_opt_outs(
    ctx: Context, plan: rules.CcToSfPlan, outcome: Outcome, succeeded: set[str]
) -> None:
    by_object: dict[str, list[rules.OptOut]] = {}
    for item in plan.opt_outs:
        by_object.setdefault(item.sf_object, []).append(item)
    failed: set[str] = set()
    for sf_object, items in sorted(by_object.items()):
        rows = [{"Id": o.sf_id, o.field: True} for o in items]
        for item, result in zip(items, _write(ctx.sf, sf_object, "update", rows), strict=True):
            if result.success:
                outcome.counts["opted_out"] += 1
                log.info(
                    "setup %s: %s %s opted out (unsubscribed in CC: %s)",
                    ctx.setup_id,
                    sf_object,
                    item.sf_id,
                    mask_email(item.email),
                )
            else:
                failed.add(item.contact_id)
                err = result.error
                outcome.failures.append(
                    _failure(
                        item.contact_id,
                        item.email,
                        err.code if err else "UNKNOWN",
                        f"opt-out of {sf_object} {item.sf_id}: {err.message if err else ''}",
                        item.sf_id,
                    )
                )
    succeeded.update(o.contact_id for o in plan.opt_outs if o.contact_id not in failed)


def _write_creates(
    ctx: Context, plan: rules.CcToSfPlan, outcome: Outcome, succeeded: set[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Accounts, then records, then affiliations; returns link rows and ids to keep retired."""
    account_ids: dict[str, str] = {}
    account_errors: dict[str, str] = {}
    names = plan.accounts_to_create
    for name, result in zip(
        names, _write(ctx.sf, "Account", "insert", [{"Name": n} for n in names]), strict=True
    ):
        if result.success and result.id:
            account_ids[name.lower()] = result.id
            outcome.counts["accounts_created"] += 1
        else:
            err = result.error
            account_errors[name.lower()] = (
                f"{err.code if err else 'UNKNOWN'}: Account {name!r}: {err.message if err else ''}"
            )
    by_object: dict[str, list[tuple[rules.NewRecord, dict[str, Any]]]] = {}
    for record in plan.creates:
        fields = dict(record.fields)
        if record.account_id:
            fields["AccountId"] = record.account_id
        elif record.account_name:
            key = record.account_name.lower()
            if key in account_errors:
                code, _, message = account_errors[key].partition(": ")
                outcome.failures.append(_failure(record.contact_id, record.email, code, message))
                continue
            fields["AccountId"] = account_ids[key]
        by_object.setdefault(record.sf_object, []).append((record, fields))
    link_rows: list[dict[str, Any]] = []
    retired: list[str] = []
    affiliations: list[tuple[rules.NewRecord, dict[str, Any]]] = []
    for sf_object, items in sorted(by_object.items()):
        results = _write(ctx.sf, sf_object, "insert", [f for _, f in items])
        for (record, _fields), result in zip(items, results, strict=True):
            if not result.success or not result.id:
                err = result.error
                outcome.failures.append(
                    _failure(
                        record.contact_id,
                        record.email,
                        err.code if err else "UNKNOWN",
                        err.message if err else "Salesforce did not create the record",
                    )
                )
                continue
            outcome.counts[f"created_{sf_object.lower()}s"] += 1
            succeeded.add(record.contact_id)
            link_rows.append(
                {
                    "sf_id": result.id,
                    "sf_object": sf_object,
                    "cc_contact_id": record.contact_id,
                    "email": record.email,
                    "fingerprint": record.fingerprint,
                    "lists": [ctx.main_list_id] if record.on_main_list else [],
                }
            )
            if not record.link_active:
                retired.append(result.id)
            if record.affiliation_account:
                org_id = record.affiliation_account_id or account_ids.get(
                    record.affiliation_account.lower()
                )
                if org_id:
                    affiliations.append(
                        (
                            record,
                            {
                                "npe5__Contact__c": result.id,
                                "npe5__Organization__c": org_id,
                                "npe5__Status__c": "Current",
                            },
                        )
                    )
    if affiliations:
        rows = [row for _, row in affiliations]
        results = _write(ctx.sf, rules.AFFILIATION_OBJECT, "insert", rows)
        for (record, row), result in zip(affiliations, results, strict=True):
            if result.success:
                outcome.counts["affiliations_created"] += 1
            else:
                err = result.error
                outcome.failures.append(
                    _failure(
                        record.contact_id,
                        record.email,
                        err.code if err else "UNKNOWN",
                        f"affiliation: {err.message if err else ''}",
                        row["npe5__Contact__c"],
                    )
                )
    return link_rows, retired


def _existing_links(
    ctx: Context, plan: rules.CcToSfPlan, outcome: Outcome, succeeded: set[str]
) -> list[dict[str, Any]]:
    """Link matched records, unless the record is already linked (under another address)."""
    if not plan.links:
        return []
    with ctx.store.transaction() as session:
        taken = set(links_repo.for_sf_ids(session, ctx.setup_id, [x.sf_id for x in plan.links]))
    rows: list[dict[str, Any]] = []
    for item in plan.links:
        succeeded.add(item.contact_id)
        if item.sf_id in taken:
            outcome.skipped[rules.REASON_LINKED] += 1
            continue
        outcome.counts["linked"] += 1
        rows.append(
            {
                "sf_id": item.sf_id,
                "sf_object": item.sf_object,
                "cc_contact_id": item.contact_id,
                "email": item.email,
                "lists": [ctx.main_list_id] if item.on_main_list else [],
            }
        )
    return rows


def _record(
    ctx: Context,
    batch: Sequence[CcSubscriber],
    link_rows: list[dict[str, Any]],
    retired: list[str],
    outcome: Outcome,
    succeeded: set[str],
    ids_seen: Sequence[tuple[str, str]] = (),
) -> None:
    failed = {f.cc_contact_id for f in outcome.failures}
    failures = [
        {
            "direction": "cc_to_sf",
            "vendor": "salesforce",
            "code": f.code,
            "message": f.message,
            "sf_id": f.sf_id or None,
            "cc_contact_id": f.cc_contact_id,
            "email": f.email,
            "payload": {"cc_contact_id": f.cc_contact_id, "email": f.email},
        }
        for f in outcome.failures
    ]
    # A contact is done when it succeeded or was deliberately left alone this time.
    done = [c.contact_id for c in batch if c.contact_id and c.contact_id not in failed]
    with ctx.store.transaction() as session:
        if link_rows:
            links_repo.upsert_links(session, ctx.setup_id, link_rows)
        if retired:
            links_repo.retire_links(session, ctx.setup_id, retired)
        if ids_seen:
            links_repo.fill_contact_ids(session, ctx.setup_id, ids_seen)
        if failures:
            errors_repo.record_errors(session, ctx.setup_id, failures, run_id=ctx.run_id)
        open_ids = _open_error_ids(session, ctx.setup_id, done)
        if open_ids:
            errors_repo.resolve_errors(session, ctx.setup_id, ids=open_ids)


def _open_error_ids(session: Any, setup_id: int, contact_ids: Sequence[str]) -> list[int]:
    found: list[int] = []
    for start in range(0, len(contact_ids), 500):
        chunk = list(contact_ids[start : start + 500])
        found += session.scalars(
            select(SyncError.id).where(
                SyncError.setup_id == setup_id,
                SyncError.direction == "cc_to_sf",
                SyncError.status.in_(("open", "retrying")),
                SyncError.cc_contact_id.in_(chunk),
            )
        ).all()
    return found


def counted(outcome: Outcome) -> Counter[str]:
    """Every count of an outcome in one counter (tests and the bench read it)."""
    total: Counter[str] = Counter(outcome.counts)
    total.update({f"skipped: {k}": v for k, v in outcome.skipped.items()})
    return total
