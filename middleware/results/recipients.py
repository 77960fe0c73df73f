"""Campaign results, the recipients: who they are in Salesforce, their members and their Tasks.

One activity's recipients read this run are applied together:

1. their keys are read from the store (a recipient seen before keeps its Salesforce person);
2. the others are found by email: first in the setup's links (no call), then in Salesforce
   across Leads, Contacts and Person Accounts, as the CC → SF direction looks
   (:func:`middleware.cc_to_sf.match.find_matches`, chunked ``IN`` queries);
3. with ``sync_all_campaign_recipients`` (and ``sync_to_sf``), recipients found nowhere are
   created through the CC → SF direction's own rules
   (:func:`middleware.cc_to_sf.poll.sync_contacts`);
   otherwise they are counted;
4. the pure plan (:func:`middleware.sync.results.plan_recipients`) says which members to insert
   or raise and which Tasks to create; writes go in collections of 200, Bulk 2.0 above 2,000;
5. opt-outs go through the CC → SF opt-out rules (never a re-subscribe);
6. the keys are saved; a record Salesforce refuses is a sync error (``cc_to_sf``) whose payload
   holds the recipient, so the next run tries it again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from middleware.cc_to_sf import match, poll
from middleware.cc_to_sf.write import failure, write_records
from middleware.context import Context
from middleware.outcome import Outcome, merge_outcomes
from middleware.salesforce.client import RecordResult
from middleware.store import errors as errors_repo
from middleware.store import links as links_repo
from middleware.store import results as repo
from middleware.store.models import ResultActivity, SyncError
from middleware.sync import cc_to_sf as cc_rules
from middleware.sync import results as rules
from middleware.sync.cc_to_sf import CcSubscriber, OrgInfo
from middleware.sync.emails import mask_email
from middleware.sync.results import Recipient, Stored

log = logging.getLogger(__name__)

RETRY_BATCH = 5_000


@dataclass(frozen=True)
class Person:
    """The Salesforce record a recipient's results go on; ``who_id`` names it on members and
    Tasks (a Person Account's contact id)."""

    sf_object: str
    sf_id: str
    who_id: str


def find_people(ctx: Context, org: OrgInfo, emails: set[str]) -> dict[str, str]:
    """``email → who id`` for the addresses found in the setup's links or in Salesforce."""
    if not emails:
        return {}
    found: dict[str, Person] = {}
    with ctx.store.transaction() as session:
        linked = links_repo.for_emails(session, ctx.setup_id, emails, include_retired=False)
    for email, links in linked.items():
        best = sorted(links, key=lambda link: (link.sf_object != ctx.sf_object, link.id))[0]
        found[email] = Person(best.sf_object, best.sf_id, best.sf_id)
    rest = emails - set(found)
    if rest:
        wanted: dict[str, set[str]] = {
            obj: set(rest) for obj in cc_rules.match_objects(ctx.options, org)
        }
        for email, matches in match.find_matches(ctx, org, wanted).items():
            best_match = rules.choose_person(matches, ctx.sf_object)
            if best_match is not None:
                found[email] = Person(best_match.sf_object, best_match.sf_id, best_match.sf_id)
    accounts = sorted({p.sf_id for p in found.values() if p.sf_object == "Account"})
    if accounts:
        contact_of = {
            str(r["Id"]): str(r.get("PersonContactId") or "")
            for r in ctx.sf.query_in("SELECT Id, PersonContactId FROM Account WHERE Id", accounts)
        }
        for email, person in list(found.items()):
            if person.sf_object == "Account":
                who = contact_of.get(person.sf_id)
                if who:
                    found[email] = Person("Account", person.sf_id, who)
                else:
                    del found[email]
    return {email: p.who_id for email, p in found.items()}


def _create_missing(
    ctx: Context, org: OrgInfo, missing: list[Recipient], outcome: Outcome
) -> dict[str, str]:
    """Records for recipients found nowhere, by the CC → SF rules; ``email → who id``."""
    subscribers = [
        CcSubscriber(r.contact_id, r.email, values=dict(r.names)) for r in missing if r.email
    ]
    if not subscribers:
        return {}
    done = poll.sync_contacts(ctx, org, subscribers)
    outcome.counts["recipients_created"] += done.counts.get("created", 0)
    merge_outcomes(outcome, Outcome(failures=done.failures, warnings=done.warnings))
    return find_people(ctx, org, {s.email for s in subscribers})


def _opt_outs(ctx: Context, org: OrgInfo, read: Mapping[str, Recipient], outcome: Outcome) -> None:
    """Recipients who opted out of the email: the CC → SF opt-out rules, at once."""
    if not ctx.options.sync_unsubscribes_to_sf:
        return
    gone = [
        CcSubscriber(
            r.contact_id, r.email, permission_to_send=cc_rules.UNSUBSCRIBED,
            opt_out_date=r.opted_out_at,
        )
        for r in read.values()
        if r.opted_out_at and r.email
    ]  # fmt: skip
    if gone:
        done = poll.sync_contacts(ctx, org, gone)
        outcome.counts["opted_out"] += done.counts.get("opted_out", 0)
        merge_outcomes(outcome, Outcome(failures=done.failures, warnings=done.warnings))


def _task(subject: str, who: str, when: str, campaign: str | None, text: str) -> dict[str, Any]:
    row: dict[str, Any] = {
        "Subject": subject,
        "Status": "Completed",
        "Priority": "Normal",
        "Type": "Email",
        "ActivityDate": when[:10],
        "WhoId": who,
        "Description": text,
    }
    if campaign and rules.member_field(who) == "ContactId":
        row["WhatId"] = campaign  # Salesforce relates no record to a Lead's Task
    return row


def apply(
    ctx: Context,
    org: OrgInfo,
    act: ResultActivity,
    read: dict[str, Recipient],
    outcome: Outcome,
    open_errors: Mapping[str, list[int]] | None = None,
) -> None:
    """Apply one activity's recipients read this run (see the module docstring);
    ``open_errors`` (contact id → its open sync error ids, from :func:`retries`) are resolved
    for the recipients written now."""
    if not read:
        return
    mode = ctx.options.campaign_response_mode
    with ctx.store.transaction() as session:
        stored = repo.stored(session, act.id, read)
    who: dict[str, str] = {
        cid: s.sf_person_id for cid, s in stored.items() if s.sf_person_id and cid in read
    }
    unknown = {cid: r for cid, r in read.items() if cid not in who}
    by_email = find_people(ctx, org, {r.email for r in unknown.values() if r.email})
    missing = [r for r in unknown.values() if r.email not in by_email]
    if missing and ctx.options.sync_all_campaign_recipients and ctx.options.sync_to_sf:
        by_email.update(_create_missing(ctx, org, missing, outcome))
        missing = [r for r in unknown.values() if r.email not in by_email]
    for cid, r in unknown.items():
        if r.email in by_email:
            who[cid] = by_email[r.email]
    if missing:
        outcome.counts["recipients_not_in_salesforce"] += len(missing)

    plan = rules.plan_recipients(mode, read, stored, who)
    rows: dict[str, dict[str, Any]] = {}
    for cid, r in read.items():
        known = stored.get(cid, Stored())
        rows[cid] = {
            "email": r.email or None,
            "sf_person_id": who.get(cid),
            "sf_member_id": known.sf_member_id,
            "status": known.status,
            "open_task_id": known.open_task_id,
            "click_tasks": dict(known.click_tasks),
        }
    failed: dict[str, tuple[str, str]] = {}

    def refused(cid: str, result: RecordResult, what: str) -> None:
        err = result.error
        failed[cid] = (err.code if err else "UNKNOWN", f"{what}: {err.message if err else ''}")

    # Campaign Members: new ones with their status, risen ones updated.
    if plan.member_inserts:
        records = [
            {"CampaignId": act.sf_campaign_id, rules.member_field(who[cid]): who[cid], "Status": st}
            for cid, st in plan.member_inserts
        ]
        results = write_records(ctx.sf, "CampaignMember", "insert", records)
        already: dict[str, str] = {}
        for (cid, status), result in zip(plan.member_inserts, results, strict=True):
            if result.success:
                rows[cid].update(sf_member_id=result.id, status=status)
                outcome.counts["members_created"] += 1
            elif result.error is not None and result.error.code == "DUPLICATE_VALUE":
                already[cid] = status  # a member already (added by hand, or keys lost)
            else:
                refused(cid, result, f"Campaign Member of {act.name!r}")
        if already:
            found = _existing_members(ctx, act, {who[cid] for cid in already})
            for cid, status in already.items():
                rows[cid]["sf_member_id"] = found.get(who[cid])
                if rows[cid]["sf_member_id"]:
                    plan.member_updates.append((cid, status))  # its status set below
    if plan.member_updates:
        updates = [(cid, st) for cid, st in plan.member_updates if rows[cid]["sf_member_id"]]
        records = [{"Id": rows[cid]["sf_member_id"], "Status": st} for cid, st in updates]
        results = write_records(ctx.sf, "CampaignMember", "update", records)
        for (cid, status), result in zip(updates, results, strict=True):
            if result.success:
                rows[cid]["status"] = status
                outcome.counts["members_updated"] += 1
            else:
                refused(cid, result, f"Campaign Member of {act.name!r}")

    # Tasks: one per open, one per link clicked.
    campaign = act.sf_campaign_id if rules.makes_campaigns(mode) else None
    tasks: list[tuple[str, str | None, dict[str, Any]]] = []
    for cid in plan.open_tasks:
        r = read[cid]
        assert r.first_open is not None
        text = f"Opened the email {act.name!r} (subject: {act.subject})."
        tasks.append((cid, None, _task(rules.open_subject(act.name), who[cid], r.first_open,
                                       campaign, text)))  # fmt: skip
    for cid, url_id in plan.click_tasks:
        url, at = read[cid].clicks[url_id]
        tasks.append((cid, url_id, _task(rules.click_subject(act.name), who[cid], at, campaign,
                                         url or f"link {url_id}")))  # fmt: skip
    if tasks:
        results = write_records(ctx.sf, "Task", "insert", [t for _, _, t in tasks])
        for (cid, clicked, _), result in zip(tasks, results, strict=True):
            if not result.success:
                refused(cid, result, f"Task for {act.name!r}")
            elif clicked is None:
                rows[cid]["open_task_id"] = result.id
                outcome.counts["tasks_created"] += 1
            else:
                rows[cid]["click_tasks"][clicked] = result.id
                outcome.counts["tasks_created"] += 1

    _opt_outs(ctx, org, read, outcome)
    _record(ctx, act, read, rows, failed, outcome, open_errors or {})


def _existing_members(ctx: Context, act: ResultActivity, people: set[str]) -> dict[str, str]:
    """``person id → CampaignMember id`` of people already members of the activity's Campaign
    (one query per member field and 16 KB of ids)."""
    found: dict[str, str] = {}
    for field in ("ContactId", "LeadId"):
        ids = sorted(p for p in people if rules.member_field(p) == field)
        if not ids:
            continue
        prefix = f"SELECT Id, {field} FROM CampaignMember WHERE CampaignId = '{act.sf_campaign_id}'"
        for row in ctx.sf.query_in(f"{prefix} AND {field}", ids):
            found[str(row[field])] = str(row["Id"])
    return found


def _record(
    ctx: Context,
    act: ResultActivity,
    read: Mapping[str, Recipient],
    rows: dict[str, dict[str, Any]],
    failed: Mapping[str, tuple[str, str]],
    outcome: Outcome,
    open_errors: Mapping[str, list[int]],
) -> None:
    """Save the keys; failures become sync errors carrying the recipient, others resolve."""
    errors = []
    for cid, (code, message) in sorted(failed.items()):
        r = read[cid]
        # Found again next time: the record may have been deleted, merged or fixed meanwhile.
        person = rows[cid]["sf_person_id"]
        rows[cid]["sf_person_id"] = None
        errors.append(
            {
                "direction": "cc_to_sf",
                "vendor": "salesforce",
                "code": code,
                "message": message,
                "sf_id": person,
                "cc_contact_id": cid,
                "email": r.email,
                "payload": {"cc_contact_id": cid, "email": r.email, "result": _dump(act, r)},
            }
        )
        outcome.failures.append(failure(cid, r.email, code, message, person))
        log.info("setup %s: results of %s refused (%s)", ctx.setup_id, mask_email(r.email), code)
    with ctx.store.transaction() as session:
        repo.save_recipients(session, act.id, rows)
        if errors:
            errors_repo.record_errors(session, ctx.setup_id, errors, run_id=ctx.run_id)
        open_ids = [i for cid in read if cid not in failed for i in open_errors.get(cid, ())]
        if open_ids:
            errors_repo.resolve_errors(session, ctx.setup_id, ids=open_ids)


def _dump(act: ResultActivity, r: Recipient) -> dict[str, Any]:
    return {
        "activity": act.activity_id,
        "status": r.status,
        "first_open": r.first_open,
        "clicks": {k: list(v) for k, v in r.clicks.items()},
        "opted_out_at": r.opted_out_at,
    }


@dataclass
class Retries:
    """Recipients Salesforce refused before, by activity and contact id, with the ids of their
    open sync errors (resolved once the recipient is written)."""

    recipients: dict[str, dict[str, Recipient]]
    error_ids: dict[str, dict[str, list[int]]]


def retries(ctx: Context) -> Retries:
    """The results sync errors still open, read once a run: each is tried again."""
    found = Retries({}, {})
    taken = 0
    with ctx.store.transaction() as session:
        rows = session.scalars(
            select(SyncError)
            .where(
                SyncError.setup_id == ctx.setup_id,
                SyncError.direction == "cc_to_sf",
                SyncError.status.in_(("open", "retrying")),
            )
            .order_by(SyncError.id)
        )
        for error in rows:
            payload = error.payload or {}
            result = payload.get("result")
            cid = payload.get("cc_contact_id")
            if not result or not cid:
                continue  # a CC → SF error of the poll's
            activity = result["activity"]
            found.error_ids.setdefault(activity, {}).setdefault(cid, []).append(error.id)
            people = found.recipients.setdefault(activity, {})
            if cid in people or taken >= RETRY_BATCH:
                continue
            taken += 1
            people[cid] = Recipient(
                cid,
                str(payload.get("email") or ""),
                status=result.get("status"),
                first_open=result.get("first_open"),
                clicks={k: (v[0], v[1]) for k, v in (result.get("clicks") or {}).items()},
                opted_out_at=result.get("opted_out_at"),
            )
    return found
