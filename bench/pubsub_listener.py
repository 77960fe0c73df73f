"""Benchmark of the Pub/Sub door: the listener's decode throughput, latency and memory.

Both parts serve the sandboxes on sockets in this process: Salesforce over HTTPS with its
Pub/Sub API (gRPC over TLS, the sandbox CA) on a free port, Constant Contact over HTTP. The setup
takes `salesforce_changes: ["pubsub"]`; the Salesforce sandbox delivers no webhook, so a change
reaches Constant Contact only through Change Data Capture over gRPC.

1. Throughput (``--part throughput``), in process: N change events are published with no
   listener running (``--events`` Title updates through the sandbox's store, one transaction
   each, round-robin over ``--contacts`` contacts) after the stream's position was stored at
   the bus's tip. Then a `Listener` (default tuning: 100 events requested at a time) starts in a
   thread of this process, subscribes after the stored replay id, and the clock runs until its
   streams have decoded all N and recorded them into the intake on the claimed real Redis db.
   Prints events/s and CPU seconds per 1,000 events: this process's (the gRPC server side
   included) and the listener's own stream threads' (Python side; gRPC's C-core threads not).
2. Latency (``--part latency``): the service as deployed — gunicorn (2 × 5 gthread), ``rq worker
   --with-scheduler`` (the Procfile's HerokuWorker) and the listener process (``flask --app app
   listen``) on the claimed Redis db — and ``bench.latency``'s workload and watcher: a Sync Now
   links ``--records`` contacts, then ``--rate`` edits a second for ``--seconds`` through
   ``PATCH /_sandbox/records/Contact/<id>``; latency = first sighting of the stamp in the CC
   sandbox's store − the moment the PATCH was sent. Stages from request logs around both
   sandboxes. The listener process's RSS and PSS are sampled every 0.5 s during the run.

    .venv/bin/python -m bench.pubsub_listener [--part all] [--events 20000] [--contacts 2000]
        [--seconds 60] [--rate 50] [--records 3000] [--flush-delay 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from bench import _common as c
from bench import latency

TARGET_MEDIAN, TARGET_P99 = 1.0, 3.0
CONTACTS_CHANNEL = "/data/ContactChangeEvent"
_CLK = os.sysconf("SC_CLK_TCK")


def _sandboxes(tmp: Path, activity_seconds: float = 0.5) -> Any:
    from sandbox import server

    return server.start(
        sf_port=0,
        cc_port=0,
        tls_dir=tmp / "tls",
        pubsub_port=0,
        cc_config={"ACTIVITY_SECONDS": activity_seconds},
    )


def _prepare(running: Any, database_url: str) -> c.Prepared:
    sf_token, cc_token = c.sandbox_tokens(running)
    return c.prepare_store(
        database_url,
        sf_base=running.sf_url,
        sf_token=sf_token,
        cc_token=cc_token,
        options={"salesforce_changes": ["pubsub"]},
        sf_org_id=str(running.sf.config["ORG_ID"]),
    )


def _thread_cpu(native_ids: list[int]) -> float:
    """CPU seconds (user + system) of this process's threads with these kernel ids."""
    total = 0.0
    for tid in native_ids:
        try:
            with open(f"/proc/self/task/{tid}/stat", encoding="ascii") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _CLK
    return total


def _stream_threads() -> list[int]:
    return [
        t.native_id
        for t in threading.enumerate()
        if t.name.startswith("listener-") and t.name != "listener-watchdog" and t.native_id
    ]


# ------------------------------------------------------------------------------- 1. throughput


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    """Decode and hand-off rate of a backlog of `args.events` change events (see the docstring)."""
    from middleware import intake, metrics
    from middleware.listener import plan as plans
    from middleware.listener import run
    from middleware.queue import redis_from_url
    from middleware.settings import Settings
    from sandbox.salesforce.seed import seed_org

    with c.workdir("bench-pubsub-") as tmp, c.claimed_redis() as redis_url:
        running = _sandboxes(tmp)
        try:
            c.quiet_logs()
            prepared = _prepare(running, f"sqlite:///{tmp / 'bench.sqlite3'}")
            c.quiet_logs()
            sandbox = running.sf
            seed_org(sandbox, contacts=args.contacts, accounts=max(1, args.contacts // 50),
                     opted_out_ratio=0.0, no_email_ratio=0.0)  # fmt: skip
            ids = [str(r["Id"]) for r in sandbox.store.query("SELECT Id FROM Contact").rows]
            # Where the listener stood when it stopped: the bus's tip, stored as its position.
            tip = bytes.fromhex(sandbox.pubsub.state()["latest_replay_id"])
            plans.save_position(prepared.store, [prepared.setup_id], CONTACTS_CHANNEL, tip)
            published = time.perf_counter()
            for seq in range(args.events):
                sandbox.store.update("Contact", ids[seq % len(ids)], {"Title": f"p-{seq}"})
            published = time.perf_counter() - published
            retained = sandbox.pubsub.state()["events_retained"]

            settings = Settings.for_tests(
                token_encryption_keys=(prepared.keys,),
                database_url=prepared.database_url,
                redis_url=redis_url,
                salesforce_pubsub_url=f"https://{running.pubsub_target}",
                salesforce_ca_bundle=str(running.tls.ca_cert),
                flush_delay_seconds=args.flush_delay,
            )
            redis = redis_from_url(redis_url)
            listener = run.Listener(settings, prepared.store, redis, owner="bench")
            stop = threading.Event()

            def decoded() -> int:
                return sum(
                    s.stats.events for w in listener.workers.values() for s in w.streams.values()
                )

            cpu0, wall0 = time.process_time(), time.perf_counter()
            thread = threading.Thread(target=listener.run, args=(stop,), name="bench-listener")
            thread.start()
            deadline = wall0 + args.timeout
            first_at, threads_cpu = 0.0, 0.0
            while decoded() < args.events and time.perf_counter() < deadline:
                if not first_at and decoded():
                    first_at = time.perf_counter()
                time.sleep(0.005)
                threads_cpu = max(threads_cpu, _thread_cpu(_stream_threads()))
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            threads_cpu = max(threads_cpu, _thread_cpu(_stream_threads()))
            stats = [s.stats for w in listener.workers.values() for s in w.streams.values()]
            stop.set()
            thread.join(30)
            counters = metrics.redis_counter_values(redis, "listener_events")
            figures = {
                "events": args.events,
                "published_s": published,
                "retained": retained,
                "decoded": sum(s.events for s in stats),
                "accepted": sum(s.accepted for s in stats),
                "duplicates": sum(s.duplicates for s in stats),
                "undecodable": sum(s.undecodable for s in stats),
                "responses": sum(s.responses for s in stats),
                "positions_stored": sum(s.positions_stored for s in stats),
                "counters": {k[0]: v for k, v in counters.items()},
                "pending": intake.pending(redis, prepared.setup_id),
                "wall_s": wall,
                "first_event_s": (first_at - wall0) if first_at else float("nan"),
                "cpu_s": cpu,
                "threads_cpu_s": threads_cpu,
            }
            redis.close()
        finally:
            running.stop()
    _print_throughput(args, figures)
    return figures


def _print_throughput(args: argparse.Namespace, f: dict[str, Any]) -> None:
    n = max(f["decoded"], 1)
    rows: list[tuple[str, Any]] = [
        ("backlog published (store updates, one transaction each)",
         f"{f['events']:,} in {f['published_s']:.1f} s over {args.contacts:,} contacts; "
         f"{f['retained']:,} retained by the bus"),
        ("decoded / recorded (accepted) / duplicates / undecodable",
         f"{f['decoded']:,} / {f['accepted']:,} / {f['duplicates']:,} / {f['undecodable']:,}"),
        ("listener_events counters (Redis)", json.dumps(f["counters"], sort_keys=True)),
        ("intake pending records afterwards", f"{f['pending']:,}"),
        ("responses / positions stored", f"{f['responses']:,} / {f['positions_stored']:,}"),
        ("start → all decoded and recorded (s)", round(f["wall_s"], 3)),
        ("start → first event (s)", round(f["first_event_s"], 3)),
        ("events/s (start → all recorded)", f"{f['decoded'] / f['wall_s']:,.0f}"),
        ("CPU s per 1,000 events, this process (gRPC server side too)",
         round(f["cpu_s"] / n * 1000, 3)),
        ("CPU s per 1,000 events, the listener's stream threads",
         round(f["threads_cpu_s"] / n * 1000, 3)),
    ]  # fmt: skip
    c.print_table("Pub/Sub listener: decode and hand-off of a backlog, in process", rows)


# ------------------------------------------------------------------------------- 2. latency


class ProcessMemory:
    """Samples one process's RSS and PSS on a thread: the peak and the last of each."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        self.pid = pid
        self.every = every
        self.rss: list[float] = []
        self.pss: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.rss.append(c.process_rss_mb(self.pid))
            self.pss.append(c.pss_mb(self.pid))
            self._stop.wait(self.every)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def stages(
    changes: list[latency.Change], sf_hits: list[c.Hit], cc_hits: list[c.Hit]
) -> dict[str, list[float]]:
    """For each change seen in CC: edit → flush re-read (SOQL) → import posted → right in CC."""
    reads: dict[str, list[float]] = defaultdict(list)
    for hit in sf_hits:
        if "/query" in hit.path and hit.query:
            for record_id in latency._IDS_IN_QUERY.findall(unquote_plus(hit.query)):
                reads[record_id].append(hit.at)
    imports: dict[str, list[float]] = defaultdict(list)
    for hit in cc_hits:
        if hit.body and hit.path.endswith("contacts_json_import"):
            for row in json.loads(hit.body).get("import_data", []):
                imports[str(row.get("email", "")).lower()].append(hit.at)
    out: dict[str, list[float]] = defaultdict(list)
    for ch in changes:
        if not ch.seen:
            continue
        read = next((t for t in reads[ch.record_id] if t >= ch.done), None)
        posted = next((t for t in imports[ch.email] if read is not None and t >= read), None)
        if read is None or posted is None or posted > ch.seen:
            continue
        out["edit answered → flush re-read (SOQL)"].append(read - ch.done)
        out["re-read → import posted"].append(posted - read)
        out["import posted → right in CC (polls)"].append(ch.seen - posted)
    return out


def _subscribed(running: Any, channel: str) -> bool:
    state = running.sf.pubsub.state()
    return any(s.get("topic") == channel for s in state["subscribers"])


def latency_run(args: argparse.Namespace) -> dict[str, Any]:
    """Steady edits through the deployed service with the listener as the door (see docstring)."""
    from sandbox.salesforce.seed import seed_org

    with c.workdir("bench-pubsub-latency-") as tmp:
        running = _sandboxes(tmp, args.activity_seconds)
        procs: list[c.Process] = []
        watcher = latency.Watcher(running.cc_app)
        memory: ProcessMemory | None = None
        try:
            c.quiet_logs()
            with c.claimed_redis() as redis_url:
                prepared = _prepare(
                    running, args.database_url or f"sqlite:///{tmp / 'bench.sqlite3'}"
                )
                c.quiet_logs()
                sandbox = running.sf
                seed_org(sandbox, contacts=args.records, accounts=max(1, args.records // 50),
                         opted_out_ratio=0.0, no_email_ratio=0.0)  # fmt: skip
                c.sync_now_over_sockets(running, prepared)
                records = latency.linked_records(sandbox, prepared)
                env = c.service_env(
                    prepared,
                    REDIS_URL=redis_url,
                    SALESFORCE_CA_BUNDLE=str(running.tls.ca_cert),
                    SALESFORCE_PUBSUB_URL=f"https://{running.pubsub_target}",
                    CC_API_URL=f"{running.cc_url}/v3",
                    FLUSH_DELAY_SECONDS=str(args.flush_delay),
                )
                port = c.free_port()
                web = c.gunicorn("web", "app:create_app()", port, env, tmp,
                                 workers=args.workers, threads=5)  # fmt: skip
                procs.append(web)
                procs.append(c.rq_worker("worker", redis_url, env, tmp, args.worker_class))
                listener = c.listener("listener", env, tmp)
                procs.append(listener)
                c.wait_http(f"http://127.0.0.1:{port}/livez", web)
                deadline = time.monotonic() + 60
                while not _subscribed(running, CONTACTS_CHANNEL):
                    if listener.popen.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"the listener did not subscribe:\n{listener.tail()}")
                    time.sleep(0.1)
                sf_hits = c.install_recorder(running.sf_app, lambda _m, _p: False)
                cc_hits = c.install_recorder(
                    running.cc_app, lambda m, p: m == "POST" and p.endswith("contacts_json_import")
                )
                memory = ProcessMemory(listener.popen.pid)
                memory.start()
                watcher.start()
                time.sleep(1.0)  # let the worker register and the watcher settle
                listener_cpu0 = c.tree_cpu_seconds(listener.popen.pid)
                changes = latency.drive(running.sf_url, str(running.tls.ca_cert), records, args)
                last_edit = time.monotonic()
                drain_until = last_edit + args.drain
                while time.monotonic() < drain_until and len(watcher.seen) < len(changes):
                    time.sleep(0.1)
                listener_cpu = c.tree_cpu_seconds(listener.popen.pid) - listener_cpu0
                watcher.stop()
                memory.stop()
                for ch in changes:
                    ch.seen = watcher.seen.get(ch.seq, 0.0)
                figures = _latency_figures(
                    args, changes, sf_hits, cc_hits, last_edit, memory, listener_cpu,
                    latency._runs(prepared.store),
                )  # fmt: skip
                for proc in procs:
                    if proc.popen.poll() is not None:
                        print(f"{proc.name} exited early:\n{proc.tail()}")
                        figures["exited"] = [*figures.get("exited", []), proc.name]
                return figures
        finally:
            watcher.stop()
            if memory is not None:
                memory.stop()
            for proc in procs:
                proc.stop()
            running.stop()


def _latency_figures(
    args: argparse.Namespace,
    changes: list[latency.Change],
    sf_hits: c.WsgiRecorder,
    cc_hits: c.WsgiRecorder,
    last_edit: float,
    memory: ProcessMemory,
    listener_cpu: float,
    runs: list[tuple[str, str, int]],
) -> dict[str, Any]:
    latencies = [ch.seen - ch.sent for ch in changes if ch.seen]
    missing = sum(1 for ch in changes if not ch.seen)
    failed = sum(1 for ch in changes if ch.status not in (200, 204))
    first = changes[0].sent if changes else 0.0
    end = max([ch.seen for ch in changes if ch.seen] or [last_edit])
    cc_all = cc_hits.snapshot()
    mean_rate, peak = latency.cc_rate(cc_all, first, end)
    flushes = [r for r in runs if r[0] == "incremental"]
    edited = len({ch.record_id for ch in changes})
    figures: dict[str, Any] = {
        "edits": len(changes),
        "failed_edits": failed,
        "right": len(latencies),
        "missing": missing,
        "median_s": c.median(latencies),
        "p90_s": c.percentile(latencies, 90),
        "p99_s": c.percentile(latencies, 99),
        "max_s": max(latencies or [float("nan")]),
        "cc_calls_per_s": mean_rate,
        "cc_peak_1s": peak,
        "cc_calls": sum(1 for h in cc_all if h.path.startswith("/v3/") and first <= h.at <= end),
        "sf_calls": sum(1 for h in sf_hits.snapshot() if "/services/" in h.path and h.at >= first),
        "flushes": dict(Counter(r[1] for r in flushes)),
        "records_per_flush": c.median([r[2] for r in flushes]),
        "listener_rss_mb": (max(memory.rss or [0.0]), (memory.rss or [0.0])[-1]),
        "listener_pss_mb": (max(memory.pss or [0.0]), (memory.pss or [0.0])[-1]),
        "listener_cpu_s": listener_cpu,
        "stages": {
            name: (c.median(v), c.percentile(v, 99), len(v))
            for name, v in stages(changes, sf_hits.snapshot(), cc_all).items()
        },
    }
    rows: list[tuple[str, Any]] = [
        ("service", f"gunicorn {args.workers}×5 gthread + rq worker --with-scheduler "
                    f"({args.worker_class}) + flask --app app listen, real Redis"),
        ("FLUSH_DELAY / CC ACTIVITY_SECONDS", f"{args.flush_delay} / {args.activity_seconds}"),
        ("edits sent / failed / rate", f"{len(changes)} / {failed} / {args.rate}/s for "
                                       f"{args.seconds}s over {edited} contacts"),
        ("right in CC / not within the drain", f"{len(latencies)} / {missing}"),
        (f"latency median (s) [target < {TARGET_MEDIAN}]", round(figures["median_s"], 3)),
        (f"latency p99 (s) [target < {TARGET_P99}]", round(figures["p99_s"], 3)),
        ("latency p90 / max (s)", f"{figures['p90_s']:.3f} / {figures['max_s']:.3f}"),
        ("CC calls/s mean / peak in 1 s", f"{mean_rate:.2f} / {peak}"),
        ("CC calls / Salesforce API calls", f"{figures['cc_calls']} / {figures['sf_calls']}"),
        ("flush runs by status / records per run (median)",
         f"{figures['flushes']} / {figures['records_per_flush']}"),
        ("listener RSS peak / last (MB)", "{:.1f} / {:.1f}".format(*figures["listener_rss_mb"])),
        ("listener PSS peak / last (MB)", "{:.1f} / {:.1f}".format(*figures["listener_pss_mb"])),
        ("listener CPU during the run (s) / per 1,000 edits",
         f"{listener_cpu:.2f} / {listener_cpu / max(len(changes), 1) * 1000:.3f}"),
    ]  # fmt: skip
    c.print_table("end-to-end latency through the Pub/Sub listener", rows)
    if figures["stages"]:
        c.print_table(
            "where the time goes (s)",
            [
                (name, f"median {m:.3f}  p99 {p:.3f}  (n={n})")
                for name, (m, p, n) in figures["stages"].items()
            ],
        )
    return figures


# ------------------------------------------------------------------------------- main


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("all", "throughput", "latency"), default="all")
    parser.add_argument("--events", type=int, default=20000, help="backlog of change events")
    parser.add_argument("--contacts", type=int, default=2000, help="contacts the backlog edits")
    parser.add_argument("--timeout", type=float, default=300.0, help="most the backlog may take")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=50.0, help="edits per second")
    parser.add_argument("--records", type=int, default=3000, help="contacts edited round-robin")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--worker-class", default="rq.worker.HerokuWorker")
    parser.add_argument("--flush-delay", type=float, default=1.0, help="FLUSH_DELAY_SECONDS")
    parser.add_argument("--activity-seconds", type=float, default=0.5)
    parser.add_argument("--drain", type=float, default=20.0, help="wait after the last edit (s)")
    parser.add_argument("--database-url", default="", help="default: a temporary SQLite file")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args(argv)
    print(f"load average before: {_load()}")
    out: dict[str, Any] = {}
    ok = True
    if args.part in ("all", "throughput"):
        out["throughput"] = figures = throughput(args)
        ok = ok and figures["decoded"] >= args.events and figures["undecodable"] == 0
    if args.part in ("all", "latency"):
        out["latency"] = figures = latency_run(args)
        ok = ok and figures["right"] > 0 and not figures["missing"] and "exited" not in figures
    print(f"\nload average after: {_load()}")
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
