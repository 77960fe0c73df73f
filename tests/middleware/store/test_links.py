"""Tests for links: bulk upserts, partial updates, retired links, lookups by email and contact."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import event

from middleware.store import links, setups
from middleware.store.db import Store


@pytest.fixture
def setup_id(store: Store) -> int:
    with store.transaction() as session:
        return setups.create(session, name="Contacts", options={}).id


def _row(n: int, **extra: object) -> dict[str, object]:
    return {
        "sf_id": f"003{n:015d}",
        "sf_object": "Contact",
        "cc_contact_id": f"cc-{n}",
        "email": f"Person{n}@Example.org ",
        "fingerprint": f"fp-{n}",
        "lists": ["main"],
        **extra,
    }


def test_upsert_inserts_then_updates_in_place(store: Store, setup_id: int) -> None:
    with store.transaction() as session:
        assert links.upsert_links(session, setup_id, [_row(1), _row(2)]) == 2
    with store.transaction() as session:
        links.upsert_links(
            session,
            setup_id,
            [{"sf_id": _row(1)["sf_id"], "sf_object": "Contact", "fingerprint": "new"}],
        )
    with store.session() as session:
        found = links.for_sf_ids(session, setup_id, [_row(1)["sf_id"], _row(2)["sf_id"], "nope"])
        assert set(found) == {_row(1)["sf_id"], _row(2)["sf_id"]}
        first = found[str(_row(1)["sf_id"])]
        # Only the keys given change: lists, email and contact id survive a fingerprint refresh.
        assert first.fingerprint == "new"
        assert first.lists == ["main"]
        assert first.email == "person1@example.org"
        assert first.cc_contact_id == "cc-1"
        assert links.counts(session, setup_id) == {"active": 2}


def test_links_are_per_setup(store: Store, setup_id: int) -> None:
    with store.transaction() as session:
        other = setups.create(session, name="Leads", options={}).id
        links.upsert_links(session, setup_id, [_row(1)])
        links.upsert_links(session, other, [_row(1, cc_contact_id="cc-other")])
    with store.session() as session:
        mine = links.for_sf_ids(session, setup_id, [str(_row(1)["sf_id"])])
        theirs = links.for_sf_ids(session, other, [str(_row(1)["sf_id"])])
    assert mine[str(_row(1)["sf_id"])].cc_contact_id == "cc-1"
    assert theirs[str(_row(1)["sf_id"])].cc_contact_id == "cc-other"


def test_relink_keeps_the_old_address_as_retired(store: Store, setup_id: int) -> None:
    sf_id = str(_row(1)["sf_id"])
    with store.transaction() as session:
        links.upsert_links(session, setup_id, [_row(1)])
        links.relink(
            session,
            setup_id,
            sf_id=sf_id,
            sf_object="Contact",
            cc_contact_id="cc-9",
            email="NEW@example.org",
        )
    with store.session() as session:
        assert links.for_sf_ids(session, setup_id, [sf_id])[sf_id].cc_contact_id == "cc-9"
        old = links.for_emails(session, setup_id, ["person1@example.org"])
        assert [link.status for link in old["person1@example.org"]] == ["retired"]
        assert (
            links.for_emails(session, setup_id, ["person1@example.org"], include_retired=False)
            == {}
        )
        by_contact = links.for_cc_contact_ids(session, setup_id, ["cc-1", "cc-9"])
        assert [x.status for x in by_contact["cc-1"]] == ["retired"]
        assert [x.status for x in by_contact["cc-9"]] == ["active"]
        assert links.counts(session, setup_id) == {"active": 1, "retired": 1}


def test_retire_links_counts_only_active(store: Store, setup_id: int) -> None:
    with store.transaction() as session:
        links.upsert_links(session, setup_id, [_row(1), _row(2)])
        assert links.retire_links(session, setup_id, [str(_row(1)["sf_id"]), "unknown"]) == 1
        assert links.retire_links(session, setup_id, [str(_row(1)["sf_id"])]) == 0


def test_rows_are_checked(store: Store, setup_id: int) -> None:
    with store.transaction() as session:
        with pytest.raises(ValueError, match="sf_object"):
            links.upsert_links(session, setup_id, [{"sf_id": "003x"}])
        with pytest.raises(ValueError, match="unknown link columns"):
            links.upsert_links(session, setup_id, [{**_row(1), "colour": "red"}])


def test_iter_active_pages_in_id_order(store: Store, setup_id: int) -> None:
    with store.transaction() as session:
        links.upsert_links(session, setup_id, [_row(n) for n in range(25)])
        links.retire_links(session, setup_id, [str(_row(3)["sf_id"])])
    with store.session() as session:
        pages = list(links.iter_active(session, setup_id, batch_size=10))
    assert [len(p) for p in pages] == [10, 10, 4]
    ids = [link.id for page in pages for link in page]
    assert ids == sorted(ids)


def test_large_lookups_are_chunked(store: Store, setup_id: int) -> None:
    rows = [_row(n) for n in range(2500)]
    with store.transaction() as session:
        links.upsert_links(session, setup_id, rows)
    with store.session() as session:
        by_sf = links.for_sf_ids(session, setup_id, [str(r["sf_id"]) for r in rows])
        by_email = links.for_emails(session, setup_id, [str(r["email"]) for r in rows])
    assert len(by_sf) == len(by_email) == 2500


def test_ten_thousand_upserts_are_a_few_statements(store: Store, setup_id: int) -> None:
    """Bulk means a statement per 5,000 rows, not per row: that is what keeps 10k upserts well
    under a second (the timing is printed, not asserted: a busy machine must not fail it)."""
    statements: list[str] = []

    def count(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if "links" in sql and ("INSERT" in sql or "UPDATE" in sql):
            statements.append(sql)

    rows = [_row(n) for n in range(10_000)]
    event.listen(store.engine, "before_cursor_execute", count)
    try:
        with store.transaction() as session:
            started = time.perf_counter()
            links.upsert_links(session, setup_id, rows)
            inserted = time.perf_counter() - started
        insert_statements = len(statements)
        updates = [{"sf_id": r["sf_id"], "sf_object": "Contact", "fingerprint": "v2"} for r in rows]
        with store.transaction() as session:
            started = time.perf_counter()
            links.upsert_links(session, setup_id, updates)
            updated = time.perf_counter() - started
        update_statements = len(statements) - insert_statements
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    with store.session() as session:
        assert links.counts(session, setup_id) == {"active": 10_000}
    print(f"\n{store.dialect}: 10k link inserts {inserted:.3f}s, 10k updates {updated:.3f}s")
    assert 1 <= insert_statements <= 4
    assert 1 <= update_statements <= 4


def test_fill_contact_ids_fills_only_links_still_waiting_at_that_address(
    store: Store, setup_id: int
) -> None:
    with store.transaction() as s:
        links.upsert_links(
            s,
            setup_id,
            [
                {"sf_id": "003A", "sf_object": "Contact", "email": "a@example.org"},
                {"sf_id": "003B", "sf_object": "Contact", "email": "b@example.org"},
                {
                    "sf_id": "003C",
                    "sf_object": "Contact",
                    "email": "c@example.org",
                    "cc_contact_id": "known",
                },
            ],
        )
        links.retire_links(s, setup_id, ["003B"])
    with store.transaction() as s:
        filled = links.fill_contact_ids(
            s,
            setup_id,
            [("A@Example.org ", "cid-a"), ("b@example.org", "cid-b"), ("c@example.org", "x")],
        )
        assert filled == 1
        found = links.for_emails(s, setup_id, ["a@example.org", "b@example.org", "c@example.org"])
        assert [r.cc_contact_id for r in found["a@example.org"]] == ["cid-a"]
        assert [r.cc_contact_id for r in found["b@example.org"]] == [None]  # retired: left
        assert [r.cc_contact_id for r in found["c@example.org"]] == ["known"]
        assert links.fill_contact_ids(s, setup_id, []) == 0
