"""The fault matrix: change events through the real stack while one fault is injected per row.

Each row is its own scenario, started from nothing: a private ``redis-server`` on a free port in
a temporary directory (never the system Redis), both sandboxes on sockets in this process
(Salesforce over HTTPS), a fresh SQLite store with one setup, and the service as the Procfile runs
it: gunicorn (web), a separate ``rq worker --with-scheduler`` (HerokuWorker) and the ``rq cron``
clock. Before the row starts, a Sync Now links every seeded contact, and a few Constant Contact
contacts are unsubscribed (as their owners would), so that a re-subscribe would show.

The workload (``--events`` Salesforce writes, each one change event, ``--rate`` per second) goes
through the Salesforce sandbox's control API; the sandbox POSTs the events to the webhook as a Flow
callout would (no retries). It mixes Title edits of linked contacts (some edited several times, so
order matters), edits of contacts unsubscribed in Constant Contact, Email Opt Out set in Salesforce
(the setup has ``unsubscribe_on_sf_opt_out``), new contacts, and new contacts created already
opted out (they must never reach Constant Contact).

What "right" means, from Salesforce's state once the workload is written: a subscribed linked or
new contact has one live Constant Contact contact with the Title as ``job_title``; a contact
opted out in Salesforce, or unsubscribed in Constant Contact before, is unsubscribed there; a
contact created opted out has no contact; contacts the workload did not touch keep their state.
A watcher reads the Constant Contact sandbox's store every 0.5 s. Per row it reports events sent
(and webhook deliveries refused), records right, lost (expected, still wrong at the end), extra
contacts (a duplicate, or a contact that should not exist), re-subscribes (a contact seen
unsubscribed, later seen subscribed), seconds from the end of the fault until everything is right
(and stays right), and what ``/readyz`` answered during the fault and while the setup was stuck
(records wrong and none became right for ``STUCK_SECONDS``).

    .venv/bin/python -m bench.faults [--faults cc_5xx,duplicate] [--events 300] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests
from redis import Redis

from bench import _common as c

TARGET_SECONDS = 120.0  # every row all right within this long after its fault ends
STUCK_SECONDS = 30.0  # records wrong and none became right for this long: the setup is stuck
ADMIN_TOKEN = "bench-admin"
UNSUBSCRIBED = "unsubscribed"
FOREVER = 1_000_000  # fault count: "until cleared"


# ------------------------------------------------------------------------------- expectations


@dataclass(frozen=True)
class Expected:
    """What Constant Contact must hold for one email once the row is over."""

    state: str  # "subscribed" (with title), "unsubscribed", "absent"
    title: str = ""
    touched: bool = True  # the workload wrote this record


@dataclass
class Verdict:
    right: int
    wrong: list[str]  # emails expected present and not right
    extra: list[str]  # contacts that should not exist (duplicates, opted-out creates)
    absent_wrong: list[str] = field(default_factory=list)

    @property
    def all_right(self) -> bool:
        return not self.wrong and not self.extra


def evaluate(
    expected: dict[str, Expected], allowed: set[str], contacts: dict[str, dict[str, Any]]
) -> Verdict:
    """Compare Constant Contact's contacts (email → stored data) with what is expected.

    ``allowed`` holds every email that may have a live contact (the ones linked before the row
    and the ones the workload created subscribed); any other live contact is extra.
    """
    right, wrong, extra = 0, [], []
    for email, want in expected.items():
        have = contacts.get(email)
        live = have is not None and not have.get("_deleted")
        if want.state == "absent":
            if live:
                extra.append(email)
            else:
                right += 1
            continue
        if not live or have is None:
            wrong.append(email)
            continue
        permission = str(have.get("_permission") or "")
        if want.state == UNSUBSCRIBED:
            ok = permission == UNSUBSCRIBED
        else:
            ok = permission != UNSUBSCRIBED and (have.get("job_title") or "") == want.title
        if ok:
            right += 1
        else:
            wrong.append(email)
    for email, have in contacts.items():
        if not have.get("_deleted") and email not in allowed and email not in expected:
            extra.append(email)
    return Verdict(right, sorted(wrong), sorted(set(extra)))


# ------------------------------------------------------------------------------- the workload


@dataclass(frozen=True)
class Action:
    kind: str  # edit, unsub_edit, opt_out, create, create_opted_out
    record_id: str = ""
    email: str = ""


def plan_workload(
    events: int, linked: list[tuple[str, str]], unsubscribed: list[tuple[str, str]], seed: int
) -> list[Action]:
    """``events`` Salesforce writes over the linked records (see the module docstring)."""
    rng = random.Random(seed)
    creates = max(1, events * 8 // 100)
    opted_out_creates = max(1, events * 4 // 100)
    opt_outs = max(1, events * 6 // 100)
    unsub_edits = max(1, events * 8 // 100) if unsubscribed else 0
    edits = events - creates - opted_out_creates - opt_outs - unsub_edits
    if edits < 1:
        raise ValueError(f"--events {events} is too few for the mix; give at least 10")
    pool = list(linked)
    rng.shuffle(pool)
    opt_out_records, pool = pool[:opt_outs], pool[opt_outs:]
    hot = pool[: max(1, min(20, len(pool) // 10))]
    repeated = len(hot) and edits * 3 // 10
    singles = pool[len(hot) : len(hot) + edits - repeated]
    if len(singles) < edits - repeated:
        raise ValueError("not enough linked contacts for the workload; seed more")
    actions = [Action("edit", rid, email) for rid, email in singles]
    actions += [Action("edit", *hot[i % len(hot)]) for i in range(repeated)]
    actions += [
        Action("unsub_edit", *unsubscribed[i % len(unsubscribed)]) for i in range(unsub_edits)
    ]
    actions += [Action("opt_out", rid, email) for rid, email in opt_out_records]
    token = uuid.uuid4().hex[:6]
    actions += [Action("create", "", f"new-{token}-{i}@faults.example.org") for i in range(creates)]
    actions += [
        Action("create_opted_out", "", f"out-{token}-{i}@faults.example.org")
        for i in range(opted_out_creates)
    ]
    rng.shuffle(actions)
    return actions


# ------------------------------------------------------------------------------- event delivery


class Delivery(requests.Session):
    """The Salesforce sandbox's event sender; ``mode`` makes it misbehave like a real network.

    - ``normal``: each batch POSTed once.
    - ``duplicate``: each batch POSTed twice at once (same webhook-id, as a retry), and every
      batch POSTed a third time later, in random order, under a new webhook-id (a redelivery).
    - ``reorder``: batches are split into single events, held for ``hold`` seconds and POSTed
      shuffled, so a record's later change often arrives before its earlier one.
    """

    def __init__(self, mode: str = "normal", seed: int = 7, hold: float = 2.0) -> None:
        super().__init__()
        self.trust_env = False
        self.mode = mode
        self.hold = hold
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.statuses: Counter[int] = Counter()  # webhook answers, per POST
        self.refused_events = 0  # events in POSTs the webhook did not accept
        self.posts = 0
        self.last_post = 0.0
        self._kept: list[tuple[bytes, dict[str, str]]] = []
        self._held: list[tuple[bytes, dict[str, str]]] = []
        self._url = ""
        self._stop = threading.Event()
        self._holder: threading.Thread | None = None
        self._releasing = threading.Lock()

    def post(self, url: Any, data: Any = None, json: Any = None, **kwargs: Any) -> Any:
        self._url = str(url)
        headers = dict(kwargs.get("headers") or {})
        body = data if isinstance(data, bytes) else str(data).encode()
        if self.mode == "reorder":
            with self.lock:
                for envelope in _loads(body):
                    self._held.append((_dumps([envelope]), headers))
            if self._holder is None:
                self._holder = threading.Thread(target=self._release_loop, daemon=True)
                self._holder.start()
            return _fake_response(202)
        response = self._send(body, headers)
        if self.mode == "duplicate":
            self._send(body, headers)  # the same delivery again: a retry after a lost answer
            with self.lock:
                self._kept.append((body, headers))
        return response

    def _send(self, body: bytes, headers: dict[str, str]) -> Any:
        try:
            response = super().post(self._url, data=body, headers=headers, timeout=10)
            status = response.status_code
        except requests.RequestException:
            response, status = _fake_response(599), 599
        with self.lock:
            self.posts += 1
            self.statuses[status] += 1
            if not 200 <= status < 300:
                self.refused_events += len(_loads(body))
            self.last_post = time.monotonic()
        return response

    def _release_loop(self) -> None:
        while not self._stop.wait(self.hold):
            self.release()

    def release(self) -> None:
        """POST what is held, shuffled (reorder mode); one release at a time."""
        with self._releasing:
            with self.lock:
                held, self._held = self._held, []
            self.rng.shuffle(held)
            for body, headers in held:
                self._send(body, {**headers, "webhook-id": f"msg_{uuid.uuid4().hex}"})

    def redeliver(self) -> int:
        """POST every kept batch again, shuffled, under new webhook-ids (duplicate mode)."""
        with self.lock:
            kept = list(self._kept)
        self.rng.shuffle(kept)
        for body, headers in kept:
            self._send(body, {**headers, "webhook-id": f"msg_{uuid.uuid4().hex}"})
        return len(kept)

    def stop(self) -> None:
        self._stop.set()


def _fake_response(status: int) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = b"{}"
    return response


def _loads(body: bytes) -> list[Any]:
    try:
        parsed = json.loads(body)
    except ValueError:
        return []
    return parsed if isinstance(parsed, list) else [parsed]


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# ------------------------------------------------------------------------------- observers


@dataclass
class Watcher:
    """Reads the CC sandbox's store every ``every`` s: re-subscribes, and when all is right."""

    cc_app: Any
    unsubscribed: set[str]
    every: float = 0.5
    expected: dict[str, Expected] | None = None
    allowed: set[str] = field(default_factory=set)
    resubscribed: set[str] = field(default_factory=set)
    right_since: float | None = None  # start of the current all-right streak
    last_gain: float = 0.0  # when the number of right records last rose
    best: int = -1
    samples: list[tuple[float, int, bool]] = field(default_factory=list)
    verdict: Verdict | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def look(self) -> None:
        contacts = c.cc_contacts_by_email(self.cc_app)
        now = time.monotonic()
        with self._lock:
            for email, have in contacts.items():
                unsub = have.get("_permission") == UNSUBSCRIBED and not have.get("_deleted")
                if unsub:
                    self.unsubscribed.add(email)
                elif email in self.unsubscribed and not have.get("_deleted"):
                    self.resubscribed.add(email)
            if self.expected is None:
                return
            verdict = evaluate(self.expected, self.allowed, contacts)
            self.verdict = verdict
            if verdict.right > self.best:
                self.best, self.last_gain = verdict.right, now
            if verdict.all_right:
                self.right_since = self.right_since or now
            else:
                self.right_since = None
            self.samples.append((now, verdict.right, verdict.all_right))

    def expect(self, expected: dict[str, Expected], allowed: set[str]) -> None:
        with self._lock:
            self.expected, self.allowed = expected, allowed
            self.last_gain = time.monotonic()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.look()
            except Exception as exc:
                print(f"  watcher: {type(exc).__name__}: {exc}", file=sys.stderr)
            self._stop.wait(self.every)

    def stuck(self, now: float) -> bool:
        """Records wrong and none became right for STUCK_SECONDS."""
        with self._lock:
            if self.expected is None or self.verdict is None or self.verdict.all_right:
                return False
            return now - self.last_gain >= STUCK_SECONDS


@dataclass
class Readiness:
    """Polls ``/readyz`` every second: (time, status code, failed checks); 0 = no answer."""

    url: str
    watcher: Watcher
    seen: list[tuple[float, int, tuple[str, ...], bool]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        http = requests.Session()
        http.trust_env = False
        while not self._stop.wait(1.0):
            try:
                r = http.get(self.url, timeout=5)
                failed = tuple(r.json().get("failed") or ()) if r.content else ()
                status = r.status_code
            except (requests.RequestException, ValueError):
                status, failed = 0, ()
            now = time.monotonic()
            self.seen.append((now, status, failed, self.watcher.stuck(now)))

    def between(self, start: float, end: float) -> tuple[Counter[int], set[str]]:
        codes: Counter[int] = Counter()
        names: set[str] = set()
        for at, status, failed, _stuck in self.seen:
            if start <= at <= end:
                codes[status] += 1
                names.update(failed)
        return codes, names

    def while_stuck(self) -> tuple[int, int]:
        """(samples taken while stuck, of which answered 200)."""
        stuck = [s for s in self.seen if s[3]]
        return len(stuck), sum(1 for s in stuck if s[1] == 200)


# ------------------------------------------------------------------------------- a private Redis


class PrivateRedis:
    """A ``redis-server`` of our own on a free port in a temp dir, without persistence."""

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "redis"
        self.dir.mkdir(exist_ok=True)
        self.port = c.free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: c.Process | None = None
        self.restarts = 0

    def start(self) -> None:
        argv = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
        ]
        self.proc = c.spawn(f"redis-{self.restarts}", argv, dict(os.environ), self.dir)
        deadline = time.monotonic() + 10
        client = Redis.from_url(self.url, socket_connect_timeout=0.5)
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    client.close()
                    return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start:\n{self.proc.tail()}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def restart_empty(self) -> None:
        """Kill it (no save) and start an empty one on the same port."""
        if self.proc is not None and self.proc.popen.poll() is None:
            os.killpg(os.getpgid(self.proc.popen.pid), signal.SIGKILL)
            self.proc.popen.wait(5)
        for stale in self.dir.glob("*.rdb"):
            stale.unlink()
        self.restarts += 1
        self.start()


# ------------------------------------------------------------------------------- one row


@dataclass
class Result:
    fault: str
    title: str
    events: int = 0
    refused: int = 0  # events in webhook deliveries answered non-2xx
    deliveries: dict[str, int] = field(default_factory=dict)
    expected: int = 0
    right: int = 0
    lost: int = 0
    extra: int = 0
    resubscribed: int = 0
    seconds_to_right: float | None = None  # after the fault ended; None: not within the timeout
    readyz_fault: dict[str, int] = field(default_factory=dict)
    readyz_failed: list[str] = field(default_factory=list)
    readyz_row: dict[str, int] = field(default_factory=dict)  # from the first event to the end
    stuck_samples: int = 0
    stuck_200: int = 0
    fault_seconds: float = 0.0
    wall_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def passed(self) -> bool:
        return (
            not self.error
            and self.lost == 0
            and self.extra == 0
            and self.resubscribed == 0
            and self.seconds_to_right is not None
            and self.seconds_to_right <= TARGET_SECONDS
            and self.stuck_200 == 0
        )


class Scenario:
    """One row's world: sandboxes, a private Redis, a store with one setup, the service."""

    def __init__(self, args: argparse.Namespace, name: str, tmp: Path, tls_dir: Path) -> None:
        self.args = args
        self.name = name
        self.tmp = tmp
        self.tls_dir = tls_dir
        self.delivery = Delivery(
            mode={"duplicate": "duplicate", "reorder": "reorder"}.get(name, "normal"),
            seed=len(name),
        )
        self.redis = PrivateRedis(tmp)
        self.procs: dict[str, c.Process] = {}
        self.running: Any = None
        self.prepared: c.Prepared | None = None
        self.watcher: Watcher | None = None
        self.readiness: Readiness | None = None
        self.http = requests.Session()
        self.http.trust_env = False
        self.port = 0
        self.env: dict[str, str] = {}
        self.linked: list[tuple[str, str]] = []
        self.unsubscribed: list[tuple[str, str]] = []
        self.baseline: dict[str, dict[str, Any]] = {}
        self.actions: list[Action] = []
        self.created: dict[str, str] = {}  # email → record id, for the workload's creates
        self.write_errors = 0
        self.workload_done = threading.Event()
        self.workload_end = 0.0
        self.workload_error = ""
        self.fault_start = 0.0
        self.fault_end = 0.0
        self.notes: list[str] = []
        self.imports: c.WsgiRecorder | None = None  # every request the CC sandbox answered
        self.sf_hits: c.WsgiRecorder | None = None  # and the Salesforce sandbox

    # -- bring-up ----------------------------------------------------------------------------

    def start(self) -> None:
        from sandbox import server
        from sandbox.salesforce.seed import seed_org

        self.redis.start()
        self.running = server.start(
            sf_port=0,
            cc_port=0,
            tls_dir=self.tls_dir,
            sf_config={"EVENT_DELIVERY": "thread", "EVENT_HTTP": self.delivery},
            cc_config={"ACTIVITY_SECONDS": 0.5},
        )
        c.quiet_logs()
        self.http.verify = str(self.running.tls.ca_cert)
        sf = self.http.post(f"{self.running.sf_url}/_sandbox/tokens", json={"refresh": True})
        cc = self.http.post(f"{self.running.cc_url}/_sandbox/tokens")
        sf_tokens, cc_token = sf.json(), cc.json()["access_token"]
        self.prepared = c.prepare_store(
            f"sqlite:///{self.tmp / 'faults.sqlite3'}",  # a fresh store per row
            sf_base=self.running.sf_url,
            sf_token=sf_tokens["access_token"],
            sf_refresh_token=sf_tokens.get("refresh_token"),
            cc_token=cc_token,
            options=setup_options(self.args),
        )
        c.quiet_logs()
        records = self.args.events + 40
        seed_org(
            self.running.sf,
            contacts=records,
            accounts=max(1, records // 50),
            opted_out_ratio=0.0,
            no_email_ratio=0.0,
        )
        c.sync_now_over_sockets(self.running, self.prepared)
        from bench.burst import linked_emails

        linked = linked_emails(self.prepared.store, self.prepared.setup_id)
        rows = self.running.sf.store.query("SELECT Id, Email FROM Contact ORDER BY Id").rows
        pairs = [
            (str(r["Id"]), str(r["Email"]).lower())
            for r in rows
            if str(r.get("Email") or "").lower() in linked
        ]
        rng = random.Random(self.name)
        rng.shuffle(pairs)
        n_unsub = max(2, self.args.events // 15)
        self.unsubscribed, self.linked = pairs[:n_unsub], pairs[n_unsub:]
        for _rid, email in self.unsubscribed:  # their owners unsubscribe, before the row
            self.http.post(f"{self.running.cc_url}/_sandbox/unsubscribe", json={"email": email})
        self.baseline = c.cc_contacts_by_email(self.running.cc_app)
        self.actions = plan_workload(
            self.args.events, self.linked, self.unsubscribed, seed=len(self.name)
        )

        self.port = c.free_port()
        self.env = c.service_env(
            self.prepared,
            REDIS_URL=self.redis.url,
            SALESFORCE_CA_BUNDLE=str(self.running.tls.ca_cert),
            SALESFORCE_LOGIN_URL=self.running.sf_url,
            SALESFORCE_CLIENT_ID="sandbox-client-id",
            SALESFORCE_CLIENT_SECRET="sandbox-client-secret",
            CC_API_URL=f"{self.running.cc_url}/v3",
            CC_WEBHOOK_SECRET="bench-cc-webhook-secret",  # as deployed; unset is a finding
            PROMETHEUS_MULTIPROC_DIR=str(self.tmp / "prom"),
        )
        (self.tmp / "prom").mkdir(exist_ok=True)
        web = c.gunicorn(
            "web", "app:create_app()", self.port, self.env, self.tmp, workers=2, threads=4
        )
        self.procs["web"] = web
        self.start_worker("worker")
        if not self.args.no_clock:
            self.procs["clock"] = c.spawn(
                "clock",
                [
                    str(c.VENV_BIN / "rq"),
                    "cron",
                    "--connection-class",
                    "middleware.queue.TolerantRedis",
                    "--url",
                    self.redis.url,
                    "jobs/cron.py",
                ],
                self.env,
                self.tmp,
            )
        c.wait_http(f"http://127.0.0.1:{self.port}/livez", web)
        self.wait_for_worker()
        self.running.sf.events.configure_delivery(
            f"http://127.0.0.1:{self.port}/webhooks/salesforce/{self.prepared.setup_id}",
            {"X-Webhook-Secret": self.prepared.webhook_secret},
            200,
        )
        self.imports = c.install_recorder(self.running.cc_app, lambda _m, _p: False)
        self.sf_hits = c.install_recorder(self.running.sf_app, lambda _m, _p: False)
        self.watcher = Watcher(self.running.cc_app, unsubscribed=set())
        self.readiness = Readiness(f"http://127.0.0.1:{self.port}/readyz", self.watcher)
        for target in (self.watcher.run, self.readiness.run):
            threading.Thread(target=target, daemon=True).start()

    def start_worker(self, name: str) -> c.Process:
        proc = c.rq_worker(name, self.redis.url, self.env, self.tmp)
        self.procs[name] = proc
        return proc

    def wait_for_worker(self, timeout: float = 30.0) -> None:
        client = Redis.from_url(self.redis.url)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if client.scard("rq:workers"):
                    return
                time.sleep(0.1)
        finally:
            client.close()
        raise RuntimeError(f"no rq worker registered:\n{self.procs['worker'].tail()}")

    def stop(self) -> None:
        for observer in (self.watcher, self.readiness):
            if observer is not None:
                observer._stop.set()
        self.delivery.stop()
        if self.running is not None:
            self.running.sf.events.close()
        for proc in self.procs.values():
            proc.stop()
        self.redis.stop()
        if self.running is not None:
            self.running.stop()
        if self.prepared is not None:
            self.prepared.store.engine.dispose()

    # -- controls ----------------------------------------------------------------------------

    def inject(self, vendor: str, **fault: Any) -> None:
        base = self.running.sf_url if vendor == "sf" else self.running.cc_url
        r = self.http.post(f"{base}/_sandbox/faults", json=fault, timeout=10)
        r.raise_for_status()

    def clear(self, vendor: str) -> None:
        base = self.running.sf_url if vendor == "sf" else self.running.cc_url
        self.http.delete(f"{base}/_sandbox/faults", timeout=10).raise_for_status()

    def admin(self, method: str, path: str) -> requests.Response:
        return self.http.request(
            method,
            f"http://127.0.0.1:{self.port}/admin/api{path}",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
        )

    def paused(self) -> bool:
        r = self.admin("GET", f"/setups/{self.prepared.setup_id}")  # type: ignore[union-attr]
        return r.ok and bool(r.json().get("paused"))

    # -- the workload ------------------------------------------------------------------------

    def start_workload(self) -> threading.Thread:
        thread = threading.Thread(target=self._drive, name="workload", daemon=True)
        thread.start()
        return thread

    def _drive(self) -> None:
        sf = self.running.sf_url
        session = c.thread_sessions(str(self.running.tls.ca_cert))

        def write(seq: int, action: Action) -> None:
            stamp = f"f-{self.name[:8]}-{seq}"
            try:
                if action.kind in ("edit", "unsub_edit"):
                    r = session().patch(
                        f"{sf}/_sandbox/records/Contact/{action.record_id}",
                        json={"Title": stamp},
                        timeout=15,
                    )
                elif action.kind == "opt_out":
                    r = session().patch(
                        f"{sf}/_sandbox/records/Contact/{action.record_id}",
                        json={"HasOptedOutOfEmail": True},
                        timeout=15,
                    )
                else:
                    body = {
                        "FirstName": "Fault",
                        "LastName": f"Row{seq}",
                        "Email": action.email,
                        "Title": stamp,
                        "HasOptedOutOfEmail": action.kind == "create_opted_out",
                    }
                    r = session().post(f"{sf}/_sandbox/records/Contact", json=body, timeout=15)
                    if r.ok:
                        self.created[action.email] = str(r.json()["id"])
                if not r.ok:
                    self.write_errors += 1
            except requests.RequestException:
                self.write_errors += 1

        start = time.monotonic()
        try:
            with ThreadPoolExecutor(max_workers=4, thread_name_prefix="write") as pool:
                for seq, action in enumerate(self.actions):
                    pause = start + seq / self.args.rate - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    pool.submit(write, seq, action)
            self.running.sf.events.flush(timeout=30)  # every event handed to the sender
            self.workload_end = time.monotonic()
            if self.watcher is not None:  # from now on the watcher knows what is right
                self.watcher.expect(*self.expectations())
        except Exception as exc:
            self.workload_error = f"workload: {type(exc).__name__}: {exc}"
        finally:
            self.workload_end = self.workload_end or time.monotonic()
            self.workload_done.set()

    def expectations(self) -> tuple[dict[str, Expected], set[str]]:
        """What CC must hold, from Salesforce's state now that the workload is written."""
        rows = self.running.sf.store.query(
            "SELECT Id, Email, Title, HasOptedOutOfEmail FROM Contact"
        ).rows
        by_email = {str(r["Email"]).lower(): r for r in rows if r.get("Email")}
        touched = {a.email for a in self.actions}
        pre_unsub = {email for _rid, email in self.unsubscribed}
        expected: dict[str, Expected] = {}
        for email, have in self.baseline.items():
            if have.get("_deleted"):
                continue
            row = by_email.get(email)
            if email in pre_unsub or (row is not None and row.get("HasOptedOutOfEmail")):
                expected[email] = Expected(UNSUBSCRIBED, touched=email in touched)
            elif email in touched and row is not None:
                expected[email] = Expected("subscribed", str(row.get("Title") or ""))
            else:
                expected[email] = Expected("subscribed", str(have.get("job_title") or ""), False)
        for action in self.actions:
            if action.kind == "create_opted_out":
                expected[action.email] = Expected("absent")
            elif action.kind == "create":
                row = by_email.get(action.email)
                expected[action.email] = Expected("subscribed", str((row or {}).get("Title") or ""))
        allowed = {e for e, want in expected.items() if want.state != "absent"}
        return expected, allowed

    # -- the end of a row --------------------------------------------------------------------

    def settle(self, since: float) -> float | None:
        """Wait until all is right for ``--settle`` seconds (or the row times out); the seconds
        from ``since`` (the fault's end) to the start of the final all-right streak."""
        assert self.watcher is not None
        deadline = since + self.args.row_timeout
        while time.monotonic() < deadline:
            right_since = self.watcher.right_since
            if right_since is not None and time.monotonic() - right_since >= self.args.settle:
                return max(0.0, right_since - since)
            time.sleep(0.25)
        right_since = self.watcher.right_since
        if right_since is not None:
            return max(0.0, right_since - since)
        return None

    def service_notes(self) -> list[str]:
        from middleware.store.models import Run

        notes: list[str] = []
        try:
            with self.prepared.store.transaction() as session:  # type: ignore[union-attr]
                runs = Counter(
                    f"{r.kind}:{r.status}" for r in session.query(Run).filter(Run.kind != "full")
                )
            notes.append("runs " + ", ".join(f"{k}×{v}" for k, v in sorted(runs.items())))
        except Exception as exc:
            notes.append(f"runs unreadable: {exc}")
        try:
            r = self.admin("GET", f"/setups/{self.prepared.setup_id}/errors")  # type: ignore[union-attr]
            if r.ok:
                total = int(r.json().get("total") or 0)
                if total:
                    notes.append(f"sync errors {total}")
        except requests.RequestException:
            pass
        try:
            client = Redis.from_url(self.redis.url)
            from rq import Queue
            from rq.registry import FailedJobRegistry

            from middleware.queue import SERIALIZER

            failed = sum(
                FailedJobRegistry(queue=Queue(q, connection=client, serializer=SERIALIZER)).count
                for q in ("webhooks", "default", "full_sync")
            )
            if failed:
                notes.append(f"failed jobs {failed}")
            client.close()
        except Exception as exc:
            notes.append(f"queue unreadable: {exc}")
        for name, proc in self.procs.items():
            if proc.popen.poll() is not None and not name.startswith("worker"):
                notes.append(f"{name} exited ({proc.popen.returncode})")
        return notes


def setup_options(args: argparse.Namespace) -> dict[str, Any]:
    """The setup every row uses; a catch-up interval of one minute when the build has one."""
    from schemas.setup import validate_setup

    options: dict[str, Any] = {
        "unsubscribe_on_sf_opt_out": True,
        "schedule": {"full_sync": "manual"},
    }
    extra = json.loads(args.setup_options) if args.setup_options else None
    if extra is not None:
        return _merge(options, extra)
    trial = _merge(options, {"schedule": {"catch_up_minutes": 1}})
    try:
        validate_setup({"name": "probe", "main_list": "Main List", **trial})
    except Exception:
        return options
    return trial


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            _merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


# ------------------------------------------------------------------------------- the faults


def _window(s: Scenario, vendor: str, **fault: Any) -> None:
    """The fault answers every matching call from the first event for ``--fault-seconds``."""
    s.fault_start = time.monotonic()
    s.inject(vendor, count=FOREVER, **fault)
    s.start_workload()
    time.sleep(max(0.0, s.fault_start + s.args.fault_seconds - time.monotonic()))
    base = s.running.sf_url if vendor == "sf" else s.running.cc_url
    pending = s.http.get(f"{base}/_sandbox/faults", timeout=10).json().get("faults") or []
    s.notes.append(f"{sum(int(f.get('hits') or 0) for f in pending)} calls faulted")
    s.clear(vendor)
    s.fault_end = time.monotonic()
    s.workload_done.wait()


def fault_none(s: Scenario) -> None:
    s.fault_start = time.monotonic()
    s.start_workload()
    s.workload_done.wait()
    s.fault_end = s.workload_end


def fault_cc_throttled(s: Scenario) -> None:
    _window(s, "cc", status=429, error_key="throttled", path="/v3/")


def fault_cc_5xx(s: Scenario) -> None:
    _window(s, "cc", status=503, path="/v3/")


def fault_cc_timeout(s: Scenario) -> None:
    # Longer than the client's 30 s timeout; the sandbox still does the work after the stall.
    _window(s, "cc", kind="timeout", delay=35.0, path="/v3/")


def fault_sf_5xx(s: Scenario) -> None:
    _window(s, "sf", status=503, path="/services/data/")


def fault_sf_expiry(s: Scenario) -> None:
    """Every access token expires at the first event and every 5 s of the fault window: each
    next call answers 401 INVALID_SESSION_ID and the client must refresh."""
    s.fault_start = time.monotonic()
    s.start_workload()
    expiries = 0
    while True:
        s.http.post(f"{s.running.sf_url}/_sandbox/tokens/expire", timeout=10).raise_for_status()
        expiries += 1
        if time.monotonic() + 5 > s.fault_start + s.args.fault_seconds:
            break
        time.sleep(5)
    s.fault_end = time.monotonic()
    s.notes.append(f"{expiries} token expiries")
    s.workload_done.wait()


def fault_cc_quota(s: Scenario) -> None:
    """CC answers 429 quota_exceeded for the fault window; then an operator resumes the setup."""
    _window(s, "cc", status=429, error_key="quota_exceeded", path="/v3/")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not s.paused():
        time.sleep(0.5)
    s.notes.append("paused" if s.paused() else "never paused")
    time.sleep(3)
    r = s.admin("POST", f"/setups/{s.prepared.setup_id}/resume")  # type: ignore[union-attr]
    s.fault_end = time.monotonic()  # the clock starts at the operator's resume
    s.notes.append(f"resume answered {r.status_code}")


def _replay_delivery(s: Scenario) -> None:
    s.fault_start = time.monotonic()
    s.start_workload()
    s.workload_done.wait()
    if s.delivery.mode == "duplicate":
        s.notes.append(f"{s.delivery.redeliver()} batches redelivered")
    else:
        s.delivery.release()
    s.fault_end = max(s.delivery.last_post, s.workload_end)


def fault_redis_restart(s: Scenario) -> None:
    """Redis is killed and started empty on the same port half-way through the workload."""
    s.fault_start = time.monotonic()
    s.start_workload()
    time.sleep(len(s.actions) / s.args.rate / 2)
    s.redis.restart_empty()
    s.fault_end = time.monotonic()
    s.workload_done.wait()


def fault_worker_kill(s: Scenario) -> None:
    """SIGKILL the worker (and its work horse) while a flush has an import in flight; a
    replacement worker starts 1 s later."""
    assert s.imports is not None
    s.fault_start = time.monotonic()
    s.start_workload()
    deadline = time.monotonic() + 60
    killed = ""
    while time.monotonic() < deadline and not killed:
        hits = s.imports.snapshot()
        if any(h.path.endswith("contacts_json_import") and h.at >= s.fault_start for h in hits):
            killed = kill_tree(s.procs["worker"])
        else:
            time.sleep(0.01)
    if not killed:
        raise RuntimeError("no flush seen within 60 s: nothing to kill mid-flush")
    s.notes.append(f"worker killed mid-flush ({killed})")
    lock = Redis.from_url(s.redis.url)
    ttl = lock.ttl(f"ctct:lock:setup:{s.prepared.setup_id}")  # type: ignore[union-attr]
    lock.close()
    s.notes.append(f"setup lock TTL after the kill {ttl} s" if ttl and ttl > 0 else "no lock left")
    time.sleep(1.0)
    s.start_worker("worker-2")
    s.fault_end = time.monotonic()
    s.workload_done.wait()


def kill_tree(proc: c.Process) -> str:
    """SIGKILL a process we started and every descendant: RQ's work horse runs in a session of
    its own (``os.setsid``), so killing the worker's process group would spare it."""
    tree, todo = [], [proc.popen.pid]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(c._child_pids(pid))
    for pid in reversed(tree):  # the horse first, so the worker cannot reap and report it
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.popen.wait(5)
    return f"{len(tree)} processes: worker {tree[0]}" + (
        f", work horse {', '.join(map(str, tree[1:]))}" if len(tree) > 1 else ", no work horse"
    )


@dataclass(frozen=True)
class FaultSpec:
    name: str
    title: str
    run: Callable[[Scenario], None]


FAULTS = [
    FaultSpec("none", "no fault (control)", fault_none),
    FaultSpec("cc_throttled", "CC 429 throttled, every call for the window", fault_cc_throttled),
    FaultSpec(
        "cc_quota", "CC 429 quota_exceeded for the window, then operator resume", fault_cc_quota
    ),
    FaultSpec("cc_5xx", "CC 503 on every call for the window", fault_cc_5xx),
    FaultSpec(
        "cc_timeout", "CC calls stall 35 s (client timeout 30 s) for the window", fault_cc_timeout
    ),
    FaultSpec(
        "sf_expiry",
        "SF tokens expire every 5 s (401 INVALID_SESSION_ID → refresh)",
        fault_sf_expiry,
    ),
    FaultSpec("sf_5xx", "SF 503 on every API call for the window", fault_sf_5xx),
    FaultSpec("duplicate", "every webhook delivery twice, and all again later", _replay_delivery),
    FaultSpec("reorder", "events held 2 s and delivered one by one, shuffled", _replay_delivery),
    FaultSpec(
        "redis_restart",
        "private Redis killed and restarted empty mid-workload",
        fault_redis_restart,
    ),
    FaultSpec(
        "worker_kill", "rq worker SIGKILLed mid-flush, replacement 1 s later", fault_worker_kill
    ),
]
BY_NAME = {f.name: f for f in FAULTS}


def run_row(args: argparse.Namespace, spec: FaultSpec, tls_dir: Path | None = None) -> Result:
    """Run one row from nothing; ``tls_dir`` may hold the sandbox certificates of earlier rows."""
    result = Result(spec.name, spec.title)
    started = time.monotonic()
    with c.workdir(f"bench-faults-{spec.name}-") as tmp:
        s = Scenario(args, spec.name, tmp, tls_dir or tmp / "tls")
        try:
            s.start()
            assert s.watcher is not None and s.readiness is not None
            spec.run(s)
            s.workload_done.wait()
            if s.workload_error:
                raise RuntimeError(s.workload_error)
            expected = s.watcher.expected or {}
            seconds = s.settle(s.fault_end)
            s.watcher.look()
            verdict = s.watcher.verdict
            assert verdict is not None
            result.events = len(s.actions)
            result.refused = s.delivery.refused_events
            result.deliveries = {str(k): v for k, v in sorted(s.delivery.statuses.items())}
            result.expected = len(expected)
            result.right = verdict.right
            result.lost = len(verdict.wrong)
            result.extra = len(verdict.extra)
            result.resubscribed = len(s.watcher.resubscribed)
            result.seconds_to_right = None if seconds is None else round(seconds, 1)
            codes, names = s.readiness.between(s.fault_start, s.fault_end)
            result.readyz_fault = {str(k): v for k, v in sorted(codes.items())}
            result.readyz_failed = sorted(names)
            whole, _names = s.readiness.between(s.fault_start, time.monotonic())
            result.readyz_row = {str(k): v for k, v in sorted(whole.items())}
            result.stuck_samples, result.stuck_200 = s.readiness.while_stuck()
            result.fault_seconds = round(s.fault_end - s.fault_start, 1)
            if s.write_errors:
                s.notes.append(f"{s.write_errors} Salesforce writes failed")
            if verdict.wrong:
                s.notes.append("wrong e.g. " + ", ".join(verdict.wrong[:3]))
            if verdict.extra:
                s.notes.append("extra e.g. " + ", ".join(verdict.extra[:3]))
            if s.watcher.resubscribed:
                s.notes.append(
                    "re-subscribed e.g. " + ", ".join(sorted(s.watcher.resubscribed)[:3])
                )
            result.notes = s.notes + vendor_notes(s) + s.service_notes()
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            for name, proc in s.procs.items():
                if proc.popen.poll() is not None:
                    result.notes.append(f"{name} exited: {proc.tail(5)}")
        finally:
            s.stop()
    result.wall_seconds = round(time.monotonic() - started, 1)
    return result


def vendor_notes(s: Scenario) -> list[str]:
    """What the sandboxes answered the service during the row (non-2xx by status)."""
    notes = []
    for name, recorder, prefix in (("CC", s.imports, "/v3/"), ("SF", s.sf_hits, "/services/")):
        if recorder is None:
            continue
        hits = [h for h in recorder.snapshot() if h.path.startswith(prefix)]
        bad = Counter(h.status for h in hits if not 200 <= h.status < 300)
        shown = ", ".join(f"{k}×{v}" for k, v in sorted(bad.items()))
        notes.append(f"{name} calls {len(hits)}" + (f" (non-2xx {shown})" if bad else ""))
    if s.sf_hits is not None:
        refreshes = sum(1 for h in s.sf_hits.snapshot() if h.path.endswith("/oauth2/token"))
        if refreshes:
            notes.append(f"SF token refreshes {refreshes}")
    return notes


# ------------------------------------------------------------------------------- report


def _codes(codes: dict[str, int]) -> str:
    return " ".join(f"{k}×{v}" for k, v in codes.items()) or "-"


def print_report(results: list[Result], load: tuple[float, float, float], args: Any) -> None:
    head = (
        "fault",
        "sent",
        "refused",
        "right",
        "lost",
        "dup/extra",
        "re-sub",
        "s to right",
        "readyz during fault [failing checks]",
        "200 while stuck",
        "ok",
    )
    rows = []
    for r in results:
        to_right = "—" if r.seconds_to_right is None else f"{r.seconds_to_right:.1f}"
        stuck = "—" if not r.stuck_samples else f"{r.stuck_200}/{r.stuck_samples}"
        readyz = _codes(r.readyz_fault) + (
            f" [{', '.join(r.readyz_failed)}]" if r.readyz_failed else ""
        )
        rows.append(
            (
                r.fault,
                str(r.events),
                str(r.refused),
                f"{r.right}/{r.expected}",
                str(r.lost),
                str(r.extra),
                str(r.resubscribed),
                to_right,
                readyz,
                stuck,
                "ERROR" if r.error else ("yes" if r.passed else "NO"),
            )
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    print(
        f"\nfault matrix: {args.events} events at {args.rate}/s per row, fault window "
        f"{args.fault_seconds:.0f} s, row timeout {args.row_timeout:.0f} s after the fault"
    )
    print(
        f"machine load (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on "
        f"{os.cpu_count()} cores"
    )
    print(f"setup options: {json.dumps(setup_options(args), sort_keys=True)}")
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    print(
        f"\ntargets: lost 0, dup/extra 0, re-sub 0; s to right ≤ {TARGET_SECONDS:.0f} after "
        "the fault ends (cc_quota: after the resume); /readyz not 200 while stuck "
        f"(records wrong, none right for {STUCK_SECONDS:.0f} s; shown as 200s/samples)."
    )
    for r in results:
        extra = [
            f"fault {r.fault_seconds} s, row {r.wall_seconds} s",
            f"deliveries {r.deliveries}",
            *r.notes,
        ]
        if r.error:
            extra.insert(0, f"ERROR {r.error}")
        print(f"- {r.fault}: {r.title}. " + "; ".join(extra))


def run(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.faults.split(",") if n.strip()] if args.faults else []
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        print(
            f"unknown fault(s): {', '.join(unknown)}; known: {', '.join(BY_NAME)}", file=sys.stderr
        )
        return 2
    specs = [BY_NAME[n] for n in names] if names else FAULTS
    results: list[Result] = []
    load_samples: list[tuple[float, float, float]] = []
    with c.workdir("bench-faults-tls-") as tls_dir:
        for spec in specs:
            if not args.json:
                print(f"[{time.strftime('%H:%M:%S')}] {spec.name}: {spec.title} ...", flush=True)
            results.append(run_row(args, spec, tls_dir))
            load_samples.append(os.getloadavg())
            if not args.json:
                r = results[-1]
                print(
                    f"    {'ok' if r.passed else 'NOT OK'}: right {r.right}/{r.expected}, "
                    f"lost {r.lost}, extra {r.extra}, re-sub {r.resubscribed}, "
                    f"s to right {r.seconds_to_right}, {r.wall_seconds} s"
                    + (f", {r.error}" if r.error else ""),
                    flush=True,
                )
    load = os.getloadavg()
    if args.json:
        doc = {
            "events": args.events,
            "rate": args.rate,
            "fault_seconds": args.fault_seconds,
            "row_timeout": args.row_timeout,
            "target_seconds": TARGET_SECONDS,
            "stuck_seconds": STUCK_SECONDS,
            "load": list(load),
            "load_after_each_row": [list(x) for x in load_samples],
            "cores": os.cpu_count(),
            "setup_options": setup_options(args),
            "rows": [{**asdict(r), "passed": r.passed} for r in results],
        }
        print(json.dumps(doc, indent=2))
    else:
        print_report(results, load, args)
    return 0 if all(r.passed for r in results) else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="faults: " + ", ".join(f.name for f in FAULTS),
    )
    parser.add_argument("--faults", default="", help="comma-separated names; default: all")
    parser.add_argument("--events", type=int, default=300, help="Salesforce writes per row")
    parser.add_argument("--rate", type=float, default=25.0, help="writes per second")
    parser.add_argument(
        "--fault-seconds",
        type=float,
        default=20.0,
        help="how long a windowed fault lasts, from the first event",
    )
    parser.add_argument(
        "--row-timeout",
        type=float,
        default=135.0,
        help="seconds after the fault ends before a row is reported not right",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=3.0,
        help="seconds everything must stay right to count as right",
    )
    parser.add_argument(
        "--setup-options",
        default="",
        help="JSON merged into the setup's options (default adds "
        "schedule.catch_up_minutes=1 when the build has it)",
    )
    parser.add_argument("--no-clock", action="store_true", help="do not run the rq cron clock")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if args.events < 10:
        parser.error("--events must be at least 10")
    if args.rate <= 0 or args.fault_seconds <= 0 or args.row_timeout <= 0:
        parser.error("--rate, --fault-seconds and --row-timeout must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
