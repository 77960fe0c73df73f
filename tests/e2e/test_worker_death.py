"""A worker killed mid-flush: the setup syncs again within 60 s, and /readyz says what happened.

Real processes, as deployed: the Procfile's ``worker`` command line (``rq worker --with-scheduler
--worker-class middleware.workers.SyncWorker ...``) against a claimed real Redis db and a SQLite
file store; both sandboxes serve on sockets in this process; the service's web app runs here too
(webhooks from the Salesforce sandbox's change events, and ``/readyz``).

Each case holds a flush mid-import (a Constant Contact fault stalls the JSON import for two
minutes, then answers 503, so the stalled import itself never lands), kills the worker — only its
work horse, or every process of it as a dyno crash does — and measures how long until the contact
is right in Constant Contact.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from redis import Redis

from bench import _common as c
from middleware import queue, workers
from middleware.store.models import Run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RECOVERY_TARGET_SECONDS = 60.0
IMPORT_PATH = "/v3/activities/contacts_json_import"


def procfile_worker(redis_url: str) -> list[str]:
    """The Procfile's worker command line, with this test's Redis URL."""
    line = next(
        row.partition(":")[2]
        for row in (c.ROOT / "Procfile").read_text().splitlines()
        if row.startswith("worker:")
    )
    argv = shlex.split(line.replace("$REDIS_URL", redis_url))
    return [str(c.VENV_BIN / argv[0]), *argv[1:]]


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


def process_tree(pid: int) -> list[int]:
    """``pid`` and every descendant (a work horse runs in a process group of its own)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(c._child_pids(current))
    return found


@dataclass
class Rig:
    tmp: Path
    redis: Redis
    redis_url: str
    running: Any
    prepared: c.Prepared
    app: Flask
    env: dict[str, str]
    http: requests.Session
    procs: list[c.Process] = field(default_factory=list)

    def start_worker(self, name: str) -> c.Process:
        proc = c.spawn(name, procfile_worker(self.redis_url), self.env, self.tmp)
        self.procs.append(proc)
        return proc

    def live_workers(self) -> list[str]:
        return workers.live_workers(self.redis)[0]

    def readyz(self) -> tuple[int, dict[str, Any]]:
        response = self.app.test_client().get("/readyz")
        return response.status_code, response.json or {}

    def cc_contact(self, email: str) -> dict[str, Any] | None:
        r = self.http.get(f"{self.running.cc_url}/_sandbox/contacts", params={"email": email})
        if r.status_code == 404:
            return None
        body = r.json()
        if isinstance(body, dict) and "contacts" in body:
            return body["contacts"][0] if body["contacts"] else None
        return body  # type: ignore[no-any-return]

    def cc_fault(self, **body: Any) -> None:
        r = self.http.post(f"{self.running.cc_url}/_sandbox/faults", json=body)
        assert r.status_code == 201, r.text

    def cc_faults_pending(self) -> list[dict[str, Any]]:
        return list(self.http.get(f"{self.running.cc_url}/_sandbox/faults").json()["faults"])

    def sf_create_contact(self, email: str) -> str:
        r = self.http.post(
            f"{self.running.sf_url}/_sandbox/records/Contact",
            json={"FirstName": "Kill", "LastName": "Test", "Email": email},
        )
        assert r.status_code in (200, 201), r.text
        return str(r.json()["id"])

    def runs(self) -> list[Run]:
        with self.prepared.store.transaction() as session:
            return list(session.query(Run).order_by(Run.id))

    def wait_for_a_later_run_to_succeed(self, run_id: int) -> None:
        def succeeded() -> bool:
            return any(r.status == "succeeded" for r in self.runs() if r.id > run_id)

        wait_for("the retry's run succeeded", succeeded, 15)

    def lock(self) -> str | None:
        value = self.redis.get(f"{queue.LOCK_PREFIX}{self.prepared.setup_id}")
        return value.decode() if value is not None else None

    def hold_a_flush_mid_import(self) -> tuple[str, str, int, int]:
        """Change a record and wait until its flush stalls in the import; return
        (email, lock token, work horse pid, run id)."""
        self.cc_fault(status=503, delay=120, path=IMPORT_PATH, count=1)
        email = f"killed-{uuid.uuid4().hex[:8]}@example.com"
        self.sf_create_contact(email)
        wait_for(
            "the flush's import reached the stalled sandbox",
            lambda: not self.cc_faults_pending(),
            30,
        )
        token = wait_for("the flush holds the setup lock", self.lock, 5)
        running = [r for r in self.runs() if r.status == "running"]
        assert len(running) == 1, running
        job_id, _host, pid, _ = token.split("|")
        assert running[0].job_id == job_id
        return email, token, int(pid), running[0].id


@pytest.fixture
def rig(real_redis: Redis, real_redis_url: str, tmp_path: Path) -> Iterator[Rig]:
    from app import create_app
    from sandbox import server

    c.quiet_logs()
    redis_url = real_redis_url
    holder: dict[str, Flask] = {}

    def deliver(envelopes: list[dict[str, Any]]) -> None:  # the Flow callout to our webhook
        app = holder.get("app")
        if app is not None:
            r = app.test_client().post(
                f"/webhooks/salesforce/{prepared.setup_id}",
                json=envelopes,
                headers={"X-Webhook-Secret": prepared.webhook_secret},
            )
            assert r.status_code < 300, r.text

    running = server.start(
        sf_port=0,
        cc_port=0,
        tls_dir=tmp_path / "tls",
        sf_config={"EVENT_DELIVERY": "sync", "EVENT_SINK": deliver},
        cc_config={"RATE_PER_SECOND": 0, "ACTIVITY_STEPS": 1},
    )
    sf_token, cc_token = c.sandbox_tokens(running)
    prepared = c.prepare_store(
        f"sqlite:///{tmp_path / 'store.sqlite3'}",
        sf_base=running.sf_url,
        sf_token=sf_token,
        cc_token=cc_token,
    )
    service = {
        "SALESFORCE_CA_BUNDLE": str(running.tls.ca_cert),
        "CC_API_URL": f"{running.cc_url}/v3",
        "REDIS_URL": redis_url,
        "FLUSH_DELAY_SECONDS": "0.2",
    }
    env = c.service_env(prepared, **service, LOG_LEVEL="INFO")
    app = create_app(
        {
            "SECRET_KEY": "test",
            "ADMIN_TOKEN": "test-admin",
            "TOKEN_ENCRYPTION_KEY": prepared.keys,
            "DATABASE_URL": prepared.database_url,
            "EMBEDDED_WORKER": False,
            "TESTING": True,
            "REDIS": real_redis,
            **service,
        }
    )
    holder["app"] = app
    http = requests.Session()
    http.trust_env = False
    http.verify = str(running.tls.ca_cert)
    rig = Rig(tmp_path, real_redis, redis_url, running, prepared, app, env, http)
    try:
        yield rig
    finally:
        for proc in rig.procs:
            for pid in reversed(process_tree(proc.popen.pid)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.popen.wait(10)
        http.delete(f"{running.cc_url}/_sandbox/faults")
        http.close()
        app.extensions["middleware"]["store"].dispose()
        prepared.store.dispose()
        running.stop()


def _logs(rig: Rig) -> str:
    return "\n\n".join(f"--- {p.name}\n{p.tail(60)}" for p in rig.procs)


def test_a_killed_work_horse_frees_the_setup_and_its_retry_syncs(rig: Rig) -> None:
    worker = rig.start_worker("worker")
    wait_for("the worker registered", rig.live_workers, 20)
    email, token, horse, run_id = rig.hold_a_flush_mid_import()

    os.kill(horse, signal.SIGKILL)
    killed = time.monotonic()
    # The worker saw its horse die: the lock is released at once (then taken by the retry).
    wait_for("the dead horse's lock released", lambda: rig.lock() != token, 5, every=0.02)
    freed = time.monotonic() - killed
    try:
        wait_for("the contact right in Constant Contact", lambda: rig.cc_contact(email), 60)
    except AssertionError:
        raise AssertionError(_logs(rig)) from None
    synced = time.monotonic() - killed
    print(f"\nwork horse SIGKILL: lock freed in {freed:.2f}s, contact synced in {synced:.1f}s")
    assert synced < RECOVERY_TARGET_SECONDS

    by_id = {r.id: r for r in rig.runs()}
    dead = by_id[run_id]
    assert dead.status == "failed"
    assert dead.message is not None
    assert dead.message.startswith("worker died: work horse killed by signal 9 (SIGKILL)")
    rig.wait_for_a_later_run_to_succeed(run_id)
    # The run is recorded as succeeded just before its job returns and lets the setup's lock go.
    wait_for("the retry's lock released", lambda: rig.lock() is None, 5, every=0.02)
    assert worker.popen.poll() is None  # the worker itself lived on
    status, body = rig.readyz()
    assert status == 200, body


def _kill_the_whole_worker(proc: c.Process) -> float:
    """The dyno dies: every process of the worker (main, scheduler, work horse) at once."""
    for pid in process_tree(proc.popen.pid):
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    proc.popen.wait(5)
    return killed


def _synced_after(rig: Rig, email: str, started: float) -> float:
    try:
        wait_for("the contact right in Constant Contact", lambda: rig.cc_contact(email), 90)
    except AssertionError:
        raise AssertionError(_logs(rig)) from None
    return time.monotonic() - started


def test_a_dead_worker_is_replaced_and_the_setup_syncs_within_a_minute(rig: Rig) -> None:
    first = rig.start_worker("worker-1")
    names = wait_for("the worker registered", rig.live_workers, 20)
    email, token, _horse, run_id = rig.hold_a_flush_mid_import()
    killed = _kill_the_whole_worker(first)

    def not_ready() -> dict[str, Any] | None:
        status, body = rig.readyz()
        return body if status == 503 else None

    body = wait_for("/readyz failing without a worker", not_ready, 60, every=0.5)
    noticed = time.monotonic() - killed
    detail = body["checks"]["workers"]["detail"]
    assert "workers" in body["failed"]
    assert "no live RQ worker" in detail
    assert f"worker {names[0]} stopped heartbeating" in detail
    assert f"run {run_id} (setup {rig.prepared.setup_id}, incremental" in detail
    if time.monotonic() - killed < queue.LOCK_TTL_SECONDS - 2:
        # Still held: nobody guesses a live horse is dead. (On a loaded machine /readyz may
        # notice after the lock's TTL, when it has lapsed on its own: that proves nothing.)
        assert rig.lock() == token
    assert not rig.cc_contact(email)

    rig.start_worker("worker-2")
    synced = _synced_after(rig, email, time.monotonic())
    print(
        f"\nwhole worker SIGKILL: /readyz 503 after {noticed:.1f}s; "
        f"synced {synced:.1f}s after the replacement started"
    )
    assert synced < RECOVERY_TARGET_SECONDS

    by_id = {r.id: r for r in rig.runs()}
    dead = by_id[run_id]
    assert dead.status == "failed", dead.message
    assert dead.message is not None and dead.message.startswith("worker died: ")
    assert f"worker {names[0]} stopped heartbeating" in dead.message
    rig.wait_for_a_later_run_to_succeed(run_id)
    wait_for("the retry's lock released", lambda: rig.lock() is None, 5, every=0.02)
    wait_for("/readyz ready again", lambda: rig.readyz()[0] == 200, 15)


def test_a_replacement_started_at_once_syncs_the_setup_within_a_minute(rig: Rig) -> None:
    """The worst timing: the dead worker, its scheduler and its lock all still look alive when
    the replacement starts, so it must notice each of them dying."""
    first = rig.start_worker("worker-1")
    names = wait_for("the worker registered", rig.live_workers, 20)
    email, _token, _horse, run_id = rig.hold_a_flush_mid_import()
    _kill_the_whole_worker(first)
    rig.start_worker("worker-2")
    synced = _synced_after(rig, email, time.monotonic())
    print(f"\nwhole worker SIGKILL, replaced at once: synced {synced:.1f}s after the replacement")
    assert synced < RECOVERY_TARGET_SECONDS
    dead = {r.id: r for r in rig.runs()}[run_id]
    assert dead.status == "failed"
    assert dead.message is not None
    assert dead.message.startswith(f"worker died: worker {names[0]} stopped heartbeating")
    rig.wait_for_a_later_run_to_succeed(run_id)
