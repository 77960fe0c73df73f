"""Benchmark of the Salesforce sandbox store: seed N contacts with insert_many, stream a query.

Usage: .venv/bin/python bench/sandbox_store.py [N]   (default 1,000,000)
Prints seconds, rows/s and peak RSS for the generate+load and for a 6-column streaming query.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from typing import Any

from sandbox.salesforce.store import OrgStore


def contacts(n: int, account_ids: list[str]) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {
            "FirstName": f"First{i % 997}",
            "LastName": f"Last{i}",
            "Email": f"person{i}@example{i % 50}.org",
            "MailingCity": "Springfield",
            "HasOptedOutOfEmail": i % 23 == 0,
            "AccountId": account_ids[i % len(account_ids)],
        }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    store = OrgStore("standard")
    accounts = [store.create("Account", {"Name": f"Account {i}"}) for i in range(100)]
    print(f"rss before load: {peak_rss_mb():.0f} MB")

    t0, c0 = time.perf_counter(), time.process_time()
    loaded = store.insert_many("Contact", contacts(n, accounts))
    load_s = time.perf_counter() - t0
    print(
        f"insert_many (incl. generating the rows): {loaded} contacts in {load_s:.2f} s"
        f" ({loaded / load_s:,.0f} rows/s; {time.process_time() - c0:.2f} s CPU)"
    )
    print(f"peak rss after load: {peak_rss_mb():.0f} MB")

    t0, c0 = time.perf_counter(), time.process_time()
    result = store.query(
        "SELECT Id, FirstName, LastName, Email, HasOptedOutOfEmail, SystemModstamp FROM Contact"
    )
    rows = 0
    for _row in result.rows:
        rows += 1
    query_s = time.perf_counter() - t0
    print(
        f"query (6 columns): {rows} rows in {query_s:.2f} s ({rows / query_s:,.0f} rows/s;"
        f" {time.process_time() - c0:.2f} s CPU)"
    )
    print(f"peak rss after flat query: {peak_rss_mb():.0f} MB")

    t0 = time.perf_counter()
    result = store.query("SELECT Id, Email, Account.Name FROM Contact")
    rows = sum(1 for _ in result.rows)
    rel_s = time.perf_counter() - t0
    print(f"query with Account.Name: {rows} rows in {rel_s:.2f} s ({rows / rel_s:,.0f} rows/s)")

    t0 = time.perf_counter()
    hits = store.query("SELECT Id FROM Contact WHERE Email = 'PERSON4242@example42.org'")
    found = list(hits.rows)
    print(f"indexed email lookup: {len(found)} row in {(time.perf_counter() - t0) * 1000:.1f} ms")
    print(f"peak rss at end: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
