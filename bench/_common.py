"""Benchmark helpers: figures, tables, the test Redis db, a prepared store, service processes.

Shared by `bench/burst.py`, `bench/webhook_intake.py` and `bench/latency.py`. Nothing here is a
timed test: the scripts print what they measured, once, on a noisy shared machine.
"""

from __future__ import annotations

import io
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from cryptography.fernet import Fernet

from tests import redis_claim as test_redis
from tests.redis_claim import TEST_REDIS_URL

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

# ------------------------------------------------------------------------------- figures


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100), nearest-rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_table(title: str, rows: Sequence[tuple[str, Any]], note: str = "") -> None:
    """A two-column table of figures: what, value."""
    width = max([len(name) for name, _ in rows] + [10])
    print(f"\n{title}")
    print("-" * (width + 24))
    for name, value in rows:
        shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
        print(f"{name:<{width}}  {shown}")
    if note:
        print(note)


# ------------------------------------------------------------------------------- Redis


@contextmanager
def claimed_redis() -> Iterator[str]:
    """The URL of the test suite's Redis database (TEST_REDIS_URL), claimed and emptied as the
    tests do, so a benchmark and a test run never share it at the same time."""
    waiting = f"waiting for {TEST_REDIS_URL}: a test run or another benchmark has it"
    with test_redis.claimed_redis(on_wait=waiting):
        yield TEST_REDIS_URL


# ------------------------------------------------------------------------------- store and setup


@dataclass
class Prepared:
    """A store with one setup whose connections point at the sandboxes."""

    database_url: str
    keys: str
    setup_id: int
    webhook_secret: str
    store: Any


def prepare_store(
    database_url: str,
    *,
    sf_base: str,
    sf_token: str,
    cc_token: str,
    options: dict[str, Any] | None = None,
    keys: str | None = None,
    sf_refresh_token: str | None = None,
    sf_org_id: str | None = None,
) -> Prepared:
    """Migrate `database_url` and create two connections and one setup (like the admin API).

    With `sf_refresh_token` the Salesforce connection can refresh an expired session;
    `sf_org_id` is the org id OAuth would have stored (the Pub/Sub listener's `tenantid`).
    """
    from middleware.store import connections as connection_repo
    from middleware.store import setups as setup_repo
    from middleware.store.db import Store
    from schemas.setup import validate_setup

    keys = keys or Fernet.generate_key().decode()
    store = Store(database_url, (keys,))
    store.upgrade()
    setup, _warnings = validate_setup(
        {"name": "bench", "main_list": "Main List", **(options or {})}
    )
    with store.transaction() as session:
        sf_conn = connection_repo.create(
            session, vendor="salesforce", label="sandbox org", base_url=sf_base,
            access_token=sf_token, refresh_token=sf_refresh_token, account_id=sf_org_id,
        )  # fmt: skip
        cc_conn = connection_repo.create(
            session, vendor="constantcontact", label="sandbox", access_token=cc_token
        )
        row = setup_repo.create(
            session,
            name="bench",
            options=setup,
            salesforce_connection_id=sf_conn.id,
            constant_contact_connection_id=cc_conn.id,
        )
        setup_id, secret = row.id, setup_repo.webhook_secret(session, row) or ""
    return Prepared(database_url, keys, setup_id, secret, store)


def service_env(prepared: Prepared, **extra: str) -> dict[str, str]:
    """Environment for a service process (gunicorn, rq worker) on the prepared store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_", "CC_"))}
    env.update(
        SECRET_KEY="bench-secret",
        ADMIN_TOKEN="bench-admin",
        TOKEN_ENCRYPTION_KEY=prepared.keys,
        DATABASE_URL=prepared.database_url,
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
        PATH=f"{VENV_BIN}:{env.get('PATH', '')}",
    )
    env.update(extra)
    return env


# ------------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Process:
    """A child process we started; `stop()` ends exactly it (and its own process group)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        pgid = os.getpgid(self.popen.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.popen.wait(5)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def spawn(
    name: str, argv: list[str], env: dict[str, str], log_dir: Path, cwd: Path = ROOT
) -> Process:
    """Start `argv` in its own session (so it and its children can be stopped together)."""
    log_path = log_dir / f"{name}.log"
    handle = open(log_path, "wb")  # noqa: SIM115 - the child owns it until it exits
    popen = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    return Process(name, popen, log_path)


def gunicorn(
    name: str,
    app: str,
    port: int,
    env: dict[str, str],
    log_dir: Path,
    *,
    workers: int,
    threads: int,
    worker_class: str = "gthread",
    root: Path = ROOT,
) -> Process:
    """gunicorn on 127.0.0.1:`port` with the repository's config, worker settings overridden.

    `root`: the source tree the app is imported from (another checkout, to compare versions);
    gunicorn puts the directory it starts in first on `sys.path`, so it also starts there.
    """
    argv = [
        str(VENV_BIN / "gunicorn"),
        "--config",
        str(root / "gunicorn.conf.py"),
        "--chdir",
        str(root),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--worker-class",
        worker_class,
        "--access-logfile",
        "/dev/null",  # one log line per request would cost more than the view
        app,
    ]
    return spawn(name, argv, env, log_dir, cwd=root)


def thread_sessions(ca_bundle: str) -> Callable[[], requests.Session]:
    """A function giving each calling thread its own session that trusts ``ca_bundle`` and
    ignores proxy variables (a workload's writer threads share nothing)."""
    local = threading.local()

    def session() -> requests.Session:
        if not hasattr(local, "s"):
            local.s = requests.Session()
            local.s.trust_env = False
            local.s.verify = ca_bundle
        return local.s  # type: ignore[no-any-return]

    return session


def rq_worker(
    name: str,
    redis_url: str,
    env: dict[str, str],
    log_dir: Path,
    worker_class: str = "middleware.workers.SyncWorker",
) -> Process:
    """An `rq worker --with-scheduler` as the Procfile runs it (SyncWorker forks per job)."""
    argv = [
        str(VENV_BIN / "rq"),
        "worker",
        "--with-scheduler",
        "--worker-class",
        worker_class,
        "--connection-class",
        "middleware.queue.TolerantRedis",
        "--serializer",
        "middleware.queue.JobSerializer",
        "--url",
        redis_url,
        "--logging_level",
        "WARNING",
        "webhooks",
        "default",
        "full_sync",
    ]
    return spawn(name, argv, env, log_dir)


def listener(name: str, env: dict[str, str], log_dir: Path) -> Process:
    """The Pub/Sub listener as the Procfile runs it (`flask --app app listen`)."""
    return spawn(name, [str(VENV_BIN / "flask"), "--app", "app", "listen"], env, log_dir)


def wait_http(url: str, process: Process | None = None, timeout: float = 30.0) -> None:
    """Wait until `url` answers (any status below 500)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited:\n{process.tail()}")
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


@contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as raw:
        yield Path(raw)


# ------------------------------------------------------------------------------- observing HTTP


@dataclass
class Hit:
    at: float  # time.monotonic() when the request reached the app
    method: str
    path: str
    query: str
    body: bytes | None
    status: int = 0
    done: float = 0.0


@dataclass
class WsgiRecorder:
    """Wraps a sandbox's WSGI app and records each request (time, path, chosen bodies)."""

    app: Any
    keep_body: Callable[[str, str], bool] = lambda _m, _p: False
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        body = None
        if self.keep_body(method, path):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
        hit = Hit(time.monotonic(), method, path, environ.get("QUERY_STRING", ""), body)

        def recording_start(status: str, headers: Any, *args: Any) -> Any:
            hit.status = int(status.split()[0])
            return start_response(status, headers, *args)

        result = self.app(environ, recording_start)
        hit.done = time.monotonic()
        with self.lock:
            self.hits.append(hit)
        return result

    def snapshot(self) -> list[Hit]:
        with self.lock:
            return list(self.hits)


def install_recorder(flask_app: Any, keep_body: Callable[[str, str], bool]) -> WsgiRecorder:
    recorder = WsgiRecorder(flask_app.wsgi_app, keep_body)
    flask_app.wsgi_app = recorder
    return recorder


# ------------------------------------------------------------------------------- sandboxes


def sf_calls(sf_app: Any) -> dict[str, Any]:
    """The Salesforce sandbox's API call counters (what `/_sandbox/state` shows)."""
    return dict(sf_app.extensions["sf_sandbox"].usage.snapshot())


def cc_calls(cc_app: Any) -> dict[str, Any]:
    """The Constant Contact sandbox's call counters (what `/_sandbox/state` shows)."""
    return dict(cc_app.extensions["cc_sandbox"].gate.state())


def diff_counts(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    keys = set(after) | set(before)
    return {
        k: after.get(k, 0) - before.get(k, 0)
        for k in sorted(keys)
        if after.get(k, 0) != before.get(k, 0)
    }


def cc_contacts_by_email(cc_app: Any) -> dict[str, dict[str, Any]]:
    """Every contact in the Constant Contact sandbox's store, read directly: email → stored data."""
    store = cc_app.extensions["cc_sandbox"].store
    with store.read() as db:
        rows = db.execute("SELECT email, permission, deleted_at, data FROM contacts").fetchall()
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        data = json.loads(row["data"])
        data["_permission"] = row["permission"]
        data["_deleted"] = row["deleted_at"] is not None
        out[str(row["email"])] = data
    return out


def quiet_logs() -> None:
    """Keep the figures readable: only warnings from our loggers and the sandboxes' servers."""
    import logging

    for name in ("middleware", "jobs", "app", "sandbox", "werkzeug"):
        logging.getLogger(name).setLevel(logging.WARNING)


def connection_ids(prepared: Prepared) -> tuple[int, int]:
    """The (Salesforce, Constant Contact) connection ids of the prepared setup."""
    from middleware.store import setups as setup_repo

    with prepared.store.transaction() as session:
        setup = setup_repo.get(session, prepared.setup_id)
        assert setup is not None
        sf, cc = setup.salesforce_connection_id, setup.constant_contact_connection_id
    return int(sf or 0), int(cc or 0)


def sync_now_over_sockets(running: Any, prepared: Prepared) -> dict[str, Any]:
    """Sync Now from this process with the service's own clients, so every record gets linked."""
    from middleware.connections import constant_contact_client, salesforce_client
    from middleware.queue import Runtime, embedded_redis
    from middleware.settings import Settings
    from middleware.sync_now import run_sync_now

    settings = Settings.for_tests(
        token_encryption_keys=(prepared.keys,),
        database_url=prepared.database_url,
        salesforce_ca_bundle=str(running.tls.ca_cert),
        cc_api_url=f"{running.cc_url}/v3",
    )
    runtime = Runtime(settings=settings, store=prepared.store, redis=embedded_redis())
    sf_conn, cc_conn = connection_ids(prepared)
    return run_sync_now(
        runtime,
        prepared.setup_id,
        sf=salesforce_client(settings, prepared.store, runtime.redis, sf_conn),
        cc=constant_contact_client(settings, prepared.store, runtime.redis, cc_conn),
    )


def sandbox_tokens(running: Any) -> tuple[str, str]:
    """Access tokens for both running sandboxes (their control API, no OAuth dance)."""
    http = requests.Session()
    http.trust_env = False
    http.verify = str(running.tls.ca_cert)
    sf = http.post(f"{running.sf_url}/_sandbox/tokens").json()["access_token"]
    cc = http.post(f"{running.cc_url}/_sandbox/tokens").json()["access_token"]
    http.close()
    return str(sf), str(cc)


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _pss_kb(pid: int) -> int:
    """A process's proportional set size: its private pages plus its share of shared ones."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_mb(pid: int) -> float:
    """One process's PSS (MB); 0 once it is gone."""
    return _pss_kb(pid) / 1024


def process_rss_mb(pid: int) -> float:
    """One process's resident set (MB); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _child_pids(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as children:
                found.extend(int(x) for x in children.read().split())
    except OSError:
        pass
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by `pid` and its child processes (gunicorn workers)."""
    total = 0.0
    for each in [pid, *_child_pids(pid)]:
        try:
            with open(f"/proc/{each}/stat", encoding="ascii") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def tree_pss_mb(exclude: Collection[int] = ()) -> float:
    """PSS of this process and its descendants (but the ``exclude`` ones and theirs): what a
    process and the processes it forked hold together, shared pages counted once."""
    total, todo = 0, [os.getpid()]
    while todo:
        pid = todo.pop()
        total += _pss_kb(pid)
        todo.extend(p for p in _child_pids(pid) if p not in exclude)
    return total / 1024


class PeakRss:
    """Samples this process's resident memory on a thread; ``peak`` is the highest seen.

    With ``tree_exclude`` (pids not to count, e.g. sandbox processes), ``tree_peak`` is the
    highest :func:`tree_pss_mb` seen as well: the process with the processes it forks.
    """

    def __init__(self, every: float = 0.05, tree_exclude: Collection[int] | None = None) -> None:
        self.every = every
        self.peak = 0.0
        self.tree_exclude = tree_exclude
        self.tree_peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        self.peak = max(self.peak, rss_mb())
        if self.tree_exclude is not None:
            self.tree_peak = max(self.tree_peak, tree_pss_mb(self.tree_exclude))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.every)

    def __enter__(self) -> PeakRss:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
