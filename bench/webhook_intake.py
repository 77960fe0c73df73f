"""Benchmark of the webhook intake under gunicorn, against a bare "hello" app with the same workers.

Starts, all at once and for the whole run, the service (gunicorn on 127.0.0.1, real Redis on a
claimed db flushed before and after, a SQLite store with one setup) and a bare WSGI app under
identical gunicorn settings, then drives them with wrk in alternating short rounds: each round
runs every server for `--seconds`, in an order that flips every round (hello, intake, then
intake, hello), so background load on this shared machine hits both alike instead of whichever
happened to run second. Each request is a realistic CDC change event (CometD envelope of a
Contact UPDATE, ~600 bytes) with the setup's shared secret and a unique replayId and record id.

Prints each round's events/s and the servers' own CPU time per event (all their processes,
from /proc: background load moves it far less than throughput), the medians, the ratio of the
medians (the figure to quote) and the load average seen (1-minute, before the run, at each
round and after). Then the same
interleaving for single-event POSTs against batch POSTs (`{"events": [...]}` of `--batch`
events): events/s and server CPU per event of each. Finally it checks that every event answered
202 left its record id in Redis (nothing accepted is lost): exit status 1 if not, or on any
non-2xx answer.

    .venv/bin/python -m bench.webhook_intake [--rounds 10] [--seconds 3] [--batch 50]

Flags:
  --rounds N          alternating hello/intake rounds (default 10)
  --seconds S         each server's wrk run per round (default 3); a 2 s warm-up precedes all
  --batch N           events per POST in the batch rounds (default 50; 0 skips them)
  --batch-rounds N    alternating single/batch rounds (default 5)
  --connections N     wrk connections (default 16); --wrk-threads N (default 1)
  --workers N, --threads N, --worker-class K   gunicorn settings, the same for every server
                      (default 2 workers × 5 gthread threads, as deployed with Redis)
  --database-url URL  the store (default: a temporary SQLite file)
  --baseline-root DIR also run the intake from another source tree (e.g. `git archive <commit>
                      | tar -x -C DIR`) as a third server in the same rounds: before/after
                      figures that shared the same background load
  --json              print the figures as JSON too

wrk must be installed (`apt-get install -y wrk`); the load is bounded by rounds × seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import _common as c

TARGET_RATIO = 0.4
ID_PREFIX = "003SB"
# An id of digits after a fixed prefix always gets the same case-checksum suffix.
ID_SUFFIX = "YAA"
# Numbers per wrk run and per wrk thread: each run's events get ids no other run sends.
RUN_SPAN = 10**8
THREAD_SPAN = 10**7

# A Contact UPDATE exactly as the Salesforce sandbox renders it; the replay id and record id are
# filled in per event by the Lua script.
EVENT_TEMPLATE = {
    "data": {
        "schema": "0srI93NGwCBKdM_FImV6vl",
        "payload": {
            "ChangeEventHeader": {
                "entityName": "Contact",
                "recordIds": ["@ID@"],
                "changeType": "UPDATE",
                "changeOrigin": "",
                "transactionKey": "71408833-1578-47ea-99bf-fcfcae2d4d58",
                "sequenceNumber": 1,
                "commitTimestamp": 1795690286671,
                "commitNumber": 1100670000002,
                "commitUser": "005SB0000000001AAA",
                "changedFields": ["Title", "LastModifiedDate"],
                "nulledFields": [],
                "diffFields": [],
            },
            "Title": "Countess",
            "LastModifiedDate": "2026-11-26T10:51:26.671Z",
        },
        "event": {"replayId": 0},
    },
    "channel": "/data/ContactChangeEvent",
}

LUA = r"""
-- Unique replay id and record id per event, across wrk threads and runs.
local counter = 0
local thread_no = 0
local threads = {}

function setup(thread)
  thread:set("thread_no", #threads + 1)
  table.insert(threads, thread)
end

-- args[1]: this run's offset (no earlier run sent its numbers); args[2]: events per POST
-- (0: one bare envelope per POST; n: {"events": [n envelopes]}).
local offset = 0
local batch = 0
function init(args)
  thread_no = tonumber(wrk.thread:get("thread_no")) or 1
  offset = tonumber(args[1]) or 0
  batch = tonumber(args[2]) or 0
end

local head = [==[@HEAD@]==]
local mid = [==[@MID@]==]
local tail = [==[@TAIL@]==]

local function event()
  counter = counter + 1
  local n = offset + (thread_no - 1) * @THREAD_SPAN@ + counter
  return head .. string.format("%010d", n) .. mid .. tostring(n) .. tail
end

request = function()
  if batch == 0 then
    return wrk.format("POST", nil, nil, event())
  end
  local parts = {}
  for i = 1, batch do parts[i] = event() end
  return wrk.format("POST", nil, nil, '{"events":[' .. table.concat(parts, ",") .. "]}")
end

done = function(summary, latency, requests)
  local out = {
    requests = summary.requests,
    duration_us = summary.duration,
    errors_connect = summary.errors.connect,
    errors_read = summary.errors.read,
    errors_write = summary.errors.write,
    errors_status = summary.errors.status,
    errors_timeout = summary.errors.timeout,
    p50_us = latency:percentile(50),
    p90_us = latency:percentile(90),
    p99_us = latency:percentile(99),
    max_us = latency.max,
  }
  local parts = {}
  for k, v in pairs(out) do table.insert(parts, string.format("%q:%d", k, v)) end
  io.write("WRK_JSON {" .. table.concat(parts, ",") .. "}\n")
end
"""


def hello_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """The bare baseline: read the body, answer 202 with a tiny JSON document."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
    body = b'{"accepted":1}'
    start_response(
        "202 Accepted", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def body_parts() -> tuple[str, str, str]:
    """The event template split around the record id's digits and the replay id."""
    text = json.dumps(EVENT_TEMPLATE, separators=(",", ":"))
    text = text.replace('"replayId":0', '"replayId":@REPLAY@')
    head, _, rest = text.partition("@ID@")
    mid, _, tail = rest.partition("@REPLAY@")
    # The record id: fixed prefix, 10 digits, fixed suffix (see ID_SUFFIX).
    return head + ID_PREFIX, ID_SUFFIX + mid, tail


def event_body(n: int) -> bytes:
    """What the Lua script sends for counter value `n` (for tests of the script's output)."""
    head, mid, tail = body_parts()
    return f"{head}{n:010d}{mid}{n}{tail}".encode()


def batch_body(first: int, count: int) -> bytes:
    """What the Lua script sends as one batch POST of `count` events numbered from `first`."""
    events = b",".join(event_body(n) for n in range(first, first + count))
    return b'{"events":[' + events + b"]}"


def lua_script(path: Path) -> Path:
    """The wrk script, with the event template's parts inlined."""
    head, mid, tail = body_parts()
    lua = LUA.replace("@HEAD@", head).replace("@MID@", mid).replace("@TAIL@", tail)
    path.write_text(lua.replace("@THREAD_SPAN@", str(THREAD_SPAN)))
    return path


@dataclass
class Target:
    """One server under test, how to post to it, and its gunicorn master's pid (for CPU time)."""

    name: str
    url: str
    headers: dict[str, str]
    pid: int = 0


def wrk(target: Target, script: Path, args: argparse.Namespace, seconds: int, offset: int,
        batch: int = 0) -> dict[str, Any]:  # fmt: skip
    """One wrk run against `target`; requests/s, events/s and latency percentiles."""
    argv = ["wrk", "-t", str(args.wrk_threads), "-c", str(args.connections)]
    argv += ["-d", f"{seconds}s", "--timeout", "5s", "-s", str(script)]
    for key, value in {"Content-Type": "application/json", **target.headers}.items():
        argv += ["-H", f"{key}: {value}"]
    cpu_before = c.tree_cpu_seconds(target.pid) if target.pid else 0.0
    out = subprocess.run(
        [*argv, target.url, "--", str(offset), str(batch)],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    match = re.search(r"WRK_JSON (\{.*\})", out)
    if match is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    raw = json.loads(match.group(1))
    cpu = c.tree_cpu_seconds(target.pid) - cpu_before if target.pid else 0.0
    duration = raw["duration_us"] / 1e6
    per_post = max(batch, 1)
    return {
        # The server's own CPU per event (all its processes): what background load moves least.
        "cpu_us_per_event": cpu / max(raw["requests"] * per_post, 1) * 1e6,
        "requests": raw["requests"],
        "rps": raw["requests"] / duration,
        "events_per_s": raw["requests"] * per_post / duration,
        "accepted_events": (raw["requests"] - raw["errors_status"]) * per_post,
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "errors": sum(v for k, v in raw.items() if k.startswith("errors_")),
        "non_2xx": raw["errors_status"],
        "load1": os.getloadavg()[0],
    }


class Runs:
    """wrk runs that each get numbers (replay and record ids) no other run sent."""

    def __init__(self, script: Path, args: argparse.Namespace) -> None:
        self.script, self.args, self.count = script, args, 0
        self.accepted = self.non_2xx = 0

    def __call__(self, target: Target, seconds: int, batch: int = 0) -> dict[str, Any]:
        self.count += 1
        if self.count * RUN_SPAN >= 10**10:  # record ids hold 10 digits
            raise SystemExit("too many wrk runs for the id scheme: fewer rounds")
        result = wrk(target, self.script, self.args, seconds, self.count * RUN_SPAN, batch)
        if target.name != "hello":
            self.accepted += result["accepted_events"]
            self.non_2xx += result["non_2xx"]
        return result


def interleaved(runs: Runs, plan: list[tuple[str, Target, int]], rounds: int, seconds: int
                ) -> list[dict[str, dict[str, Any]]]:  # fmt: skip
    """`rounds` rounds of every (label, target, batch) in `plan`, the order flipped each round."""
    out = []
    for number in range(rounds):
        order = plan if number % 2 == 0 else plan[::-1]
        out.append({label: runs(target, seconds, batch) for label, target, batch in order})
    return out


def summarise(rounds: list[dict[str, dict[str, Any]]], key: str) -> dict[str, float]:
    """Median of `key` per label over the rounds."""
    return {label: statistics.median(r[label][key] for r in rounds) for label in rounds[0]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start every server, run the interleaved rounds, check nothing accepted was lost."""
    from redis import Redis

    from middleware import intake

    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    load_before = os.getloadavg()
    with c.workdir("bench-intake-") as tmp, c.claimed_redis() as redis_url:
        prepared = c.prepare_store(
            args.database_url or f"sqlite:///{tmp / 'bench.sqlite3'}",
            sf_base="https://sf.sandbox.invalid",
            sf_token="unused",
            cc_token="unused",
        )
        c.quiet_logs()
        runs = Runs(lua_script(tmp / "events.lua"), args)
        env = c.service_env(prepared, REDIS_URL=redis_url, WEB_CONCURRENCY=str(args.workers))
        hook_path = f"/webhooks/salesforce/{prepared.setup_id}"
        secret = {"X-Webhook-Secret": prepared.webhook_secret}
        servers = [
            ("hello", "bench.webhook_intake:hello_app", "/webhooks/hello", {}, c.ROOT),
            ("intake", "app:create_app()", hook_path, secret, c.ROOT),
        ]
        if args.baseline_root:
            root = Path(args.baseline_root).resolve()
            servers.append(("baseline", "app:create_app()", hook_path, secret, root))
        procs: list[c.Process] = []
        targets: dict[str, Target] = {}
        try:
            for name, app, path, headers, root in servers:
                port = c.free_port()
                server_env = {**env, "PYTHONPATH": str(root)}
                procs.append(
                    c.gunicorn(name, app, port, server_env, tmp, workers=args.workers,
                               threads=args.threads, worker_class=args.worker_class, root=root)
                )  # fmt: skip
                c.wait_http(f"http://127.0.0.1:{port}/livez", procs[-1])
                url = f"http://127.0.0.1:{port}{path}"
                targets[name] = Target(name, url, headers, procs[-1].popen.pid)
            for target in targets.values():  # imports, connections, setup cache, Lua SHA
                runs(target, min(2, args.seconds))
            plan = [(name, target, 0) for name, target in targets.items()]
            rounds = interleaved(runs, plan, args.rounds, args.seconds)
            batch_rounds: list[dict[str, dict[str, Any]]] = []
            if args.batch > 0 and args.batch_rounds > 0:
                intake_target = targets["intake"]
                batch_plan = [("single", intake_target, 0), ("batch", intake_target, args.batch)]
                batch_rounds = interleaved(runs, batch_plan, args.batch_rounds, args.seconds)
        finally:
            for proc in procs:
                proc.stop()
        redis = Redis.from_url(redis_url)
        in_redis = intake.pending(redis, prepared.setup_id)
        redis.close()
    return {
        "rounds": rounds,
        "batch_rounds": batch_rounds,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "accepted_events": runs.accepted,
        "non_2xx": runs.non_2xx,
        "in_redis": in_redis,
    }


def report(args: argparse.Namespace, results: dict[str, Any]) -> list[tuple[str, Any]]:
    """The table rows: per round, medians, ratios, load, batches, the lost-events check."""
    rounds = results["rounds"]
    names = list(rounds[0])
    setting = f"{args.worker_class}, {args.workers} workers × {args.threads} threads"
    rows: list[tuple[str, Any]] = [
        ("gunicorn", f"{setting}; wrk {args.wrk_threads} thread, {args.connections} connections"),
        ("rounds", f"{len(rounds)} × {args.seconds} s per server, order flipped every round"),
    ]
    for number, r in enumerate(rounds, 1):
        figures = ", ".join(
            f"{n} {r[n]['rps']:,.0f}/s {r[n]['p50_ms']:.1f} ms {r[n]['cpu_us_per_event']:.0f} µs"
            for n in names
        )
        ratio = r["intake"]["rps"] / r["hello"]["rps"]
        load = r["hello"]["load1"]
        rows.append(
            (
                f"round {number}: events/s, p50, CPU",
                f"{figures}; ratio {ratio:.3f}; load {load:.2f}",
            )
        )
    rps, p50 = summarise(rounds, "rps"), summarise(rounds, "p50_ms")
    cpu = summarise(rounds, "cpu_us_per_event")
    for name in names:
        figures = f"{rps[name]:,.0f}/s, {p50[name]:.1f} ms, {cpu[name]:.0f} µs"
        rows.append((f"{name}: median events/s, p50, server CPU per event", figures))
    ratio_of_medians = rps["intake"] / rps["hello"]
    rows.append(
        (f"ratio of medians intake/hello [target ≥ {TARGET_RATIO}]", f"{ratio_of_medians:.3f}")
    )
    per_round = [r["intake"]["rps"] / r["hello"]["rps"] for r in rounds]
    spread = f"{min(per_round):.3f}–{max(per_round):.3f}"
    rows.append(
        ("per-round ratios: median (min–max)", f"{statistics.median(per_round):.3f} ({spread})")
    )
    rows.append(("server CPU per event, hello/intake (the ratio CPU alone allows)",
                 f"{cpu['hello'] / cpu['intake']:.3f}"))  # fmt: skip
    if "baseline" in rps:
        rows.append(
            ("server CPU per event, intake/baseline", f"{cpu['intake'] / cpu['baseline']:.3f}")
        )
        rows.append(("ratio of medians baseline/hello", f"{rps['baseline'] / rps['hello']:.3f}"))
        rows.append(("ratio of medians intake/baseline", f"{rps['intake'] / rps['baseline']:.3f}"))
    loads = [r[n]["load1"] for r in rounds for n in names]
    seen = f"{results['load_before'][0]:.2f} / {min(loads):.2f}–{max(loads):.2f}"
    rows.append(
        (
            "load (1 min): before / rounds min–max / after",
            f"{seen} / {results['load_after'][0]:.2f}",
        )
    )
    if results["batch_rounds"]:
        events = summarise(results["batch_rounds"], "events_per_s")
        posts = summarise(results["batch_rounds"], "p50_ms")
        spent = summarise(results["batch_rounds"], "cpu_us_per_event")
        for label in ("single", "batch"):
            size = args.batch if label == "batch" else 1
            cost = f"{events[label]:,.0f}/s, {spent[label]:.0f} µs, {posts[label]:.1f} ms"
            rows.append((f"{label} POSTs ({size} events): events/s, CPU per event, p50", cost))
        rows.append(("batch/single events/s", f"{events['batch'] / events['single']:.2f}"))
    answered = f"{results['accepted_events']} / {results['in_redis']}"
    rows.append(("events answered 202 / record ids in Redis", answered))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="alternating hello/intake rounds")
    parser.add_argument("--seconds", type=int, default=3, help="each server's run per round")
    parser.add_argument("--batch", type=int, default=50, help="events per batch POST (0: none)")
    parser.add_argument("--batch-rounds", type=int, default=5, help="single/batch rounds")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=5, help="gunicorn threads per worker")
    parser.add_argument("--worker-class", default="gthread")
    parser.add_argument("--database-url", default="", help="default: a temporary SQLite file")
    parser.add_argument("--baseline-root", default="", help="also run the intake from this tree")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args(argv)
    results = run(args)
    c.print_table("webhook intake under gunicorn, interleaved rounds", report(args, results))
    if args.json:
        print(json.dumps(results, indent=1))
    lost = results["in_redis"] < results["accepted_events"]
    if lost:
        print("  LOST: fewer record ids in Redis than events answered 202")
    return 1 if lost or results["non_2xx"] else 0


if __name__ == "__main__":
    sys.exit(main())
