"""Benchmark of the Full Sync at scale: N Salesforce contacts against an empty Constant Contact,
then the same N with 1% drift spread over both sides.

The sandboxes run in two child processes, one per vendor, behind real sockets (Salesforce over
HTTPS, Constant Contact over HTTP at its real 4 requests/s), so the figures are the worker's
alone: this process runs the Full Sync exactly as a worker would, with the service's own
clients, a PostgreSQL store (a private schema in the `test` database) and a claimed Redis
database. Memory is sampled every 50 ms: this process's resident set, and its PSS together
with the screening processes it starts (the sandboxes left out), shared pages counted once.

Drift (1% of N, spread evenly): Salesforce edits (last name), Salesforce deletes (the setup has
`remove_on_sf_delete`, so they leave the main list), and unsubscribes made in Constant Contact
(which must reach Salesforce as `HasOptedOutOfEmail`). The child records every write the
sandboxes received, and the benchmark checks that exactly the drifted records were written.

    .venv/bin/python -m bench.full_sync [--contacts 1000000] [--sizes 100000,1000000]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import random
import resource
import sys
import time
import uuid
from typing import Any

from bench._common import PeakRss, rss_mb

CC_CONFIG = {"RATE_PER_SECOND": 4, "DAILY_QUOTA": 0, "ACTIVITY_STEPS": 1}
SF_CONFIG = {"BULK_STEPS": 1}
OPTIONS = {"remove_on_sf_delete": True}
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


# ------------------------------------------------------------------------------- the child


def _child(conn: Any, vendor: str, contacts: int) -> None:
    """One vendor's sandbox on a socket (Salesforce seeded with ``contacts``), in a process of
    its own as the real vendors are on servers of their own; then answer commands until told
    to stop. (Both sandboxes in one process made each wait for the other's work: their
    export and Bulk query were built under one interpreter lock.)"""
    import logging

    from bench._common import install_recorder, sandbox_tokens
    from sandbox import server
    from sandbox.salesforce.seed import seed_org

    logging.basicConfig(level=logging.WARNING)
    for name in ("werkzeug", "sandbox"):
        logging.getLogger(name).setLevel(logging.ERROR)
    running = server.start(sf_port=0, cc_port=0, sf_config=SF_CONFIG, cc_config=CC_CONFIG)
    recording = [False]
    recorder = install_recorder(
        running.cc_app,
        lambda method, path: (
            recording[0]
            and method in ("POST", "PUT")
            and ("/activities/" in path or "/contacts/" in path)
        ),
    )
    started = time.perf_counter()
    if vendor == "sf":
        seed_org(running.sf, contacts=contacts)
    seeded = time.perf_counter() - started
    sf_token, cc_token = sandbox_tokens(running)
    conn.send(
        {
            "url": running.sf_url if vendor == "sf" else running.cc_url,
            "ca": str(running.tls.ca_cert),
            "token": sf_token if vendor == "sf" else cc_token,
            "seed_seconds": seeded,
        }
    )
    while True:
        command, arg = conn.recv()
        if command == "stop":
            running.stop()
            conn.send(None)
            return
        if command == "mark":
            with recorder.lock:
                recorder.hits.clear()
            recording[0] = bool(arg)
            conn.send(None)
        elif command == "drift":
            conn.send(_drift(running, arg))
        elif command == "unsubscribe":
            for email in arg:
                running.cc.store.unsubscribe_by_person(email, "bench drift")
            conn.send(None)
        elif command == "writes":
            conn.send(_writes(running, recorder.snapshot()))
        elif command == "opted_out":
            rows = running.sf.store.query("SELECT Id FROM Contact WHERE HasOptedOutOfEmail = true")
            conn.send([r["Id"] for r in rows.rows])
        elif command == "cc_count":
            conn.send(running.cc.store.counts())


def _drift(running: Any, share: float) -> dict[str, list[str]]:
    """Apply the Salesforce side of the drift; return what to change (emails, by kind): the
    ``optouts`` are for the Constant Contact process to unsubscribe."""
    from middleware.sync.emails import is_role_address

    store = running.sf.store
    rows = store.query(
        "SELECT Id, Email FROM Contact WHERE HasOptedOutOfEmail = false AND Email != null"
    ).rows
    rng = random.Random(7)
    eligible = [
        (r["Id"], r["Email"].strip().lower())
        for r in rows
        if r.get("Email") and not is_role_address(r["Email"].strip().lower())
    ]
    seen: set[str] = set()
    unique = []
    for sf_id, email in eligible:
        if email not in seen:  # an address two records share is a duplicate, not drift
            seen.add(email)
            unique.append((sf_id, email))
    del rows, eligible
    count = int(len(unique) * share)
    chosen = rng.sample(unique, count)
    third = count // 3
    edits, deletes, optouts = chosen[:third], chosen[third : 2 * third], chosen[2 * third :]
    for sf_id, _ in edits:
        store.update("Contact", sf_id, {"LastName": "Drifted"})
    for sf_id, _ in deletes:
        store.delete("Contact", sf_id)
    return {
        "edits": [e for _, e in edits],
        "deletes": [e for _, e in deletes],
        "optouts": [e for _, e in optouts],
        "optout_ids": [i for i, _ in optouts],
    }


def _writes(running: Any, hits: list[Any]) -> dict[str, Any]:
    """The writes Constant Contact received while recording."""
    import json

    imported: list[str] = []
    removed: list[str] = []
    other: dict[str, int] = {}
    for hit in hits:
        if hit.body is None:
            continue
        if hit.path.endswith("/contacts_json_import"):
            imported += [
                str(r.get("email", "")).lower() for r in json.loads(hit.body)["import_data"]
            ]
        elif hit.path.endswith("/remove_list_memberships"):
            removed += json.loads(hit.body)["source"]["contact_ids"]
        elif not hit.path.endswith("/contact_exports"):
            key = f"{hit.method} {hit.path.rsplit('/', 1)[0] if hit.method == 'PUT' else hit.path}"
            other[key] = other.get(key, 0) + 1
    emails = []
    for contact_id in removed:
        row = running.cc.store.contact_row(contact_id)
        emails.append(row["email"] if row is not None else contact_id)
    return {"imported": imported, "removed": emails, "other": other}


# ------------------------------------------------------------------------------- the worker


def _store_url() -> tuple[str, Any]:
    from middleware.store.db import Store

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = Store(PG_URL, ["x" * 43 + "="])
    with admin.engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    admin.dispose()
    return f"{PG_URL}?options=-csearch_path%3D{schema}", schema


def _drop_schema(schema: str) -> None:
    from middleware.store.db import Store

    admin = Store(PG_URL, ["x" * 43 + "="])
    with admin.engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    admin.dispose()


class _Vendor:
    """A sandbox process and the pipe to it."""

    def __init__(self, vendor: str, contacts: int) -> None:
        ctx = mp.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=_child, args=(child, vendor, contacts), daemon=True)
        self.proc.start()

    def ask(self, command: str, arg: Any = None, timeout: float = 3600.0) -> Any:
        self.pipe.send((command, arg))
        return self.answer(timeout)

    def answer(self, timeout: float = 3600.0) -> Any:
        """The child's answer; a child that died says so instead of hanging the benchmark."""
        deadline = time.monotonic() + timeout
        while not self.pipe.poll(1.0):
            if not self.proc.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox process stopped (exit code {self.proc.exitcode})")
        return self.pipe.recv()

    def stop(self) -> None:
        if self.proc.is_alive():
            with contextlib.suppress(Exception):
                self.ask("stop", timeout=60)
        self.proc.join(timeout=30)


def run_size(contacts: int, drift: float) -> dict[str, Any]:
    from redis import Redis

    from bench._common import claimed_redis, prepare_store, quiet_logs
    from middleware.connections import constant_contact_client, salesforce_client
    from middleware.fullsync import run as fs_run
    from middleware.queue import Runtime
    from middleware.settings import Settings
    from middleware.store import setups as setup_repo

    quiet_logs()
    # Constant Contact first: its process makes the sandboxes' TLS files the other one reuses.
    cc_box = _Vendor("cc", 0)
    cc_info = cc_box.answer()
    sf_box = _Vendor("sf", contacts)
    info = sf_box.answer()
    print(f"  sandbox seeded {contacts:,} contacts in {info['seed_seconds']:.0f} s", flush=True)
    url, schema = _store_url()
    figures: dict[str, Any] = {"contacts": contacts}
    try:
        prepared = prepare_store(
            url,
            sf_base=info["url"],
            sf_token=info["token"],
            cc_token=cc_info["token"],
            options=OPTIONS,
        )
        with claimed_redis() as redis_url:
            settings = Settings.for_tests(
                token_encryption_keys=(prepared.keys,),
                database_url=url,
                redis_url=redis_url,
                salesforce_ca_bundle=info["ca"],
                cc_api_url=f"{cc_info['url']}/v3",
            )
            runtime = Runtime(
                settings=settings, store=prepared.store, redis=Redis.from_url(redis_url)
            )
            with prepared.store.transaction() as session:
                setup = setup_repo.get(session, prepared.setup_id)
                assert setup is not None
                sf_conn = setup.salesforce_connection_id
                cc_conn = setup.constant_contact_connection_id

            def once(label: str) -> dict[str, Any]:
                sf = salesforce_client(settings, prepared.store, runtime.redis, int(sf_conn or 0))
                cc = constant_contact_client(
                    settings, prepared.store, runtime.redis, int(cc_conn or 0)
                )
                cc_box.ask("mark", label != "initial Full Sync")
                before = rss_mb()
                sandboxes = {box.proc.pid for box in (sf_box, cc_box) if box.proc.pid}
                with PeakRss(tree_exclude=sandboxes) as peak:
                    started = time.perf_counter()
                    if os.environ.get("BENCH_PROFILE"):  # where the worker's time goes
                        import cProfile

                        profile = cProfile.Profile()
                        summary = profile.runcall(
                            fs_run.run_full_sync, runtime, prepared.setup_id, sf=sf, cc=cc
                        )
                        profile.dump_stats(f"{os.environ['BENCH_PROFILE']}.{label[:7]}")
                    else:
                        summary = fs_run.run_full_sync(runtime, prepared.setup_id, sf=sf, cc=cc)
                    seconds = time.perf_counter() - started
                writes = cc_box.ask("writes")
                writes["opted_out_ids"] = sf_box.ask("opted_out")
                out = {
                    "seconds": seconds,
                    "peak_mb": peak.peak,
                    "tree_peak_mb": peak.tree_peak,
                    "start_mb": before,
                    "cc_calls": cc.calls.total,
                    "cc_by_family": cc.calls.by_family(),
                    "sf_calls": sf.usage.total,
                    "sf_by_family": dict(sf.usage.calls),
                    "summary": summary,
                    "writes": writes,
                }
                print(
                    f"  {label}: {seconds:.1f} s, peak RSS {peak.peak:.0f} MB (start {before:.0f}),"
                    f" with its screening processes {peak.tree_peak:.0f} MB PSS,"
                    f" CC calls {cc.calls.total} {cc.calls.by_family()},"
                    f" SF calls {sf.usage.total} {dict(sf.usage.calls)}",
                    flush=True,
                )
                print(f"    counts: { {k: v for k, v in summary.items() if k != 'api_calls'} }")
                return out

            figures["initial"] = initial = once("initial Full Sync")
            figures["cc_after_initial"] = cc_box.ask("cc_count")
            assert not initial["writes"]["removed"]
            if drift:
                changed = sf_box.ask("drift", drift)
                cc_box.ask("unsubscribe", changed["optouts"])
                figures["drift"] = {k: len(v) for k, v in changed.items()}
                second = figures["drifted"] = once("Full Sync with 1% drift")
                figures["exact"] = _check_exact(changed, second["writes"])
    finally:
        sf_box.stop()
        cc_box.stop()
        _drop_schema(schema)
    return figures


def _check_exact(changed: dict[str, list[str]], writes: dict[str, Any]) -> dict[str, Any]:
    """Whether exactly the drifted records were written, kind by kind."""
    imported = sorted(writes["imported"])
    removed = sorted(writes["removed"])
    optout_ids = set(changed["optout_ids"])
    opted_now = set(writes["opted_out_ids"])
    result = {
        "imports_are_the_edits": imported == sorted(changed["edits"]),
        "removals_are_the_deletes": removed == sorted(changed["deletes"]),
        "optouts_reached_salesforce": optout_ids <= opted_now,
        "other_cc_writes": writes["other"],
        "imported": len(imported),
        "removed": len(removed),
    }
    print(f"    exactly the drift written: {result}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--drift", type=float, default=0.01)
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, pid {os.getpid()}, {os.cpu_count()} cores", flush=True)
    table = []
    for size in [int(s) for s in args.sizes.split(",") if s]:
        print(f"\n== {size:,} contacts", flush=True)
        figures = run_size(size, args.drift)
        table.append(figures)
    print(
        "\n| contacts | run | wall s | peak RSS MB | with screening processes, PSS MB"
        " | CC calls | SF calls | written |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---|")
    for figures in table:
        for key, label in (("initial", "initial"), ("drifted", "1% drift")):
            if key not in figures:
                continue
            f = figures[key]
            counts = {
                k: v
                for k, v in f["summary"].items()
                if k in ("imported", "updated", "list_removals", "opt_outs_to_salesforce")
            }
            print(
                f"| {figures['contacts']:,} | {label} | {f['seconds']:.1f} | {f['peak_mb']:.0f} | "
                f"{f['tree_peak_mb']:.0f} | {f['cc_calls']} | {f['sf_calls']} | {counts} |"
            )
    print(f"\nprocess max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
