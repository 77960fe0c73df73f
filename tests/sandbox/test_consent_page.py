"""The sandboxes' OAuth consent page (``CONSENT_PAGE``): off, authorize approves at once; on, it
asks first, and "Allow" / "Deny" send the browser back with a code / ``access_denied``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask

from sandbox.constantcontact.app import create_app as create_cc_app
from sandbox.salesforce import create_app as create_sf_app

REDIRECT = "http://127.0.0.1:8765/oauth/callback"
VENDORS: list[tuple[str, Callable[[dict[str, Any]], Flask], str, str]] = [
    ("Salesforce", create_sf_app, "/services/oauth2/authorize", "api refresh_token"),
    ("Constant Contact", create_cc_app, "/oauth2/default/v1/authorize", "contact_data"),
]


def _params(scope: str, **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": "sandbox-client-id",
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": "st",
        **extra,
    }


def _back(location: str) -> dict[str, list[str]]:
    assert location.startswith(REDIRECT)
    return parse_qs(urlsplit(location).query)


@pytest.mark.parametrize(("vendor", "factory", "path", "scope"), VENDORS)
def test_without_the_page_authorize_approves_at_once(
    vendor: str, factory: Callable[[dict[str, Any]], Flask], path: str, scope: str
) -> None:
    web = factory({}).test_client()
    answer = web.get(path, query_string=_params(scope))
    assert answer.status_code == 302
    assert _back(answer.headers["Location"])["code"]


@pytest.mark.parametrize(("vendor", "factory", "path", "scope"), VENDORS)
def test_the_page_asks_then_allow_gives_a_code_and_deny_refuses(
    vendor: str, factory: Callable[[dict[str, Any]], Flask], path: str, scope: str
) -> None:
    web = factory({"CONSENT_PAGE": True}).test_client()
    page = web.get(path, query_string=_params(scope))
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert f"Allow access to your {vendor} sandbox account?" in html
    assert 'value="allow"' in html and 'value="deny"' in html and 'value="st"' in html

    allowed = web.get(path, query_string=_params(scope, consent="allow"))
    assert allowed.status_code == 302
    back = _back(allowed.headers["Location"])
    assert back["code"] and back["state"] == ["st"]

    denied = web.get(path, query_string=_params(scope, consent="deny"))
    back = _back(denied.headers["Location"])
    assert back["error"] == ["access_denied"] and "code" not in back
