"""The webhook's fast path answers every request exactly as Flask's own path does."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask, Response, g
from werkzeug.test import Client

from middleware import intake, queue
from middleware.logging import request_id_var
from middleware.salesforce.ids import to_18
from middleware.store import setups as setup_repo
from middleware.web import webhook_fast_path, webhooks
from middleware.web.webhook_fast_path import WebhookFastPath
from schemas.setup import validate_setup


def _event(n: int) -> dict[str, Any]:
    return {
        "data": {
            "payload": {
                "ChangeEventHeader": {
                    "entityName": "Contact",
                    "recordIds": [to_18(f"003SB{n:010d}")],
                    "changeType": "UPDATE",
                }
            },
            "event": {"replayId": n},
        },
        "channel": "/data/ContactChangeEvent",
    }


@pytest.fixture
def setup(app: Flask) -> dict[str, Any]:
    store = app.extensions["middleware"]["store"]
    options, _ = validate_setup({"name": "fast", "main_list": "Main"})
    with store.transaction() as session:
        row = setup_repo.create(session, name="fast", options=options)
        secret = setup_repo.webhook_secret(session, row)
        setup_id = row.id
    return {"id": setup_id, "secret": secret}


def _clients(app: Flask) -> tuple[Client, Client]:
    """(the app as served: fast path first; Flask's own path for the same app)."""
    fast = app.wsgi_app
    assert isinstance(fast, WebhookFastPath)
    return Client(app), Client(fast.flask_wsgi)


def _answer(client: Client, path: str, body: bytes, headers: dict[str, str]) -> tuple[Any, ...]:
    """Status line, headers in order, the raw body and its document."""
    response = client.post(path, data=body, headers={"X-Request-ID": "rid-1", **headers})
    document = json.loads(response.get_data())
    return response.status, list(response.headers.items()), response.get_data(), document


def test_the_fast_path_serves_the_app_as_built(app: Flask) -> None:
    fast = app.wsgi_app
    assert isinstance(fast, WebhookFastPath) and fast.enabled
    assert fast._direct  # and writes the 202 itself


CASES = {
    "accepted": lambda s, n: (json.dumps(_event(n)), {"X-Webhook-Secret": s["secret"]}),
    "batch": lambda s, n: (
        json.dumps({"events": [_event(n + 1000), _event(n + 2000)]}),
        {"Authorization": f"Bearer {s['secret']}"},
    ),
    "no credentials": lambda s, n: (json.dumps(_event(n)), {}),
    "wrong secret": lambda s, n: (json.dumps(_event(n)), {"X-Webhook-Secret": "nope"}),
    "stale signature": lambda s, n: (
        json.dumps(_event(n)),
        {"webhook-id": "m1", "webhook-timestamp": "1", "webhook-signature": "v1,x"},
    ),
    "invalid event": lambda s, n: (
        '{"data": {}, "channel": "x"}',
        {"X-Webhook-Secret": s["secret"]},
    ),
    "not JSON": lambda s, n: ("{", {"X-Webhook-Secret": s["secret"]}),
    "too large": lambda s, n: ("x" * (2 * 1024 * 1024), {"X-Webhook-Secret": s["secret"]}),
}


@pytest.mark.parametrize("case", CASES)
def test_each_answer_is_the_same_on_both_paths(
    app: Flask, setup: dict[str, Any], case: str
) -> None:
    fast, flask_path = _clients(app)
    path = f"/webhooks/salesforce/{setup['id']}"
    answers = []
    redis = app.extensions["middleware"]["redis"]
    for n, client in ((1, fast), (2, flask_path)):  # different events: neither is a duplicate
        redis.delete(queue.guard_key(intake.flush_job_key(setup["id"])))  # both schedule one
        body, headers = CASES[case](setup, n)
        answers.append(_answer(client, path, body.encode(), headers))
    (status, headers, raw, document), (status2, headers2, raw2, document2) = answers
    assert status == status2 and document == document2 and raw == raw2
    assert headers == headers2 and dict(headers)["X-Request-ID"] == "rid-1"


@pytest.mark.parametrize("setting", ["debug", "not compact", "sorted keys off"])
def test_the_202_follows_the_apps_json_settings_as_flask_does(
    app: Flask, setup: dict[str, Any], setting: str
) -> None:
    if setting == "debug":
        app.debug = True
    elif setting == "not compact":
        app.json.compact = False  # type: ignore[attr-defined]
    else:
        app.json.sort_keys = False  # type: ignore[attr-defined]
    fast, flask_path = _clients(app)
    path = f"/webhooks/salesforce/{setup['id']}"
    redis = app.extensions["middleware"]["redis"]
    answers = []
    for n, client in ((11, fast), (12, flask_path)):
        redis.delete(queue.guard_key(intake.flush_job_key(setup["id"])))
        body, headers = CASES["accepted"](setup, n)
        answers.append(_answer(client, path, body.encode(), headers))
    assert answers[0][0] == "202 ACCEPTED" and answers[0] == answers[1]


def test_another_response_class_is_answered_through_it(app: Flask, setup: dict[str, Any]) -> None:
    class Tagged(Response):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.headers["X-Tag"] = "t"

    app.response_class = Tagged
    assert not webhook_fast_path.writes_flasks_json(app)
    fast = WebhookFastPath(app, app.wsgi_app.flask_wsgi)  # type: ignore[attr-defined]
    body, headers = CASES["accepted"](setup, 13)
    response = Client(fast).post(f"/webhooks/salesforce/{setup['id']}", data=body, headers=headers)
    assert response.status_code == 202 and response.headers["X-Tag"] == "t"
    assert response.json["accepted"] == 1  # type: ignore[index]


def test_an_unknown_setup_is_refused_alike(app: Flask, setup: dict[str, Any]) -> None:
    fast, flask_path = _clients(app)
    headers = {"X-Webhook-Secret": setup["secret"]}
    body = json.dumps(_event(3)).encode()
    path = f"/webhooks/salesforce/{setup['id'] + 999}"
    assert _answer(fast, path, body, headers) == _answer(flask_path, path, body, headers)


def test_a_request_id_is_made_when_none_is_sent(app: Flask, setup: dict[str, Any]) -> None:
    fast, _ = _clients(app)
    response = fast.post(f"/webhooks/salesforce/{setup['id']}", data=b"{}")
    rid = response.headers["X-Request-ID"]
    assert len(rid) == 32 and response.json["request_id"] == rid  # type: ignore[index]


def test_the_request_id_and_runtime_are_set_while_serving_and_dropped_after(
    app: Flask, setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, Any, str]] = []
    real_accept = webhooks.accept

    def watching(setup_id: int, environ: dict[str, Any]) -> Any:
        seen.append((request_id_var.get(), queue._runtime_var.get(None), g.request_id))
        return real_accept(setup_id, environ)

    monkeypatch.setattr(webhooks, "accept", watching)
    fast, _ = _clients(app)
    fast.post(f"/webhooks/salesforce/{setup['id']}", data=b"{}", headers={"X-Request-ID": "r-9"})
    assert seen == [("r-9", app.extensions["middleware"]["runtime"], "r-9")]
    assert request_id_var.get() == "-" and queue._runtime_var.get(None) is None


def test_an_unexpected_error_answers_as_flask_does(
    app: Flask, setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = False

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(webhooks, "parse_events", broken)
    fast, flask_path = _clients(app)
    path = f"/webhooks/salesforce/{setup['id']}"
    body, headers = CASES["accepted"](setup, 5)
    first = _answer(fast, path, body.encode(), headers)
    assert first[0] == "500 INTERNAL SERVER ERROR" and b"secret internals" not in first[2]
    assert first == _answer(flask_path, path, body.encode(), headers)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/webhooks/salesforce/1"), ("POST", "/webhooks/salesforce/01"),
     ("POST", "/webhooks/salesforce/1/"), ("POST", "/webhooks/salesforce/x")],
)  # fmt: skip
def test_other_requests_go_through_flask(app: Flask, method: str, path: str) -> None:
    fast = app.wsgi_app
    assert isinstance(fast, WebhookFastPath)
    calls: list[str] = []

    def flask_wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        calls.append(environ["PATH_INFO"])
        return fast.flask_wsgi(environ, start_response)

    Client(WebhookFastPath(app, flask_wsgi)).open(path, method=method, data=b"{}")
    assert calls == [path]


def test_an_app_hook_it_does_not_reproduce_turns_it_off(app: Flask, setup: dict[str, Any]) -> None:
    ran: list[str] = []

    @app.before_request
    def audit() -> None:
        ran.append("audit")

    assert not webhook_fast_path.hooks_reproduced(app)
    fast = WebhookFastPath(app, app.wsgi_app.flask_wsgi)  # type: ignore[attr-defined]
    response = Client(fast).post(
        f"/webhooks/salesforce/{setup['id']}",
        data=json.dumps(_event(7)),
        headers={"X-Webhook-Secret": setup["secret"]},
    )
    assert response.status_code == 202 and ran == ["audit"]
