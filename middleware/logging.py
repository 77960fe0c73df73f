"""Logging: one format for every process, request/job ids on each line, and email masking.

``configure_logging`` is called by ``create_app`` and by worker entry points; it is idempotent.
A ``contextvars`` variable carries the current request id (web) or job id (worker) into every
record, so one grep follows a webhook through to the job that handled it.
"""

from __future__ import annotations

import contextvars
import logging
import sys

from rq.logutils import ColorizingStreamHandler

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_HANDLER_NAME = "middleware"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` from the current context (``-`` outside a request or job)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


def configure_logging(level: str = "INFO") -> None:
    """Send ``middleware``, ``jobs`` and ``app`` logs to stderr once, with the request id."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if h.get_name() == _HANDLER_NAME), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.addFilter(RequestIdFilter())
        root.addHandler(handler)
    # Only our loggers follow LOG_LEVEL; libraries stay at the root's WARNING unless asked.
    for name in ("middleware", "jobs", "app", "sandbox"):
        logging.getLogger(name).setLevel(level)
    _drop_rq_handlers()


def _drop_rq_handlers() -> None:
    """Let RQ's loggers print through our handler only.

    ``rq worker`` gives ``rq.worker`` and ``rq.job`` (``rq cron``/the scheduler: theirs) their own
    stdout/stderr handlers when no handler is set yet; their records also propagate to the root,
    so once we configure logging (the first job of an ``rq worker``) every RQ line was printed
    twice. Removing RQ's handlers keeps one line, in our format with the job id; RQ's logger
    levels (``--logging_level``, ``--quiet``) still apply. RQ adds none after this: it sees ours.
    """
    for name in ["rq", *(n for n in logging.root.manager.loggerDict if n.startswith("rq."))]:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, ColorizingStreamHandler):
                logger.removeHandler(handler)


def mask_email(email: str | None) -> str | None:
    """``allison@example.com`` → ``a•••n@example.com``: recognisable, never the full address."""
    if not email:
        return email
    local, sep, domain = email.strip().partition("@")
    if not sep:
        return local[:1] + "•••"
    if len(local) <= 2:
        masked = local[:1] + "•••"
    else:
        masked = local[0] + "•••" + local[-1]
    return f"{masked}@{domain.lower()}"
