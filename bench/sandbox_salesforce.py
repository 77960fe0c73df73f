"""Benchmark of the Salesforce sandbox at scale: seed N contacts, export them through Bulk API 2.0.

The export runs simple-salesforce's `bulk2.Contact.download` unmodified against the sandbox app
mounted in-process (requests transport adapter, no sockets), paging with maxRecords=50000, and
counts the rows it wrote to disk. Peak RSS is sampled from /proc during each phase.

    .venv/bin/python -m bench.sandbox_salesforce [--contacts 1000000] [--page 50000]
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import PeakRss, rss_mb

SOQL = (
    "SELECT Id, FirstName, LastName, Email, HasOptedOutOfEmail, Title, Phone, MailingStreet, "
    "MailingCity, MailingState, MailingPostalCode, AccountId, SystemModstamp FROM Contact"
)
INSTANCE_URL = "https://sf.sandbox.test"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--page", type=int, default=50_000)
    args = parser.parse_args(argv)

    from simple_salesforce import Salesforce

    from sandbox.adapter import in_process_session
    from sandbox.salesforce import create_app
    from sandbox.salesforce.org import current_sandbox
    from sandbox.salesforce.seed import seed_org

    app = create_app({"BULK_STEPS": 1})
    with app.app_context():
        sandbox = current_sandbox()
    print(f"python {sys.version.split()[0]}, pid {os.getpid()}, start RSS {rss_mb():.0f} MB")

    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 5 or done == total:
            last[0] = now
            print(f"  seeded {done:,}/{total:,}", flush=True)

    with PeakRss() as seed_rss:
        result = seed_org(sandbox, contacts=args.contacts, progress=progress)
    print(
        f"seed: {result['contacts']:,} contacts in {result['seconds']:.1f} s "
        f"({result['contacts'] / max(result['seconds'], 1e-9):,.0f} rows/s), "
        f"peak RSS {seed_rss.peak:.0f} MB"
    )

    session = in_process_session(INSTANCE_URL, app)
    token = sandbox.auth.issue().access_token
    sf = Salesforce(session_id=token, instance_url=INSTANCE_URL, version="64.0", session=session)
    before = rss_mb()
    with tempfile.TemporaryDirectory() as tmp, PeakRss() as export_rss:
        started = time.perf_counter()
        bulk2: Any = sf.bulk2  # typed as a union of handlers by simple-salesforce
        pages = bulk2.Contact.download(SOQL, path=tmp, max_records=args.page, wait=0.2)
        elapsed = time.perf_counter() - started
        rows = 0
        for page in pages:
            with open(page["file"], encoding="utf-8", newline="") as fh:
                rows += sum(1 for _ in csv.reader(fh)) - 1
            Path(page["file"]).unlink()
    print(
        f"export: {rows:,} rows in {len(pages)} pages of <= {args.page:,} in {elapsed:.1f} s "
        f"({rows / elapsed:,.0f} rows/s)"
    )
    print(
        f"RSS before export {before:.0f} MB, peak during export {export_rss.peak:.0f} MB "
        f"(+{export_rss.peak - before:.0f} MB); process max RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
    if rows != args.contacts:
        print(f"MISMATCH: exported {rows} of {args.contacts} rows", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
