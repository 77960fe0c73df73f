"""Metrics: the Prometheus counters others increment, and the /metrics exposition.

Two kinds of counters, because the processes that do the work are not the one that is scraped:

- Web-side events (webhooks accepted/rejected) use prometheus-client in the web process; under
  gunicorn they are multi-process safe through ``PROMETHEUS_MULTIPROC_DIR`` (set and wiped by the
  start script, ``child_exit`` in gunicorn.conf.py marks dead workers).
- Job-side events (jobs run, records synced, vendor API calls) happen in ``rq worker`` dynos that
  nobody scrapes, so they are counted in Redis (one ``HINCRBY``) and exposed by the web's
  /metrics, together with queue depths read at scrape time.

Incrementing never raises: a metrics hiccup must not fail a sync.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import redis as redis_lib
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from redis import Redis

from middleware import queue

log = logging.getLogger(__name__)

PREFIX = "ctct"
_REDIS_KEY = "ctct:metrics:"

WEBHOOK_EVENTS = Counter(
    f"{PREFIX}_webhook_events",
    "Webhook deliveries by source, outcome (accepted/rejected) and reason.",
    ["source", "outcome", "reason"],
)

# Redis-backed counters: name -> (help, label names).
_REDIS_COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "jobs": ("Jobs run by job name and status (succeeded/failed/rescheduled).", ("job", "status")),
    "records_synced": (
        "Records written or skipped, by direction and action (created, updated, skipped...).",
        ("direction", "action"),
    ),
    "listener_events": (
        "Pub/Sub listener events by outcome (received, accepted, duplicate, echo, undecodable).",
        ("outcome",),
    ),
    "vendor_api_calls": (
        "Calls to Salesforce and Constant Contact by vendor and HTTP status (or 'error').",
        ("vendor", "status"),
    ),
}


# The labelled children of WEBHOOK_EVENTS by label values: ``labels()`` takes a lock and
# validates its arguments on every call, which every webhook request paid for the same few
# children (prometheus-client's docs advise keeping them).
_webhook_children: dict[tuple[str, str, str], Any] = {}


def webhook_event(source: str, outcome: str, reason: str = "") -> None:
    """Count one webhook delivery: ``outcome`` accepted|rejected, ``reason`` e.g. bad_signature."""
    key = (source, outcome, reason)
    try:
        child = _webhook_children.get(key)
        if child is None:
            child = _webhook_children[key] = WEBHOOK_EVENTS.labels(*key)
        child.inc()
    except Exception:  # metrics must never fail the request; nothing to retry here
        log.debug("could not count webhook event", exc_info=True)


def _incr(name: str, labels: Sequence[str], amount: int, connection: Redis | None) -> None:
    if amount == 0:
        return
    try:
        if connection is None:
            connection = queue.current_redis()
        connection.hincrby(_REDIS_KEY + name, json.dumps(list(labels)), amount)
    except (redis_lib.RedisError, OSError, RuntimeError):
        # Redis down or no runtime: lose one sample rather than fail a sync.
        log.debug("could not count %s", name, exc_info=True)


def job_run(job: str, status: str, *, connection: Redis | None = None) -> None:
    """Count a job that ``succeeded``, ``failed`` or was ``rescheduled`` (setup busy, paused)."""
    _incr("jobs", (job, status), 1, connection)


def records_synced(
    direction: str, action: str, count: int = 1, *, connection: Redis | None = None
) -> None:
    """Count records by ``direction`` (sf_to_cc|cc_to_sf) and ``action`` (created, updated...)."""
    _incr("records_synced", (direction, action), count, connection)


def vendor_api_call(
    vendor: str, status: int | str, count: int = 1, *, connection: Redis | None = None
) -> None:
    """Count calls to ``vendor`` (salesforce|constantcontact) answered with ``status``."""
    _incr("vendor_api_calls", (vendor, str(status)), count, connection)


def listener_events(outcome: str, count: int = 1, connection: Redis | None = None) -> None:
    """Count Pub/Sub listener events: ``received``, ``undecodable`` (skipped), and per setup
    ``accepted``, ``duplicate`` or ``echo``."""
    _incr("listener_events", (outcome,), count, connection)


def redis_counter_values(connection: Redis, name: str) -> dict[tuple[str, ...], int]:
    """Current values of a Redis-backed counter by label values (tests, admin API)."""
    raw = connection.hgetall(_REDIS_KEY + name)
    return {tuple(json.loads(k)): int(v) for k, v in raw.items()}


class RedisCollector(Collector):
    """Exposes the Redis-backed counters and the queue depths, read at scrape time."""

    def __init__(self, connection: Redis) -> None:
        self.connection = connection

    def collect(self) -> Iterator[Metric]:
        for name, (doc, labels) in _REDIS_COUNTERS.items():
            family = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels))
            for values, count in sorted(redis_counter_values(self.connection, name).items()):
                family.add_metric(list(values), count)
            yield family
        state = queue.queue_state(self.connection)
        depth = GaugeMetricFamily(
            f"{PREFIX}_queue_depth", "Jobs waiting in each queue.", labels=["queue"]
        )
        jobs = GaugeMetricFamily(
            f"{PREFIX}_queue_jobs",
            "Jobs per queue and registry (started, scheduled, deferred, failed, finished).",
            labels=["queue", "state"],
        )
        for queue_name, counts in state["queues"].items():
            depth.add_metric([queue_name], counts["queued"])
            for registry, count in counts.items():
                if registry != "queued":
                    jobs.add_metric([queue_name, registry], count)
        workers = GaugeMetricFamily(f"{PREFIX}_workers", "RQ workers registered in Redis.")
        workers.add_metric([], len(state["workers"]))
        yield depth
        yield jobs
        yield workers


def render(connection: Redis | None) -> tuple[bytes, str]:
    """The /metrics body and content type; Redis metrics are skipped when Redis is down."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # A fresh registry per scrape, as prometheus-client's multiprocess docs require.
        base: Any = CollectorRegistry(support_collectors_without_names=True)
        MultiProcessCollector(base)
    else:
        base = REGISTRY
    body = generate_latest(base)
    if connection is not None:
        extra = CollectorRegistry(auto_describe=False)
        extra.register(RedisCollector(connection))
        try:
            body += generate_latest(extra)
        except (redis_lib.RedisError, OSError) as exc:
            log.warning("metrics from Redis unavailable: %s", exc)
            body += b"# Redis metrics unavailable\n"
    return body, CONTENT_TYPE_LATEST
