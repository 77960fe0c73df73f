"""CC → SF, stage 3 (write): a batch's plan carried out in Salesforce, in batches.

Opt-outs first, then Accounts, records and NPSP affiliations: sObject Collections of 200, Bulk
API 2.0 above ``BULK_THRESHOLD``. A record Salesforce rejects is that record's failure; the rest
of the batch goes on. Writes carry our ``Sforce-Call-Options`` client id (the client adds it),
so their change events are recognised as echoes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from middleware.context import Context
from middleware.outcome import Failure, Outcome
from middleware.salesforce.client import RecordResult, SalesforceClient
from middleware.store import links as links_repo
from middleware.sync import cc_to_sf as rules
from middleware.sync.emails import mask_email

log = logging.getLogger(__name__)

# Salesforce's advice: Bulk API 2.0 for more than about 2,000 records (api notes §8.2).
BULK_THRESHOLD = 2_000


def write_records(
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


def failure(
    contact_id: str, email: str, code: str, message: str, sf_id: str | None = None
) -> Failure:
    return Failure(
        sf_id=sf_id or "", code=code, message=message, email=email, cc_contact_id=contact_id
    )


def write_opt_outs(
    ctx: Context, plan: rules.CcToSfPlan, outcome: Outcome, succeeded: set[str]
) -> None:
    by_object: dict[str, list[rules.OptOut]] = {}
    for item in plan.opt_outs:
        by_object.setdefault(item.sf_object, []).append(item)
    failed: set[str] = set()
    for sf_object, items in sorted(by_object.items()):
        rows = [{"Id": o.sf_id, o.field: True} for o in items]
        for item, result in zip(
            items, write_records(ctx.sf, sf_object, "update", rows), strict=True
        ):
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
                    failure(
                        item.contact_id,
                        item.email,
                        err.code if err else "UNKNOWN",
                        f"opt-out of {sf_object} {item.sf_id}: {err.message if err else ''}",
                        item.sf_id,
                    )
                )
    succeeded.update(o.contact_id for o in plan.opt_outs if o.contact_id not in failed)


def write_creates(
    ctx: Context, plan: rules.CcToSfPlan, outcome: Outcome, succeeded: set[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Accounts, then records, then affiliations; returns link rows and ids to keep retired."""
    account_ids: dict[str, str] = {}
    account_errors: dict[str, str] = {}
    names = plan.accounts_to_create
    for name, result in zip(
        names, write_records(ctx.sf, "Account", "insert", [{"Name": n} for n in names]), strict=True
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
                outcome.failures.append(failure(record.contact_id, record.email, code, message))
                continue
            fields["AccountId"] = account_ids[key]
        by_object.setdefault(record.sf_object, []).append((record, fields))
    link_rows: list[dict[str, Any]] = []
    retired: list[str] = []
    affiliations: list[tuple[rules.NewRecord, dict[str, Any]]] = []
    for sf_object, items in sorted(by_object.items()):
        results = write_records(ctx.sf, sf_object, "insert", [f for _, f in items])
        for (record, _fields), result in zip(items, results, strict=True):
            if not result.success or not result.id:
                err = result.error
                outcome.failures.append(
                    failure(
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
        results = write_records(ctx.sf, rules.AFFILIATION_OBJECT, "insert", rows)
        for (record, row), result in zip(affiliations, results, strict=True):
            if result.success:
                outcome.counts["affiliations_created"] += 1
            else:
                err = result.error
                outcome.failures.append(
                    failure(
                        record.contact_id,
                        record.email,
                        err.code if err else "UNKNOWN",
                        f"affiliation: {err.message if err else ''}",
                        row["npe5__Contact__c"],
                    )
                )
    return link_rows, retired


def existing_links(
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
