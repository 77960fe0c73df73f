"""SF → CC, stage 1 (collect): which records a run looks at.

- the ids the setup's change events named (the intake), an Account's reaching its Contacts;
- records whose ``SystemModstamp`` moved since a watermark (the intake's catch-up markers, Sync
  Now's catch-up, the scheduled catch-up's reads, which remember what they already handled);
- records deleted since (getDeleted): hard deletes emit no event and never show in a query.

What is collected is read again by :mod:`.read` before anything is planned.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from middleware.context import Context
from middleware.salesforce.errors import SalesforceError
from middleware.sf_to_cc import segments
from middleware.sf_to_cc.read import select_fields
from middleware.store import links as links_repo

log = logging.getLogger(__name__)

CATCH_UP_OVERLAP = timedelta(minutes=5)  # an intake catch-up marker's and Sync Now's overlap
OVERLAP = timedelta(minutes=2)  # the scheduled catch-up's overlap
DELETED_DAYS = 15  # getDeleted answers no further back
SEEN_MAX = 10_000
DELETED = "deleted"  # the catch-up state's key for the getDeleted watermark
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_modstamp(value: Any) -> datetime | None:
    if not value:
        return None
    text = str(value).replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]  # Salesforce prints +0000
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def expand_ids(ctx: Context, ids: Mapping[str, list[str]]) -> list[str]:
    """Record ids of the setup's object for a batch; Account changes reach their contacts, and
    CampaignMember changes (a member added or removed) the records they name."""
    own = list(ids.get(ctx.sf_object, []))
    if ctx.options.campaign_lists is not None and ctx.options.campaign_lists.from_campaigns:
        own += segments.people_of_members(ctx, ids.get("CampaignMember", []))
    accounts = ids.get("Account", []) if ctx.sf_object == "Contact" else []
    if accounts:
        own += [
            r["Id"] for r in ctx.sf.query_in("SELECT Id FROM Contact WHERE AccountId", accounts)
        ]
    return list(dict.fromkeys(own))


def modified_since(ctx: Context, since: datetime) -> list[dict[str, Any]]:
    """Records of the setup's object modified since `since` (SystemModstamp, with overlap)."""
    return list(
        ctx.sf.modified_since(
            ctx.sf_object, select_fields(ctx.options), since, overlap=CATCH_UP_OVERLAP
        )
    )


def changed(
    ctx: Context,
    sobject: str,
    fields: list[str],
    state: dict[str, Any],
    start: datetime,
) -> list[dict[str, Any]]:
    """Rows of ``sobject`` whose SystemModstamp moved since its watermark, not handled yet; the
    new watermark and memory go into ``state`` (saved by the caller once all is recorded)."""
    mark = state.get(sobject) or {}
    at = parse_modstamp(mark.get("at")) or start
    seen: dict[str, str] = dict(mark.get("seen") or {})
    fresh: list[dict[str, Any]] = []
    newest = at
    for row in ctx.sf.modified_since(sobject, fields, at, overlap=OVERLAP):
        stamp = str(row.get("SystemModstamp") or "")
        if seen.get(str(row["Id"])) == stamp:
            continue
        seen[str(row["Id"])] = stamp
        fresh.append(row)
        parsed = parse_modstamp(stamp)
        if parsed is not None and parsed > newest:
            newest = parsed
    horizon = newest - OVERLAP
    keep = {i: s for i, s in seen.items() if (parse_modstamp(s) or EPOCH) >= horizon}
    if len(keep) > SEEN_MAX:  # a huge burst: remember the newest; the rest is re-planned once
        keep = dict(sorted(keep.items(), key=lambda kv: kv[1])[-SEEN_MAX:])
    state[sobject] = {"at": newest.isoformat(), "seen": keep}
    return fresh


def deleted(ctx: Context, state: dict[str, Any], start: datetime, warnings: list[str]) -> list[str]:
    """Ids deleted since the last catch-up (getDeleted) that this setup still has linked."""
    now = ctx.now()
    since = parse_modstamp(state.get(DELETED)) or start
    earliest = now - timedelta(days=DELETED_DAYS) + timedelta(minutes=5)
    begin = max(since - OVERLAP, earliest)
    if now - begin < timedelta(minutes=1):
        return []  # getDeleted works in whole minutes; nothing new can be covered yet
    try:
        result = ctx.sf.deleted(ctx.sf_object, begin, now)
    except SalesforceError as exc:
        if exc.code != "INVALID_REPLICATION_DATE":
            raise
        # A window Salesforce cannot answer (clocks apart, the delete log purged early): start
        # afresh from now rather than fail every catch-up; the Full Sync finds older deletes.
        log.warning("setup %s: getDeleted refused %s..%s: %s", ctx.setup_id, begin, now, exc)
        warnings.append(f"deletes before {now:%Y-%m-%d %H:%M} UTC are left to the Full Sync: {exc}")
        state[DELETED] = now.isoformat()
        return []
    state[DELETED] = result.latest_date_covered or now.isoformat()
    ids = list(dict.fromkeys(record_id for record_id, _when in result.records))
    if not ids:
        return []
    with ctx.store.transaction() as session:
        linked = links_repo.for_sf_ids(session, ctx.setup_id, ids)
        # A link already removed from the lists, or retired, has nothing left to do.
        return [i for i, link in linked.items() if not link.removed_on_delete]
