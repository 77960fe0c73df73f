"""SF → CC, stage 3 (plan): the pure rules of :mod:`middleware.sync.sf_to_cc`, given what was read.

Nothing here does I/O: the rules decide, :mod:`.write` does. Kept as a stage of its own so the
path of a batch reads collect → read → plan → write → record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from middleware.context import Context
from middleware.sync import CcContact, Link, Plan
from middleware.sync.mapping import record_email
from middleware.sync.segments import unmatched
from middleware.sync.sf_to_cc import opt_out_to_set_again, plan_sf_to_cc


def outside_filter(ctx: Context, records: Sequence[Mapping[str, Any]]) -> set[str]:
    """Ids of the records the setup's filter leaves out."""
    return set(unmatched(ctx.options, records))


def plan_batch(
    ctx: Context,
    records: list[dict[str, Any]],
    *,
    links: Iterable[Link],
    contacts: Iterable[CcContact],
    missing: Sequence[str],
    outside: set[str],
    segment_lists: Mapping[str, Sequence[str]] | None = None,
    reset: bool = False,
) -> Plan:
    """One batch's plan (:func:`plan_sf_to_cc`) with the setup's CC targets and clock;
    ``segment_lists`` as :func:`.segments.batch_segments` gives them (None: not segmented)."""
    return plan_sf_to_cc(
        ctx.options,
        records,
        links=list(links),
        cc_contacts=list(contacts),
        main_list_id=ctx.main_list_id,
        custom_field_ids=ctx.custom_field_ids,
        now=ctx.now(),
        missing_ids=missing,
        unmatched_ids=outside,
        segment_lists=segment_lists,
        frozen_lists=ctx.frozen_list_ids,
        reset=reset,
    )


def opt_outs_to_set_again(
    ctx: Context, records: Mapping[str, Mapping[str, Any]], contacts: Iterable[CcContact]
) -> list[str]:
    """Records whose opt-out someone cleared in Salesforce while Constant Contact still holds
    the address unsubscribed (§5a; the rule is :func:`opt_out_to_set_again`)."""
    by_email = {c.email: c for c in contacts if not c.deleted}
    return [
        sf_id
        for sf_id, record in sorted(records.items())
        if opt_out_to_set_again(
            ctx.options, record, by_email.get(record_email(ctx.options, record) or "")
        )
    ]
