"""Logging: RQ's lines are printed once, whichever of RQ and us sets logging up first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue

VENV_BIN = Path(sys.executable).parent


SNIPPET = """
import logging
from rq.logutils import setup_loghandlers
from middleware.logging import configure_logging

if {rq_first}:  # `rq worker` sets up its handlers, then the first job configures ours
    setup_loghandlers("INFO", name="rq.worker")
    configure_logging("INFO")
else:  # the web app / an embedded worker: ours first, then RQ's
    configure_logging("INFO")
    setup_loghandlers("INFO", name="rq.worker")
configure_logging("INFO")  # idempotent
setup_loghandlers("INFO", name="rq.scheduler")  # RQ's scheduler starts later
logging.getLogger("rq.worker").info("default: Job OK (job-1)")
logging.getLogger("rq.scheduler").info("scheduler started")
logging.getLogger("middleware.test").info("ours")
print(len([h for h in logging.getLogger().handlers if h.get_name() == "middleware"]), "handler")
"""


@pytest.mark.parametrize("rq_first", [True, False])
def test_an_rq_line_is_printed_once(rq_first: bool) -> None:
    # A fresh interpreter: pytest's own log capture would hide RQ's handler setup.
    done = subprocess.run(
        [sys.executable, "-c", SNIPPET.format(rq_first=rq_first)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert output.count("Job OK (job-1)") == 1, output
    assert output.count("scheduler started") == 1, output
    assert output.count("ours") == 1, output
    assert "1 handler" in output
    assert "INFO rq.worker [-] default: Job OK (job-1)" in output  # our format, one line


def test_an_rq_worker_prints_each_line_once(
    real_redis: Redis, real_redis_url: str, tmp_path: Path
) -> None:
    """The Procfile's `rq worker`: a job that configures our logging, as every job does."""
    job = Queue("default", connection=real_redis).enqueue(
        "middleware.logging.configure_logging", "INFO"
    )
    done = subprocess.run(
        [str(VENV_BIN / "rq"), "worker", "--burst", "--url", real_redis_url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert output.count(f"Job OK ({job.id})") == 1, output
