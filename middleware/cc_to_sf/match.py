"""CC → SF, stage 2 (match): the Salesforce records and Accounts a batch's addresses belong to.

Chunked ``field IN (...)`` queries, one per object type and 16 KB, never one per contact; the
object types looked in follow the rules (:func:`rules.opt_out_objects`,
:func:`rules.match_objects`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from middleware.context import Context
from middleware.salesforce.client import soql_in
from middleware.sync import cc_to_sf as rules
from middleware.sync.cc_to_sf import CcSubscriber, OrgInfo, SfAccount, SfMatch
from middleware.sync.emails import normalise_email


def wanted(
    ctx: Context, org: OrgInfo, batch: Sequence[CcSubscriber], linked: set[str]
) -> dict[str, set[str]]:
    """The addresses to look for, by object type: an unsubscribe's in every object an opt-out
    reaches; a new subscriber's (not linked yet) in the objects it may match."""
    sync_to_sf = ctx.options.sync_to_sf
    opt_outs = ctx.options.sync_unsubscribes_to_sf
    found: dict[str, set[str]] = {}
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
            found.setdefault(sf_object, set()).add(contact.email)
    return found


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
        opt = rules.opt_out_field(sf_object)  # type: ignore[arg-type]
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
    return [
        SfAccount(
            str(record["Id"]),
            str(record.get("Name") or ""),
            str(record.get("CreatedDate") or ""),
        )
        for record in ctx.sf.query_in(prefix, wanted, suffix)
    ]
