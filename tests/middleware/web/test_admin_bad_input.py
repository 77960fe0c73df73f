"""The admin API answers bad input with a 4xx naming the problem, never a 500."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from sqlalchemy.exc import DataError

from app import create_app
from middleware.web import MAX_DB_ID, BadInput, admin, parse_json
from schemas import admin as s
from tests.middleware.web.test_admin import API, AUTH, Api, new_setup

HUGE_IDS = [MAX_DB_ID + 1, 2**63, 10**30]


@pytest.fixture
def api(app: Flask, client: FlaskClient) -> Api:
    return Api(client, app)


def _id_routes() -> list[admin.Endpoint]:
    return [ep for ep in admin.ENDPOINTS if "<int:" in ep.rule]


def _valid_body(ep: admin.Endpoint) -> dict[str, Any] | None:
    if ep.body is None:
        return None
    if ep.body is s.ErrorSelectionRequestSchema:
        return {"all": True}
    return {}


@pytest.mark.parametrize("ident", HUGE_IDS)
@pytest.mark.parametrize("ep", _id_routes(), ids=lambda ep: f"{ep.method} {ep.rule}")
def test_ids_that_cannot_exist_are_404_on_every_route(
    api: Api, ep: admin.Endpoint, ident: int
) -> None:
    new_setup(api)  # setup 1 exists: only the id is wrong
    path = re.sub(r"<int:\w+>", str(ident), ep.rule).removeprefix(API)
    response = api.call(ep.method, path, _valid_body(ep))
    assert response.status_code == 404, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert str(ident) in response.json["detail"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/setups", {"name": "A", "main_list": "L", "salesforce_connection": 2**31}, None),
        ("/setups", {"name": "A", "main_list": "L", "constant_contact_connection": 10**30}, None),
        ("/connections/start", {"vendor": "salesforce", "connection_id": 2**63}, "connection_id"),
        ("/setups/1/errors/retry", {"ids": [1, 2**31]}, "ids[1]"),
        ("/setups/1/errors/resolve", {"ids": [10**40]}, "ids[0]"),
    ],
)
def test_ids_beyond_the_database_range_in_bodies_are_422_naming_the_field(
    api: Api, path: str, body: dict[str, Any], field: str | None
) -> None:
    new_setup(api)
    response = api.post(path, body)
    assert response.status_code == 422, response.json
    name = field or next(k for k in body if k.endswith("_connection"))
    assert name in response.json["errors"], response.json


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        ('{"name": ' + "[" * 40 + "]" * 40 + "}", "nested too deeply"),
        ('{"name": "a\\u0000b", "main_list": "L"}', "body.name holds a NUL character"),
        ('{"name": "a\\udc00b", "main_list": "L"}', "lone surrogate"),
        ('{"name": "x", "main_list": "L", "sync_to_cc": NaN}', "NaN"),
        ('{"name": "x", "main_list": "L", "x": 1e999}', "too large"),
        (b'{"name": "\xff"}', "not UTF-8"),
        ("not json", "not valid JSON"),
    ],
)
def test_malformed_bodies_are_400_naming_the_problem(
    client: FlaskClient, raw: str | bytes, says: str
) -> None:
    response = client.post(API + "/setups", data=raw, content_type="application/json", headers=AUTH)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert says in response.json["detail"]


def test_nul_in_a_query_parameter_is_400(api: Api) -> None:
    setup_id = new_setup(api)["id"]
    response = api.get(f"/setups/{setup_id}/errors?code=a%00b")
    assert response.status_code == 400
    assert "NUL" in response.json["detail"]
    assert "code" in response.json["errors"]


def test_a_pause_until_beyond_the_calendar_is_422(api: Api) -> None:
    setup_id = new_setup(api)["id"]
    response = api.post(f"/setups/{setup_id}/pause", {"until": "9999-12-31T23:59:59-14:00"})
    assert response.status_code == 422
    assert "until" in response.json["errors"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"all": 1}, "all"),
        ({"all": "true"}, "all"),
        ({"ids": [1], "all": "no"}, "all"),
    ],
)
def test_booleans_are_json_booleans(api: Api, body: dict[str, Any], field: str) -> None:
    setup_id = new_setup(api)["id"]
    response = api.post(f"/setups/{setup_id}/errors/retry", body)
    assert response.status_code == 422
    assert field in response.json["errors"]
    flag = api.patch(f"/setups/{setup_id}", {"sync_to_cc": 0})
    assert flag.status_code == 422
    assert "sync_to_cc" in flag.json["errors"]


def test_patching_the_webhook_to_null_is_refused_naming_it(api: Api) -> None:
    setup_id = new_setup(api, webhook={"auth": "hmac"})["id"]
    response = api.patch(f"/setups/{setup_id}", {"webhook": None})
    assert response.status_code == 422
    assert "webhook" in response.json["errors"]
    assert api.get(f"/setups/{setup_id}").json["webhook"]["auth"] == "hmac"
    # Its parts still reset one by one.
    assert api.patch(f"/setups/{setup_id}", {"webhook": {"auth": None}}).status_code == 200


def test_an_unknown_queue_filter_is_400_naming_the_queues(api: Api) -> None:
    response = api.get("/queue/failed?queue=")
    assert response.status_code == 400
    assert "queue" in response.json["errors"]


def test_redis_down_is_503_with_retry_after(config: dict[str, Any]) -> None:
    config["REDIS"] = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    application = create_app(config)
    response = application.test_client().get(API + "/queue", headers=AUTH)
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == "30"
    assert "Redis" in response.json["detail"]


def test_overflow_and_database_range_errors_are_400_not_500(app: Flask) -> None:
    @app.get("/boom/overflow")
    def overflow() -> Any:
        raise OverflowError("date value out of range")

    @app.get("/boom/data")
    def data() -> Any:
        raise DataError("SELECT 1", {}, Exception("integer out of range"))

    client = app.test_client()
    for path in ("/boom/overflow", "/boom/data"):
        response = client.get(path)
        assert response.status_code == 400, path
        assert response.mimetype == "application/problem+json"
        assert "out of range" in response.json["detail"]


def test_parse_json_is_usable_outside_the_admin_api() -> None:
    assert parse_json(b'{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
    with pytest.raises(BadInput, match="payload is nested too deeply"):
        parse_json(json.dumps({"a": [[[[1]]]]}), max_depth=3, where="payload")
