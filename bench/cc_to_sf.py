"""Benchmark: Constant Contact → Salesforce polling — API calls per 1,000 subscribers, and the time
from an unsubscribe in Constant Contact to the opt-out in Salesforce.

Runs the real poll (``middleware.cc_to_sf.poll.run_poll``) against both sandboxes, mounted
in-process, on the end-to-end harness's world (SQLite store, fake Redis).

    .venv/bin/python bench/cc_to_sf.py                   # everything (about 5 minutes)
    .venv/bin/python bench/cc_to_sf.py --skip-realtime   # no real-time 1-minute run (seconds)
    .venv/bin/python bench/cc_to_sf.py --realtime-minutes 3 --unsubscribes 6

1. Calls per 1,000 new subscribers, for a Lead setup (seeded contacts) and a Contact setup whose
   subscribers work for 50 companies (Accounts created), and per 1,000 unsubscribes of people
   Salesforce already holds.
2. Unsubscribe → opt-out at the default 15-minute interval: computed from the schedule, then shown
   on a simulated timeline (the Constant Contact sandbox's clock moves minute by minute, the clock
   tick checks ``due_setups`` every minute, unsubscribes happen at random seconds).
3. The same at a 1-minute interval, measured in real time: a tick every second runs due polls,
   unsubscribes happen at random moments, latency is measured up to the opt-out being readable in
   Salesforce.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import logging

from middleware.cc_to_sf import poll
from tests.e2e.harness import CC_BASE, World


def quiet_logs() -> None:
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("middleware", "sandbox", "app"):
        logging.getLogger(name).setLevel(logging.WARNING)


def make_world(options: dict[str, Any]) -> World:
    w = World(options=options)
    w.deliver_to_webhook = False  # type: ignore[attr-defined]  # no intake measured here
    quiet_logs()
    return w


def poll_once(w: World, now: datetime) -> tuple[dict[str, Any], int, int, float]:
    sf, cc = w.sf_client(), w.cc_client()
    started = time.perf_counter()
    summary = poll.run_poll(w.runtime, w.setup_id, sf=sf, cc=cc, now=lambda: now)
    return summary, sf.usage.total, cc.calls.total, time.perf_counter() - started


# ------------------------------------------------------------------------------- 1. calls


def calls_new_leads(n: int, *, warm: bool = True) -> dict[str, Any]:
    """``warm``: the setup has polled before (org describe and list id cached, cursors set)."""
    w = make_world({"object_type": "Lead"})
    try:
        if warm:
            poll_once(w, datetime.now(UTC) - timedelta(minutes=15))
        w.cc_session.post(
            f"{CC_BASE}/_sandbox/seed",
            json={"contacts": n, "lists": ["Main List"], "unsubscribed_ratio": 0.0},
        )
        summary, sf_calls, cc_calls, seconds = poll_once(w, datetime.now(UTC))
        assert summary.get("created_leads") == n, summary
        return {
            "case": f"{n} new subscribers → Leads" + ("" if warm else ", a new setup's first poll"),
            "sf": sf_calls,
            "cc": cc_calls,
            "seconds": seconds,
        }
    finally:
        w.close()


def calls_new_contacts(n: int, companies: int = 50) -> dict[str, Any]:
    w = make_world({"object_type": "Contact"})
    try:
        poll_once(w, datetime.now(UTC) - timedelta(minutes=15))
        cc = w.cc_client()
        main = cc.get_or_create_list("Main List")["list_id"]
        rows = [
            {
                "email": f"person{i}@example.org",
                "first_name": f"First{i}",
                "last_name": f"Last{i}",
                "company_name": f"Company {i % companies}",
                "work_phone": "555-0100",
                "state": "California",
                "country": "United States",
            }
            for i in range(n)
        ]
        cc.wait_for_activities([a["activity_id"] for a in cc.import_contacts(rows, [main])])
        summary, sf_calls, cc_calls, seconds = poll_once(w, datetime.now(UTC))
        assert summary.get("created_contacts") == n, summary
        assert summary.get("accounts_created") == companies, summary
        return {
            "case": f"{n} new subscribers → Contacts ({companies} Accounts created)",
            "sf": sf_calls,
            "cc": cc_calls,
            "seconds": seconds,
        }
    finally:
        w.close()


def calls_opt_outs(n: int) -> dict[str, Any]:
    w = make_world({"object_type": "Contact"})
    try:
        cc = w.cc_client()
        main = cc.get_or_create_list("Main List")["list_id"]
        rows = [
            {"email": f"person{i}@example.org", "first_name": "F", "last_name": f"L{i}"}
            for i in range(n)
        ]
        cc.wait_for_activities([a["activity_id"] for a in cc.import_contacts(rows, [main])])
        poll_once(w, datetime.now(UTC))  # they become Contacts
        w.cc_session.post(f"{CC_BASE}/_sandbox/clock", json={"advance": 3600})
        for i in range(n):
            w.cc_session.post(
                f"{CC_BASE}/_sandbox/unsubscribe", json={"email": f"person{i}@example.org"}
            )
        summary, sf_calls, cc_calls, seconds = poll_once(w, datetime.now(UTC) + timedelta(hours=1))
        assert summary.get("opted_out") == n, summary
        return {
            "case": f"{n} unsubscribes → opt-outs",
            "sf": sf_calls,
            "cc": cc_calls,
            "seconds": seconds,
        }
    finally:
        w.close()


# ------------------------------------------------------------------------------- 2. timeline


def opted_out(w: World, emails: list[str]) -> set[str]:
    if not emails:
        return set()
    quoted = ", ".join(f"'{e}'" for e in emails)
    soql = f"SELECT Email FROM Contact WHERE HasOptedOutOfEmail = true AND Email IN ({quoted})"
    return {r["Email"] for r in w.sf_client().query_iter(soql)}


def simulated(interval: int, hours: int, unsubscribes: int, seed: int = 7) -> dict[str, Any]:
    """A timeline on the sandbox clock: one tick a minute, polls when due, random unsubscribes."""
    rng = random.Random(seed)
    w = make_world({"object_type": "Contact", "schedule": {"poll_minutes": interval}})
    try:
        people = [f"person{i}@example.org" for i in range(unsubscribes)]
        cc = w.cc_client()
        main = cc.get_or_create_list("Main List")["list_id"]
        imported = cc.import_contacts(
            [{"email": e, "first_name": "F", "last_name": "L"} for e in people], [main]
        )
        cc.wait_for_activities([a["activity_id"] for a in imported])
        start = datetime.now(UTC).replace(second=0, microsecond=0)
        poll_once(w, start)  # the setup's first poll: everyone becomes a Contact
        horizon = hours * 3600
        # Unsubscribes at random seconds after the first poll, leaving time for a last poll.
        when = sorted(rng.uniform(60, horizon - 2 * interval * 60) for _ in people)
        pending = dict(zip(people, when, strict=True))
        sandbox_offset = 0.0
        latencies: list[float] = []
        polls = 0
        durations: list[float] = []
        for minute in range(1, hours * 60 + 1):
            tick = minute * 60.0
            # Unsubscribes that happen before this tick, at their exact second on CC's clock.
            for email, at in sorted(pending.items(), key=lambda kv: kv[1]):
                if at <= tick and at > tick - 60:
                    w.cc_session.post(
                        f"{CC_BASE}/_sandbox/clock", json={"advance": at - sandbox_offset}
                    )
                    sandbox_offset = at
                    w.cc_session.post(f"{CC_BASE}/_sandbox/unsubscribe", json={"email": email})
            w.cc_session.post(f"{CC_BASE}/_sandbox/clock", json={"advance": tick - sandbox_offset})
            sandbox_offset = tick
            now = start + timedelta(seconds=tick)
            if w.setup_id not in poll.due_setups(w.store, now):
                continue
            _summary, _sf, _cc, seconds = poll_once(w, now)
            polls += 1
            durations.append(seconds)
            waiting = [e for e, at in pending.items() if at <= tick]
            for email in opted_out(w, waiting):
                latencies.append(tick + seconds - pending.pop(email))
        assert not pending, f"never opted out: {sorted(pending)}"
        return {
            "interval_min": interval,
            "polls": polls,
            "unsubscribes": len(latencies),
            "mean_s": statistics.mean(latencies),
            "max_s": max(latencies),
            "min_s": min(latencies),
            "poll_s": statistics.mean(durations),
        }
    finally:
        w.close()


# ------------------------------------------------------------------------------- 3. real time


def realtime(minutes: float, unsubscribes: int, seed: int = 11) -> dict[str, Any]:
    """1-minute polling in real time: ticks every second, unsubscribes at random moments."""
    rng = random.Random(seed)
    w = make_world({"object_type": "Contact", "schedule": {"poll_minutes": 1}})
    try:
        people = [f"person{i}@example.org" for i in range(unsubscribes)]
        cc = w.cc_client()
        main = cc.get_or_create_list("Main List")["list_id"]
        imported = cc.import_contacts(
            [{"email": e, "first_name": "F", "last_name": "L"} for e in people], [main]
        )
        cc.wait_for_activities([a["activity_id"] for a in imported])
        poll_once(w, datetime.now(UTC))
        horizon = minutes * 60
        plan = sorted(
            zip(people, (rng.uniform(5, horizon - 75) for _ in people), strict=True),
            key=lambda p: p[1],
        )
        done_at: dict[str, float] = {}
        began = time.monotonic()
        session = w.cc_session  # the sandbox is thread-safe behind its store lock

        def unsubscriber() -> None:
            for email, at in plan:
                time.sleep(max(0.0, at - (time.monotonic() - began)))
                session.post(f"{CC_BASE}/_sandbox/unsubscribe", json={"email": email})
                done_at[email] = time.monotonic()

        thread = threading.Thread(target=unsubscriber, daemon=True)
        thread.start()
        latencies: list[float] = []
        durations: list[float] = []
        seen: set[str] = set()
        while time.monotonic() - began < horizon and len(seen) < len(people):
            now = datetime.now(UTC)
            if w.setup_id in poll.due_setups(w.store, now):
                _summary, _sf, _cc, seconds = poll_once(w, now)
                durations.append(seconds)
                for email in opted_out(w, [e for e in done_at if e not in seen]):
                    seen.add(email)
                    latencies.append(time.monotonic() - done_at[email])
            time.sleep(1.0)
        thread.join(timeout=1)
        return {
            "interval_min": 1,
            "unsubscribes": len(latencies),
            "missed": len(people) - len(latencies),
            "mean_s": statistics.mean(latencies) if latencies else float("nan"),
            "max_s": max(latencies) if latencies else float("nan"),
            "min_s": min(latencies) if latencies else float("nan"),
            "poll_s": statistics.mean(durations) if durations else float("nan"),
        }
    finally:
        w.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--hours", type=int, default=8, help="simulated timeline length")
    parser.add_argument("--unsubscribes", type=int, default=40)
    parser.add_argument("--realtime-minutes", type=float, default=4.0)
    parser.add_argument("--skip-realtime", action="store_true")
    args = parser.parse_args()

    print("== API calls (one poll) ==")
    for result in (
        calls_new_leads(args.subscribers, warm=False),
        calls_new_leads(args.subscribers),
        calls_new_contacts(args.subscribers),
        calls_opt_outs(args.subscribers),
    ):
        print(
            f"{result['case']:<58} SF {result['sf']:>3}  CC {result['cc']:>3}"
            f"  {result['seconds']:.2f}s"
        )

    interval = 15
    print(f"\n== Unsubscribe → opt-out, {interval}-minute interval ==")
    sim = simulated(interval, args.hours, args.unsubscribes)
    print(
        f"from the schedule: worst = interval + poll = {interval * 60}s + {sim['poll_s']:.2f}s;"
        f" mean = interval/2 + poll = {interval * 30}s + {sim['poll_s']:.2f}s"
        " (plus the queue's pick-up delay)"
    )
    print(
        f"simulated on the sandbox clock ({args.hours} h, {sim['polls']} polls,"
        f" {sim['unsubscribes']} unsubscribes): mean {sim['mean_s']:.0f}s,"
        f" max {sim['max_s']:.0f}s, min {sim['min_s']:.0f}s"
    )
    if not args.skip_realtime:
        print("\n== Unsubscribe → opt-out, 1-minute interval, real time ==")
        real = realtime(args.realtime_minutes, max(3, args.unsubscribes // 5))
        print(
            f"measured ({args.realtime_minutes:g} min, {real['unsubscribes']} unsubscribes,"
            f" {real['missed']} not yet seen): mean {real['mean_s']:.1f}s,"
            f" max {real['max_s']:.1f}s, min {real['min_s']:.1f}s; poll {real['poll_s']:.3f}s"
        )


if __name__ == "__main__":
    main()
