"""Full Sync budget, checkpoints and partitions: the pure parts and the store round trip."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from middleware.fullsync import checkpoint as checkpoints
from middleware.fullsync.budget import Budget, BudgetExhausted
from middleware.fullsync.checkpoint import Checkpoint
from middleware.fullsync.partitions import Partition, plan_partitions, split
from middleware.store import links as links_repo
from middleware.store import setups
from middleware.store.db import Store

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


def test_budget_stops_before_the_share_is_passed_and_says_when() -> None:
    budget = Budget(cc_daily=10_000, cc_share=0.5, cc_used_today=4_900)
    budget.check(NOW, cc_spent=90, cc_next=10)  # exactly 100 left: fits
    with pytest.raises(BudgetExhausted) as caught:
        budget.check(NOW, cc_spent=90, cc_next=11)
    assert caught.value.resume_at == datetime(2026, 11, 27, tzinfo=UTC)
    assert "Constant Contact" in str(caught.value)


def test_salesforce_budget_applies_once_the_org_limit_is_known() -> None:
    budget = Budget(sf_share=0.1)
    budget.check(NOW, cc_spent=0, cc_next=0, sf_spent=10_000, sf_next=1)  # limit unknown
    budget.sf_daily = 15_000
    with pytest.raises(BudgetExhausted) as caught:
        budget.check(NOW, cc_spent=0, cc_next=0, sf_spent=1_500, sf_next=1)
    assert caught.value.vendor == "salesforce"


def test_share_zero_disables_the_check() -> None:
    Budget(cc_share=0).check(NOW, cc_spent=10**6, cc_next=10**6)


def test_checkpoint_round_trip_and_clear(sqlite_store: Store) -> None:
    with sqlite_store.transaction() as session:
        setup_id = setups.create(session, name="s", options={}).id
    cp = Checkpoint(run_id=7, reset=True, phase="sync", last_sf_id="003B", inflight=[["003C", "f"]])
    checkpoints.save(sqlite_store, setup_id, cp)
    assert checkpoints.load(sqlite_store, setup_id) == cp
    checkpoints.save(sqlite_store, setup_id, Checkpoint(run_id=7, partition="p1of2"))
    checkpoints.clear_all(sqlite_store, setup_id)
    assert checkpoints.load(sqlite_store, setup_id) is None
    assert checkpoints.load(sqlite_store, setup_id, "p1of2") is None


def test_partitions_cover_every_id_once() -> None:
    parts = split(["003M", "003F"])
    assert [p.name for p in parts] == ["p1of3", "p2of3", "p3of3"]
    for sf_id in ("003A", "003F", "003L", "003M", "003Z"):
        assert sum(p.contains(sf_id) for p in parts) == 1
    assert parts[1].soql_where() == "Id >= '003F' AND Id < '003M'"
    assert Partition.from_json(parts[2].as_json()) == parts[2]
    assert Partition().soql_where() == ""


def test_partition_boundaries_come_from_the_links(sqlite_store: Store) -> None:
    with sqlite_store.transaction() as session:
        setup_id = setups.create(session, name="s", options={}).id
        links_repo.upsert_links(
            session,
            setup_id,
            [
                {"sf_id": f"003{i:04d}", "sf_object": "Contact", "email": f"{i}@x.org"}
                for i in range(100)
            ],
        )
        parts = plan_partitions(session, setup_id, 4)
        assert [p.low for p in parts] == ["", "0030025", "0030050", "0030075"]
        assert plan_partitions(session, setup_id, 1) == [Partition()]
