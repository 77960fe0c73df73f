"""The sandbox store under load: lazy streaming queries and many threads at once."""

from __future__ import annotations

import inspect
import threading
import tracemalloc
from datetime import UTC, datetime

import pytest

from sandbox.salesforce.store import OrgStore

ROWS = 50_000


class FixedClock:
    def now(self) -> datetime:
        return datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def seeded() -> OrgStore:
    store = OrgStore("standard", clock=FixedClock())
    store.insert_many(
        "Contact",
        (
            {
                "LastName": f"Person{i:06d}",
                "Email": f"p{i}@example.org",
                "HasOptedOutOfEmail": i % 7 == 0,
            }
            for i in range(ROWS)
        ),
    )
    return store


@pytest.mark.slow
def test_streaming_is_lazy_and_does_not_block_writers() -> None:
    store = seeded()
    result = store.query(
        "SELECT Id, LastName, Email, HasOptedOutOfEmail FROM Contact ORDER BY LastName"
    )
    assert result.total_size == ROWS
    assert inspect.isgenerator(result.rows)
    first = next(result.rows)
    assert first["LastName"] == "Person000000" and first["HasOptedOutOfEmail"] is True

    # Mid-stream, another thread can write: the iterator holds no store lock between rows.
    done = threading.Event()

    def writer() -> None:
        store.create("Contact", {"LastName": "Written meanwhile"})
        store.update("Contact", first["Id"], {"Title": "touched"})
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    thread.join(timeout=10)
    assert done.is_set()

    count = 1
    previous = first["LastName"]
    for row in result.rows:
        assert row["LastName"] >= previous
        previous = row["LastName"]
        count += 1
    assert count >= ROWS


@pytest.mark.slow
def test_streaming_memory_does_not_grow_with_the_result() -> None:
    store = seeded()
    tracemalloc.start()
    try:
        result = store.query("SELECT Id, LastName, Email FROM Contact")
        seen = 0
        base = tracemalloc.get_traced_memory()[0]
        for _row in result.rows:
            seen += 1
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert seen == ROWS
    # All 50,000 rows as dicts would take well over 10 MB; a chunked stream stays near one chunk.
    assert peak < 2_000_000


@pytest.mark.slow
def test_abandoned_stream_releases_its_connection() -> None:
    store = seeded()
    result = store.query("SELECT Id FROM Contact")
    next(result.rows)
    result.rows.close()  # type: ignore[attr-defined]
    store.reset()
    assert store.count("Contact") == 0


def test_threads_writing_and_reading_together() -> None:
    store = OrgStore("standard", clock=FixedClock())
    seen: list[int] = []
    store.subscribe(lambda batch: seen.append(len(batch)))
    errors: list[BaseException] = []
    workers, per_worker = 6, 40

    def work(n: int) -> None:
        try:
            for i in range(per_worker):
                record_id = store.create(
                    "Contact", {"LastName": f"W{n}-{i}", "Email": f"w{n}.{i}@x.org"}
                )
                store.update("Contact", record_id, {"Title": f"T{i}"})
                rows = list(
                    store.query(f"SELECT Id, Title FROM Contact WHERE Id = '{record_id}'").rows
                )
                assert rows == [{"Id": record_id, "Title": f"T{i}"}]
                if i % 5 == 0:
                    with store.transaction():
                        other = store.create("Contact", {"LastName": f"Tx{n}-{i}"})
                        store.delete("Contact", other)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert store.count("Contact") == workers * per_worker
    assert (
        store.query("SELECT COUNT() FROM Contact WHERE Title != null").total_size
        == workers * per_worker
    )
    ids = [r["Id"] for r in store.query("SELECT Id FROM Contact", include_deleted=True).rows]
    assert len(ids) == len(set(ids)) == workers * per_worker + workers * (per_worker // 5)
    transactions = workers * per_worker * 2 + workers * (per_worker // 5)
    assert len(seen) == transactions


@pytest.mark.slow
def test_bulk_load_into_an_empty_table_while_a_stream_is_open() -> None:
    store = seeded()
    result = store.query("SELECT Id FROM Contact")
    next(result.rows)
    assert (
        store.insert_many("Lead", ({"LastName": f"L{i}", "Company": "C"} for i in range(100)))
        == 100
    )
    assert sum(1 for _ in result.rows) == ROWS - 1
    hits = store.query("SELECT Id FROM Lead WHERE LastName = 'L7'")
    assert hits.total_size == 1
