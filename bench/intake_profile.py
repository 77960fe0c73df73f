"""Where one accepted webhook event's time goes, in-process: CPU per stage, Redis round trips.

Builds the real app on a claimed Redis db and a SQLite store with one setup, then feeds
`app.wsgi_app` prepared WSGI environs of the benchmark's CDC event (no sockets, no server), with
each stage of the view wrapped in a CPU-time accumulator (`time.thread_time`, so other programs'
load on this shared machine moves the figures far less than wall time would). Reports the CPU
per event of the whole request, of each stage and of Flask around the view; the Redis round
trips and commands per event; the same for batch POSTs (`{"events": [...]}` of `--batch`);
and, as floors, the same Flask app answering `/livez` and a bare WSGI callable.

    .venv/bin/python -m bench.intake_profile [--events 3000] [--batch 50] [--json]

`bench/webhook_intake.py` measures the same path under gunicorn against a bare app.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from redis import Redis
from redis.connection import AbstractConnection
from werkzeug.test import EnvironBuilder

from bench import _common as c
from bench.webhook_intake import batch_body, event_body, hello_app

# (module attribute path in middleware.web.webhooks' namespace, label); order is the report's.
STAGES = (
    ("read_body", "read body"),
    ("load_setup", "setup lookup (cached)"),
    ("_authenticated", "auth (shared secret)"),
    ("parse_events", "parse + validate"),
    ("changes.intake.add_hints", "Redis: dedupe + ids + guard (EVALSHA)"),
    ("metrics.webhook_event", "metrics"),
    ("jsonify", "JSON answer"),
)
# (name in middleware.salesforce.events, label); names sharing a label add up, and a name the
# tree does not have (an older one) is skipped.
SUB_STAGES = (
    ("load_json", "  of which JSON decode + checks"),
    ("_load", "  of which marshmallow"),
    ("_load_header", "  of which marshmallow"),
)


def _ignore(*_args: Any) -> Any:
    """A WSGI start_response that keeps nothing."""
    return None


def timed(original: Callable[..., Any], label: str, spent: dict[str, float]) -> Any:
    """`original`, its CPU time adding up in `spent[label]` on every call."""

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            spent[label] += time.thread_time() - start

    return wrapper


@contextmanager
def accumulate(owner: Any, name: str, label: str, spent: dict[str, float]) -> Iterator[None]:
    """Wrap `owner.name` so its CPU time adds up in `spent[label]` until the block ends."""
    original = getattr(owner, name)
    setattr(owner, name, timed(original, label, spent))
    try:
        yield
    finally:
        setattr(owner, name, original)


@contextmanager
def round_trips(counter: list[int]) -> Iterator[None]:
    """Count commands sent to Redis (a pipeline or a script is one)."""
    original = AbstractConnection.send_packed_command

    def counted(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        counter[0] += 1
        original(self, command, check_health)

    AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
    try:
        yield
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


def cpu_per_call(call: Callable[[int], Any], count: int, rounds: int = 3) -> float:
    """Median over `rounds` of the CPU µs per call of `call(i)` for i in range(count)."""
    figures = []
    for number in range(rounds):
        start = time.thread_time()
        for i in range(count):
            call(number * count + i)
        figures.append((time.thread_time() - start) / count * 1e6)
    return statistics.median(figures)


def profile(app: Any, path: str, headers: dict[str, str], redis: Redis, bodies: list[bytes],
            events_per_body: int, spent: dict[str, float]) -> dict[str, float]:  # fmt: skip
    """CPU µs per event of the whole request and of each stage, Redis trips per event.

    `spent["view"]` is filled by the timed view `main` installs in the app.
    """
    from middleware import salesforce
    from middleware.web import webhooks

    def environ(body: bytes) -> dict[str, Any]:
        return EnvironBuilder(
            path=path, method="POST", data=body, headers=list(headers.items())
        ).get_environ()

    environs = [environ(body) for body in bodies]
    warm = len(environs) // 10
    for env in environs[:warm]:
        b"".join(app.wsgi_app(env, _ignore))
    spent.clear()
    sent = [0]
    commands_before = int(redis.info("stats")["total_commands_processed"])
    events = (len(environs) - warm) * events_per_body
    with stages(webhooks, salesforce.events, spent), round_trips(sent):
        start = time.thread_time()
        for env in environs[warm:]:
            b"".join(app.wsgi_app(env, _ignore))
        whole = time.thread_time() - start
    commands = int(redis.info("stats")["total_commands_processed"]) - commands_before - 1
    view = sum(spent[label] for _name, label in STAGES)
    out = {"whole request": whole / events * 1e6}
    for _name, label in (*STAGES, *SUB_STAGES):
        out[label] = spent[label] / events * 1e6
    out["rest of the view"] = (spent["view"] - view) / events * 1e6
    out["around the view (Flask, or the fast path)"] = (whole - spent["view"]) / events * 1e6
    out["Redis round trips per event"] = sent[0] / events
    out["Redis commands per event (script's included)"] = commands / events
    return out


@contextmanager
def stages(webhooks: Any, events: Any, spent: dict[str, float]) -> Iterator[None]:
    """Every stage of `STAGES` (in the webhook module) and `SUB_STAGES` (in the events module)."""
    with ExitStack() as stack:
        for name, label in STAGES:
            *path, attr = name.split(".")
            owner = webhooks
            for part in path:  # e.g. changes.intake: the intake as the webhook's service uses it
                owner = getattr(owner, part)
            stack.enter_context(accumulate(owner, attr, label, spent))
        for name, label in SUB_STAGES:
            if hasattr(events, name):
                stack.enter_context(accumulate(events, name, label, spent))
        yield


def install_view_timer(app: Any, spent: dict[str, float]) -> None:
    """Time the webhook's handler into `spent["view"]`: `webhooks.accept`, which both the fast
    path and Flask's view call (or, in trees from before it, the Flask view itself)."""
    from middleware.web import webhooks

    owner: Any = webhooks if hasattr(webhooks, "accept") else None
    original = webhooks.accept if owner is not None else app.view_functions["webhooks.salesforce"]
    wrapper = timed(original, "view", spent)
    if owner is not None:
        owner.accept = wrapper
    else:
        app.view_functions["webhooks.salesforce"] = wrapper


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3000, help="single-event POSTs profiled")
    parser.add_argument("--batch", type=int, default=50, help="events per batch POST (0: none)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args(argv)
    with c.workdir("bench-profile-") as tmp, c.claimed_redis() as redis_url:
        prepared = c.prepare_store(
            f"sqlite:///{tmp / 'bench.sqlite3'}",
            sf_base="https://sf.sandbox.invalid",
            sf_token="unused",
            cc_token="unused",
        )
        os.environ.update(c.service_env(prepared, REDIS_URL=redis_url))
        from app import create_app

        app = create_app()
        c.quiet_logs()
        spent: dict[str, float] = defaultdict(float)
        install_view_timer(app, spent)
        path = f"/webhooks/salesforce/{prepared.setup_id}"
        headers = {"X-Webhook-Secret": prepared.webhook_secret, "Content-Type": "application/json"}
        redis = Redis.from_url(redis_url)
        single = [event_body(n) for n in range(1, args.events + 1)]
        results = {"single": profile(app, path, headers, redis, single, 1, spent)}
        if args.batch:
            count = max(args.events // args.batch, 20)
            first = args.events + 1
            batches = [batch_body(first + i * args.batch, args.batch) for i in range(count)]
            results[f"batch of {args.batch}"] = profile(
                app, path, headers, redis, batches, args.batch, spent
            )
        livez = EnvironBuilder(path="/livez").get_environ()
        floors = {
            "Flask app, GET /livez": cpu_per_call(
                lambda i: b"".join(app.wsgi_app(dict(livez), _ignore)), 2000
            ),
            "bare WSGI hello app": cpu_per_call(
                lambda i: hello_app(
                    EnvironBuilder(path="/", method="POST", data=single[0]).get_environ(),
                    _ignore,
                ),
                2000,
            ),
        }
        redis.close()
    rows: list[tuple[str, Any]] = [("load average (1 min) after", f"{os.getloadavg()[0]:.2f}")]
    for mode, figures in results.items():
        for label, value in figures.items():
            unit = (
                ""
                if label.startswith("Redis round") or label.startswith("Redis commands")
                else " µs CPU/event"
            )
            rows.append((f"{mode}: {label}", f"{value:.2f}{unit}"))
    for label, value in floors.items():
        rows.append((f"floor: {label}", f"{value:.1f} µs CPU/request"))
    c.print_table("one accepted webhook event, in-process", rows)
    if args.json:
        print("PROFILE_JSON " + json.dumps({**results, "floors": floors}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
