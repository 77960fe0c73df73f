"""What a batch did, in the shape a run reports: counts, skips, warnings and per-record failures.

Both directions and the Full Sync fill an :class:`Outcome` per batch and merge them into the
run's (:func:`merge_outcomes`); the runner turns the total into the run's counts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Failure:
    """One record a vendor would not take, as a sync error the user can retry."""

    sf_id: str
    code: str
    message: str
    email: str | None = None
    cc_contact_id: str | None = None


@dataclass
class Outcome:
    """What executing a plan did: counts for the run report and the records that failed."""

    counts: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def failed_ids(self) -> set[str]:
        return {f.sf_id for f in self.failures}

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.counts)
        if self.skipped:
            out["skipped"] = dict(self.skipped)
        if self.failures:
            out["errors"] = len(self.failures)
        return out


def merge_outcomes(total: Outcome, part: Outcome) -> None:
    """Add one batch's outcome to a run's (each warning once)."""
    total.counts.update(part.counts)
    total.skipped.update(part.skipped)
    total.failures.extend(part.failures)
    total.warnings.extend(w for w in part.warnings if w not in total.warnings)


def counted(outcome: Outcome) -> Counter[str]:
    """Every count of an outcome in one counter (tests and the bench read it)."""
    total: Counter[str] = Counter(outcome.counts)
    total.update({f"skipped: {k}": v for k, v in outcome.skipped.items()})
    return total
