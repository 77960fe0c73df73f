"""Benchmark of the webhook intake under gunicorn, against a bare "hello" app with the same workers.

Starts the service with gunicorn on 127.0.0.1 (real Redis on a claimed db, flushed before and
after; a SQLite store with one setup) and a bare WSGI app under identical gunicorn settings, then
drives each with wrk: POSTs of single, realistic CDC change events (CometD envelope of a Contact
UPDATE, ~600 bytes) with the setup's shared secret, a unique replayId and record id per request.
Prints requests/s and latency percentiles for both and the ratio intake/hello, and checks that
every event answered 202 left its record id in Redis (nothing accepted is lost).

    .venv/bin/python -m bench.webhook_intake [--seconds 15] [--connections 16] [--workers 2]

wrk must be installed (`apt-get install -y wrk`); the load is bounded by --seconds.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import _common as c

TARGET_RATIO = 0.3
ID_PREFIX = "003SB"
# An id of digits after a fixed prefix always gets the same case-checksum suffix.
ID_SUFFIX = "YAA"

# A Contact UPDATE exactly as the Salesforce sandbox renders it; the replay id and record id are
# filled in per request by the Lua script.
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
-- Unique replay id and record id per request, across wrk threads.
local counter = 0
local thread_no = 0
local threads = {}

function setup(thread)
  thread:set("thread_no", #threads + 1)
  table.insert(threads, thread)
end

-- args[1]: an offset, so each wrk run sends replay ids no earlier run sent (no duplicates).
local offset = 0
function init(args)
  thread_no = tonumber(wrk.thread:get("thread_no")) or 1
  offset = tonumber(args[1]) or 0
end

local head = [==[@HEAD@]==]
local mid = [==[@MID@]==]
local tail = [==[@TAIL@]==]

request = function()
  counter = counter + 1
  local n = offset + thread_no * 100000000 + counter
  local body = head .. string.format("%010d", n) .. mid .. tostring(n) .. tail
  return wrk.format("POST", nil, nil, body)
end

local codes = {}
response = function(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
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


def what_if_app() -> Any:
    """The service with two proposed intake fixes applied in memory (``--what-if``), to size them.

    1. marshmallow schemas built once instead of per event (``middleware/salesforce/events.py``
       instantiates ``CometDEnvelopeSchema()``/``ChangeEventPayloadSchema()`` on every call, and
       each instantiation deep-copies every declared field);
    2. ``queue.ensure_scheduled`` answers from the guard alone while it is fresh (one GET),
       instead of GET + ``Job.fetch`` (HGETALL) + SET NX on every accepted event.
    Not the real fix (that belongs to those modules' owners); a measurement of what it would buy.
    """
    import time as _time

    from app import create_app
    from middleware import queue
    from middleware.salesforce import events
    from schemas import salesforce_events as schemas

    for name in ("CometDEnvelopeSchema", "FlatCometDEnvelopeSchema", "ChangeEventPayloadSchema"):
        instance = getattr(schemas, name)()
        setattr(events, name, lambda instance=instance: instance)
    original = queue.ensure_scheduled

    def ensure_scheduled(key: str, func: Any, args: Any = (), delay: float = 0.0, **kw: Any) -> Any:
        raw = queue._connection(kw.get("connection")).get(queue.GUARD_PREFIX + key)
        if raw is not None:
            created = int((raw.decode() if isinstance(raw, bytes) else raw).partition("|")[2] or 0)
            if _time.time() - created < float(delay) + queue._GUARD_GRACE_SECONDS:
                return None
        return original(key, func, args, delay, **kw)

    queue.ensure_scheduled = ensure_scheduled  # type: ignore[assignment]
    return create_app()


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


def lua_script(path: Path) -> Path:
    """The wrk script, with the event template's parts inlined."""
    head, mid, tail = body_parts()
    lua = LUA.replace("@HEAD@", head).replace("@MID@", mid).replace("@TAIL@", tail)
    path.write_text(lua)
    return path


def wrk(
    url: str, script: Path, headers: dict[str, str], args: argparse.Namespace, offset: int
) -> dict[str, Any]:
    argv = ["wrk", "-t", str(args.wrk_threads), "-c", str(args.connections)]
    argv += ["-d", f"{args.seconds}s", "--timeout", "5s", "-s", str(script)]
    for key, value in {"Content-Type": "application/json", **headers}.items():
        argv += ["-H", f"{key}: {value}"]
    out = subprocess.run(
        [*argv, url, "--", str(offset)],
        capture_output=True,
        text=True,
        timeout=args.seconds + 30,
        check=True,
    ).stdout
    match = re.search(r"WRK_JSON (\{.*\})", out)
    if match is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    raw = json.loads(match.group(1))
    seconds = raw["duration_us"] / 1e6
    errors = sum(v for k, v in raw.items() if k.startswith("errors_"))
    return {
        "requests": raw["requests"],
        "rps": raw["requests"] / seconds,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "errors": errors,
        "non_2xx": raw["errors_status"],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from redis import Redis

    from middleware import intake

    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    results: dict[str, Any] = {}
    with c.workdir("bench-intake-") as tmp, c.claimed_redis() as redis_url:
        prepared = c.prepare_store(
            args.database_url or f"sqlite:///{tmp / 'bench.sqlite3'}",
            sf_base="https://sf.sandbox.invalid",
            sf_token="unused",
            cc_token="unused",
        )
        c.quiet_logs()
        script = lua_script(tmp / "events.lua")
        env = c.service_env(prepared, REDIS_URL=redis_url, WEB_CONCURRENCY=str(args.workers))
        hook_path = f"/webhooks/salesforce/{prepared.setup_id}"
        secret = {"X-Webhook-Secret": prepared.webhook_secret}
        targets = [
            ("hello", "bench.webhook_intake:hello_app", "/webhooks/hello", {}),
            ("intake", "app:create_app()", hook_path, secret),
        ]
        if args.what_if:
            targets.append(("what-if", "bench.webhook_intake:what_if_app()", hook_path, secret))
        redis = Redis.from_url(redis_url)
        for name, app, path, headers in targets:
            port = c.free_port()
            proc = c.gunicorn(
                name,
                app,
                port,
                env,
                tmp,
                workers=args.workers,
                threads=args.threads,
                worker_class=args.worker_class,
            )
            try:
                c.wait_http(f"http://127.0.0.1:{port}/livez", proc)
                url = f"http://127.0.0.1:{port}{path}"
                warm = argparse.Namespace(**{**vars(args), "seconds": min(2, args.seconds)})
                wrk(url, script, headers, warm, 0)  # imports, connections, setup cache
                redis.delete(intake.dirty_key(prepared.setup_id))
                results[name] = wrk(url, script, headers, args, 5_000_000_000)
                results[name]["in_redis"] = intake.pending(redis, prepared.setup_id)
            finally:
                proc.stop()
        redis.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=15, help="each measured wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=5, help="gunicorn threads per worker")
    parser.add_argument("--worker-class", default="gthread")
    parser.add_argument("--database-url", default="", help="default: a temporary SQLite file")
    parser.add_argument(
        "--what-if", action="store_true", help="also run the intake with two proposed fixes"
    )
    args = parser.parse_args(argv)
    results = run(args)
    hello, hook = results["hello"], results["intake"]
    ratio = hook["rps"] / hello["rps"] if hello["rps"] else float("nan")
    rows: list[tuple[str, Any]] = [
        (
            "gunicorn",
            f"{args.worker_class}, {args.workers} workers × {args.threads} threads; "
            f"wrk {args.wrk_threads} thread, {args.connections} connections, {args.seconds} s",
        )
    ]
    for name, r in results.items():
        rows += [
            (f"{name}: requests/s", round(r["rps"], 1)),
            (f"{name}: latency p50 / p90 / p99 / max (ms)",
             f"{r['p50_ms']:.1f} / {r['p90_ms']:.1f} / {r['p99_ms']:.1f} / {r['max_ms']:.1f}"),
            (f"{name}: requests / errors / non-2xx",
             f"{r['requests']} / {r['errors']} / {r['non_2xx']}"),
        ]  # fmt: skip
    accepted = hook["requests"] - hook["non_2xx"]
    rows += [
        ("intake: record ids in Redis / 202 answers", f"{hook['in_redis']} / {accepted}"),
        (f"ratio intake/hello (events/s) [target ≥ {TARGET_RATIO}]", round(ratio, 3)),
    ]
    if "what-if" in results:
        rows.append(("ratio what-if/hello", round(results["what-if"]["rps"] / hello["rps"], 3)))
    c.print_table("webhook intake under gunicorn", rows)
    lost = hook["in_redis"] < accepted
    if lost:
        print("  LOST: fewer record ids in Redis than events answered 202")
    return 1 if lost or hook["non_2xx"] else 0


if __name__ == "__main__":
    sys.exit(main())
