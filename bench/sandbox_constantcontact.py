"""Benchmark: JSON-import contacts into the Constant Contact sandbox, as a full sync would.

Sends `contacts_json_import` activities of 40,000 contacts (the API's cap) through the real HTTP
routes (mounted in-process), polls each to completion, and prints contacts/s and peak RSS.

    .venv/bin/python bench/sandbox_constantcontact.py                # 1,000,000 contacts
    .venv/bin/python bench/sandbox_constantcontact.py --contacts 200000
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sandbox.adapter import in_process_session
from sandbox.constantcontact.app import create_app

BASE = "https://api.cc.sandbox.test"


def rows(start: int, count: int) -> list[dict[str, str]]:
    # Lean rows: 40,000 contacts must stay under the 4 MB body cap (about 100 bytes each).
    return [
        {
            "email": f"p{n}@example.org",
            "first_name": f"F{n % 997}",
            "last_name": f"L{n % 991}",
            "cf:Since": str(2000 + n % 25),
        }
        for n in range(start, start + count)
    ]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=40_000)
    args = parser.parse_args()

    app = create_app({"RATE_PER_SECOND": 0, "DAILY_QUOTA": 0, "ACTIVITY_STEPS": 1})
    http = in_process_session(BASE, app)
    token = http.post(f"{BASE}/_sandbox/tokens", json={}).json()["access_token"]
    http.headers["Authorization"] = f"Bearer {token}"
    main_list = http.post(f"{BASE}/v3/contact_lists", json={"name": "Main"}).json()["list_id"]
    http.post(f"{BASE}/v3/contact_custom_fields", json={"label": "Since", "type": "string"})

    server_seconds = 0.0
    server_cpu = 0.0
    largest = 0
    started = time.perf_counter()
    for start in range(0, args.contacts, args.batch):
        count = min(args.batch, args.contacts - start)
        body = json.dumps(
            {"import_data": rows(start, count), "list_ids": [main_list]}, separators=(",", ":")
        )
        largest = max(largest, len(body))
        t0, c0 = time.perf_counter(), time.process_time()
        resp = http.post(
            f"{BASE}/v3/activities/contacts_json_import",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        resp.raise_for_status()
        activity = http.get(f"{BASE}/v3/activities/{resp.json()['activity_id']}").json()
        server_seconds += time.perf_counter() - t0
        server_cpu += time.process_time() - c0
        if activity["state"] != "completed" or activity["status"]["person_count"] != count:
            raise SystemExit(f"import did not complete cleanly: {activity}")
        done = start + count
        print(
            f"{done:>9,} contacts  {done / (time.perf_counter() - started):>9,.0f}/s overall  "
            f"peak RSS {peak_rss_mb():,.0f} MB",
            flush=True,
        )
    elapsed = time.perf_counter() - started
    state = http.get(f"{BASE}/_sandbox/state").json()["records"]
    print(
        f"imported {state['contacts']:,} contacts ({state['memberships']:,} list memberships) in "
        f"{elapsed:.1f} s: {args.contacts / elapsed:,.0f} contacts/s end to end, "
        f"{args.contacts / server_seconds:,.0f} contacts/s in the sandbox (request + completion), "
        f"{args.contacts / server_cpu:,.0f} per CPU-second (the box is shared); "
        f"peak RSS {peak_rss_mb():,.0f} MB; largest body {largest / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
