"""Benchmark of a burst: N synced Salesforce contacts each edited once, the flush's API bill.

Seeds the Salesforce sandbox with N contacts, runs Sync Now so every record is linked, then edits
every record once (a unique Title each, one transaction per edit, as N users or a Flow would) and
lets the sandbox deliver the change events to the webhook in batches, as a Flow/Apex callout
does. The flush then pushes them. Prints the Salesforce and Constant Contact calls the burst cost
(the sandboxes' own counters, activity polls included), the wall time, and verifies every record
against what Constant Contact holds afterwards (all N values), printing mismatches.

Two ways to run it:

- ``inprocess``: sandboxes and service in this process through transport adapters (the e2e
  harness); the flush runs once, after the burst, with the harness's clients (no sleeping).
- ``sockets``: sandboxes on real sockets (Salesforce over HTTPS), the service under gunicorn in
  embedded mode (fakeredis + worker thread, 4 CC calls/s limiter, real activity polling), the
  sandbox POSTing events to its webhook while the edits happen; flushes run when they are due.

    .venv/bin/python -m bench.burst [--records 10000] [--mode both] [--batch 200]
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from bench import _common as c

TARGET_SF, TARGET_CC = 60, 15


@dataclass
class Figures:
    mode: str
    records: int
    linked: int
    events: int
    webhook_posts: int
    webhook_statuses: dict[int, int]
    burst_seconds: float
    wall_seconds: float
    sf_calls: dict[str, int]
    cc_calls: dict[str, int]
    runs: int
    mismatches: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sf_total(self) -> int:
        return sum(self.sf_calls.values())

    @property
    def cc_total(self) -> int:
        return sum(self.cc_calls.values())

    def print(self) -> None:
        rows: list[tuple[str, Any]] = [
            ("records seeded / linked by Sync Now", f"{self.records:,} / {self.linked:,}"),
            ("change events / webhook POSTs", f"{self.events:,} / {self.webhook_posts:,}"),
            ("webhook answers", dict(sorted(self.webhook_statuses.items()))),
            ("edits took (s)", round(self.burst_seconds, 2)),
            ("wall: first edit → all right in CC (s)", round(self.wall_seconds, 2)),
            ("flush runs", self.runs),
            (f"Salesforce calls [target ≤ {TARGET_SF}]", f"{self.sf_total}  {self.sf_calls}"),
            (f"Constant Contact calls [target ≤ {TARGET_CC}]", f"{self.cc_total}  {self.cc_calls}"),
            ("records wrong in CC", len(self.mismatches)),
            *self.extra.items(),
        ]
        c.print_table(f"burst ({self.mode})", rows)
        for line in self.mismatches[:20]:
            print(f"  MISMATCH {line}")


# ------------------------------------------------------------------------------- shared steps


def seed(sf_app: Any, records: int) -> list[str]:
    """N contacts, every one with an ordinary email (so every one can be linked)."""
    from sandbox.salesforce.seed import seed_org

    sandbox = sf_app.extensions["sf_sandbox"]
    seed_org(sandbox, contacts=records, accounts=max(1, records // 50), opted_out_ratio=0.0,
             no_email_ratio=0.0)  # fmt: skip
    rows = sandbox.store.query("SELECT Id FROM Contact ORDER BY Id").rows
    return [str(r["Id"]) for r in rows]


def edit_all(sf_app: Any, ids: list[str], tag: str, spread: float = 0.0) -> float:
    """One edit per record, each its own transaction (its own change event); returns seconds.

    `spread` > 0 paces the edits evenly over that many seconds (a data load, not a stampede).
    """
    store = sf_app.extensions["sf_sandbox"].store
    started = time.monotonic()
    for n, record_id in enumerate(ids):
        if spread > 0:
            pause = started + spread * n / len(ids) - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        store.update("Contact", record_id, {"Title": f"{tag}-{n}"}, origin="")
    return time.monotonic() - started


def verify(sf_app: Any, cc_app: Any, linked_emails: set[str]) -> list[str]:
    """Compare every Salesforce contact with Constant Contact; describe each difference."""
    sandbox = sf_app.extensions["sf_sandbox"]
    rows = sandbox.store.query("SELECT Id, Email, FirstName, LastName, Title FROM Contact").rows
    held = c.cc_contacts_by_email(cc_app)
    wrong: list[str] = []
    for row in rows:
        email = str(row.get("Email") or "").strip().lower()
        if email not in linked_emails:
            continue  # skipped by the rules at Sync Now (role address, duplicate): not ours
        got = held.get(email)
        if got is None:
            wrong.append(f"{row['Id']}: no CC contact for {email}")
            continue
        for sf_field, cc_field in (
            ("Title", "job_title"),
            ("FirstName", "first_name"),
            ("LastName", "last_name"),
        ):
            want = row.get(sf_field) or None
            if (got.get(cc_field) or None) != want:
                wrong.append(f"{row['Id']}: {cc_field} {got.get(cc_field)!r} != {want!r}")
    return wrong


def linked_emails(store: Any, setup_id: int) -> set[str]:
    from middleware.store import links as links_repo

    emails: set[str] = set()
    with store.transaction() as session:
        for chunk in links_repo.iter_active(session, setup_id):
            emails.update(str(link.email) for link in chunk if link.email)
    return emails


# ------------------------------------------------------------------------------- in-process


def run_inprocess(records: int, batch: int, activity_steps: int) -> Figures:
    from middleware import intake
    from middleware.sync_now import run_sync_now
    from tests.e2e.harness import World

    statuses: dict[int, int] = {}

    class BurstWorld(World):
        def _deliver(self, envelopes: list[dict[str, Any]]) -> None:
            super()._deliver(envelopes)
            if getattr(self, "deliver_to_webhook", True) and hasattr(self, "last_webhook"):
                code = self.last_webhook.status_code
                statuses[code] = statuses.get(code, 0) + 1

    w = BurstWorld(
        sf_config={"EVENT_DELIVERY": "thread", "EVENT_BATCH_SIZE": batch, "EVENT_LINGER": 0.05},
        cc_config={"ACTIVITY_STEPS": activity_steps},
    )
    try:
        c.quiet_logs()  # create_app set our loggers to INFO
        w.deliver_to_webhook = False
        ids = seed(w.sf_app, records)
        run_sync_now(w.runtime, w.setup_id, sf=w.sf_client(), cc=w.cc_client())
        linked = linked_emails(w.store, w.setup_id)
        w.events.clear()
        w.deliver_to_webhook = True

        sf0, cc0 = c.sf_calls(w.sf_app), c.cc_calls(w.cc_app)
        started = time.monotonic()
        burst_s = edit_all(w.sf_app, ids, f"b{uuid.uuid4().hex[:6]}")
        w.sf_app.extensions["sf_sandbox"].events.flush(timeout=120)
        pending = intake.pending(w.redis, w.setup_id)
        summary = w.flush()
        wall = time.monotonic() - started
        sf1, cc1 = c.sf_calls(w.sf_app), c.cc_calls(w.cc_app)
        return Figures(
            mode="in-process, one flush after the burst",
            records=len(ids),
            linked=len(linked),
            events=len(w.events),
            webhook_posts=sum(statuses.values()),
            webhook_statuses=statuses,
            burst_seconds=burst_s,
            wall_seconds=wall,
            sf_calls=c.diff_counts(sf1["by_family"], sf0["by_family"]),
            cc_calls=c.diff_counts(cc1["by_family"], cc0["by_family"]),
            runs=1,
            mismatches=verify(w.sf_app, w.cc_app, linked),
            extra={
                "ids pending before the flush": pending,
                "flush summary": {k: v for k, v in summary.items() if k != "run_id"},
                "clients' own counters (sf, cc)": (w.last_sf.usage.total, w.last_cc.calls.total),
            },
        )
    finally:
        w.sf_app.extensions["sf_sandbox"].events.close()
        w.close()


# ------------------------------------------------------------------------------- sockets


def run_sockets(
    records: int, batch: int, activity_seconds: float, timeout: float, spread: float = 0.0
) -> Figures:
    from middleware.store.models import Run
    from sandbox import server

    with c.workdir("bench-burst-") as tmp:
        running = server.start(
            sf_port=0,
            cc_port=0,
            tls_dir=tmp / "tls",
            sf_config={"EVENT_DELIVERY": "thread", "EVENT_BATCH_SIZE": batch},
            cc_config={"ACTIVITY_SECONDS": activity_seconds},
        )
        service: c.Process | None = None
        try:
            c.quiet_logs()
            sf_token, cc_token = c.sandbox_tokens(running)
            prepared = c.prepare_store(
                f"sqlite:///{tmp / 'bench.sqlite3'}",
                sf_base=running.sf_url,
                sf_token=sf_token,
                cc_token=cc_token,
            )
            c.quiet_logs()
            ids = seed(running.sf_app, records)
            c.sync_now_over_sockets(running, prepared)
            linked = linked_emails(prepared.store, prepared.setup_id)

            port = c.free_port()
            env = c.service_env(
                prepared,
                SALESFORCE_CA_BUNDLE=str(running.tls.ca_cert),
                CC_API_URL=f"{running.cc_url}/v3",
            )
            service = c.gunicorn("web", "app:create_app()", port, env, tmp, workers=1, threads=5)
            c.wait_http(f"http://127.0.0.1:{port}/livez", service)
            hub = running.sf.events
            hub.configure_delivery(
                f"http://127.0.0.1:{port}/webhooks/salesforce/{prepared.setup_id}",
                {"X-Webhook-Secret": prepared.webhook_secret},
                batch,
            )
            cc_hits = c.install_recorder(running.cc_app, lambda _m, _p: False)
            before = _max_run_id(prepared.store)
            sf0, cc0 = c.sf_calls(running.sf_app), c.cc_calls(running.cc_app)
            started = time.monotonic()
            burst_s = edit_all(running.sf_app, ids, f"b{uuid.uuid4().hex[:6]}", spread)
            hub.flush(timeout=120)
            deliveries = hub.deliveries(100000)
            mismatches = _wait_until_right(running, linked, started + timeout)
            wall = time.monotonic() - started
            _wait_runs_finished(prepared.store, before, deadline=time.monotonic() + 30)
            sf1, cc1 = c.sf_calls(running.sf_app), c.cc_calls(running.cc_app)
            with prepared.store.transaction() as session:
                done = session.query(Run).filter(Run.id > before).all()
                run_calls = [dict(r.api_calls or {}) for r in done]
                run_states = [r.status for r in done]
            statuses: dict[int, int] = {}
            for d in deliveries:
                statuses[d.get("http_status") or 0] = statuses.get(d.get("http_status") or 0, 0) + 1
            return Figures(
                mode="sockets, gunicorn embedded (1 worker × 5 threads), flushes while editing",
                records=len(ids),
                linked=len(linked),
                events=sum(int(d["count"]) for d in deliveries),
                webhook_posts=len(deliveries),
                webhook_statuses=statuses,
                burst_seconds=burst_s,
                wall_seconds=wall,
                sf_calls=c.diff_counts(sf1["by_family"], sf0["by_family"]),
                cc_calls=c.diff_counts(cc1["by_family"], cc0["by_family"]),
                runs=len(done),
                mismatches=mismatches,
                extra={
                    "runs (status: api_calls)": list(zip(run_states, run_calls, strict=True)),
                    "CC imports posted / activity polls": _imports_and_polls(cc_hits.snapshot()),
                },
            )
        finally:
            if service is not None:
                service.stop()
            running.sf.events.close()
            running.stop()


def _imports_and_polls(hits: list[c.Hit]) -> str:
    imports = sum(1 for h in hits if h.method == "POST" and h.path.startswith("/v3/activities/"))
    polls = sum(1 for h in hits if h.method == "GET" and h.path.startswith("/v3/activities/"))
    return f"{imports} / {polls}"


def _max_run_id(store: Any) -> int:
    from sqlalchemy import func

    from middleware.store.models import Run

    with store.transaction() as session:
        return int(session.query(func.max(Run.id)).scalar() or 0)


def _wait_runs_finished(store: Any, after: int, deadline: float) -> None:
    from middleware.store.models import Run

    while time.monotonic() < deadline:
        with store.transaction() as session:
            busy = session.query(Run).filter(Run.id > after, Run.status == "running").count()
        if not busy:
            return
        time.sleep(0.25)


def _wait_until_right(running: Any, linked: set[str], deadline: float) -> list[str]:
    wrong = verify(running.sf_app, running.cc_app, linked)
    while wrong and time.monotonic() < deadline:
        time.sleep(0.5)
        wrong = verify(running.sf_app, running.cc_app, linked)
    return wrong


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=200, help="events per webhook POST")
    parser.add_argument("--mode", choices=("inprocess", "sockets", "both"), default="both")
    parser.add_argument("--activity-steps", type=int, default=2, help="CC sandbox polls/activity")
    parser.add_argument(
        "--activity-seconds", type=float, default=0.5, help="CC activity time (sockets mode)"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="sockets: give up after (s)")
    parser.add_argument(
        "--spread", type=float, default=0.0, help="sockets: pace the edits over this many seconds"
    )
    args = parser.parse_args(argv)
    results = []
    if args.mode in ("inprocess", "both"):
        results.append(run_inprocess(args.records, args.batch, args.activity_steps))
        results[-1].print()
    if args.mode in ("sockets", "both"):
        results.append(
            run_sockets(args.records, args.batch, args.activity_seconds, args.timeout, args.spread)
        )
        results[-1].print()
    return 1 if any(r.mismatches for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
