"""Fixtures: the real Salesforce sandbox mounted in-process, and our client talking to it."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from flask import Flask

from middleware.salesforce.client import SalesforceClient
from middleware.salesforce.oauth import StaticTokenSource
from sandbox.adapter import in_process_session

SF_BASE = "https://sf.sandbox.test"
SF_VERSION = "66.0"


class Sleeps:
    """An injected `sleep` that records the delays instead of sleeping."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sf_config() -> dict[str, Any]:
    return {}


@pytest.fixture
def sf_app(sf_config: dict[str, Any]) -> Flask:
    from sandbox.salesforce import create_app

    app = create_app({"sleep": lambda _s: None, **sf_config})
    yield app
    events = app.extensions["sf_sandbox"].events
    if hasattr(events, "close"):
        events.close(timeout=1)


@pytest.fixture
def sandbox(sf_app: Flask) -> Any:
    return sf_app.extensions["sf_sandbox"]


@pytest.fixture
def http(sf_app: Flask) -> requests.Session:
    return in_process_session(SF_BASE, sf_app)


def issue_token(http: requests.Session, **body: Any) -> dict[str, Any]:
    resp = http.post(f"{SF_BASE}/_sandbox/tokens", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(http: requests.Session, sleeps: Sleeps) -> SalesforceClient:
    token = issue_token(http)
    return SalesforceClient(
        SF_BASE, StaticTokenSource(token["access_token"]), http, SF_VERSION, sleep=sleeps
    )
