"""Benchmark of end-to-end latency: from a Salesforce edit until the contact is right in CC.

Both sandboxes serve on sockets in this process (Salesforce over HTTPS). The service runs as it
is deployed: gunicorn plus an ``rq worker --with-scheduler`` on a claimed real Redis db
(``--mode redis``, the default) or gunicorn alone in embedded mode (``--mode embedded``). The
Salesforce sandbox POSTs its change events to the service's webhook, as a Flow callout would.

After a Sync Now links N contacts, a steady stream of edits (``--rate`` per second for
``--seconds``) goes through the sandbox's control API (``PATCH /_sandbox/records/Contact/<id>``),
each stamping a unique ``Title = t-<seq>-<ns>`` on the next contact in turn. A watcher reads the
Constant Contact sandbox's store every 20 ms (one indexed query of the rows updated since the last
look) and notes when each stamp arrives. Latency = arrival − the moment the PATCH was sent.

Stages per change, from request logs wrapped around both sandboxes and the event sender:
event POSTed to the webhook → webhook answered → flush re-read the record (SOQL) → import posted
to Constant Contact → contact right in Constant Contact (the activity poll that completed it).
Also prints the Constant Contact calls per second (the shared limit is 4/s).

    .venv/bin/python -m bench.latency [--seconds 60] [--rate 50] [--records 3000] [--mode redis]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

import requests

from bench import _common as c

TARGET_MEDIAN, TARGET_P99, CC_LIMIT = 2.0, 5.0, 4.0
_STAMP = re.compile(r"^t-(\d+)-")
_IDS_IN_QUERY = re.compile(r"'([A-Za-z0-9]{18})'")


@dataclass
class Change:
    seq: int
    record_id: str
    email: str
    sent: float  # monotonic, just before the PATCH
    done: float = 0.0  # PATCH answered (the edit is committed, its event emitted)
    status: int = 0
    seen: float = 0.0  # the watcher saw the stamp in Constant Contact


class DeliveryLog(requests.Session):
    """The Salesforce sandbox's event sender, recording when each batch left and was answered."""

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False
        self.lock = threading.Lock()
        self.posts: list[tuple[float, float, int, list[str]]] = []

    def post(self, url: Any, data: Any = None, json: Any = None, **kwargs: Any) -> Any:
        sent = time.monotonic()
        response = super().post(url, data=data, json=json, **kwargs)
        answered = time.monotonic()
        ids: list[str] = []
        for env in _loads(data):
            header = (env.get("data") or {}).get("payload", {}).get("ChangeEventHeader", {})
            ids += list(header.get("recordIds") or [])
        with self.lock:
            self.posts.append((sent, answered, response.status_code, ids))
        return response


def _loads(data: Any) -> list[dict[str, Any]]:
    try:
        parsed = json.loads(data)
    except (TypeError, ValueError):
        return []
    return parsed if isinstance(parsed, list) else [parsed]


@dataclass
class Watcher:
    """Polls the CC sandbox's store for stamped titles; notes the first sighting of each."""

    cc_app: Any
    every: float = 0.02
    seen: dict[int, float] = field(default_factory=dict)
    polls: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        store = self.cc_app.extensions["cc_sandbox"].store
        since = 0
        while not self._stop.is_set():
            with store.read() as db:
                rows = db.execute(
                    "SELECT updated_at, data FROM contacts WHERE updated_at >= ?", (since,)
                ).fetchall()
            now = time.monotonic()
            self.polls += 1
            for row in rows:
                since = max(since, int(row["updated_at"]))
                title = json.loads(row["data"]).get("job_title") or ""
                match = _STAMP.match(title)
                if match:
                    self.seen.setdefault(int(match.group(1)), now)
            self._stop.wait(self.every)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="cc-watcher", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()


def drive(
    sf_url: str, ca: str, records: list[tuple[str, str]], args: argparse.Namespace
) -> list[Change]:
    """Send `rate` edits a second for `seconds`, round-robin over the records; bounded."""
    total = int(args.rate * args.seconds)
    changes: list[Change] = []
    session = c.thread_sessions(ca)

    def edit(change: Change) -> None:
        body = {"Title": f"t-{change.seq}-{time.monotonic_ns()}"}
        try:
            r = session().patch(
                f"{sf_url}/_sandbox/records/Contact/{change.record_id}", json=body, timeout=10
            )
            change.status = r.status_code
        except requests.RequestException:
            change.status = -1
        change.done = time.monotonic()

    start = time.monotonic() + 0.2
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="edit") as pool:
        for seq in range(total):
            due = start + seq / args.rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            record_id, email = records[seq % len(records)]
            change = Change(seq, record_id, email, sent=time.monotonic())
            changes.append(change)
            pool.submit(edit, change)
    return changes


def stages(
    changes: list[Change],
    posts: list[tuple[float, float, int, list[str]]],
    sf_hits: list[c.Hit],
    cc_hits: list[c.Hit],
) -> dict[str, list[float]]:
    """For each change seen in CC: seconds spent in each stage (see the module docstring)."""
    by_record: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for sent, answered, status, ids in sorted(posts):
        if 200 <= status < 300:
            for record_id in ids:
                by_record[record_id].append((sent, answered))
    reads: dict[str, list[float]] = defaultdict(list)
    for hit in sf_hits:
        if "/query" in hit.path and hit.query:
            for record_id in _IDS_IN_QUERY.findall(unquote_plus(hit.query)):
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
        sent_ans = next(((s, a) for s, a in by_record[ch.record_id] if s >= ch.sent), None)
        if sent_ans is None:
            continue
        read = next((t for t in reads[ch.record_id] if t >= sent_ans[1]), None)
        posted = next((t for t in imports[ch.email] if read is not None and t >= read), None)
        if read is None or posted is None or posted > ch.seen:
            continue
        out["edit sent → event POSTed"].append(sent_ans[0] - ch.sent)
        out["event POSTed → webhook answered"].append(sent_ans[1] - sent_ans[0])
        out["webhook answered → flush re-read (SOQL)"].append(read - sent_ans[1])
        out["re-read → import posted"].append(posted - read)
        out["import posted → right in CC (polls)"].append(ch.seen - posted)
    return out


def cc_rate(cc_hits: list[c.Hit], start: float, end: float) -> tuple[float, int]:
    """Mean /v3 calls per second over [start, end] and the most in any 1-second window."""
    times = sorted(h.at for h in cc_hits if h.path.startswith("/v3/") and start <= h.at <= end)
    mean = len(times) / max(end - start, 1e-9)
    peak, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - 1.0:
            lo += 1
        peak = max(peak, hi - lo + 1)
    return mean, peak


def run(args: argparse.Namespace) -> int:
    from sandbox import server

    with c.workdir("bench-latency-") as tmp:
        delivery = DeliveryLog()
        running = server.start(
            sf_port=0,
            cc_port=0,
            tls_dir=tmp / "tls",
            sf_config={"EVENT_DELIVERY": "thread", "EVENT_HTTP": delivery},
            cc_config={"ACTIVITY_SECONDS": args.activity_seconds},
        )
        procs: list[c.Process] = []
        watcher = Watcher(running.cc_app)
        try:
            c.quiet_logs()
            with c.claimed_redis() if args.mode == "redis" else _nothing() as redis_url:
                sf_token, cc_token = c.sandbox_tokens(running)
                prepared = c.prepare_store(
                    args.database_url or f"sqlite:///{tmp / 'bench.sqlite3'}",
                    sf_base=running.sf_url,
                    sf_token=sf_token,
                    cc_token=cc_token,
                )
                c.quiet_logs()
                from sandbox.salesforce.seed import seed_org

                sandbox = running.sf
                seed_org(sandbox, contacts=args.records, accounts=max(1, args.records // 50),
                         opted_out_ratio=0.0, no_email_ratio=0.0)  # fmt: skip
                c.sync_now_over_sockets(running, prepared)
                records = linked_records(sandbox, prepared)

                port = c.free_port()
                extra = {
                    "SALESFORCE_CA_BUNDLE": str(running.tls.ca_cert),
                    "CC_API_URL": f"{running.cc_url}/v3",
                    "FLUSH_DELAY_SECONDS": str(args.flush_delay),
                }
                if redis_url:
                    extra["REDIS_URL"] = redis_url
                env = c.service_env(prepared, **extra)
                workers = args.workers if redis_url else 1
                web = c.gunicorn("web", "app:create_app()", port, env, tmp, workers=workers,
                                 threads=5)  # fmt: skip
                procs.append(web)
                if redis_url:
                    procs.append(c.rq_worker("worker", redis_url, env, tmp, args.worker_class))
                c.wait_http(f"http://127.0.0.1:{port}/livez", web)
                running.sf.events.configure_delivery(
                    f"http://127.0.0.1:{port}/webhooks/salesforce/{prepared.setup_id}",
                    {"X-Webhook-Secret": prepared.webhook_secret},
                    args.batch,
                )
                sf_hits = c.install_recorder(running.sf_app, lambda _m, _p: False)
                cc_hits = c.install_recorder(
                    running.cc_app, lambda m, p: m == "POST" and p.endswith("contacts_json_import")
                )
                watcher.start()
                time.sleep(1.0)  # let the worker register and the watcher settle
                changes = drive(running.sf_url, str(running.tls.ca_cert), records, args)
                last_edit = time.monotonic()
                deadline = last_edit + args.drain
                while time.monotonic() < deadline and len(watcher.seen) < len(changes):
                    time.sleep(0.1)
                watcher.stop()
                for ch in changes:
                    ch.seen = watcher.seen.get(ch.seq, 0.0)
                runs = _runs(prepared.store)
                return report(args, changes, delivery, sf_hits, cc_hits, procs, last_edit, runs)
        finally:
            watcher.stop()
            for proc in procs:
                proc.stop()
            running.sf.events.close()
            running.stop()


def linked_records(sandbox: Any, prepared: c.Prepared) -> list[tuple[str, str]]:
    """(Id, email) of every seeded Contact the Sync Now linked to a Constant Contact contact."""
    from bench.burst import linked_emails

    linked = linked_emails(prepared.store, prepared.setup_id)
    rows = sandbox.store.query("SELECT Id, Email FROM Contact ORDER BY Id").rows
    return [
        (str(r["Id"]), str(r["Email"]).lower())
        for r in rows
        if str(r.get("Email") or "").lower() in linked
    ]


def _runs(store: Any) -> list[tuple[str, str, int]]:
    """(kind, status, records) of every run the service recorded."""
    from middleware.store.models import Run

    with store.transaction() as session:
        rows = session.query(Run).order_by(Run.id).all()
        return [(r.kind, r.status, int((r.counts or {}).get("records", 0))) for r in rows]


class _nothing:  # a null context manager yielding no Redis URL
    def __enter__(self) -> str:
        return ""

    def __exit__(self, *exc: object) -> None:
        return None


def report(
    args: argparse.Namespace,
    changes: list[Change],
    delivery: DeliveryLog,
    sf_hits: c.WsgiRecorder,
    cc_hits: c.WsgiRecorder,
    procs: list[c.Process],
    last_edit: float,
    runs: list[tuple[str, str, int]],
) -> int:
    latencies = [ch.seen - ch.sent for ch in changes if ch.seen]
    warm = [ch.seen - ch.sent for ch in changes if ch.seen and ch.sent >= changes[0].sent + 5]
    flushes = [r for r in runs if r[0] == "incremental"]
    missing = [ch for ch in changes if not ch.seen]
    failed_edits = sum(1 for ch in changes if ch.status not in (200, 204))
    first = changes[0].sent if changes else 0.0
    end = max([ch.seen for ch in changes if ch.seen] or [last_edit])
    cc_all = cc_hits.snapshot()
    mean_rate, peak = cc_rate(cc_all, first, end)
    calls = sum(1 for h in cc_all if h.path.startswith("/v3/") and first <= h.at <= end)
    imports = sum(1 for h in cc_all if h.path.endswith("contacts_json_import") and h.at >= first)
    polls = sum(1 for h in cc_all if h.method == "GET" and "/activities/" in h.path)
    sf_calls = sum(1 for h in sf_hits.snapshot() if "/services/" in h.path and h.at >= first)
    posts = list(delivery.posts)
    mode = (
        f"gunicorn {args.workers}×5 gthread + rq worker --with-scheduler ({args.worker_class}), "
        "real Redis"
        if args.mode == "redis"
        else "gunicorn 1×5 gthread, embedded (fakeredis + worker thread)"
    )
    rows: list[tuple[str, Any]] = [
        ("service", mode),
        ("FLUSH_DELAY / CC ACTIVITY_SECONDS", f"{args.flush_delay} / {args.activity_seconds}"),
        ("edits sent / failed / rate", f"{len(changes)} / {failed_edits} / {args.rate}/s for "
                                       f"{args.seconds}s over {args.records} contacts"),
        ("event POSTs to the webhook (non-2xx)",
         f"{len(posts)} ({sum(1 for p in posts if not 200 <= p[2] < 300)})"),
        ("right in CC / not within the drain", f"{len(latencies)} / {len(missing)}"),
        (f"latency median (s) [target < {TARGET_MEDIAN}]", round(c.median(latencies), 3)),
        (f"latency p99 (s) [target < {TARGET_P99}]", round(c.percentile(latencies, 99), 3)),
        ("latency p90 / max (s)",
         f"{c.percentile(latencies, 90):.3f} / {max(latencies or [float('nan')]):.3f}"),
        (f"CC calls/s mean / peak in 1 s [limit {CC_LIMIT}]", f"{mean_rate:.2f} / {peak}"),
        ("CC calls / imports / activity polls", f"{calls} / {imports} / {polls}"),
        ("Salesforce API calls", sf_calls),
        ("latency p99 after the first 5 s (s)", round(c.percentile(warm, 99), 3)),
        ("flush runs: by status / records per run (median)",
         f"{dict(Counter(r[1] for r in flushes))} / {c.median([r[2] for r in flushes])}"),
    ]  # fmt: skip
    c.print_table("end-to-end latency, Salesforce edit → right in Constant Contact", rows)
    parts = stages(changes, posts, sf_hits.snapshot(), cc_all)
    if parts:
        stage_rows = [
            (name, f"median {c.median(v):.3f}  p99 {c.percentile(v, 99):.3f}  (n={len(v)})")
            for name, v in parts.items()
        ]
        c.print_table("where the time goes (s)", stage_rows)
    for proc in procs:
        if proc.popen.poll() is not None:
            print(f"{proc.name} exited early:\n{proc.tail()}")
    return 0 if latencies and not missing else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=50.0, help="edits per second")
    parser.add_argument("--records", type=int, default=3000, help="contacts edited round-robin")
    parser.add_argument("--mode", choices=("redis", "embedded"), default="redis")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (redis mode)")
    parser.add_argument(
        "--worker-class",
        default="rq.worker.HerokuWorker",
        help="rq worker class (the Procfile's HerokuWorker forks a work horse per job)",
    )
    parser.add_argument("--batch", type=int, default=200, help="events per webhook POST, at most")
    parser.add_argument("--flush-delay", type=float, default=1.0, help="FLUSH_DELAY_SECONDS")
    parser.add_argument(
        "--activity-seconds", type=float, default=0.5, help="CC sandbox activity processing time"
    )
    parser.add_argument("--drain", type=float, default=20.0, help="wait after the last edit (s)")
    parser.add_argument("--database-url", default="", help="default: a temporary SQLite file")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
