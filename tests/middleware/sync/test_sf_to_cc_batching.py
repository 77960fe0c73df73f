"""The SF→CC plan for 10,000 records turns into a handful of batched calls, and is planned fast."""

from __future__ import annotations

import time

import pytest

from middleware.sync.types import AddToLists, Import, RemoveFromLists
from tests.middleware.sync.conftest import MAIN, cc, contact_record, link_for, run

SETUP = {"object_type": "Contact", "unsubscribe_on_sf_opt_out": True}
N = 10_000


def _batch():
    """10,000 records: 60% new, 20% changed, 10% unchanged, 10% opted out after sync."""
    records, links, contacts = [], [], []
    for i in range(N):
        email = f"person{i}@example.com"
        sf_id = f"003{i:012d}"
        kind = i % 10
        record = contact_record(sf_id, email=email, Title=f"T{i}")
        if kind in (6, 7):  # changed since last written
            links.append(link_for(SETUP, contact_record(sf_id, email=email), f"C{i}"))
            contacts.append(cc(f"C{i}", email))
        elif kind == 8:  # unchanged
            links.append(link_for(SETUP, record, f"C{i}"))
            contacts.append(cc(f"C{i}", email))
        elif kind == 9:  # opted out after sync
            links.append(link_for(SETUP, record, f"C{i}", list_ids=(MAIN, "L-seg")))
            contacts.append(cc(f"C{i}", email, list_memberships=(MAIN, "L-seg")))
            record = {**record, "HasOptedOutOfEmail": True}
        records.append(record)
    return records, links, contacts


@pytest.fixture(scope="module")
def batch():
    return _batch()


def test_ten_thousand_records_become_a_handful_of_calls(batch):
    records, links, contacts = batch
    plan = run(SETUP, records, links=links, contacts=contacts)
    imports = list(plan.import_batches())
    list_calls = list(plan.list_batches())
    assert sum(len(rows) for _, rows in imports) == 8_000
    assert len(imports) == 1  # 8,000 rows, one list set, well under 4 MB
    assert all(isinstance(c, AddToLists | RemoveFromLists) for c in list_calls)
    # 1,000 removals from each of two lists, ≤ 500 ids a call.
    assert len(list_calls) == 4 and all(len(c.contact_ids) <= 500 for c in list_calls)
    # Unsubscribes are single PUTs by nature: one per opted-out linked record.
    assert len(plan.of_type(type(plan.cc_actions[-1]))) == 1_000


def test_import_batches_respect_row_and_byte_limits():
    records = [contact_record(f"003{i:06d}", email=f"p{i}@example.com") for i in range(1_000)]
    plan = run({"object_type": "Contact"}, records)
    by_rows = list(plan.import_batches(max_rows=300))
    assert [len(rows) for _, rows in by_rows] == [300, 300, 300, 100]
    by_bytes = list(plan.import_batches(max_bytes=20_000))
    assert len(by_bytes) > 1
    assert sum(len(rows) for _, rows in by_bytes) == 1_000
    assert all(isinstance(row, Import) for _, rows in by_bytes for row in rows)


def test_ten_thousand_records_are_planned_in_well_under_a_second(batch):
    records, links, contacts = batch
    best = float("inf")
    # Up to three tries: the CI box is shared, and one descheduled run is not the planner's
    # speed. Typically one run of ~0.25 s.
    for _ in range(3):
        start = time.perf_counter()
        run(SETUP, records, links=links, contacts=contacts)
        best = min(best, time.perf_counter() - start)
        if best < 1.0:
            break
    assert best < 1.0, f"planning 10,000 records took {best:.2f}s at best"
