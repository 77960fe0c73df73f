"""Gunicorn config: Heroku's reference settings (gthread, [::]:$PORT, timeouts under 30 s).

Read by ``bin/web``; environment variables (``GUNICORN_CMD_ARGS``, ``WEB_CONCURRENCY``) still win.
"""

from __future__ import annotations

import os
from typing import Any

# Bind on IPv6 and IPv4 so the app also works in IPv6-only environments.
bind = [f"[::]:{os.environ.get('PORT', '5000')}"]

# Embedded mode (no REDIS_URL) keeps the queue inside one process: a second worker process
# would have its own, invisible queue. With Redis, Heroku's buildpack sizes WEB_CONCURRENCY.
workers = int(os.environ.get("WEB_CONCURRENCY", "2")) if os.environ.get("REDIS_URL") else 1
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "5"))
# Connections one gthread worker holds at once (gunicorn's default is 1,000). Keep-alive
# connections stay with the worker that accepted them, and a burst of new ones (the router's, a
# load test's) is often all accepted by one worker while the other sits idle: one core does all
# the work at a third of the dyno's rate. Two per thread keeps them spread; a connection beyond
# that waits in the listen backlog, as it would wait for a thread anyway.
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", str(2 * threads)))

# For gthread this is a heartbeat timeout; requests themselves are short (webhooks enqueue).
timeout = 20
# Finish in-flight requests before Heroku's SIGKILL 30 s after SIGTERM.
graceful_timeout = 20
# Longer than the router's 90 s idle keep-alive, so the router always closes first.
keepalive = 95

# Each worker builds its own app after the fork: no database or Redis sockets shared across
# processes, and the embedded worker thread lives in the process that serves requests.
preload_app = False

# Heroku's router is the only client; trust its X-Forwarded-* headers.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "*")

accesslog = "-"
access_log_format = (
    'at=info method=%(m)s path="%(U)s" status=%(s)s bytes=%(B)s duration_ms=%(M)s '
    'request_id=%({x-request-id}o)s fwd="%({x-forwarded-for}i)s" user_agent="%(a)s"'
)


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges from the multi-process metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def worker_exit(server: Any, worker: Any) -> None:
    """Stop the exiting worker's embedded threads (listener, worker) before the process ends:
    the listener's streams are cancelled and the job in hand finishes instead of being cut off."""
    application = getattr(worker, "wsgi", None)
    if application is not None and "middleware" in getattr(application, "extensions", {}):
        # Deferred: the app module is the worker's own, loaded after the fork.
        from app import stop_background

        stop_background(application)
