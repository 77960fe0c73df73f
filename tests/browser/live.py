"""The running world a browser test drives: both sandboxes and the service, each on a socket.

Started the way `make demo` starts them (demo.py): the sandboxes through `sandbox.server.start`
(Salesforce over HTTPS with its own CA, Constant Contact over HTTP), the service as the same Flask
app gunicorn runs, in embedded mode (SQLite in a temporary folder, the in-process queue on a
private fakeredis and the worker thread; no Redis, no PostgreSQL), served by werkzeug's threaded
server. Both sandboxes show their OAuth consent page (``CONSENT_PAGE``), so a browser clicks
"Allow" as a person would.

`LiveService` also carries what a test sets up *around* the browser without clicking: admin API
calls, sandbox control calls (records, faults), connections made through the OAuth flows over
HTTP, and waiting for a setup to be idle. Nothing here imports Playwright.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import fakeredis
import requests
from cryptography.fernet import Fernet
from werkzeug.serving import BaseWSGIServer, make_server

from middleware import queue
from sandbox import server as sandbox_server

MAIN_LIST = "Browser Main List"


class LiveError(AssertionError):
    """A call the test world made was refused: the message has the status and the body."""


@dataclass
class LiveService:
    """Sandboxes + service on sockets; `start()` them once, `stop()` at the end."""

    workdir: Path
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    base: str = ""
    sf_url: str = ""
    cc_url: str = ""
    _app: Any = None
    _http: BaseWSGIServer | None = None
    _sandboxes: Any = None

    # --- start and stop ----------------------------------------------------------------------

    def start(self) -> LiveService:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._sandboxes = sandbox_server.start(
            sf_port=0,
            cc_port=0,
            tls_dir=self.workdir / "sandbox-tls",
            sf_config={"CONSENT_PAGE": True},
            # No 4 requests/s here: the tests wait for runs, not for the rate limiter.
            cc_config={"CONSENT_PAGE": True, "RATE_PER_SECOND": 0, "ACTIVITY_SECONDS": 0.2},
        )
        self.sf_url, self.cc_url = self._sandboxes.sf_url, self._sandboxes.cc_url
        # Bind first, so PUBLIC_URL (the OAuth callbacks' host) names the real port.
        self._http = make_server("127.0.0.1", 0, _late_app(self), threaded=True)
        self.base = f"http://127.0.0.1:{self._http.server_port}"
        from app import create_app

        self._app = create_app(
            {
                "SECRET_KEY": secrets.token_urlsafe(32),
                "ADMIN_TOKEN": self.admin_token,
                "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                "DATABASE_URL": f"sqlite:///{(self.workdir / 'service.sqlite3').resolve()}",
                "REDIS_URL": "",
                # Embedded mode on a fakeredis server of its own, not the process-wide one
                # (`queue.embedded_server`) other tests in this pytest process may use.
                "REDIS": queue.embedded_redis(fakeredis.FakeServer()),
                "EMBEDDED_WORKER": True,
                "EMBEDDED_LISTENER": False,
                "PUBLIC_URL": self.base,
                "SALESFORCE_LOGIN_URL": self.sf_url,
                "SALESFORCE_SANDBOX_LOGIN_URL": self.sf_url,
                "SALESFORCE_CLIENT_ID": "sandbox-client-id",
                "SALESFORCE_CLIENT_SECRET": "sandbox-client-secret",
                "SALESFORCE_CA_BUNDLE": str(self._sandboxes.tls.ca_cert),
                "CC_API_URL": f"{self.cc_url}/v3",
                "CC_AUTH_URL": f"{self.cc_url}/oauth2/default/v1",
                "CC_CLIENT_ID": "sandbox-client-id",
                "CC_CLIENT_SECRET": "sandbox-client-secret",
                "FLUSH_DELAY_SECONDS": 0.2,
                "LOG_LEVEL": "WARNING",
            }
        )
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        from app import stop_background

        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._app is not None:
            stop_background(self._app)
            self._app.extensions["middleware"]["store"].dispose()
        if self._sandboxes is not None:
            self._sandboxes.stop()

    # --- HTTP around the browser ---------------------------------------------------------------

    def _session(self, verify: bool = False) -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        if verify:
            session.verify = str(self._sandboxes.tls.ca_cert)
        return session

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """The admin API, with the admin token; a 4xx/5xx raises `LiveError`."""
        with self._session() as s:
            s.headers["Authorization"] = f"Bearer {self.admin_token}"
            r = s.request(method, f"{self.base}/admin/api{path}", timeout=60, **kwargs)
        if r.status_code >= 400:
            raise LiveError(f"admin API {method} {path}: {r.status_code} {r.text[:500]}")
        return r.json() if r.content else None

    def sandbox(self, vendor: str, method: str, path: str, **kwargs: Any) -> Any:
        """A call to a sandbox (``vendor`` "salesforce" or "constantcontact"), e.g.
        ``sandbox("constantcontact", "POST", "/_sandbox/faults", json={...})``."""
        base = self.sf_url if vendor == "salesforce" else self.cc_url
        with self._session(verify=vendor == "salesforce") as s:
            r = s.request(method, f"{base}{path}", timeout=60, **kwargs)
        if r.status_code >= 400:
            raise LiveError(f"{vendor} sandbox {method} {path}: {r.status_code} {r.text[:500]}")
        return r.json() if r.content else None

    def sf_contact(self, **values: Any) -> str:
        """A Contact created in the Salesforce sandbox (as a user would); its id."""
        return str(
            self.sandbox("salesforce", "POST", "/_sandbox/records/Contact", json=values)["id"]
        )

    def connect(self, vendor: str, label: str) -> int:
        """A connection made through the vendor's OAuth flow over HTTP (no browser): the
        service's start link, the sandbox's consent page answered "allow", the callback. Each
        sandbox is one org / account, so a second call reuses (and re-authorises) the first."""
        start = self.api("POST", "/connections/start", json={"vendor": vendor, "label": label})
        with self._session(verify=vendor == "salesforce") as s:
            # JSON from the service's callback: the connection it stored (or reused: one per org).
            s.headers["Accept"] = "application/json"
            r = s.get(start["authorize_url"], timeout=60)
            if r.headers.get("Content-Type", "").startswith("text/html"):
                parts = urlsplit(r.url)
                query = urlencode([*parse_qsl(parts.query), ("consent", "allow")])
                r = s.get(urlunsplit(parts._replace(query=query)), timeout=60)
        if r.status_code >= 400:
            raise LiveError(f"OAuth for {vendor}: {r.status_code} {r.text[:500]}")
        return int(r.json()["connection"]["id"])

    def create_setup(self, name: str, **options: Any) -> int:
        """A setup over two fresh API-made connections (until the wizard makes them); its id."""
        sf = self.connect("salesforce", f"{name} org")
        cc = self.connect("constantcontact", f"{name} account")
        body = {
            "name": name,
            "object_type": "Contact",
            "main_list": MAIN_LIST,
            "salesforce_connection": sf,
            "constant_contact_connection": cc,
            **options,
        }
        return int(self.api("POST", "/setups", json=body)["id"])

    def status(self, setup_id: int) -> dict[str, Any]:
        return dict(self.api("GET", f"/setups/{setup_id}/status"))

    def runs(self, setup_id: int) -> list[dict[str, Any]]:
        """The setup's runs, newest first."""
        return list(self.api("GET", f"/setups/{setup_id}/runs")["items"])

    def last_run_id(self, setup_id: int) -> int:
        """The newest run's id (0: none yet); give it to `wait_run` before starting another."""
        found = self.runs(setup_id)
        return int(found[0]["id"]) if found else 0

    def wait_run(self, setup_id: int, after: int = 0, timeout: float = 30.0) -> dict[str, Any]:
        """Until a run newer than ``after`` has finished, and nothing else is pending; that run."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            seen = [r for r in self.runs(setup_id) if r["id"] > after]
            if seen and all(r["finished_at"] for r in seen):
                status = self.status(setup_id)
                if not status["pending"] and status["active_run"] is None:
                    return seen[0]
            time.sleep(0.2)
        raise LiveError(f"setup {setup_id}: no run after {after} finished in {timeout}s: {seen}")


def _late_app(live: LiveService) -> Any:
    """A WSGI app that hands each request to the service's app once it is built (the socket is
    bound first, so the app's PUBLIC_URL knows its port)."""

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        return live._app(environ, start_response)

    return wsgi
