"""Sync Now: both directions in one run, on demand (admin API, CLI, demo).

A SystemModstamp catch-up since the last run and the pending Salesforce changes (unless the
setup is CC → SF only), then a Constant Contact poll (unless it is SF → CC only), counted per
direction. The one module that imports both directions; the runner imports neither.
"""

from __future__ import annotations

from typing import Any

from middleware import runner
from middleware.cc_to_sf import poll
from middleware.constantcontact.client import ConstantContactClient
from middleware.context import Context
from middleware.outcome import Outcome, merge_outcomes
from middleware.queue import Runtime
from middleware.salesforce.client import SalesforceClient
from middleware.sf_to_cc import flush


class _Directions:
    """Outcomes kept per direction, so a run's counts say which way each action went."""

    def __init__(self) -> None:
        self.parts: dict[str, Outcome] = {}

    @property
    def warnings(self) -> list[str]:
        return [w for part in self.parts.values() for w in part.warnings]

    def report(self) -> dict[str, Any]:
        return {direction: part.report() for direction, part in self.parts.items()}


class BothWays:
    """Sync Now's result: Salesforce → CC and CC → Salesforce, counted apart."""

    def __init__(self) -> None:
        self.records = 0
        self.batches = 0
        self.outcome = _Directions()

    def add(self, direction: str, part: runner.Result) -> None:
        self.records += part.records
        self.batches += part.batches
        target = self.outcome.parts.setdefault(direction, Outcome())
        merge_outcomes(target, part.outcome)


def run_sync_now(
    runtime: Runtime,
    setup_id: int,
    *,
    sf: SalesforceClient | None = None,
    cc: ConstantContactClient | None = None,
    job_id: str | None = None,
) -> dict[str, Any]:
    """Sync Now, both directions at once (see the module docstring)."""

    def body(ctx: Context) -> BothWays:
        result = BothWays()
        if ctx.options.sync_to_cc:
            for part in (flush.catch_up_all(ctx), flush.flush(ctx, runtime.redis)):
                result.add("sf_to_cc", part)
        if ctx.options.polls:
            result.add("cc_to_sf", poll.poll(ctx))
        return result

    return runner.run(
        runtime,
        setup_id,
        "sync_now",
        body,
        sf=sf,
        cc=cc,
        job_id=job_id,
        needs_sync_to_cc=False,
        resume=runner.flush_resume(setup_id),
    )
