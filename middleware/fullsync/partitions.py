"""Full Sync partitions: Salesforce Id ranges that several workers sync at once.

A large setup's run is split into ranges of record Ids, ``[low, high)``. Each partition job reads
its range from Salesforce (a Bulk 2.0 query with ``Id >= low AND Id < high``), the whole
Constant Contact export, and the links in its range, and syncs them exactly as a whole run would;
one reconcile step at the end (:func:`jobs.full_sync.full_sync_partition` elects it) settles what
crosses ranges: addresses two ranges both claimed, and the run record.

Boundaries come from the store's links (their Ids are the records the setup already knows), so
choosing them costs no API call; records created since fall in the open-ended last range.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from middleware.salesforce.client import soql_string
from middleware.store.models import Link


@dataclass(frozen=True)
class Partition:
    """Records with ``low <= Id < high``; an empty ``low`` and a ``None`` high are open ends."""

    low: str = ""
    high: str | None = None
    index: int = 0
    count: int = 1

    @property
    def name(self) -> str:
        return "all" if self.count == 1 else f"p{self.index + 1}of{self.count}"

    def contains(self, sf_id: str) -> bool:
        return sf_id >= self.low and (self.high is None or sf_id < self.high)

    def soql_where(self) -> str:
        parts = []
        if self.low:
            parts.append(f"Id >= {soql_string(self.low)}")
        if self.high is not None:
            parts.append(f"Id < {soql_string(self.high)}")
        return " AND ".join(parts)

    def as_json(self) -> dict[str, object]:
        return {"low": self.low, "high": self.high, "index": self.index, "count": self.count}

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> Partition:
        high = raw.get("high")
        return cls(
            low=str(raw.get("low") or ""),
            high=str(high) if high is not None else None,
            index=int(str(raw.get("index") or 0)),
            count=int(str(raw.get("count") or 1)),
        )


def split(boundaries: list[str]) -> list[Partition]:
    """Partitions between sorted, distinct boundaries (``n`` boundaries make ``n + 1`` ranges)."""
    edges = sorted(set(b for b in boundaries if b))
    lows = ["", *edges]
    highs: list[str | None] = [*edges, None]
    count = len(lows)
    return [
        Partition(low=lo, high=hi, index=i, count=count)
        for i, (lo, hi) in enumerate(zip(lows, highs, strict=True))
    ]


def plan_partitions(session: Session, setup_id: int, count: int) -> list[Partition]:
    """``count`` ranges holding about as many of the setup's linked records each.

    A setup with too few links for ``count`` ranges (a new one) gets one range.
    """
    if count <= 1:
        return [Partition()]
    total = (
        session.scalar(
            select(func.count()).where(Link.setup_id == setup_id, Link.status == "active")
        )
        or 0
    )
    if total < count * 2:
        return [Partition()]
    boundaries = []
    for k in range(1, count):
        boundary = session.scalar(
            select(Link.sf_id)
            .where(Link.setup_id == setup_id, Link.status == "active")
            .order_by(Link.sf_id)
            .offset(total * k // count)
            .limit(1)
        )
        if boundary:
            boundaries.append(boundary)
    return split(boundaries)
