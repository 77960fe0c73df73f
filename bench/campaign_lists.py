"""Benchmark of Campaign lists: 100 Campaigns × 1,000 members become lists, then a day of churn.

In process (the e2e harness: both sandboxes, the service's store and queue, real HTTP through
transport adapters, every Constant Contact exchange checked against the spec). Seeds the
Salesforce sandbox with contacts and `--campaigns` active Campaigns of `--members` contacts each,
for a Contact setup with `campaign_lists: {"source": "campaigns"}`, then measures three runs by
the sandboxes' own call counters (activity polls included) and the wall time:

1. the first sync (``--first full_sync``, the default, or ``sync_now``): every Campaign
   becomes a list, every member is imported onto the main list and its Campaigns' lists
   (target: ≤ 2 Constant Contact calls per Campaign);
2. a day of churn through change events: `--churn` (1 %) of the memberships change — half of
   them members removed, half added — each its own transaction, delivered to the webhook by the
   sandbox in batches as CDC would, then one flush (target: ≤ 5 Constant Contact calls per
   1,000 membership changes);
3. the same churn again with the events lost, repaired by the next Full Sync.

After each run every Campaign's list is compared with its members' addresses (and the main list
with the members of any Campaign): the mismatches are printed, and the exit status is 1 if any.

    .venv/bin/python -m bench.campaign_lists [--campaigns 100] [--members 1000] [--churn 0.01]
        [--first full_sync|sync_now]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from bench import _common as c

TARGET_FIRST_CC_PER_CAMPAIGN = 2.0
FIRST = {"sync_now": "Sync Now", "full_sync": "a Full Sync"}
TARGET_CHURN_CC_PER_1000 = 5.0


@dataclass
class Step:
    name: str
    wall_seconds: float
    sf_calls: dict[str, int]
    cc_calls: dict[str, int]
    changes: int = 0
    mismatches: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cc_total(self) -> int:
        return sum(self.cc_calls.values())

    @property
    def sf_total(self) -> int:
        return sum(self.sf_calls.values())


def members_by_campaign(sf_app: Any) -> dict[str, set[str]]:
    """Campaign name → its contact members' addresses (those the setup can sync)."""
    store = sf_app.extensions["sf_sandbox"].store
    names = {
        str(r["Id"]): str(r["Name"]) for r in store.query("SELECT Id, Name FROM Campaign").rows
    }
    rows = store.query(
        "SELECT CampaignId, Contact.Email, Contact.HasOptedOutOfEmail FROM CampaignMember "
        "WHERE ContactId != null"
    ).rows
    out: dict[str, set[str]] = {name: set() for name in names.values()}
    for row in rows:
        contact = row.get("Contact") or {}
        email = str(contact.get("Email") or "").strip().lower()
        if email and not contact.get("HasOptedOutOfEmail"):
            out[names[str(row["CampaignId"])]].add(email)
    return out


def verify(w: Any, linked: set[str]) -> list[str]:
    """Each Campaign's list against its members; the main list against every member."""
    from middleware.sync.emails import is_role_address, is_valid_email

    store = w.cc_app.extensions["cc_sandbox"].store
    with store.read() as db:
        rows = db.execute(
            "SELECT l.name, c.email FROM memberships m JOIN lists l ON l.id = m.list "
            "JOIN contacts c ON c.id = m.contact WHERE c.deleted_at IS NULL"
        ).fetchall()
    on: dict[str, set[str]] = {}
    for row in rows:
        on.setdefault(str(row["name"]), set()).add(str(row["email"]))
    wrong: list[str] = []
    everyone: set[str] = set()
    for name, emails in members_by_campaign(w.sf_app).items():
        # Duplicates of another record's address and addresses the rules skip are not ours.
        wanted = {e for e in emails if e in linked and is_valid_email(e) and not is_role_address(e)}
        everyone |= wanted
        got = on.get(name, set()) & linked
        for email in sorted(wanted - got)[:3]:
            wrong.append(f"{name}: {email} missing")
        for email in sorted(got - wanted)[:3]:
            wrong.append(f"{name}: {email} should have left")
    main = on.get("Main List", set()) & linked
    wrong += [f"Main List: {e} should have left" for e in sorted(main - everyone)[:3]]
    wrong += [f"Main List: {e} missing" for e in sorted(everyone - main)[:3]]
    return wrong


def linked_emails(w: Any) -> set[str]:
    from middleware.store import links as links_repo

    emails: set[str] = set()
    with w.store.transaction() as session:
        for chunk in links_repo.iter_active(session, w.setup_id):
            emails.update(str(link.email) for link in chunk if link.email)
    return emails


def churn(sf_app: Any, rng: random.Random, changes: int) -> int:
    """Half the changes remove a member, half add a contact to a Campaign it is not in."""
    store = sf_app.extensions["sf_sandbox"].store
    members = list(store.query("SELECT Id, CampaignId, ContactId FROM CampaignMember").rows)
    campaigns = [str(r["Id"]) for r in store.query("SELECT Id FROM Campaign").rows]
    contacts = [str(r["Id"]) for r in store.query("SELECT Id FROM Contact").rows]
    pairs = {(str(r["CampaignId"]), str(r["ContactId"])) for r in members}
    removed = rng.sample(members, changes // 2)
    for row in removed:
        store.delete("CampaignMember", str(row["Id"]), origin="")
    added = 0
    while added < changes - changes // 2:
        pair = (rng.choice(campaigns), rng.choice(contacts))
        if pair in pairs:
            continue
        pairs.add(pair)
        store.create("CampaignMember", {"CampaignId": pair[0], "ContactId": pair[1]}, origin="")
        added += 1
    return len(removed) + added


def run(campaigns: int, members: int, churn_share: float, contacts: int, first: str) -> list[Step]:
    from middleware.fullsync import run as fs_run
    from middleware.sync_now import run_sync_now
    from sandbox.salesforce.seed import seed_org
    from tests.e2e.harness import World

    w = World(
        options={"campaign_lists": {"source": "campaigns"}},
        sf_config={"EVENT_DELIVERY": "thread", "EVENT_BATCH_SIZE": 200, "EVENT_LINGER": 0.05},
    )
    steps: list[Step] = []
    rng = random.Random(7)
    try:
        c.quiet_logs()
        w.deliver_to_webhook = False
        seeded = seed_org(
            w.sf_app.extensions["sf_sandbox"],
            contacts=contacts,
            accounts=max(1, contacts // 50),
            campaigns=campaigns,
            members_per_campaign=members,
            lead_member_ratio=0.0,
            opted_out_ratio=0.0,
            no_email_ratio=0.0,
        )

        def measure(name: str, body: Any, changes: int = 0) -> Step:
            sf0, cc0 = c.sf_calls(w.sf_app), c.cc_calls(w.cc_app)
            started = time.monotonic()
            extra = body() or {}
            wall = time.monotonic() - started
            sf1, cc1 = c.sf_calls(w.sf_app), c.cc_calls(w.cc_app)
            step = Step(
                name,
                wall,
                c.diff_counts(sf1["by_family"], sf0["by_family"]),
                c.diff_counts(cc1["by_family"], cc0["by_family"]),
                changes,
                extra=extra,
            )
            step.mismatches = verify(w, linked_emails(w))
            steps.append(step)
            return step

        def first_sync() -> dict[str, Any]:
            sf, cc = w.sf_client(), w.cc_client()
            if first == "full_sync":
                summary = fs_run.run_full_sync(w.runtime, w.setup_id, sf=sf, cc=cc)
            else:
                summary = run_sync_now(w.runtime, w.setup_id, sf=sf, cc=cc)
            return {"seeded": {k: v for k, v in seeded.items() if k != "seconds"}, "run": summary}

        measure(f"first sync ({FIRST[first]})", first_sync)
        changes = max(2, int(campaigns * members * churn_share))

        w.deliver_to_webhook = True
        made = churn(w.sf_app, rng, changes)
        w.sf_app.extensions["sf_sandbox"].events.flush(timeout=300)
        measure("churn through change events (one flush)", lambda: {"flush": w.flush()}, made)

        w.deliver_to_webhook = False
        made = churn(w.sf_app, rng, changes)
        w.sf_app.extensions["sf_sandbox"].events.flush(timeout=300)
        measure(
            "churn with events lost, next Full Sync",
            lambda: {
                "full sync": fs_run.run_full_sync(
                    w.runtime, w.setup_id, sf=w.sf_client(), cc=w.cc_client()
                )
            },
            made,
        )
    finally:
        w.sf_app.extensions["sf_sandbox"].events.close()
        w.close()
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--campaigns", type=int, default=100)
    parser.add_argument("--members", type=int, default=1000, help="contacts per Campaign")
    parser.add_argument("--churn", type=float, default=0.01, help="share of memberships changed")
    parser.add_argument("--contacts", type=int, default=0, help="default: campaigns × members")
    parser.add_argument(
        "--first", choices=sorted(FIRST), default="full_sync", help="how the first sync runs"
    )
    args = parser.parse_args(argv)
    contacts = args.contacts or args.campaigns * args.members
    steps = run(args.campaigns, args.members, args.churn, contacts, args.first)
    bad = False
    for step in steps:
        rows: list[tuple[str, Any]] = [
            ("wall time", f"{step.wall_seconds:.1f} s"),
            ("Salesforce calls", f"{step.sf_total} {step.sf_calls}"),
            ("Constant Contact calls", f"{step.cc_total} {step.cc_calls}"),
        ]
        if step.name.startswith("first"):
            per = step.cc_total / max(1, args.campaigns)
            rows.append(
                (f"CC calls per Campaign [target ≤ {TARGET_FIRST_CC_PER_CAMPAIGN:g}]", f"{per:.2f}")
            )
        else:
            per = step.cc_total / max(1, step.changes) * 1000
            rows.append(("membership changes", step.changes))
            rows.append(
                (
                    f"CC calls per 1,000 changes [target ≤ {TARGET_CHURN_CC_PER_1000:g}]",
                    f"{per:.1f}",
                )
            )
        for key, value in step.extra.items():
            rows.append((key, value))
        rows.append(("lists that disagree with Salesforce", len(step.mismatches)))
        c.print_table(f"{step.name}: {args.campaigns} Campaigns × {args.members} members", rows)
        for line in step.mismatches[:20]:
            print("  MISMATCH", line)
        bad = bad or bool(step.mismatches)
    print(f"load average (1 min) after: {os.getloadavg()[0]:.2f}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
