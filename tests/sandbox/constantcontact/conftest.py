"""Fixtures for the Constant Contact sandbox tests: a frozen clock, the app, a validating client."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask

from sandbox.adapter import mount
from sandbox.common import Clock
from sandbox.constantcontact.app import create_app
from tests.contract.cc_openapi import ValidatingSession

BASE = "https://api.cc.sandbox.test"
START = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)


class FrozenClock(Clock):
    """Time stands still unless a test moves it: no test depends on how fast it runs."""

    def __init__(self, start: datetime = START) -> None:
        super().__init__()
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, when: datetime) -> datetime:
        self._now = when if when.tzinfo else when.replace(tzinfo=UTC)
        return self._now

    def reset(self) -> None:
        self._now = START


class CC:
    """A validating session on the sandbox with a base URL and a bearer token."""

    def __init__(self, app: Flask, session: ValidatingSession) -> None:
        self.app = app
        self.session = session
        self.sandbox = app.extensions["cc_sandbox"]

    def url(self, path: str) -> str:
        return BASE + path

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.session.request(method, self.url(path), **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    def invalid(self) -> Any:
        return self.session.allow_invalid_request()

    # -- shortcuts used across tests ---------------------------------------------------------

    def make_list(self, name: str = "Main") -> str:
        resp = self.post("/v3/contact_lists", json={"name": name})
        assert resp.status_code == 201, resp.text
        return str(resp.json()["list_id"])

    def make_field(self, label: str) -> dict[str, Any]:
        resp = self.post("/v3/contact_custom_fields", json={"label": label, "type": "string"})
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    def make_contact(self, email: str, **extra: Any) -> dict[str, Any]:
        body = {"email_address": {"address": email}, "create_source": "Account", **extra}
        resp = self.post("/v3/contacts", json=body)
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    def read_back(self, email: str) -> dict[str, Any]:
        resp = self.get("/_sandbox/contacts", params={"email": email})
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def finish(self, activity: dict[str, Any]) -> dict[str, Any]:
        """Poll an activity until it is done, as a client would (bounded: the steps are finite)."""
        for _ in range(10):
            resp = self.get(f"/v3/activities/{activity['activity_id']}")
            assert resp.status_code == 200, resp.text
            activity = resp.json()
            if activity["state"] in ("completed", "failed"):
                return activity
        raise AssertionError(f"activity never finished: {activity}")


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def config(clock: FrozenClock) -> dict[str, Any]:
    # Limits off by default: a frozen second would throttle everything; rate tests turn them on.
    return {"clock": clock, "sleep": lambda _s: None, "RATE_PER_SECOND": 0, "DAILY_QUOTA": 0}


@pytest.fixture
def app(config: dict[str, Any]) -> Flask:
    return create_app(config)


@pytest.fixture
def anon(app: Flask) -> Iterator[CC]:
    """A validating client without a token."""
    session = ValidatingSession()
    mount(session, BASE, app)
    yield CC(app, session)
    session.close()


@pytest.fixture
def cc(anon: CC) -> CC:
    """A validating client holding a fresh access token."""
    token = anon.post("/_sandbox/tokens", json={}).json()["access_token"]
    anon.session.headers["Authorization"] = f"Bearer {token}"
    return anon
