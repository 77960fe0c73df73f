"""An in-process world for end-to-end tests: both sandboxes, the service's store and queue, a setup.

Everything speaks real HTTP through in-process transports (no sockets): the Salesforce and
Constant Contact clients reach the sandboxes' WSGI apps, every Constant Contact exchange is checked
against the official spec, and Salesforce change events reach the service's webhook through the
Flask test client, exactly as a Flow HTTP callout would post them. Outbound Messages, once an
action is set (`sf_outbound`), reach the service's SOAP endpoint the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import fakeredis
import requests
from cryptography.fernet import Fernet
from flask import Flask

from middleware import queue
from middleware.constantcontact.client import ConstantContactClient
from middleware.constantcontact.limiter import LocalLimiter
from middleware.constantcontact.oauth import StaticTokenSource as CCStaticTokens
from middleware.salesforce.client import SalesforceClient
from middleware.salesforce.oauth import StaticTokenSource as SFStaticTokens
from middleware.sf_to_cc import flush
from middleware.store import connections as connection_repo
from middleware.store import setups as setup_repo
from sandbox.adapter import mount
from sandbox.constantcontact.app import create_app as create_cc_app
from sandbox.salesforce import create_app as create_sf_app
from schemas.setup import validate_setup
from tests.contract.cc_openapi import ValidatingSession

SF_BASE = "https://sf.sandbox.test"
CC_BASE = "https://api.cc.sandbox.test"
SF_VERSION = "66.0"


def _session(base: str, app: Flask, validating: bool = False) -> requests.Session:
    session: requests.Session = ValidatingSession() if validating else requests.Session()
    session.trust_env = False
    mount(session, base, app)
    return session


class World:
    """Sandboxes + service for one test. `sf_config`/`cc_config` override sandbox settings."""

    def __init__(
        self,
        *,
        options: dict[str, Any] | None = None,
        sf_config: dict[str, Any] | None = None,
        cc_config: dict[str, Any] | None = None,
        redis: Any = None,
        database_url: str = "sqlite://",
    ) -> None:
        self.events: list[dict[str, Any]] = []
        self._pubsub_servers: list[Any] = []
        # JSON change events go to the webhook unless a test turns that door off.
        self.deliver_to_webhook = True
        # (url, body, status, answer) of every Outbound Message the org posted.
        self.outbound_posts: list[tuple[str, bytes, int, bytes]] = []
        self.sf_app = create_sf_app(
            {
                "EVENT_DELIVERY": "sync",
                "EVENT_SINK": self._deliver,
                "OUTBOUND_DELIVERY": "sync",
                "OUTBOUND_SINK": self._deliver_outbound,
                **(sf_config or {}),
            }
        )
        self.sf_org = self.sf_app.extensions["sf_sandbox"]
        self.cc_app = create_cc_app(
            {"RATE_PER_SECOND": 0, "ACTIVITY_STEPS": 1, **(cc_config or {})}
        )
        self.sf_session = _session(SF_BASE, self.sf_app)
        self.cc_session = _session(CC_BASE, self.cc_app, validating=True)
        self.redis = (
            redis if redis is not None else fakeredis.FakeRedis(server=fakeredis.FakeServer())
        )
        from app import create_app

        self.app = create_app(
            {
                "SECRET_KEY": "e2e-secret",
                "ADMIN_TOKEN": "e2e-admin",
                "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                "DATABASE_URL": database_url,
                "EMBEDDED_WORKER": False,
                "SALESFORCE_CALL_CLIENT": "ctct-sync",
                "TESTING": True,
                "REDIS": self.redis,
            }
        )
        handles = self.app.extensions["middleware"]
        self.store = handles["store"]
        self.runtime = handles["runtime"]
        self.web = self.app.test_client()
        self.sf_token = self.sf_session.post(f"{SF_BASE}/_sandbox/tokens").json()["access_token"]
        self.cc_token = self.cc_session.post(f"{CC_BASE}/_sandbox/tokens").json()["access_token"]
        setup, _warnings = validate_setup(
            {"name": "e2e", "main_list": "Main List", **(options or {})}
        )
        with self.store.transaction() as session:
            sf_conn = connection_repo.create(
                session,
                vendor="salesforce",
                label="sandbox org",
                base_url=SF_BASE,
                # The org id a real connection learns from its identity URL at sign-in.
                account_id=self.sf_org.config["ORG_ID"],
                access_token=self.sf_token,
            )
            cc_conn = connection_repo.create(
                session, vendor="constantcontact", label="sandbox", access_token=self.cc_token
            )
            row = setup_repo.create(
                session,
                name="e2e",
                options=setup,
                salesforce_connection_id=sf_conn.id,
                constant_contact_connection_id=cc_conn.id,
            )
            self.setup_id = row.id
            self.webhook_secret = setup_repo.webhook_secret(session, row)
        self.options = setup

    # --- the clients a job would build ---------------------------------------------------------

    def sf_client(self) -> SalesforceClient:
        return SalesforceClient(
            SF_BASE, SFStaticTokens(self.sf_token), session=self.sf_session, version=SF_VERSION
        )

    def cc_client(self) -> ConstantContactClient:
        return ConstantContactClient(
            f"{CC_BASE}/v3",
            self.cc_session,
            CCStaticTokens(self.cc_token),
            LocalLimiter(rate=10_000),
            sleep=lambda _s: None,
        )

    def flush(self) -> dict[str, Any]:
        """Run the flush job body with in-process clients; return its summary and clients."""
        self.last_sf, self.last_cc = self.sf_client(), self.cc_client()
        return flush.run_flush(self.runtime, self.setup_id, sf=self.last_sf, cc=self.last_cc)

    # --- Salesforce, as a user in the UI -------------------------------------------------------

    def _deliver(self, envelopes: list[dict[str, Any]]) -> None:
        self.events.extend(envelopes)
        if getattr(self, "web", None) is None or not getattr(self, "deliver_to_webhook", True):
            return
        response = self.web.post(
            f"/webhooks/salesforce/{self.setup_id}",
            json=envelopes,
            headers={"X-Webhook-Secret": self.webhook_secret},
        )
        self.last_webhook = response

    def _deliver_outbound(
        self, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """An Outbound Message from the org, handed to the service's app as Salesforce posts it."""
        if getattr(self, "web", None) is None:
            return 503, b""
        parts = urlsplit(url)
        response = self.web.post(parts.path, query_string=parts.query, data=body, headers=headers)
        self.outbound_posts.append((url, body, response.status_code, response.get_data()))
        return response.status_code, response.get_data()

    def sf_outbound(self, **spec: Any) -> dict[str, Any]:
        """Set an Outbound Message action in the org (as an admin's Flow would) that posts to
        this setup's endpoint with its secret; `spec` as `POST /_sandbox/outbound` takes it."""
        url = (
            f"https://ctct.test/webhooks/salesforce/{self.setup_id}/outbound"
            f"?secret={self.webhook_secret}"
        )
        r = self.sf_session.post(f"{SF_BASE}/_sandbox/outbound", json={"url": url, **spec})
        assert r.status_code == 201, r.text
        return dict(r.json())

    def sf_create(self, sobject: str = "Contact", **values: Any) -> str:
        r = self.sf_session.post(f"{SF_BASE}/_sandbox/records/{sobject}", json=values)
        assert r.status_code in (200, 201), r.text
        return str(r.json()["id"])

    def sf_update(self, record_id: str, sobject: str = "Contact", **values: Any) -> None:
        r = self.sf_session.patch(f"{SF_BASE}/_sandbox/records/{sobject}/{record_id}", json=values)
        assert r.status_code in (200, 204), r.text

    def sf_delete(self, record_id: str, sobject: str = "Contact") -> None:
        r = self.sf_session.delete(f"{SF_BASE}/_sandbox/records/{sobject}/{record_id}")
        assert r.status_code in (200, 204), r.text

    def start_pubsub(self, tls: bool = False, tls_dir: str | None = None) -> tuple[Any, int]:
        """Serve the Salesforce org's Pub/Sub API (gRPC) on a free 127.0.0.1 port.

        Returns `(server, port)`; `close()` stops it. Authenticate with `self.sf_token`,
        instanceurl `SF_BASE` and tenantid `self.sf_app.extensions["sf_sandbox"].config["ORG_ID"]`.
        With `tls=True` the certificate comes from the sandbox CA in `tls_dir` (`<dir>/ca.pem`).
        """
        # Deferred: only the tests that subscribe pay for gRPC and the compiled proto.
        from sandbox.salesforce.pubsub import start_pubsub

        kwargs: dict[str, Any] = {"tls_dir": tls_dir} if tls_dir else {}
        server, port = start_pubsub(self.sf_app, port=0, tls=tls, **kwargs)
        self._pubsub_servers.append(server)
        return server, port

    # --- Constant Contact, read back -----------------------------------------------------------

    def cc_contact(self, email: str) -> dict[str, Any] | None:
        r = self.cc_session.get(f"{CC_BASE}/_sandbox/contacts", params={"email": email})
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        body = r.json()
        if isinstance(body, dict) and "contacts" in body:
            return body["contacts"][0] if body["contacts"] else None
        return body

    def cc_state(self) -> dict[str, Any]:
        return dict(self.cc_session.get(f"{CC_BASE}/_sandbox/state").json())

    def sf_state(self) -> dict[str, Any]:
        return dict(self.sf_session.get(f"{SF_BASE}/_sandbox/state").json())

    def close(self) -> None:
        for server in self._pubsub_servers:
            server.stop(grace=None)
        handles = self.app.extensions["middleware"]
        if handles.get("worker") is not None:
            handles["worker"].stop()
        self.store.dispose()


@contextmanager
def world(**kwargs: Any) -> Iterator[World]:
    w = World(**kwargs)
    try:
        yield w
    finally:
        w.close()


@contextmanager
def postgres_world(redis: Any, prefix: str, **kwargs: Any) -> Iterator[World]:
    """A World on a PostgreSQL database of its own (made from the models, dropped after) and
    the given Redis; fails the test when PostgreSQL at 127.0.0.1:5432 is not there."""
    import uuid

    import pytest
    import sqlalchemy as sa

    from middleware.store.db import Store
    from tests.conftest import POSTGRES_URL

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is needed for integration tests: {exc}")
    url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    schema = Store(url, [Fernet.generate_key().decode()])
    schema.create_all()  # the app creates tables itself only on SQLite; here, the models'
    schema.dispose()
    w = World(database_url=url, redis=redis, **kwargs)
    w.deliver_to_webhook = False
    try:
        yield w
    finally:
        w.close()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


__all__ = ["World", "postgres_world", "queue", "world"]
