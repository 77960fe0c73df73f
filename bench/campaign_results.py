"""Benchmark of campaign results: one email to 100,000 recipients comes back to Salesforce.

In process (the e2e harness: both sandboxes, the service's store, real HTTP through transport
adapters, every Constant Contact exchange checked against the spec). Seeds `--recipients`
Salesforce Contacts, syncs them to Constant Contact's main list with a Full Sync (so the setup's
links know them, as in production), then sends one email to the main list with the sandbox's
simulator: `--opens` (30 %) of the recipients open it (some more than once), `--clicks` (5 %)
click one of three links, 1 % bounce, 0.2 % opt out, 0.1 % forward, over the day before now.

For each `campaign_response_mode` (campaign, activity, campaign_and_activity), on the same email
with the setup's results state cleared before each, it measures by the sandboxes' own call
counters and the wall time:

1. the first run: every report read whole, every Campaign Member / Task written;
2. a second run after `--new` (1 %) new events (new opens and clicks since the first run):
   target ≤ 10 % of the first run's Constant Contact calls.

It checks that the first run fits the setup's call ceiling (`campaign_results.max_cc_calls`,
default 1,000 = a tenth of the application's daily 10,000) and that Salesforce writes went in
Bulk 2.0 jobs or collections of 200 (never a record per call), and that what Salesforce holds
agrees with what the reports say (members by status, one Task per opener and per link clicked).

    .venv/bin/python -m bench.campaign_results [--recipients 100000] [--opens 0.3] [--clicks 0.05]
        [--new 0.01] [--modes campaign,activity,campaign_and_activity]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench import _common as c

MODES = ("campaign", "activity", "campaign_and_activity")
TARGET_SECOND_SHARE = 0.10
EMAIL = "Spring appeal"


@dataclass
class Step:
    name: str
    wall_seconds: float
    sf_calls: dict[str, int]
    cc_calls: dict[str, int]
    counts: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def cc_total(self) -> int:
        return sum(self.cc_calls.values())

    @property
    def sf_total(self) -> int:
        return sum(self.sf_calls.values())


def expected(cc_app: Any, activity_id: str) -> tuple[dict[str, str], int]:
    """From the CC sandbox's own tables: each recipient's highest status, and the Tasks due
    (one per opener — a click counts as an open — and one per distinct link each clicked)."""
    rank = {"send": 0, "bounce": 1, "open": 2, "click": 3, "optout": 4}
    label = {0: "Sent", 1: "Bounced", 2: "Opened", 3: "Clicked", 4: "Unsubscribed"}
    store = cc_app.extensions["cc_sandbox"].store
    best: dict[str, int] = {}
    openers: set[str] = set()
    clicks: set[tuple[str, str]] = set()
    with store.read() as db:
        rows = db.execute(
            "SELECT c.email, t.kind, json_extract(t.data, '$.url_id') AS url FROM email_tracking t"
            " JOIN email_activities a ON a.id = t.activity JOIN contacts c ON c.id = t.contact"
            " WHERE a.campaign_activity_id = ?",
            (activity_id,),
        ).fetchall()
    for email, kind, url in rows:
        if kind in rank:
            best[email] = max(best.get(email, 0), rank[kind])
        if kind in ("open", "click"):
            openers.add(email)
        if kind == "click":
            clicks.add((email, str(url)))
    return {e: label[r] for e, r in best.items()}, len(openers) + len(clicks)


def check(w: Any, mode: str, activity_id: str, campaign_name: str, tasks_before: int) -> list[str]:
    """What Salesforce holds against what the reports say (Contacts of the setup only)."""
    store = w.sf_app.extensions["sf_sandbox"].store
    statuses, tasks_due = expected(w.cc_app, activity_id)
    email_of = {
        str(r["Id"]): str(r["Email"] or "").lower()
        for r in store.query("SELECT Id, Email FROM Contact").rows
    }
    emails = set(email_of.values())
    known = {e for e in statuses if e in emails}
    problems: list[str] = []
    if mode != "activity":
        from middleware.store import results as results_repo

        with w.store.transaction() as session:
            campaign_id = results_repo.activities(session, w.setup_id)[activity_id].sf_campaign_id
        soql = f"SELECT ContactId, Status FROM CampaignMember WHERE CampaignId = '{campaign_id}'"
        got = {
            email_of.get(str(r["ContactId"]), ""): str(r["Status"]) for r in store.query(soql).rows
        }
        wrong = [e for e in known if got.get(e) != statuses[e]]
        problems += [f"member {e}: {got.get(e)} != {statuses[e]}" for e in sorted(wrong)[:5]]
        if len(wrong) > 5:
            problems.append(f"... {len(wrong)} members wrong")
    if mode != "campaign":
        made = (
            store.query(
                f"SELECT COUNT() FROM Task WHERE Subject LIKE 'Email %: {campaign_name}'"
            ).total_size
            - tasks_before
        )
        if made != tasks_due:
            problems.append(f"{made} Tasks, {tasks_due} due")
    return problems


def run(recipients: int, opens: float, clicks: float, new: float, modes: list[str]) -> list[Step]:
    from middleware.fullsync import run as fs_run
    from middleware.results import run as results_run
    from middleware.store import results as results_repo
    from middleware.store import setups as setup_repo
    from sandbox.salesforce.seed import seed_org
    from tests.e2e.harness import CC_BASE, World

    w = World(options={"campaign_response_mode": "campaign"})
    steps: list[Step] = []
    try:
        c.quiet_logs()
        w.deliver_to_webhook = False
        seed_org(
            w.sf_app.extensions["sf_sandbox"],
            contacts=recipients,
            accounts=max(1, recipients // 50),
            opted_out_ratio=0.0,
            no_email_ratio=0.0,
        )
        started = time.monotonic()
        fs_run.run_full_sync(w.runtime, w.setup_id, sf=w.sf_client(), cc=w.cc_client())
        print(f"seeded and synced {recipients:,} contacts in {time.monotonic() - started:.1f} s")
        sent = w.cc_session.post(
            f"{CC_BASE}/_sandbox/emails",
            json={
                "name": EMAIL,
                "subject": "Spring is here: come and help",
                "list_names": ["Main List"],
                "links": [f"https://example.org/{p}" for p in ("donate", "volunteer", "news")],
                "rates": {
                    "open": opens,
                    "click": clicks,
                    "bounce": 0.01,
                    "optout": 0.002,
                    "forward": 0.001,
                },
                "spread_seconds": 86_400,
                "seed": 5,
            },
        )
        sent.raise_for_status()
        made = sent.json()
        activity = str(made["campaign_activity_id"])
        print(f"sent to {made['sends']:,}: {made.get('recorded')}")

        tasks_before: dict[str, int] = {}

        def measure(name: str, mode: str, reset_state: bool) -> Step:
            if reset_state:
                tasks_before[mode] = (
                    w.sf_app.extensions["sf_sandbox"]
                    .store.query("SELECT COUNT() FROM Task")
                    .total_size
                )
                with w.store.transaction() as session:
                    setup = setup_repo.get(session, w.setup_id)
                    assert setup is not None
                    setup.options = {**setup.options, "campaign_response_mode": mode}
                    known = results_repo.activities(session, w.setup_id)
                    results_repo.forget(session, [a.id for a in known.values()])
            sf0, cc0 = c.sf_calls(w.sf_app), c.cc_calls(w.cc_app)
            t0 = time.monotonic()
            counts = results_run.run_results(
                w.runtime, w.setup_id, sf=w.sf_client(), cc=w.cc_client()
            )
            wall = time.monotonic() - t0
            sf1, cc1 = c.sf_calls(w.sf_app), c.cc_calls(w.cc_app)
            step = Step(
                name,
                wall,
                c.diff_counts(sf1["by_family"], sf0["by_family"]),
                c.diff_counts(cc1["by_family"], cc0["by_family"]),
                counts,
            )
            step.problems = check(w, mode, activity, EMAIL, tasks_before[mode])
            steps.append(step)
            return step

        for mode in modes:
            measure(f"{mode}: first run", mode, reset_state=True)
            time.sleep(1.1)  # the new events come after everything the first run read
            more = w.cc_session.post(
                f"{CC_BASE}/_sandbox/emails/{activity}/simulate",
                json={"rates": {"open": new, "click": new / 5}, "seed": len(steps)},
            )
            more.raise_for_status()
            print(f"{mode}: new events {more.json().get('recorded')}")
            measure(f"{mode}: second run after {new:.0%} new events", mode, reset_state=False)
    finally:
        w.close()
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--opens", type=float, default=0.30)
    parser.add_argument("--clicks", type=float, default=0.05)
    parser.add_argument(
        "--new", type=float, default=0.01, help="share of recipients with new events"
    )
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    print(f"load average (1 min) before: {os.getloadavg()[0]:.2f}")
    steps = run(args.recipients, args.opens, args.clicks, args.new, modes)
    bad = False
    first: Step | None = None
    for step in steps:
        counts = {k: v for k, v in step.counts.items() if k not in ("setup_id", "run_id")}
        rows: list[tuple[str, Any]] = [
            ("wall time", f"{step.wall_seconds:.1f} s"),
            ("Constant Contact calls", f"{step.cc_total} {step.cc_calls}"),
            ("Salesforce calls", f"{step.sf_total} {step.sf_calls}"),
            ("run counts", counts),
        ]
        if "first run" in step.name:
            first = step
            rows.append(("fits the run's ceiling of 1,000 CC calls", step.cc_total <= 1000))
        elif first is not None:
            share = step.cc_total / max(1, first.cc_total)
            rows.append(
                (f"CC calls vs the first run [target ≤ {TARGET_SECOND_SHARE:.0%}]", f"{share:.1%}")
            )
        written = Counter(
            {k: v for k, v in counts.items() if k in ("members_created", "members_updated",
                                                       "tasks_created")}
        )  # fmt: skip
        sf_writes = step.sf_calls.get("composite", 0) + step.sf_calls.get("bulk", 0)
        rows.append(
            ("records written / SF write calls", f"{sum(written.values()):,} / {sf_writes}")
        )
        rows.append(("Salesforce disagrees with the reports", len(step.problems)))
        c.print_table(step.name, rows)
        for line in step.problems[:10]:
            print("  MISMATCH", line)
        bad = bad or bool(step.problems)
    print(f"load average (1 min) after: {os.getloadavg()[0]:.2f}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
